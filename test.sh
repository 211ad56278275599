#!/usr/bin/env bash
# Runs every check and test of the repository, as CI does. Needs only the Rust toolchain,
# Python 3 and network access to crates.io and PyPI; installs the rest itself.
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

step "unit, property and end-to-end tests (real broker binary + AWS SDK for Rust)"
cargo test --workspace --locked

step "wire compatibility: boto3 and the AWS CLI"
bash tests/compat/run.sh

step "fuzz targets build and run briefly"
bash .ci/fuzz.sh

echo
echo "all checks passed"
