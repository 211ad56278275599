#!/usr/bin/env bash
# Wire-compatibility suite: drives the real riffle-broker with boto3, the AWS CLI v1, the
# JavaScript SDK v3 and the Java KCL 3.x.
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

# The Java KCL suite (test_java_kcl.py) needs its sample application built: Java 17+ and
# Maven (Debian's packages, installed here as root if missing); Maven's downloads are cached
# outside the repository, in ~/.cache/riffle-maven.
if ! command -v mvn >/dev/null || ! command -v java >/dev/null; then
    pkgs="maven openjdk-17-jdk-headless"
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y -q --no-install-recommends $pkgs >&2 \
            || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends $pkgs >&2; }
    else
        sudo -n apt-get install -y -q --no-install-recommends $pkgs >&2
    fi
fi
(cd "$here/java-kcl" && mvn -q -B -Dmaven.repo.local="$HOME/.cache/riffle-maven" package)

cd "$repo"
status=0
"$venv/bin/python" -m pytest -q "$here" "$@" || status=$?
exit "$status"
