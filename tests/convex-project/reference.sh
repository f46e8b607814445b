#!/usr/bin/env bash
# Differential reference: runs reference/scenario.json against convex-test (the npm package's JS
# model of the Convex backend, which runs functions serially) under vitest, and writes every
# step's arguments and result (or ConvexError data) and the final contents of every table, as
# Convex JSON, to OUT_FILE:
#   tests/convex-project/reference.sh OUT_FILE
# Installs all pinned packages (dev tools included) if vitest is missing, and runs the CLI's
# codegen through bundle.sh (convex-test loads convex/_generated/). Deterministic: Date is
# faked per step and convex-test's ids are counters, so two runs write the same file.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: $0 OUT_FILE" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

bounded() {
  local seconds="$1"
  shift
  if command -v timeout >/dev/null 2>&1; then
    timeout --kill-after=10 "$seconds" "$@"
  else
    "$@"
  fi
}

cd "$here"
if [[ ! -x node_modules/.bin/vitest ]]; then
  echo "reference.sh: installing the pinned packages (npm ci)" >&2
  bounded 300 npm ci --no-audit --no-fund --loglevel=error >&2
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"$here/bundle.sh" "$scratch/bundle"

mkdir -p "$(dirname "$out")"
REFERENCE_OUT="$out" bounded 120 node_modules/.bin/vitest run --reporter=dot >&2
echo "reference.sh: wrote $out" >&2
