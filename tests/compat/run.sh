#!/usr/bin/env bash
# Wire-compatibility suite: drives the real riffle-broker with boto3, the AWS CLI v1, the
# JavaScript SDK v3 and the Java SDK v2.
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

# The AWS SDK for Java v2 suite (test_java_sdk.py) builds tests/compat/java offline; this
# downloads its dependencies (and builds it) into a Maven repository outside the work tree,
# kept across clones: $RIFFLE_MAVEN_REPO, default ~/.cache/riffle-maven.
maven_repo="${RIFFLE_MAVEN_REPO:-$HOME/.cache/riffle-maven}"
(cd "$here/java" && mvn -q -B "-Dmaven.repo.local=$maven_repo" package)

cd "$repo"
status=0
"$venv/bin/python" -m pytest -q "$here" "$@" || status=$?
exit "$status"
