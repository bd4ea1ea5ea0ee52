#!/usr/bin/env bash
# Deployment benchmark: hello-linux through containerd with
# bunny-runtime as the runc binary. One timestamp when `ctr run` starts, one at
# the first answered HTTP request from the guest on the container's network
# (a netns wired as a CNI plugin would), as in urunc's talk. Also the same
# image under the real urunc (when scripts/setup.sh installed it, with its
# TCG qemu wrapper) and with `bunny run`, interleaved in one run. Median
# over RUNS. Needs root.
# Usage: bench/containerd-http.sh [RUNS]   (needs scripts/setup.sh first)
# BUNNY_BENCH_PROFILE=debug uses target/debug instead of a release build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-5}"
cd "$here"
source bench/lib.sh
bench_binaries "${BUNNY_BENCH_PROFILE:-release}"
# urunc execs qemu with -enable-kvm: its TCG wrapper goes first on
# containerd's PATH (for bunny-runtime it only logs).
have_urunc=0
if command -v containerd-shim-urunc-v2 >/dev/null && [[ -x /usr/lib/qemu-tcg/qemu-system-x86_64 ]]; then
  have_urunc=1
else
  echo "bench: urunc or its qemu-tcg wrapper is not installed (scripts/setup.sh); measuring bunny only" >&2
fi
work="$(mktemp -d /tmp/ctdbench.XXXX)"
ns="bunnybench$$"
cleanup() {
  [[ -n "${ctdpid:-}" ]] && kill "$ctdpid" 2>/dev/null && wait "$ctdpid" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  ip link del "vb$$" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bunny" --root "$work/store" build --progress=quiet -t hello:bench \
  -o "type=oci-archive,dest=$work/hello.tar" examples/hello-linux >/dev/null

# urunc execs qemu through the TCG wrapper first on containerd's PATH.
start_containerd PATH="/usr/lib/qemu-tcg:$PATH"
"${ctr[@]}" images import "$work/hello.tar" >/dev/null
image=docker.io/library/hello:bench

container_netns "$ns" "vb$$" 10.214.0


# urunc 0.5 reads a missing useDMBlock as true and would take the block
# device under the snapshot as the guest's root: give it the image's
# settings as spec annotations (base64) with useDMBlock=false
# (docs/runtime.md).
b64() { printf %s "$1" | base64 -w0; }
urunc_annot=()
for kv in unikernelType=linux hypervisor=qemu binary=/.boot/kernel initrd=/.boot/rootfs useDMBlock=false; do
  urunc_annot+=(--annotation "com.urunc.unikernel.${kv%%=*}=$(b64 "${kv#*=}")")
done

# Each guest answers for the same address, but urunc's with qemu's default
# MAC and bunny's with eth0's: forget the old neighbour entry before each
# start (a CNI plugin would give each container a new veth anyway), or the
# host keeps sending to the previous guest's MAC for ~30 s.
fresh_neigh() { ip neigh flush dev "vb$$" 2>/dev/null || true; }

ctd=(); br=(); ur=()
for i in $(seq "$runs"); do
  if ((have_urunc)); then
    fresh_neigh
    t0=$(now)
    "${ctr[@]}" run -d --runtime io.containerd.urunc.v2 "${urunc_annot[@]}" \
      --with-ns "network:/var/run/netns/$ns" "$image" "uweb$i" >/dev/null
    t1=$(first_http http://10.214.0.2/)
    ur+=($(( (t1 - t0) / 1000000 )))
    stop_task "uweb$i"
  fi

  fresh_neigh
  t0=$(now)
  "${ctr[@]}" run -d --runc-binary "$runtime" --runc-root "$work/runc" \
    --with-ns "network:/var/run/netns/$ns" "$image" "web$i" >/dev/null
  t1=$(first_http http://10.214.0.2/)
  ctd+=($(( (t1 - t0) / 1000000 )))
  stop_task "web$i"

  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  t0=$(now)
  "$bunny" --root "$work/store" run --rm -p "127.0.0.1:$port:80" hello:bench >/dev/null 2>&1 &
  runpid=$!
  t1=$(first_http "http://127.0.0.1:$port/")
  br+=($(( (t1 - t0) / 1000000 )))
  curl -fs -m 2 -o /dev/null "http://127.0.0.1:$port/cgi-bin/stop" || true
  wait "$runpid" || true
done
echo "# $runs runs each, qemu TCG, hello-linux; medians"
echo "containerd + bunny-runtime (ctr run -> first HTTP 200 on the container network): $(median "${ctd[@]}") ms  [${ctd[*]}]"
((have_urunc)) && echo "containerd + urunc 0.5     (ctr run -> first HTTP 200 on the container network): $(median "${ur[@]}") ms  [${ur[*]}]"
echo "bunny run                  (start   -> first HTTP 200 through a published port):   $(median "${br[@]}") ms  [${br[*]}]"
