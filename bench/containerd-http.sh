#!/usr/bin/env bash
# Deployment benchmark: hello-linux through containerd with
# bunny-runtime as the runc binary. One timestamp when `ctr run` starts, one at
# the first answered HTTP request from the guest on the container's network
# (a netns wired as a CNI plugin would), as in urunc's talk. Also the same
# image with `bunny run` for comparison. Median over RUNS. Needs root.
# Usage: bench/containerd-http.sh [RUNS]   (needs scripts/setup.sh first)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-5}"
cd "$here"
cargo build --release --quiet -p bunny -p bunny-runtime
bunny="$here/target/release/bunny"
runtime="$here/target/release/bunny-runtime"
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

cat >"$work/config.toml" <<TOML
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/c.sock"
[ttrpc]
  address = "$work/c.ttrpc"
TOML
containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
ctdpid=$!
ctr=(ctr -a "$work/c.sock" -n bench)
for _ in $(seq 200); do "${ctr[@]}" version >/dev/null 2>&1 && break; sleep 0.05; done
"${ctr[@]}" images import "$work/hello.tar" >/dev/null
image=docker.io/library/hello:bench

ip netns add "$ns"
ip link add "vb$$" type veth peer name eth0 netns "$ns"
ip addr add 10.214.0.1/30 dev "vb$$"; ip link set "vb$$" up
ip -n "$ns" addr add 10.214.0.2/30 dev eth0; ip -n "$ns" link set eth0 up
ip -n "$ns" link set lo up; ip -n "$ns" route add default via 10.214.0.1

now() { date +%s%N; }
first_http() { # URL -> time of the first 200
  for _ in $(seq 6000); do
    if curl -fs -m 1 -o /dev/null "$1"; then now; return; fi
    sleep 0.01
  done
  echo "no answer from $1" >&2; return 1
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

ctd=(); br=()
for i in $(seq "$runs"); do
  t0=$(now)
  "${ctr[@]}" run -d --runc-binary "$runtime" --runc-root "$work/runc" \
    --with-ns "network:/var/run/netns/$ns" "$image" "web$i" >/dev/null
  t1=$(first_http http://10.214.0.2/)
  ctd+=($(( (t1 - t0) / 1000000 )))
  "${ctr[@]}" task kill -s SIGKILL "web$i" >/dev/null 2>&1 || true
  for _ in $(seq 100); do "${ctr[@]}" task ls 2>/dev/null | grep -q "web$i.*RUNNING" || break; sleep 0.05; done
  "${ctr[@]}" task delete "web$i" >/dev/null 2>&1 || true
  "${ctr[@]}" containers rm "web$i" >/dev/null 2>&1 || true

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
echo "containerd (ctr run -> first HTTP 200 on the container network): $(median "${ctd[@]}") ms"
echo "bunny run  (start  -> first HTTP 200 through a published port):   $(median "${br[@]}") ms"
