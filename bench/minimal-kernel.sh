#!/usr/bin/env bash
# Minimal kernel vs Debian's generic one, same run: hello-linux's busybox
# initrd booted by `bunny run --rm -p PORT:80` under qemu TCG, once with
# Debian's kernel (+ its virtio modules in the initrd), once with the kernel
# scripts/minimal-kernel.sh builds (virtio built in, no modules). Prints the
# kernel and initrd sizes and the median start -> first HTTP 200 over RUNS,
# alternating the two images.
# Usage: bench/minimal-kernel.sh [RUNS]   (needs scripts/setup.sh first)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-5}"
kernel="${BUNNY_MINIMAL_KERNEL:-$here/target/minimal-kernel}/bzImage"
[[ -s "$kernel" ]] || { echo "no $kernel: run scripts/setup.sh" >&2; exit 1; }
cd "$here"
cargo build --quiet --bin bunny
bunny="${BUNNY_BIN:-$here/target/debug/bunny}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/store"

# The minimal context: hello-linux's without the modules, with the kernel.
ex="$here/examples/hello-linux"
mkdir -p "$work/min/rootfs/bin" "$work/min/rootfs/lib"
cp "$ex/BunnyFile" "$work/min/"
cp "$kernel" "$work/min/vmlinuz"
cp "$ex/rootfs/init" "$work/min/rootfs/"
cp "$ex/rootfs/bin/busybox" "$work/min/rootfs/bin/"
cp -r "$ex/rootfs/www" "$work/min/rootfs/"
"$bunny" --root "$root" build --progress=quiet -t generic "$ex" >/dev/null
"$bunny" --root "$root" build --progress=quiet -t minimal "$work/min" >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
now() { date +%s%N; }
wait_http() {
  for _ in $(seq 6000); do
    if curl -fs -m 1 -o /dev/null "http://127.0.0.1:$port/"; then now; return; fi
    sleep 0.01
  done
  echo "no HTTP answer" >&2; return 1
}
stop_guest() { curl -fs -m 2 -o /dev/null "http://127.0.0.1:$port/cgi-bin/stop" || true; }
boot() { # IMAGE: ms from start to first 200
  local t0 t1
  t0=$(now)
  "$bunny" --root "$root" run --rm --accel tcg -p "127.0.0.1:$port:80" "$1" >/dev/null 2>&1 &
  t1=$(wait_http)
  stop_guest; wait
  echo $(( (t1 - t0) / 1000000 ))
}
declare -a g m
for _ in $(seq "$runs"); do g+=("$(boot generic)"); m+=("$(boot minimal)"); done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
layers() { "$bunny" --root "$root" inspect --json "$1" | python3 -c '
import json,sys
d=json.load(sys.stdin)
ls=d.get("layers") or d.get("Layers") or []
print(sum(int(l.get("size") or l.get("Size") or 0) for l in ls))'; }
gm=$(median "${g[@]}"); mm=$(median "${m[@]}")
echo "# $runs runs each, alternating, qemu TCG, hello-linux busybox initrd; medians"
printf '%-28s %12s %12s\n' "" generic minimal
printf '%-28s %12s %12s\n' "kernel (bytes)" "$(stat -c %s "$ex/vmlinuz")" "$(stat -c %s "$kernel")"
printf '%-28s %12s %12s\n' "image layers (bytes)" "$(layers generic)" "$(layers minimal)"
printf '%-28s %12s %12s\n' "start -> first HTTP 200 (ms)" "$gm" "$mm"
echo "ratio minimal/generic: $(awk -v a="$mm" -v b="$gm" 'BEGIN{printf "%.2f", a/b}')"
