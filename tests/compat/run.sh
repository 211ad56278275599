#!/usr/bin/env bash
# Wire-compatibility suite: drives the real riffle-broker with boto3, the AWS CLI v1, the
# JavaScript SDK v3, the Go SDK v2, the Java SDK v2, the Java KCL and the AWS KPL.
# Usage: bash tests/compat/run.sh [pytest args...]   (from any directory)
# The broker binary comes from $RIFFLE_BROKER_BIN (default: <repo>/target/debug/riffle-broker),
# the `riffle` CLI from $RIFFLE_CLI_BIN (default: <repo>/target/debug/riffle).
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

# The AWS SDK for Go v2 suite (test_go_sdk.py): modules and the build cache live outside the
# repository ($RIFFLE_GO_CACHE, default ~/.cache/riffle-go), so a fresh clone on the same
# machine neither downloads nor compiles the SDK again. `go vet` compiles the package (and
# checks it); pytest then links the test binary from that cache.
go_cache="${RIFFLE_GO_CACHE:-$HOME/.cache/riffle-go}"
(cd "$here/go" \
    && export GOMODCACHE="$go_cache/mod" GOCACHE="$go_cache/build" \
        GOFLAGS="-mod=readonly -modcacherw" GOTOOLCHAIN=local \
    && go mod download && go vet ./...)

# The Java suites need Java 17+ and Maven (Debian's packages, installed here as root if
# missing).
if ! command -v mvn >/dev/null || ! command -v java >/dev/null; then
    pkgs="maven openjdk-17-jdk-headless"
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y -q --no-install-recommends $pkgs >&2 \
            || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends $pkgs >&2; }
    else
        sudo -n apt-get install -y -q --no-install-recommends $pkgs >&2
    fi
fi

# The AWS SDK for Java v2 suite (test_java_sdk.py) builds tests/compat/java offline; this
# downloads its dependencies (and builds it) into a Maven repository outside the work tree,
# kept across clones: $RIFFLE_MAVEN_REPO, default ~/.cache/riffle-maven.
maven_repo="${RIFFLE_MAVEN_REPO:-$HOME/.cache/riffle-maven}"
(cd "$here/java" && mvn -q -B "-Dmaven.repo.local=$maven_repo" package)
# The Java KCL suite (test_java_kcl.py) runs a sample KCL application built here.
(cd "$here/java-kcl" && mvn -q -B "-Dmaven.repo.local=$maven_repo" package)
# The AWS KPL suite (test_java_kpl.py) runs a KPL producer (Java wrapper + native daemon).
(cd "$here/java-kpl" && mvn -q -B "-Dmaven.repo.local=$maven_repo" package)

cd "$repo"
status=0
"$venv/bin/python" -m pytest -q "$here" "$@" || status=$?
exit "$status"
