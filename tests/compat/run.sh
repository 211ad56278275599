#!/usr/bin/env bash
# Wire-compatibility suite: drives the real riffle-broker with boto3 and the AWS CLI v1.
# Usage: bash tests/compat/run.sh [pytest args...]   (from any directory)
# The broker binary comes from $RIFFLE_BROKER_BIN (default: <repo>/target/debug/riffle-broker).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$repo/.venv"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q -r "$here/requirements.txt"

# The JavaScript SDK v3 suite (test_js.py) needs its pinned packages.
(cd "$here/js" && npm ci --no-audit --no-fund --loglevel=error)

cd "$repo"
status=0
"$venv/bin/python" -m pytest -q "$here" "$@" || status=$?
exit "$status"
