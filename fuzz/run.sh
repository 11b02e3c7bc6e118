#!/usr/bin/env bash
# Builds every fuzz target of qqmail-proxy and runs each for N seconds (default 20), with
# a 512 MB RSS limit; exits non-zero as soon as a target crashes (libFuzzer writes the
# input to fuzz/artifacts/<target>/). See fuzz/README.md.
#
#   fuzz/run.sh [seconds]
#
# Environment:
#   FUZZ_TARGET_DIR  where the fuzz build goes (default fuzz/target; never the main
#                    build's target dir: the flags differ and would force rebuilds)
#   FUZZ_SANITIZER   address (default) or none (faster to build and run; the crate itself
#                    forbids unsafe code, so ASan only watches dependencies)
set -euo pipefail

seconds="${1:-20}"
case "$seconds" in
'' | *[!0-9]*)
    echo "usage: $0 [seconds]" >&2
    exit 2
    ;;
esac
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
# cargo fuzz passes nightly-only flags (-Zsanitizer, -Cpasses=sancov-module); this lets
# the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$here/target}"
sanitizer="${FUZZ_SANITIZER:-address}"

targets=$(cargo fuzz list)
start=$(date +%s)
cargo fuzz build --sanitizer "$sanitizer"
echo "fuzz build: $(($(date +%s) - start)) s"

for target in $targets; do
    mkdir -p "corpus/$target"
    echo "=== $target: ${seconds} s"
    # -timeout: one input taking over 10 s counts as a hang (a crash).
    if ! cargo fuzz run --sanitizer "$sanitizer" "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=512 -timeout=10 -print_final_stats=1; then
        echo "FAILED: fuzz target $target crashed; input saved under fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "all fuzz targets ran ${seconds} s each without a crash"
