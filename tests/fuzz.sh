#!/usr/bin/env bash
# Fuzzing with cargo fuzz (libFuzzer) over the readers that take outside bytes:
# sealed files, bundles, receipts, checkpoints, manifests, codenames, and the photos
# and videos whose metadata `open` reads and removes (fuzz/).
#
#   tests/fuzz.sh            every crash ever found (fuzz/regressions/), then each
#                            target for FUZZ_SECONDS (default 10; a minute in all)
#   FUZZ_SECONDS=3600 tests/fuzz.sh     the longer run before a release
#
# cargo fuzz wants a nightly compiler for its -Z flags; RUSTC_BOOTSTRAP lets the stable
# toolchain accept them. No sanitizer (amanat forbids unsafe code; what fuzzing finds
# here is panics, overflows, hangs and memory blow-ups), debug assertions on.
# A crash is saved under fuzz/artifacts/<target>/: copy it into
# fuzz/regressions/<target>/ with a name that says what it was, and fix the bug.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-10}
flags=(--sanitizer none --debug-assertions)
targets=(sealed_file bundle receipt checkpoint manifest codename media)

cargo fuzz build "${flags[@]}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
    if [ -d "fuzz/regressions/$target" ]; then
        cargo fuzz run "${flags[@]}" "$target" "fuzz/regressions/$target" -- -runs=0
    fi
    mkdir -p "$work/$target"
    if ! cargo fuzz run "${flags[@]}" "$target" "$work/$target" fuzz/seeds -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 >"$work/$target.log" 2>&1; then
        tail -n 60 "$work/$target.log"
        echo "fuzz: $target FAILED; the input is under fuzz/artifacts/$target/"
        exit 1
    fi
    echo "fuzz: $target: $(grep -E '^Done' "$work/$target.log")"
done
