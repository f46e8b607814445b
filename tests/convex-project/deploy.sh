#!/usr/bin/env bash
# Deploys the fixture's convex/ functions to a running Chorus with the real Convex CLI:
#   tests/convex-project/deploy.sh URL ADMIN_KEY
# Installs the pinned CLI (`npm ci --omit=dev`, from package-lock.json) if node_modules is
# missing. Shares bundle.sh's lock: both run codegen, which rewrites convex/_generated/.
set -euo pipefail

if [[ $# -ne 2 || -z "$1" || -z "$2" ]]; then
  echo "usage: $0 URL ADMIN_KEY" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "deploy.sh: '$tool' not found; install Node.js 20+ and npm" >&2
    exit 127
  fi
done
bounded() {
  local seconds="$1"
  shift
  if command -v timeout >/dev/null 2>&1; then
    timeout --kill-after=10 "$seconds" "$@"
  else
    "$@"
  fi
}
if command -v flock >/dev/null 2>&1; then
  exec 9>"$here/.bundle.lock"
  flock 9
fi
if [[ ! -x node_modules/.bin/convex ]]; then
  echo "deploy.sh: installing the pinned Convex CLI (npm ci)" >&2
  bounded 300 npm ci --omit=dev --no-audit --no-fund --loglevel=error >&2
fi
# CI=1: non-interactive (no prompts).
bounded 180 env -u CONVEX_DEPLOYMENT -u CONVEX_DEPLOY_KEY -u CONVEX_SELF_HOSTED_URL \
  -u CONVEX_SELF_HOSTED_ADMIN_KEY CI=1 node_modules/.bin/convex deploy \
  --url "$1" \
  --admin-key "$2" \
  --typecheck disable
