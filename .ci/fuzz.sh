#!/usr/bin/env bash
# Builds every fuzz target in broker/fuzz and runs each briefly from its committed seeds,
# so CI proves the targets build, load their seeds and hold their assertions.
#
# Stable toolchain only: cargo-fuzz passes nightly-only flags (-Cpasses=sancov-module, -Z...),
# which RUSTC_BOOTSTRAP=1 unlocks on stable. Defaults, measured on the 2-core dev machine:
# - cargo-fuzz's own profile (optimized, with debug assertions and overflow checks on): a cold
#   build takes ~70 s against ~45 s for --dev, but runs ~13x more inputs per second.
# - no sanitizer: broker and core are `forbid(unsafe_code)`. ASan works here too
#   (FUZZ_SANITIZER=address) at a few times fewer inputs per second.
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 20)
#   FUZZ_TARGETS    space-separated targets to run (default: all of `cargo fuzz list`)
#   FUZZ_BUILD      "release" (default) or "dev" (unoptimized: faster to build, slower to run)
#   FUZZ_SANITIZER  none (default), address, leak, ...
#   FUZZ_JOBS       cargo build jobs (default: cargo's own)
#   CARGO_FUZZ_VERSION  cargo-fuzz to install when missing (default 0.13.2, the tested one)
# A crash fails the script and leaves its input in broker/fuzz/artifacts/<target>/; reproduce
# with `cargo fuzz run -s none <target> <file>` (RUSTC_BOOTSTRAP=1) in broker/fuzz.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$repo/broker/fuzz"
seconds="${FUZZ_SECONDS:-20}"

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --version "${CARGO_FUZZ_VERSION:-0.13.2}"
fi

export RUSTC_BOOTSTRAP=1
if [[ -n "${FUZZ_JOBS:-}" ]]; then
    export CARGO_BUILD_JOBS="$FUZZ_JOBS"
fi
build_flags=(--sanitizer "${FUZZ_SANITIZER:-none}")
case "${FUZZ_BUILD:-release}" in
    release) ;;
    dev) build_flags+=(--dev) ;;
    *) echo "fuzz.sh: FUZZ_BUILD must be release or dev" >&2; exit 2 ;;
esac

cd "$fuzz_dir"
start=$SECONDS
cargo fuzz build "${build_flags[@]}"
echo "fuzz.sh: built all targets in $((SECONDS - start))s" >&2

read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for target in "${targets[@]}"; do
    corpus="$work/$target"
    mkdir -p "$corpus"
    if [[ -d "seeds/$target" ]]; then
        cp -R "seeds/$target/." "$corpus/"
    fi
    echo "fuzz.sh: running $target for ${seconds}s" >&2
    t0=$SECONDS
    # -rss_limit_mb and -timeout turn runaway allocations and hangs into failures;
    # -max_len keeps inputs request-sized.
    cargo fuzz run "${build_flags[@]}" "$target" "$corpus" -- \
        -max_total_time="$seconds" -max_len=8192 -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 2>"$work/$target.log" || {
        tail -n 40 "$work/$target.log" >&2
        grep -m1 -A2 'panicked at' "$work/$target.log" >&2 || true
        echo "fuzz.sh: $target FAILED (log above); a crashing input, if one was found, is in" \
            "$fuzz_dir/artifacts/$target/" >&2
        exit 1
    }
    grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' "$work/$target.log" >&2 || true
    echo "fuzz.sh: $target ok in $((SECONDS - t0))s" >&2
done
echo "fuzz.sh: all ${#targets[@]} targets ok in $((SECONDS - start))s" >&2
