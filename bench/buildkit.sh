#!/usr/bin/env bash
# Current BuildKit (buildkitd + buildctl from scripts/setup.sh) benchmark:
# examples/hello-linux (Debian kernel + an initrd written from the example's
# files) built in the same run
#   - by `bunny build` (fresh store: cold; same store: warm; one rootfs file
#     edited: changed),
#   - by buildctl through the bunny frontend (gateway.v0, the frontend image
#     in a loopback registry), cold (`buildctl prune --all`, so the frontend
#     image is pulled again), warm, and changed,
#   - by buildctl through BuildKit's own Dockerfile frontend, for a plain
#     Dockerfile with two COPYs (the same kernel and a prebuilt initrd) and
#     the urunc labels: what BuildKit costs for this image with no frontend
#     of its own (changed: the initrd edited),
# every build writing an OCI archive, as median wall times and ratios to the
# warm `bunny build`. A private buildkitd runs under a temp dir.
# Usage: bench/buildkit.sh [RUNS]   (needs scripts/setup.sh first)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-5}"
cd "$here"
command -v buildkitd >/dev/null || { echo "buildkitd not installed: run scripts/setup.sh" >&2; exit 1; }
cargo build --release --quiet
bunny="$here/target/release/bunny"
fe_target="$here/target/frontend-static"
CARGO_TARGET_DIR="$fe_target" RUSTFLAGS="-C target-feature=+crt-static -C debuginfo=0" \
  cargo build --release --quiet -p bunny-frontend --target x86_64-unknown-linux-gnu
frontend_bin="$fe_target/x86_64-unknown-linux-gnu/release/bunny-frontend"
init_bin="$here/target/bunny-init/x86_64-unknown-linux-gnu/release/bunny-init"
[[ -s examples/hello-linux/vmlinuz ]] || examples/hello-linux/prepare.sh target/linux-kernel >/dev/null
work="$(mktemp -d /tmp/bkbench.XXXXXX)"
. "$here/bench/registry.sh"
bkpid=""
cleanup() {
  stop_registry
  if [[ -n "$bkpid" ]]; then kill "$bkpid" 2>/dev/null; wait "$bkpid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
start_registry

frontend="127.0.0.1:$port/bunny-frontend:bench"
"$frontend_bin" image --root "$work/store" -t "$frontend" --binary "$frontend_bin" --init "$init_bin" >/dev/null
"$bunny" --root "$work/store" push --progress=quiet "$frontend" >/dev/null

PATH="/usr/sbin:$PATH" buildkitd --root "$work/bk" --addr "unix://$work/bk.sock" >"$work/bk.log" 2>&1 &
bkpid=$!
buildctl=(buildctl --addr "unix://$work/bk.sock")
for _ in $(seq 100); do "${buildctl[@]}" debug workers >/dev/null 2>&1 && break; sleep 0.1; done

ctx="$work/ctx"
cp -r examples/hello-linux "$ctx"
plain="$work/plain"; mkdir -p "$plain"
"$bunny" --root "$work/seed" build --progress=quiet -o "type=local,dest=$work/seedfs" "$ctx" >/dev/null
cp "$work/seedfs/.boot/kernel" "$plain/kernel"
cp "$work/seedfs/.boot/rootfs" "$plain/initrd"
cat >"$plain/Dockerfile" <<'EOF'
FROM scratch
COPY kernel /.boot/kernel
COPY initrd /.boot/rootfs
LABEL com.urunc.unikernel.unikernelType=linux com.urunc.unikernel.hypervisor=qemu \
      com.urunc.unikernel.binary=/.boot/kernel com.urunc.unikernel.initrd=/.boot/rootfs
CMD ["/init"]
EOF

ms() { echo $(( ($2 - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
time_ms() {
  local t0 t1; t0=$(date +%s%N)
  "$@" >"$work/last.log" 2>&1 || { cat "$work/last.log" >&2; exit 1; }
  t1=$(date +%s%N); ms "$t0" "$t1"
}
bunny_build() { "$bunny" --root "$work/b" build --progress=quiet -t h -o "type=oci,dest=$work/bunny.tar" "$ctx"; }
fe_build() {
  "${buildctl[@]}" build --frontend gateway.v0 --opt "source=$frontend" --opt filename=BunnyFile \
    --local "context=$ctx" --local "dockerfile=$ctx" --output "type=oci,dest=$work/fe.tar"
}
plain_build() {
  "${buildctl[@]}" build --frontend dockerfile.v0 --local "context=$plain" --local "dockerfile=$plain" \
    --output "type=oci,dest=$work/plain.tar"
}

declare -A t
for i in $(seq "$runs"); do
  rm -rf "$work/b"
  t[bunny_cold]+="$(time_ms bunny_build) "
  t[bunny_warm]+="$(time_ms bunny_build) "
  echo "# bunny run $i" >>"$ctx/rootfs/init"
  t[bunny_changed]+="$(time_ms bunny_build) "

  "${buildctl[@]}" prune --all >/dev/null
  t[frontend_cold]+="$(time_ms fe_build) "
  t[frontend_warm]+="$(time_ms fe_build) "
  echo "# frontend run $i" >>"$ctx/rootfs/init"
  t[frontend_changed]+="$(time_ms fe_build) "

  "${buildctl[@]}" prune --all >/dev/null
  t[plain_cold]+="$(time_ms plain_build) "
  t[plain_warm]+="$(time_ms plain_build) "
  echo "# plain run $i" >>"$plain/initrd"
  t[plain_changed]+="$(time_ms plain_build) "
done

# The frontend's last build must hold bunny's files, and a second clean
# build of the same input must give the same manifest digest.
rm -rf "$work/check" "$work/checkb"; mkdir -p "$work/check"
"${buildctl[@]}" build --frontend gateway.v0 --opt "source=$frontend" --opt filename=BunnyFile \
  --local "context=$ctx" --local "dockerfile=$ctx" --output "type=local,dest=$work/check" >/dev/null 2>&1
"$bunny" --root "$work/b" build --progress=quiet -o "type=local,dest=$work/checkb" "$ctx" >/dev/null
for f in .boot/kernel .boot/rootfs urunc.json; do
  cmp -s "$work/check/$f" "$work/checkb/$f" || { echo "$f differs between BuildKit and bunny build" >&2; exit 1; }
done
digest() {
  "${buildctl[@]}" prune --all >/dev/null
  "${buildctl[@]}" build --frontend gateway.v0 --opt "source=$frontend" --opt filename=BunnyFile \
    --local "context=$ctx" --local "dockerfile=$ctx" --output "type=oci,dest=$work/d.tar" \
    --metadata-file "$work/d.json" >/dev/null 2>&1
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["containerimage.digest"])' "$work/d.json"
}
d1=$(digest); sleep 1; d2=$(digest)
[[ "$d1" == "$d2" ]] || { echo "two clean builds gave $d1 and $d2" >&2; exit 1; }

base=$(printf '%s\n' ${t[bunny_warm]} | median)
echo "# $runs runs each; median wall time in ms; hello-linux; $(buildctl --version | awk '{print $3}')"
printf "%-18s %10s %14s\n" case median_ms x_vs_bunny_warm
for k in bunny_cold bunny_warm bunny_changed frontend_cold frontend_warm frontend_changed \
         plain_cold plain_warm plain_changed; do
  m=$(printf '%s\n' ${t[$k]} | median)
  printf "%-18s %10s %14s\n" "$k" "$m" "$(awk -v a="$m" -v b="$base" 'BEGIN{printf "%.2f", a/b}')"
done
echo "the frontend's files equal bunny build's; two clean builds gave one digest ($d1)"
