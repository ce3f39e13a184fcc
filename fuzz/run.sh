#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS seconds (default 60) with cargo-fuzz and fails
# if any of them finds a crash, a hang (over 5 s for one input) or an input that needs more
# than 512 MB. Used by `make fuzz`.
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer=address); RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them, so no second toolchain is needed.
#
# Each target starts from its committed seeds (fuzz/seeds/TARGET) and keeps what it learns
# in fuzz/corpus/TARGET (git-ignored). A crashing input is saved under
# fuzz/artifacts/TARGET/: copy it to tests/files/fuzz/ and add a case to
# tests/fuzz_regressions.rs beside the fix.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
targets=(config peer_list lines handshake)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
failed=()
for target in "${targets[@]}"; do
    echo "fuzz: $target for ${seconds}s"
    mkdir -p "fuzz/corpus/$target"
    if ! cargo fuzz run --debug-assertions --fuzz-dir fuzz "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=512 -timeout=5 -max_len=65536 \
        -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s each without a finding"
