#!/usr/bin/env bash
# Creates tests/clients/python/.venv (git-ignored) with the pinned, hash-checked dependencies of
# the Python driver. Idempotent and quiet when the venv already matches requirements.txt.
#   tests/clients/python/setup.sh
# PYTHON chooses the interpreter (default python3; convex 0.8.1 needs Python 3.10+).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
  "$venv/bin/python" -c 'import convex' >/dev/null 2>&1; then
  exit 0
fi

if ! command -v "$python" >/dev/null 2>&1; then
  echo "python/setup.sh: '$python' not found; install Python 3.10+ (or set PYTHON)" >&2
  exit 127
fi
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "python/setup.sh: $("$python" --version 2>&1) is too old; convex 0.8.1 needs 3.10+" >&2
  exit 1
fi

echo "python/setup.sh: creating $venv" >&2
rm -rf "$venv"
if ! "$python" -m venv "$venv"; then
  echo "python/setup.sh: '$python -m venv' failed (on Debian: apt-get install python3-venv)" >&2
  exit 1
fi
timeout --kill-after=10 300 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --no-input --require-hashes --only-binary=:all: -r "$here/requirements.txt"
"$venv/bin/python" -c 'import convex' # fails loudly if the install is unusable
echo "$want" >"$stamp"
