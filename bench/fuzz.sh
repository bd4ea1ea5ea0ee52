#!/usr/bin/env bash
# Fuzzes every target in fuzz/ for SECONDS each (default 600), FUZZ_JOBS
# (default 2) targets at a time at `nice -n 10`, and prints per target the
# runs executed, exec/s, corpus size, time and crashes. Exits non-zero if any
# target crashed (panic, timeout, OOM); the input is left in
# fuzz/artifacts/<target>/.
#
#   bench/fuzz.sh [SECONDS] [TARGET...]
#
# The machine has only a stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz
# pass its nightly-only flags (-Zsanitizer=address and friends) to it.
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a C++ compiler.
# Each target works on a copy of its checked-in corpus (target/fuzz-work/), so
# the tree stays clean; minimise finds back into fuzz/corpus/ with
# `cargo fuzz cmin`.
set -euo pipefail

SECONDS_EACH=${1:-600}
shift || true
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FUZZ="$ROOT/fuzz"
WORK="$ROOT/target/fuzz-work"
JOBS=${FUZZ_JOBS:-2}
if [ $# -gt 0 ]; then
    TARGETS=("$@")
else
    TARGETS=(bunnyfile containerfile unpack manifest catalogue)
fi
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || {
    echo "bench/fuzz.sh: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2
    exit 2
}

cd "$FUZZ"
nice -n 10 cargo fuzz build >&2
mkdir -p "$WORK"

run_one() {
    local t=$1 corpus="$WORK/$1" log="$WORK/$1.log" start end rc=0
    rm -rf "$corpus" && mkdir -p "$corpus"
    cp "$FUZZ/corpus/$t/." "$corpus/" -r
    # The unpack target makes its scratch directories under TMPDIR.
    rm -rf "$corpus.tmp" && mkdir -p "$corpus.tmp"
    start=$(date +%s)
    # -timeout: an input taking 10 s is a hang; -rss_limit_mb: an OOM.
    TMPDIR="$corpus.tmp" nice -n 10 cargo fuzz run "$t" "$corpus" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1 || rc=$?
    end=$(date +%s)
    rm -rf "$corpus.tmp"
    echo "$rc $((end - start))" >"$WORK/$t.result"
}

pids=()
for t in "${TARGETS[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
        wait -n || true
    done
    echo "fuzzing $t for ${SECONDS_EACH}s" >&2
    run_one "$t" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || true; done

failed=0
printf '%-14s %12s %10s %8s %8s %8s\n' target runs exec/s corpus time crashes
for t in "${TARGETS[@]}"; do
    read -r rc took <"$WORK/$t.result"
    log="$WORK/$t.log"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(find "$WORK/$t" -type f | wc -l)
    crashes=0
    if [ "$rc" != 0 ]; then
        crashes=1
        failed=1
        echo "--- $t failed (exit $rc); the end of $log:" >&2
        tail -40 "$log" >&2
    fi
    printf '%-14s %12s %10s %8s %7ss %8s\n' "$t" "${runs:-?}" "${rate:-?}" "$corpus" "$took" "$crashes"
done
exit "$failed"
