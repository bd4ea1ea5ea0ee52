#!/usr/bin/env bash
# Run benchmark: `bunny run -p PORT:80 hello-linux` against the bare
# qemu command bunny itself runs (same argv, read from /proc), same run.
# Measures (1) shell start -> monitor exec (bunny's BUNNY_TIMESTAMPS points)
# and (2) shell start -> first HTTP 200 from the guest. Median over RUNS.
# Usage: bench/run-hello-linux.sh [RUNS]   (needs scripts/setup.sh first)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-5}"
cd "$here"
cargo build --release --quiet
bunny="$here/target/release/bunny"
work="$(mktemp -d)"
trap 'pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
root="$work/store"
"$bunny" --root "$root" build --progress=quiet -t hello examples/hello-linux >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

. "$here/bench/lib.sh"

# One bunny run to learn the exact qemu argv (the unpacked image stays cached).
"$bunny" --root "$root" run --rm --accel tcg -p "127.0.0.1:$port:80" hello >/dev/null 2>&1 &
wait_http >/dev/null
qpid=$(pgrep -f "qemu-system-x86_64.*$root" | head -n1)
mapfile -d '' argv < "/proc/$qpid/cmdline"
stop_guest; wait

declare -a b_exec b_http q_http
for _ in $(seq "$runs"); do
  rm -f "$work/ts"
  t0=$(now)
  BUNNY_TIMESTAMPS="$work/ts" "$bunny" --root "$root" run --rm --accel tcg -p "127.0.0.1:$port:80" hello >/dev/null 2>&1 &
  t1=$(wait_http)
  texec=$(awk '$2=="monitor-exec"{print $1}' "$work/ts")
  b_exec+=($(( (texec - t0) / 1000 ))); b_http+=($(( (t1 - t0) / 1000000 )))
  stop_guest; wait

  t0=$(now)
  "${argv[@]}" >/dev/null 2>&1 &
  t1=$(wait_http)
  q_http+=($(( (t1 - t0) / 1000000 )))
  stop_guest; wait
done
be=$(median "${b_exec[@]}"); bh=$(median "${b_http[@]}"); qh=$(median "${q_http[@]}")
echo "# $runs runs each, qemu TCG, hello-linux; medians"
echo "bunny run: start -> monitor exec      ${be} us (bare qemu: 0 by definition)"
echo "bunny run: start -> first HTTP 200    ${bh} ms"
echo "bare qemu: start -> first HTTP 200    ${qh} ms"
echo "overhead to first HTTP                $(( bh - qh )) ms (ratio $(awk -v b="$bh" -v q="$qh" 'BEGIN{printf "%.3f", b/q}'))"
