#!/usr/bin/env bash
# Runs every check and test of the repository, as CI does. Needs the Rust toolchain, Java 17
# with Maven (the Java SDK compatibility suite, dependencies cached in ~/.cache/riffle-maven),
# Python 3 and network access to crates.io and PyPI; installs the rest itself (boto3, the
# AWS CLI and moto_server into .venv/, before the Rust tests that need moto_server; for the
# operator tests, Go-built kube-apiserver/etcd/kubectl, helm, kubernetes-validate and
# Debian's prometheus, cached under ~/.cache/riffle-k8s by tests/k8s/{build,tools}.sh).
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "docs (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "build every target (binaries, tests, benches)"
cargo build --workspace --all-targets --locked

step "python test tools (.venv: boto3, AWS CLI, moto_server for the kcl lease tables)"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q -r tests/compat/requirements.txt

step "operator test tools (kube-apiserver, etcd, kubectl from Go modules; helm, kubernetes-validate, prometheus), cached in ~/.cache/riffle-k8s"
bash tests/k8s/build.sh >/dev/null
bash tests/k8s/tools.sh >/dev/null

step "unit, property and end-to-end tests (real broker binary + AWS SDK for Rust + moto_server)"
cargo test --workspace --locked

step "wire compatibility: boto3, the AWS CLI, the JavaScript SDK v3, the Go SDK v2, the Java SDK v2 and KCL"
bash tests/compat/run.sh

step "fuzz targets build and run briefly"
bash .ci/fuzz.sh

echo
echo "all checks passed"
