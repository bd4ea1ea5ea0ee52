#!/usr/bin/env bash
# Kubernetes' path, without a kubelet: containerd's CRI plugin driven by
# crictl, Debian's CNI bridge plugin, the `bunny` runtime handler of
# docs/kubernetes.md. Times `crictl runp` -> first HTTP 200 from the pod IP
# for examples/hello-linux (RUNS runs, median), and measures what the
# monitor costs beside the guest's RAM: the container cgroup's peak memory
# minus the resident part of qemu's guest-RAM mapping, for pods with memory
# limits of 128, 256 and 512 MiB. Needs root and scripts/setup.sh.
# Usage: bench/cri-http.sh [RUNS]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-5}"
cd "$here"
source bench/lib.sh
# The debug build the tests use (BUNNY_BENCH_TARGET=release for release).
bench_binaries "${BUNNY_BENCH_TARGET:-debug}"
work="$(mktemp -d /tmp/cribench.XXXX)"
bridge=bnycri78
subnet=10.213.78.0/24
C=(crictl --config "$work/crictl.yaml" --runtime-endpoint "unix://$work/c.sock"
  --image-endpoint "unix://$work/c.sock" --timeout 60s)
cleanup() {
  "${C[@]}" rmp --force --all >/dev/null 2>&1 || true
  if [[ -n "${ctdpid:-}" ]]; then kill "$ctdpid" 2>/dev/null && wait "$ctdpid" 2>/dev/null || true; fi
  ip link del "$bridge" 2>/dev/null || true
  umount -R "$work/root" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
: >"$work/crictl.yaml"

"$bunny" --root "$work/store" build --progress=quiet -t hello:test \
  -o "type=oci-archive,dest=$work/hello.tar" examples/hello-linux >/dev/null
# A pause image: busybox sleeping (nothing can be pulled here).
python3 - "$work/pause.tar" <<'EOF'
import hashlib, io, json, sys, tarfile
blobs = []
def blob(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs.append((d, data))
    return {"digest": d, "size": len(data)}
lb = io.BytesIO()
with tarfile.open(fileobj=lb, mode="w") as t:
    d = tarfile.TarInfo("bin"); d.type = tarfile.DIRTYPE; d.mode = 0o755; t.addfile(d)
    data = open("/bin/busybox", "rb").read()
    f = tarfile.TarInfo("bin/busybox"); f.size = len(data); f.mode = 0o755
    t.addfile(f, io.BytesIO(data))
layer = blob(lb.getvalue()) | {"mediaType": "application/vnd.oci.image.layer.v1.tar"}
cfg = blob(json.dumps({"architecture": "amd64", "os": "linux",
    "config": {"Entrypoint": ["/bin/busybox", "sleep", "2147483647"]},
    "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode())
cfg["mediaType"] = "application/vnd.oci.image.config.v1+json"
man = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": cfg, "layers": [layer]}).encode())
man |= {"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "annotations": {"io.containerd.image.name": "registry.k8s.io/pause:bunny-bench"}}
with tarfile.open(sys.argv[1], "w") as t:
    for name, data in [("blobs/sha256/" + d[7:], b) for d, b in blobs] + [
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ("index.json", json.dumps({"schemaVersion": 2, "manifests": [man]}).encode())]:
        i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))
EOF

mkdir -p "$work/cni"
cat >"$work/cni/10-bench.conflist" <<JSON
{"cniVersion": "0.4.0", "name": "bunny-cri-bench", "plugins": [{"type": "bridge",
 "bridge": "$bridge", "isGateway": true, "ipMasq": false, "ipam": {"type": "host-local",
 "ranges": [[{"subnet": "$subnet"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$work/ipam"}}]}
JSON
cri='plugins."io.containerd.grpc.v1.cri"'
cat >"$work/config.toml" <<TOML
version = 2
root = "$work/root"
state = "$work/state"
[grpc]
  address = "$work/c.sock"
[ttrpc]
  address = "$work/c.ttrpc"
[$cri]
  sandbox_image = "registry.k8s.io/pause:bunny-bench"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [$cri.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$work/cni"
  [$cri.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [$cri.containerd.runtimes.bunny]
    runtime_type = "io.containerd.runc.v2"
    pod_annotations = ["com.urunc.unikernel.*"]
    container_annotations = ["com.urunc.unikernel.*"]
    [$cri.containerd.runtimes.bunny.options]
      BinaryName = "$runtime"
      Root = "$work/runc"
TOML
BUNNY_RUNTIME_ACCEL="${BUNNY_RUNTIME_ACCEL:-tcg}" containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
ctdpid=$!
for _ in $(seq 300); do "${C[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
for a in pause hello; do ctr -a "$work/c.sock" -n k8s.io images import "$work/$a.tar" >/dev/null; done

pod_json() { # NAME
  echo "{\"metadata\":{\"name\":\"$1\",\"namespace\":\"default\",\"uid\":\"$1-uid\",\"attempt\":0},\"log_directory\":\"$work/logs/$1\",\"linux\":{}}" >"$work/pod-$1.json"
}
ctr_json() { # NAME MEMORY_BYTES
  echo "{\"metadata\":{\"name\":\"$1\"},\"image\":{\"image\":\"docker.io/library/hello:test\"},\"log_path\":\"$1.log\",\"linux\":{\"resources\":{\"memory_limit_in_bytes\":$2}}}" >"$work/ctr-$1.json"
}
# Runs a pod of NAME with MEMORY; sets pod, cid, ip, and ms (runp -> first 200).
run_pod() {
  pod_json "$1"; ctr_json "$1" "$2"
  local t0 t1
  t0=$(now)
  pod=$("${C[@]}" runp --runtime bunny "$work/pod-$1.json" 2>/dev/null)
  cid=$("${C[@]}" create "$pod" "$work/ctr-$1.json" "$work/pod-$1.json" 2>/dev/null)
  "${C[@]}" start "$cid" >/dev/null 2>&1
  ip=$("${C[@]}" inspectp "$pod" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["network"]["ip"])')
  for _ in $(seq 3000); do
    if curl -fs -m 1 -o /dev/null "http://$ip/"; then break; fi
    sleep 0.02
  done
  t1=$(now)
  curl -fs -m 2 -o /dev/null "http://$ip/" || { echo "no answer from $ip" >&2; exit 1; }
  ms=$(((t1 - t0) / 1000000))
}
end_pod() {
  "${C[@]}" stopp "$pod" >/dev/null 2>&1
  "${C[@]}" rmp "$pod" >/dev/null 2>&1
}

times=()
for i in $(seq "$runs"); do
  run_pod "web$i" 268435456
  times+=("$ms")
  end_pod
done
if ((runs > 0)); then
  echo "crictl runp -> first HTTP 200 from the pod IP (ms, $runs runs): ${times[*]}; median $(median "${times[@]}")"
fi

# Memory: the container's cgroup (cgroup v2 memory.peak, or v1
# memory.max_usage_in_bytes) against the guest RAM qemu has touched (the
# resident part of its anonymous mapping of exactly the guest's RAM size).
for mb in 128 256 512; do
  run_pod "mem$mb" $((mb << 20))
  for _ in $(seq 20); do curl -fs -m 2 -o /dev/null "http://$ip/" || true; done
  sleep 1
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    cg=$(find /sys/fs/cgroup -maxdepth 3 -type d -name "$cid" | head -1)
    peak=$(cat "$cg/memory.peak" 2>/dev/null || cat "$cg/memory.current")
    cur=$(cat "$cg/memory.current")
  else
    cg=$(find /sys/fs/cgroup/memory -maxdepth 3 -type d -name "$cid" | head -1)
    peak=$(cat "$cg/memory.max_usage_in_bytes")
    cur=$(cat "$cg/memory.usage_in_bytes")
  fi
  qpid=$(pgrep -f "qemu-system.*$cid" | head -1)
  guest=$(awk -v kb=$((mb * 1024)) '/^[0-9a-f]+-[0-9a-f]+ /{anon = ($6 == "")} /^Size:/{size=$2} /^Rss:/{if (anon && size == kb) rss = $2} END{print rss * 1024}' "/proc/$qpid/smaps")
  rss=$(awk '/^VmRSS:/{print $2 * 1024}' "/proc/$qpid/status")
  echo "limit ${mb} MiB: cgroup peak $((peak >> 20)) MiB, now $((cur >> 20)) MiB; qemu RSS $((rss >> 20)) MiB, of it guest RAM $((guest >> 20)) MiB; beyond the guest's RAM: peak $(((peak - guest) >> 20)) MiB, now $(((cur - guest) >> 20)) MiB"
  end_pod
done
