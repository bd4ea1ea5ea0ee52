#!/usr/bin/env bash
# Makes the images the `linux` framework builds with, as OCI layouts under
# target/toolchains (or $1):
#   oci:DIR/layout:gcc-bookworm     Debian bookworm minbase + gcc, make, libc6-dev
#   oci:DIR/layout:kernel-bookworm  the Debian kernel at /.boot/kernel and
#                                   its virtio modules in /lib/modules
#   oci:DIR/layout:tools-bookworm   Debian bookworm minbase + e2fsprogs, makefs,
#                                   busybox-static: the tools image the BuildKit
#                                   frontend's pack step runs in
# debootstrap takes a few minutes, so each image is cached: a run that finds
# both stamps (and the tags) only checks them and exits (well under a second).
# Needs root (debootstrap, chroot) and the Debian mirror.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$here/target/toolchains}"
layout="$out/layout"
kernel="${BUNNY_KERNEL:-$here/target/linux-kernel/vmlinuz}"
gcc_tag=gcc-bookworm
kernel_tag=kernel-bookworm
tools_tag=tools-bookworm

kdir="$(dirname "$kernel")"
have() { [[ -f "$out/$1.done" ]] && skopeo inspect --raw "oci:$layout:$2" >/dev/null 2>&1; }
if have gcc-v1 "$gcc_tag" && have kernel-v2 "$kernel_tag" && have tools-v1 "$tools_tag"; then
  echo "toolchain-image: cached at $layout"
  exit 0
fi
for tool in debootstrap buildah skopeo; do
  command -v "$tool" >/dev/null || {
    echo "toolchain-image: $tool missing; apt-get install -y $tool" >&2; exit 1; }
done
[[ -s "$kernel" ]] || { echo "toolchain-image: no kernel at $kernel; run scripts/setup.sh" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "toolchain-image: needs root (debootstrap, chroot)" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/bunny-toolchain.XXXXXX")"
cleanup() {
  umount "$work/rootfs/proc" 2>/dev/null || true
  umount "$work/base/proc" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
rootfs="$work/rootfs"

export BUILDAH_ISOLATION=chroot
broot="$work/buildah"
b() { buildah --root "$broot/root" --runroot "$broot/run" --storage-driver vfs "$@"; }
mkdir -p "$out"

# Installs packages into a copy of the minbase rootfs, trims it, and commits
# it as an image: image_with ROOTFS TAG STAMP TITLE PACKAGES... (not named
# `install`, which would shadow install(1) in this script)
image_with() {
  local root="$1" tag="$2" stamp="$3" title="$4"; shift 4
  rm -rf "$root"
  cp -a "$base" "$root"
  mount -t proc proc "$root/proc"
  chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" >"$work/apt.log" 2>&1 \
    || { umount "$root/proc"; tail -n 30 "$work/apt.log" >&2; exit 1; }
  chroot "$root" apt-get clean
  umount "$root/proc"
  # Layers carry no device nodes (bunny's unpacker refuses them; the runtime
  # makes /dev), and no caches or logs that only make the image bigger.
  rm -rf "$root"/dev/* "$root"/proc/* "$root"/sys/* "$root"/run/* \
         "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* \
         "$root"/tmp/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
         "$root"/usr/share/locale/*
  find "$root" \( -type p -o -type s -o -type c -o -type b \) -delete
  local c
  c=$(b from scratch)
  b add "$c" "$root/" / >/dev/null
  b config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --label org.opencontainers.image.title="$title" "$c"
  b commit -q --timestamp 0 "$c" "oci:$layout:$tag" >/dev/null
  touch "$out/$stamp.done"
  rm -rf "$root"
}

base="$work/base"
if ! have gcc-v1 "$gcc_tag" || ! have tools-v1 "$tools_tag"; then
  debootstrap --variant=minbase bookworm "$base" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
fi
if ! have tools-v1 "$tools_tag"; then
  image_with "$rootfs" "$tools_tag" tools-v1 "bunny tools (e2fsprogs, makefs, busybox)" \
    e2fsprogs makefs busybox-static
fi
if ! have gcc-v1 "$gcc_tag"; then
  image_with "$rootfs" "$gcc_tag" gcc-v1 "bunny linux toolchain (gcc, make)" \
    gcc make libc6-dev
fi

if ! have kernel-v2 "$kernel_tag"; then

mkdir -p "$work/kernel/.boot"
cp "$kernel" "$work/kernel/.boot/kernel"
if [[ -d "$kdir/modules" ]]; then
  mkdir -p "$work/kernel/lib/modules"
  cp "$kdir"/modules/*.ko "$work/kernel/lib/modules/"
fi
c=$(b from scratch)
b add "$c" "$work/kernel/" / >/dev/null
b config --label org.opencontainers.image.title="Debian bookworm kernel" "$c"
b commit -q --timestamp 0 "$c" "oci:$layout:$kernel_tag" >/dev/null
touch "$out/kernel-v2.done"
fi
echo "toolchain-image: wrote $layout ($gcc_tag, $kernel_tag, $tools_tag)"
