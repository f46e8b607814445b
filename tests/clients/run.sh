#!/usr/bin/env bash
# Runs the official-client drivers against a Chorus server that has tests/convex-project
# deployed:
#   tests/clients/run.sh URL [ADMIN_KEY] [DRIVER...]
# DRIVER is any of npm-http npm-ws python rust (default: all, in that order). ADMIN_KEY may also
# come from CHORUS_ADMIN_KEY; without one the admin-auth checks are skipped.
#
# First installs what is missing (npm ci, the Python venv, a build of the Rust driver), each
# idempotent and quiet once done; then runs the drivers one by one, each under `timeout`, and
# stops at the first failure with a non-zero exit. See README.md.
set -euo pipefail

usage() {
  echo "usage: $0 URL [ADMIN_KEY] [npm-http|npm-ws|python|rust ...]" >&2
  exit 2
}
[[ $# -ge 1 && -n "$1" ]] || usage
url="${1%/}"
admin_key="${2:-${CHORUS_ADMIN_KEY:-}}"
shift $(($# >= 2 ? 2 : 1))
drivers=("$@")
[[ ${#drivers[@]} -gt 0 ]] || drivers=(npm-http npm-ws python rust)
for driver in "${drivers[@]}"; do
  case "$driver" in npm-http | npm-ws | python | rust) ;; *) usage ;; esac
done

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# The Rust driver builds into the repository's target/ tree, beside (not over) the workspace's
# own outputs.
target_dir="${CHORUS_CLIENTS_TARGET_DIR:-$repo/target/clients}"
# Bound on one driver; each also bounds its own waits (20 s) and its whole run (170 s).
driver_timeout_s=200

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "run.sh: '$1' not found; $2" >&2
    exit 127
  fi
}

wants() {
  local d
  for d in "${drivers[@]}"; do [[ "$d" == "$1"* ]] && return 0; done
  return 1
}

if wants npm; then
  need node "install Node.js 20+ and npm (e.g. apt-get install -y nodejs npm)"
  need npm "install Node.js 20+ and npm (e.g. apt-get install -y nodejs npm)"
  if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
    echo "run.sh: node $(node --version) is too old; the npm drivers need Node.js 20+" >&2
    exit 1
  fi
  stamp="$here/node/node_modules/.chorus-lock.sha256"
  want="$(sha256sum "$here/node/package-lock.json" | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "run.sh: installing the npm client (npm ci)" >&2
    # --ignore-scripts, --omit=optional: the drivers need only the client, not the esbuild
    # binary that `convex` depends on for its CLI.
    (cd "$here/node" && timeout --kill-after=10 300 npm ci --omit=dev --omit=optional \
      --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$want" >"$stamp"
  fi
fi

if wants python; then
  timeout --kill-after=10 400 "$here/python/setup.sh"
fi

if wants rust; then
  need cargo "install Rust (rustup); the toolchain is pinned in rust-toolchain.toml"
  # Quiet when up to date; a clean build takes about a minute.
  # Run from the driver's directory so that rustup picks the toolchain rust-toolchain.toml pins.
  (cd "$here/rust" && CARGO_TARGET_DIR="$target_dir" timeout --kill-after=10 1200 \
    cargo build --quiet --locked)
fi

args=("$url")
if [[ -n "$admin_key" ]]; then
  args+=("$admin_key")
else
  echo "run.sh: no ADMIN_KEY given; the admin-auth checks are skipped" >&2
fi

for driver in "${drivers[@]}"; do
  case "$driver" in
  npm-http) command=(node "$here/node/http.mjs") ;;
  npm-ws) command=(node "$here/node/ws.mjs") ;;
  python) command=("$here/python/.venv/bin/python" "$here/python/driver.py") ;;
  rust) command=("$target_dir/debug/chorus-client-rust") ;;
  esac
  echo "=== run.sh: driver $driver against $url"
  status=0
  timeout --kill-after=10 "$driver_timeout_s" "${command[@]}" "${args[@]}" || status=$?
  if [[ $status -ne 0 ]]; then
    if [[ $status -eq 124 || $status -eq 137 ]]; then
      echo "=== run.sh: driver $driver did not finish within ${driver_timeout_s} s" >&2
    fi
    echo "=== run.sh: FAILED: driver $driver (exit $status)" >&2
    exit 1
  fi
done
echo "=== run.sh: all drivers passed (${drivers[*]})"
