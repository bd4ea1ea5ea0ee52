#!/usr/bin/env bash
# Packing benchmark: hello-linux's kernel + initrd + urunc labels into
# an OCI layout, with bunny vs `buildah build` vs a warm `docker build`
# (BuildKit) of the equivalent Containerfile, same inputs, same run.
# Reports median wall time over N runs, ratios, and peak RSS.
# Usage: bench/pack-hello-linux.sh [RUNS]   (needs scripts/setup.sh first)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-10}"
cd "$here"
cargo build --release --quiet
bunny="$here/target/release/bunny"
work="$(mktemp -d)"
trap 'kill $(cat "$work/docker.pid" 2>/dev/null) 2>/dev/null || true; sleep 1; rm -rf "$work"' EXIT

# Inputs: the kernel and the initrd bunny makes from examples/hello-linux.
ctx="$work/ctx"; mkdir -p "$ctx"
BUNNY_ROOT="$work/seed" "$bunny" build --progress=quiet -t seed -o "type=local,dest=$work/seedfs" examples/hello-linux >/dev/null
cp examples/hello-linux/vmlinuz "$ctx/kernel"
cp "$work/seedfs/.boot/rootfs" "$ctx/initrd"
labels=(com.urunc.unikernel.unikernelType=linux com.urunc.unikernel.hypervisor=qemu
        com.urunc.unikernel.binary=/.boot/kernel com.urunc.unikernel.initrd=/.boot/rootfs
        com.urunc.unikernel.cmdline=/init)
{
  echo "FROM scratch"
  echo "COPY kernel /.boot/kernel"
  echo "COPY initrd /.boot/rootfs"
  for l in "${labels[@]}"; do echo "LABEL $l"; done
  echo 'CMD ["/init"]'
} >"$ctx/Containerfile"
cat >"$ctx/BunnyFile" <<'YAML'
version: v0.1
platforms:
  framework: linux
  monitor: qemu
kernel:
  from: local
  path: kernel
rootfs:
  from: local
  path: initrd
  type: initrd
cmd: ["/init"]
YAML

# A dockerd of our own (see shared/test-environment.md).
mkdir -p "$work/docker"
cat >"$work/daemon.json" <<JSON
{"data-root":"$work/docker/data","exec-root":"$work/docker/exec","pidfile":"$work/docker.pid",
 "hosts":["unix://$work/docker.sock"],"iptables":false,"bridge":"none"}
JSON
dockerd --config-file "$work/daemon.json" >"$work/dockerd.log" 2>&1 &
for _ in $(seq 100); do [[ -S "$work/docker.sock" ]] && break; sleep 0.1; done
docker=(/usr/bin/docker -H "unix://$work/docker.sock")
DOCKER_BUILDKIT=1 "${docker[@]}" build -q -f "$ctx/Containerfile" -t warm "$ctx" >/dev/null  # warm it

measure() { # NAME SCRATCH CMD... : removes SCRATCH before each run, then times CMD
  local name="$1" scratch="$2"; shift 2
  local times=() rss=0
  for _ in $(seq "$runs"); do
    rm -rf "$scratch"
    local t0 t1 r
    t0=$(date +%s%N)
    r=$(/usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n1)
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000 )))
    (( r > rss )) && rss=$r
  done
  local med
  med=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  echo "$name $med $rss"
}

echo "# $runs runs each; median wall time in microseconds; peak RSS in kB"
results=$(
  measure bunny-prebuilt-initrd "$work/b1" \
    "$bunny" --root "$work/b1/store" build --progress=quiet -f "$ctx/BunnyFile" -t h -o "type=oci,dest=$work/b1/oci" "$ctx"
  measure bunny-from-files "$work/b2" \
    "$bunny" --root "$work/b2/store" build --progress=quiet -t h -o "type=oci,dest=$work/b2/oci" "$here/examples/hello-linux"
  measure buildah "$work/ba" \
    buildah --root "$work/ba/root" --runroot "$work/ba/run" --storage-driver vfs build -q \
      -f "$ctx/Containerfile" -t "oci:$work/ba/oci:h" "$ctx"
  measure docker-buildkit-warm "$work/none" \
    env DOCKER_BUILDKIT=1 "${docker[@]}" build -q -f "$ctx/Containerfile" -t h "$ctx"
)
echo "$results" | awk '
  {name[NR]=$1; t[NR]=$2; rss[NR]=$3}
  END {
    printf "%-24s %12s %10s %14s\n", "tool", "median_ms", "peak_MB", "x_vs_bunny";
    for (i=1;i<=NR;i++) printf "%-24s %12.1f %10.1f %14.2f\n", name[i], t[i]/1000, rss[i]/1024, t[i]/t[1];
  }'
