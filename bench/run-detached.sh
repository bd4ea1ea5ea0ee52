#!/usr/bin/env bash
# `bunny run -d` against a foreground `bunny run`, same image (hello-linux,
# qemu TCG): shell start -> first HTTP 200 from the guest, alternating the
# two, median over RUNS; and how long `bunny run -d` itself takes to return.
# Then volumes: making the ext4 image of a directory holding 1 GiB of files
# (1024 x 1 MiB of random bytes) and writing it back after the guest stops,
# from bunny's BUNNY_TIMESTAMPS points.
# Usage: bench/run-detached.sh [RUNS]   (needs scripts/setup.sh first)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-5}"
cd "$here"
cargo build --release --quiet
bunny="$here/target/release/bunny"
# BENCH_TMP: where the store and the 1 GiB of files go (3 GiB at the peak).
work="$(mktemp -d -p "${BENCH_TMP:-${TMPDIR:-/tmp}}")"
fg_pid=
cleanup() {
  [[ -n "$fg_pid" ]] && kill "$fg_pid" 2>/dev/null || true
  for id in $("$bunny" --root "$root" ps -q 2>/dev/null); do
    "$bunny" --root "$root" rm -f "$id" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
root="$work/store"
trap cleanup EXIT
"$bunny" --root "$root" build --progress=quiet -t hello examples/hello-linux >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

. "$here/bench/lib.sh"
wait_gone() { # until the detached --rm run has removed itself
  for _ in $(seq 1000); do
    [[ -z "$("$bunny" --root "$root" ps -aq)" ]] && return
    sleep 0.02
  done
  echo "the detached run did not go" >&2; return 1
}

# Warm the unpacked-image cache once.
"$bunny" --root "$root" run --rm --accel tcg hello once >/dev/null 2>&1

declare -a f_http d_http d_ret
for i in $(seq "$runs"); do
  t0=$(now)
  "$bunny" --root "$root" run --rm --accel tcg -p "127.0.0.1:$port:80" hello >/dev/null 2>&1 &
  fg_pid=$!
  t1=$(wait_http)
  f_http+=($(( (t1 - t0) / 1000000 )))
  stop_guest; wait "$fg_pid" || true; fg_pid=

  t0=$(now)
  "$bunny" --root "$root" run -d --rm --name "bench-$i" --accel tcg -p "127.0.0.1:$port:80" hello >/dev/null
  tr=$(now)
  t1=$(wait_http)
  d_ret+=($(( (tr - t0) / 1000000 ))); d_http+=($(( (t1 - t0) / 1000000 )))
  stop_guest; wait_gone
done
fh=$(median "${f_http[@]}"); dh=$(median "${d_http[@]}"); dr=$(median "${d_ret[@]}")
echo "# $runs runs each, alternating, qemu TCG, hello-linux; medians (all: fg ${f_http[*]} / -d ${d_http[*]})"
echo "bunny run (foreground): start -> first HTTP 200   ${fh} ms"
echo "bunny run -d:           start -> first HTTP 200   ${dh} ms"
echo "bunny run -d:           start -> returned         ${dr} ms"
echo "difference (-d minus foreground)                  $(( dh - fh )) ms"

# Volumes: 1 GiB of files in a directory.
data="$work/data"; mkdir -p "$data"
for i in $(seq 0 1023); do head -c 1048576 /dev/urandom > "$data/f$i"; done
sync
declare -a v_make v_back
for _ in $(seq 3); do
  rm -f "$work/ts"
  BUNNY_TIMESTAMPS="$work/ts" "$bunny" --root "$root" run --rm --accel tcg -v "$data:/data" hello once >/dev/null 2>&1
  ts() { awk -v l="$1" '$2==l{print $1}' "$work/ts"; }
  v_make+=($(( ($(ts volume-image-done) - $(ts volume-image-start)) / 1000000 )))
  v_back+=($(( ($(ts volume-write-back-done) - $(ts volume-write-back-start)) / 1000000 )))
done
echo "# volume of 1 GiB (1024 x 1 MiB files), 3 runs; medians (all: make ${v_make[*]} / back ${v_back[*]})"
echo "ext4 image from the directory (mke2fs -d)        $(median "${v_make[@]}") ms"
echo "written back after the guest stops (debugfs)     $(median "${v_back[@]}") ms"
