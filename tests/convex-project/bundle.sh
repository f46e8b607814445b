#!/usr/bin/env bash
# Bundles the fixture's convex/ functions with the real Convex CLI, without any server:
#   tests/convex-project/bundle.sh OUT_DIR
# writes OUT_DIR/fullConfig.json ({modules: [{path, source, environment, sourceMap}], ...}) and
# OUT_DIR/isolate/*.js, the modules `convex deploy` would upload. OUT_DIR is emptied first.
#
# Installs the pinned CLI (`npm ci --omit=dev`, from package-lock.json) if node_modules is
# missing. The deploy command gets an unreachable URL (port 9, discard) and a dummy admin key:
# with --debug-bundle-path the CLI writes the bundle and stops before contacting the
# deployment. It also runs codegen, (re)writing convex/_generated/ (see README.md).
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
out="${out%/}"
# OUT_DIR is deleted: refuse the fixture itself or any directory containing it (or /).
if [[ -z "$out" || "$here/" == "$out/"* ]]; then
  echo "bundle.sh: refusing OUT_DIR '$1': it contains the project" >&2
  exit 2
fi

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "bundle.sh: '$tool' not found; install Node.js 20+ and npm (e.g. apt-get install -y nodejs npm)" >&2
    exit 127
  fi
done

# Each step gets a bound; `timeout` is in coreutils, but stay usable without it.
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

# One bundling at a time per checkout: codegen rewrites convex/_generated/ and npm ci replaces
# node_modules/.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$here/.bundle.lock"
  flock 9
fi

if [[ ! -x node_modules/.bin/convex ]]; then
  echo "bundle.sh: installing the pinned Convex CLI (npm ci)" >&2
  # --omit=dev: bundling needs only `convex`; reference.sh installs the dev tools too.
  bounded 300 npm ci --omit=dev --no-audit --no-fund --loglevel=error >&2
fi

rm -rf "$out"
mkdir -p "$(dirname "$out")"

# The CLI's own output goes to stderr so that callers' stdout stays clean.
bounded 120 env -u CONVEX_DEPLOYMENT -u CONVEX_DEPLOY_KEY -u CONVEX_SELF_HOSTED_URL \
  -u CONVEX_SELF_HOSTED_ADMIN_KEY node_modules/.bin/convex deploy \
  --url http://127.0.0.1:9 \
  --admin-key 'x|y' \
  --debug-bundle-path "$out" \
  --typecheck disable \
  >&2

if [[ ! -s "$out/fullConfig.json" ]]; then
  echo "bundle.sh: the Convex CLI exited without writing $out/fullConfig.json" >&2
  exit 1
fi
echo "bundle.sh: wrote $out/fullConfig.json" >&2
