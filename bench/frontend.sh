#!/usr/bin/env bash
# BuildKit frontend benchmark: examples/hello-linux (Debian kernel
# + an initrd written from the example's files) built
#   - by `bunny build` into an OCI layout,
#   - by `docker build` through the bunny frontend (#syntax=), cold (build
#     cache pruned), warm with no change, and warm with one file changed,
#   - by `docker build` of the plain Containerfile that copies the same kernel
#     and a prebuilt initrd (what BuildKit costs with no frontend of its own),
# in the same run, as median wall times and ratios to `bunny build`.
# Usage: bench/frontend.sh [RUNS]   (needs scripts/setup.sh first)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-7}"
cd "$here"
cargo build --release --quiet
bunny="$here/target/release/bunny"
fe_target="$here/target/frontend-static"
CARGO_TARGET_DIR="$fe_target" RUSTFLAGS="-C target-feature=+crt-static -C debuginfo=0" \
  cargo build --release --quiet -p bunny-frontend --target x86_64-unknown-linux-gnu
frontend_bin="$fe_target/x86_64-unknown-linux-gnu/release/bunny-frontend"
init_bin="$here/target/bunny-init/x86_64-unknown-linux-gnu/release/bunny-init"
work="$(mktemp -d)"
. "$here/bench/registry.sh"
trap 'stop_registry; kill $(cat "$work/docker.pid" 2>/dev/null) 2>/dev/null || true; sleep 1; rm -rf "$work"' EXIT
start_registry

frontend="127.0.0.1:$port/bunny-frontend:bench"
"$frontend_bin" image --root "$work/store" -t "$frontend" --binary "$frontend_bin" --init "$init_bin" >/dev/null
"$bunny" --root "$work/store" push --progress=quiet "$frontend" >/dev/null

mkdir -p "$work/docker"
cat >"$work/daemon.json" <<JSON
{"data-root":"$work/docker/data","exec-root":"$work/docker/exec","pidfile":"$work/docker.pid",
 "hosts":["unix://$work/docker.sock"],"iptables":false,"bridge":"none",
 "insecure-registries":["127.0.0.1:$port"]}
JSON
dockerd --config-file "$work/daemon.json" >"$work/dockerd.log" 2>&1 &
for _ in $(seq 100); do [[ -S "$work/docker.sock" ]] && break; sleep 0.1; done
docker=(env DOCKER_BUILDKIT=1 /usr/bin/docker -H "unix://$work/docker.sock")

ctx="$work/ctx"
cp -r examples/hello-linux "$ctx"
{ echo "#syntax=$frontend"; cat "$ctx/BunnyFile"; } >"$ctx/BunnyFile.docker"
# The plain Containerfile gets the same kernel and the initrd bunny writes.
"$bunny" --root "$work/seed" build --progress=quiet -o "type=local,dest=$work/seedfs" "$ctx" >/dev/null
plain="$work/plain"; mkdir -p "$plain"
cp "$work/seedfs/.boot/kernel" "$plain/kernel"
cp "$work/seedfs/.boot/rootfs" "$plain/initrd"
cp "$work/seedfs/urunc.json" "$plain/urunc.json"
cat >"$plain/Containerfile" <<'EOF'
FROM scratch
COPY kernel /.boot/kernel
COPY initrd /.boot/rootfs
COPY urunc.json /urunc.json
LABEL com.urunc.unikernel.unikernelType=linux com.urunc.unikernel.hypervisor=qemu \
      com.urunc.unikernel.binary=/.boot/kernel com.urunc.unikernel.initrd=/.boot/rootfs
CMD ["/init"]
EOF

ms() { echo $(( ($2 - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
time_ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N); ms "$t0" "$t1"; }

declare -A t
for i in $(seq "$runs"); do
  rm -rf "$work/b"
  t[bunny]+="$(time_ms "$bunny" --root "$work/b/store" build --progress=quiet -t h -o "type=oci,dest=$work/b/oci" "$ctx") "
  "${docker[@]}" builder prune -af >/dev/null 2>&1
  t[frontend_cold]+="$(time_ms "${docker[@]}" build -f "$ctx/BunnyFile.docker" -o "type=tar,dest=$work/out.tar" "$ctx") "
  t[frontend_warm]+="$(time_ms "${docker[@]}" build -f "$ctx/BunnyFile.docker" -o "type=tar,dest=$work/out.tar" "$ctx") "
  echo "# run $i" >>"$ctx/rootfs/init"
  t[frontend_changed]+="$(time_ms "${docker[@]}" build -f "$ctx/BunnyFile.docker" -o "type=tar,dest=$work/out.tar" "$ctx") "
  t[plain_warm]+="$(time_ms "${docker[@]}" build -f "$plain/Containerfile" -o "type=tar,dest=$work/plain.tar" "$plain") "
done
# The last docker build through the frontend must match bunny build's files.
rm -rf "$work/check" "$work/checkb"; mkdir -p "$work/check"
tar -xf "$work/out.tar" -C "$work/check"
"$bunny" --root "$work/b/store" build --progress=quiet -o "type=local,dest=$work/checkb" "$ctx" >/dev/null
for f in .boot/kernel .boot/rootfs urunc.json; do
  cmp -s "$work/check/$f" "$work/checkb/$f" || { echo "$f differs between docker build and bunny build" >&2; exit 1; }
done

base=$(printf '%s\n' ${t[bunny]} | median)
echo "# $runs runs each; median wall time in ms; hello-linux (8.2 MB kernel, initrd from files)"
printf "%-18s %10s %12s\n" case median_ms x_vs_bunny
for k in bunny frontend_cold frontend_warm frontend_changed plain_warm; do
  m=$(printf '%s\n' ${t[$k]} | median)
  printf "%-18s %10s %12s\n" "$k" "$m" "$(awk -v a="$m" -v b="$base" 'BEGIN{printf "%.2f", a/b}')"
done
echo "docker build through the frontend gives the same kernel, initrd and urunc.json as bunny build"
