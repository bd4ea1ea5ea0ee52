#!/usr/bin/env bash
# examples/hello-linux-src with Debian's generic kernel and with bunny's
# minimal kernel (BunnyFile.minimal-kernel, from setup's kernel cache), each
# started two ways, alternating within one run:
#   - containerd + bunny-runtime as the runc binary: `ctr run` -> first HTTP
#     200 from the guest on the container's network (a netns wired as a CNI
#     plugin would);
#   - `bunny run --rm -p`: start -> first HTTP 200 through the published port.
# (bench/run-hello-linux.sh compares `bunny run` with a bare qemu command.)
# Also each image's size (sum of its layers, as `bunny inspect --json`
# reports them). qemu TCG throughout; medians over RUNS. Needs root and
# scripts/setup.sh (toolchain images, the kernel cache).
# Usage: bench/minimal-kernel-containerd.sh [RUNS]
# BUNNY_BENCH_PROFILE=debug uses target/debug instead of a release build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-5}"
cd "$here"
source bench/lib.sh
bench_binaries "${BUNNY_BENCH_PROFILE:-release}"
layout="$here/target/toolchains/layout"
export BUNNY_KERNEL_CACHE="${BUNNY_KERNEL_CACHE:-$here/target/kernel-cache}"
work="$(mktemp -d /tmp/mkbench.XXXX)"
ns="mkbench$$"
cleanup() {
  [[ -n "${ctdpid:-}" ]] && kill "$ctdpid" 2>/dev/null && wait "$ctdpid" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  ip link del "vm$$" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cp -a examples/hello-linux-src "$work/ctx"
rm -f "$work/ctx/bunny.lock"
build() { # TAG BUNNYFILE
  "$bunny" --root "$work/store" build --progress=quiet -t "$1" \
    --toolchain "linux.toolchain=oci:$layout:gcc-bookworm" \
    --toolchain "linux.kernel=oci:$layout:kernel-bookworm" \
    --toolchain "linux.kernel-toolchain=oci:$layout:kbuild-bookworm" \
    -o "type=oci-archive,dest=$work/$1.tar" -f "$work/ctx/$2" "$work/ctx" >/dev/null
}
build generic BunnyFile
build minimal BunnyFile.minimal-kernel
size() { "$bunny" --root "$work/store" inspect --json "$1" | python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))'; }

start_containerd
for k in generic minimal; do "${ctr[@]}" images import "$work/$k.tar" >/dev/null; done

container_netns "$ns" "vm$$" 10.214.1


declare -A ctd br
for i in $(seq "$runs"); do
  for k in generic minimal; do
    ip neigh flush dev "vm$$" 2>/dev/null || true
    t0=$(now)
    "${ctr[@]}" run -d --runc-binary "$runtime" --runc-root "$work/runc" \
      --with-ns "network:/var/run/netns/$ns" "docker.io/library/$k:latest" "w$k$i" >/dev/null
    t1=$(first_http http://10.214.1.2/)
    ctd[$k]+="$(( (t1 - t0) / 1000000 )) "
    stop_task "w$k$i"

    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    t0=$(now)
    "$bunny" --root "$work/store" run --rm --accel tcg -p "127.0.0.1:$port:80" "$k" >/dev/null 2>&1 &
    runpid=$!
    t1=$(wait_http)
    br[$k]+="$(( (t1 - t0) / 1000000 )) "
    kill "$runpid" 2>/dev/null || true
    wait "$runpid" 2>/dev/null || true

  done
done

echo "# $runs runs each, alternating, qemu TCG, examples/hello-linux-src; medians (ms)"
printf '%-52s %10s %10s %6s\n' "" generic minimal ratio
printf '%-52s %10s %10s\n' "image layers (bytes)" "$(size generic)" "$(size minimal)"
row() { # LABEL ARRAY
  local -n a=$2
  local g m
  g=$(median ${a[generic]}); m=$(median ${a[minimal]})
  printf '%-52s %10s %10s %6s\n' "$1" "$g" "$m" "$(python3 -c "print(f'{$m/$g:.2f}')")"
  echo "    runs: generic [${a[generic]% }] minimal [${a[minimal]% }]"
}
row "ctr run + bunny-runtime -> first HTTP 200" ctd
row "bunny run -> first HTTP 200" br
