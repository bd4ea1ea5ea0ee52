#!/usr/bin/env bash
# Rebuild benchmark: examples/hello-linux-src built from source in
# build containers; then the no-op rebuild (goal: under 30 ms, same digest)
# and the rebuild after one source file changed (the make step reruns).
# Usage: bench/rebuild.sh [RUNS]   (needs scripts/setup.sh first)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-10}"
cd "$here"
cargo build --release --quiet
bunny="$here/target/release/bunny"
L="$here/target/toolchains/layout"
[[ -d "$L" ]] || { echo "no toolchain layout at $L: run scripts/setup.sh" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -a examples/hello-linux-src "$work/ctx"
rm -f "$work/ctx/bunny.lock"
args=(--root "$work/store" build --progress=quiet -t hello-src
      --toolchain "linux=oci:$L:gcc-bookworm" --toolchain "linux.kernel=oci:$L:kernel-bookworm")
ms() { echo $(( ($2 - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

t0=$(date +%s%N); first=$("$bunny" "${args[@]}" "$work/ctx"); t1=$(date +%s%N)
cold=$(ms "$t0" "$t1")

noop=(); same=1
for _ in $(seq "$runs"); do
  t0=$(date +%s%N); d=$("$bunny" "${args[@]}" "$work/ctx"); t1=$(date +%s%N)
  noop+=("$(ms "$t0" "$t1")"); [[ "$d" == "$first" ]] || same=0
done

changed=()
src=$(ls "$work/ctx"/*.c | head -n1)
for i in $(seq "$runs"); do
  printf '\n/* edit %s */\n' "$i" >>"$src"
  t0=$(date +%s%N); "$bunny" "${args[@]}" "$work/ctx" >/dev/null; t1=$(date +%s%N)
  changed+=("$(ms "$t0" "$t1")")
done

echo "# hello-linux-src, $runs runs each, medians"
echo "cold build (toolchain unpack + make under runc + pack): ${cold} ms"
echo "no-op rebuild:                                         $(printf '%s\n' "${noop[@]}" | median) ms (same digest every time: $([[ $same == 1 ]] && echo yes || echo NO))"
echo "one source file changed (make reruns):                 $(printf '%s\n' "${changed[@]}" | median) ms"
