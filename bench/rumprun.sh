#!/usr/bin/env bash
# Rumprun benchmark: examples/httpd-rumprun with the real toolchain
# (target/toolchains/layout:rumprun-solo5, Solo5 0.4.1), measured against
# the real alternatives in the same run:
#   build     cold (empty store), and an unchanged rebuild (goal < 50 ms)
#   run       `bunny run -p` start -> first HTTP 200 under solo5-spt, next to
#             the bare tender command bunny itself runs (argv read from /proc)
#             started the same way: in a network namespace with a tap, the
#             client inside it (goal: within 0.3 s, what the bare tender takes)
# Usage: bench/rumprun.sh [RUNS]   (root; needs scripts/setup.sh first)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-5}"
cd "$here"
cargo build --release --quiet --bin bunny
bunny="$here/target/release/bunny"
toolchain="rumprun=oci:$here/target/toolchains/layout:rumprun-solo5"
work="$(mktemp -d)"
ns="bunny-bench-$$"
cleanup() {
  pkill -f "$work" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cp -a examples/httpd-rumprun "$work/ctx"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

# Builds: cold means a new store (the toolchain layout is unpacked again);
# the rebuild reuses every cached step and layer.
declare -a cold warm
for i in $(seq "$runs"); do
  rm -rf "$work/store-$i" "$work/ctx/bunny.lock"
  t0=$(now); "$bunny" --root "$work/store-$i" build --progress=quiet -t httpd --toolchain "$toolchain" "$work/ctx" >/dev/null; t1=$(now)
  "$bunny" --root "$work/store-$i" build --progress=quiet -t httpd "$work/ctx" >/dev/null; t2=$(now)
  cold+=("$(ms "$t0" "$t1")"); warm+=("$(ms "$t1" "$t2")")
  [[ $i == 1 ]] || rm -rf "$work/store-$i"
done
root="$work/store-1"

get() { curl -fs -m 1 -o /dev/null "$1"; }
wait_http() { # URL [netns]: prints the time of the first 200
  for _ in $(seq 3000); do
    if ${2:+ip netns exec "$2"} curl -fs -m 1 -o /dev/null "$1"; then now; return; fi
    sleep 0.005
  done
  echo "no HTTP answer from $1" >&2; return 1
}

# One run to learn the exact tender argv.
"$bunny" --root "$root" run --rm -p "127.0.0.1:$port:80" httpd >/dev/null 2>&1 &
wait_http "http://127.0.0.1:$port/" >/dev/null
tpid=$(pgrep -f "solo5-spt-0.4 .*$root" | head -n1)
mapfile -d '' argv < "/proc/$tpid/cmdline"
kill -TERM %1; wait || true
# The run's copies of the kernel and disk went with it (--rm): the bare
# tender gets the image's own files, exported once.
"$bunny" --root "$root" build --progress=quiet -t httpd -o "type=local,dest=$work/local" "$work/ctx" >/dev/null 2>&1
for i in "${!argv[@]}"; do
  case "${argv[$i]}" in
    --disk=*) argv[$i]="--disk=$work/local/.boot/rootfs" ;;
    */.boot/kernel) argv[$i]="$work/local/.boot/kernel" ;;
  esac
done

# The bare tender, in a namespace with the same tap and addresses.
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" tuntap add dev tap0 mode tap
ip -n "$ns" addr add 10.0.2.2/24 dev tap0
ip -n "$ns" link set tap0 up

declare -a b_http t_http
for _ in $(seq "$runs"); do
  t0=$(now)
  "$bunny" --root "$root" run --rm -p "127.0.0.1:$port:80" httpd >/dev/null 2>&1 &
  t1=$(wait_http "http://127.0.0.1:$port/")
  b_http+=("$(ms "$t0" "$t1")")
  kill -TERM %1; wait || true

  t0=$(now)
  ip netns exec "$ns" "${argv[@]}" >/dev/null 2>&1 &
  t1=$(wait_http "http://10.0.2.15/" "$ns")
  t_http+=("$(ms "$t0" "$t1")")
  kill -TERM %1; wait || true
done
bc=$(median "${cold[@]}"); bw=$(median "${warm[@]}")
bh=$(median "${b_http[@]}"); th=$(median "${t_http[@]}")
echo "# $runs runs each, examples/httpd-rumprun, real rumprun toolchain (Solo5 0.4.1), solo5-spt; medians"
echo "bunny build, cold (new store)           ${bc} ms"
echo "bunny build, unchanged rebuild          ${bw} ms"
echo "bunny run -p: start -> first HTTP 200   ${bh} ms"
echo "bare solo5-spt: start -> first HTTP 200 ${th} ms"
echo "ratio bunny run / bare tender           $(awk -v b="$bh" -v t="$th" 'BEGIN{printf "%.2f", b/t}')"
