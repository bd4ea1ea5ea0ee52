#!/usr/bin/env bash
# Makes the images the `linux`, `rumprun` and `freebsd` frameworks build with, as OCI layouts under
# target/toolchains (or $1):
#   oci:DIR/layout:gcc-bookworm     Debian bookworm minbase + gcc, make, libc6-dev
#   oci:DIR/layout:kbuild-bookworm  Debian bookworm minbase + gcc, make, bc, flex,
#                                   bison, libelf-dev, python3-minimal: the Linux
#                                   kernel build image (bunny's default
#                                   `linux.kernel-toolchain`; `--toolchain
#                                   linux.kernel-toolchain=oci:DIR/layout:kbuild-bookworm`)
#   oci:DIR/layout:kernel-bookworm  the Debian kernel at /.boot/kernel and
#                                   its virtio modules in /lib/modules
#   oci:DIR/layout:tools-bookworm   Debian bookworm minbase + e2fsprogs, makefs,
#                                   busybox-static: the tools image the BuildKit
#                                   frontend's pack step runs in
#   oci:DIR/layout:clang-bookworm   Debian bookworm minbase + clang-14, lld-14, make,
#                                   python3 and libarchive/libbz2/zlib headers
#                                   (`clang`, `ld.lld` on PATH): the `freebsd`
#                                   framework cross-compiles C apps with it, and
#                                   FreeBSD kernels with tools/build/make.py
#   oci:DIR/layout:go-bookworm      Debian bookworm minbase + golang-go: the
#                                   `freebsd` framework's Go builds
#   oci:DIR/layout:rumprun-solo5    the rumprun toolchain (Solo5 0.4.1) at
#                                   /rumprun/rumprun-solo5 on bookworm + gcc-11
#   oci:DIR/layout:rumprun-solo5-v0.9  the same for rumprun ported to Solo5
#                                   v0.9 (the named-device ABI urunc speaks)
# The rumprun trees come from ../shared/tools/rumprun beside a checkout of
# this project; elsewhere scripts/rumprun-toolchain.sh builds the 0.4.1 one
# from its public sources at pinned commits (the v0.9 port has no public
# source, so that image is made only where the tree is at hand).
# debootstrap takes a few minutes, so each image is cached: a run that finds
# both stamps (and the tags) only checks them and exits (well under a second).
# Needs root (debootstrap, chroot) and the Debian mirror.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$here/target/toolchains}"
layout="$out/layout"
kernel="${BUNNY_KERNEL:-$here/target/linux-kernel/vmlinuz}"
gcc_tag=gcc-bookworm
kbuild_tag=kbuild-bookworm
kernel_tag=kernel-bookworm
tools_tag=tools-bookworm
clang_tag=clang-bookworm
go_tag=go-bookworm
rr_tag=rumprun-solo5
rr9_tag=rumprun-solo5-v0.9
shared_rr="${BUNNY_SHARED_TOOLS:-$here/../shared/tools}/rumprun"

kdir="$(dirname "$kernel")"
have() { [[ -f "$out/$1.done" ]] && skopeo inspect --raw "oci:$layout:$2" >/dev/null 2>&1; }
# The v0.9 tree exists only beside this project's own checkouts.
want_rr9() { [[ -f "$shared_rr/rumprun-solo5-v0.9.tar.zst" ]]; }
have_all() {
  have gcc-v1 "$gcc_tag" && have kbuild-v1 "$kbuild_tag" && have kernel-v3 "$kernel_tag" && have tools-v1 "$tools_tag" \
    && have clang-v2 "$clang_tag" && have go-v1 "$go_tag" \
    && have rumprun-v2 "$rr_tag" && { ! want_rr9 || have rumprun-v09-v2 "$rr9_tag"; }
}
if have_all; then
  echo "toolchain-image: cached at $layout"
  exit 0
fi
for tool in debootstrap buildah skopeo zstd; do
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
  # Callers add what no package brings (a toolchain tree) through this hook.
  if [[ -n "${post_install:-}" ]]; then "$post_install" "$root"; fi
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
if ! have gcc-v1 "$gcc_tag" || ! have kbuild-v1 "$kbuild_tag" || ! have tools-v1 "$tools_tag" || ! have rumprun-v2 "$rr_tag" \
   || ! have clang-v2 "$clang_tag" || ! have go-v1 "$go_tag" \
   || { want_rr9 && ! have rumprun-v09-v2 "$rr9_tag"; }; then
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
if ! have kbuild-v1 "$kbuild_tag"; then
  image_with "$rootfs" "$kbuild_tag" kbuild-v1 "bunny linux kernel build toolchain (gcc, make, bc, flex, bison, libelf)" \
    gcc make libc6-dev bc flex bison libelf-dev perl-base python3-minimal xz-utils
fi
# Debian installs clang and lld under versioned names; the unversioned ones
# are what Makefiles and clang's own driver (-fuse-ld=lld) look for.
clang_names() {
  local root="$1"
  ln -sf /usr/bin/clang-14 "$root/usr/local/bin/clang"
  ln -sf /usr/bin/clang-14 "$root/usr/local/bin/cc"
  ln -sf /usr/bin/ld.lld-14 "$root/usr/local/bin/ld.lld"
  [[ -x "$root/usr/bin/clang-14" && -x "$root/usr/bin/ld.lld-14" ]] \
    || { echo "toolchain-image: clang-14 or ld.lld-14 missing in the clang image" >&2; exit 1; }
}
if ! have clang-v2 "$clang_tag"; then
  post_install=clang_names image_with "$rootfs" "$clang_tag" clang-v2 "bunny clang toolchain (clang-14, lld-14, make, python3: C apps and kernels for FreeBSD)" \
    clang-14 lld-14 make python3-minimal libarchive-dev libbz2-dev zlib1g-dev
fi
if ! have go-v1 "$go_tag"; then
  image_with "$rootfs" "$go_tag" go-v1 "bunny Go toolchain (golang-go)" golang-go
fi

# The rumprun toolchain needs gcc 11: Solo5 0.4.1's configure does not take
# gcc 12, and NetBSD's sources need -fcommon, which gcc >= 10 no longer
# defaults to. The wrappers come first on PATH, so the toolchain's own calls
# to cc/gcc get both. Packages of rumprun-packages' age (nginx 1.8.0) build
# with their own -Werror, and gcc 11 warns where gcc 5 did not: those two
# warnings stay warnings. wget and genisoimage are what rumprun-packages'
# Makefiles call to fetch sources and pack data images.
rr_tree=""
rumprun_tree() {
  local root="$1"
  for t in gcc cc; do
    printf '#!/bin/sh\nexec gcc-11 -fcommon "$@" -Wno-error=implicit-fallthrough -Wno-error=cast-function-type\n' >"$root/usr/local/bin/$t"
  done
  for t in g++ c++; do printf '#!/bin/sh\nexec g++-11 -fcommon "$@"\n' >"$root/usr/local/bin/$t"; done
  chmod 0755 "$root"/usr/local/bin/{gcc,cc,g++,c++}
  zstd -dc "$rr_tree" | tar -x -C "$root"
  [[ -x "$root/rumprun/rumprun-solo5/bin/rumprun-bake" ]] \
    || { echo "toolchain-image: $rr_tree holds no rumprun/rumprun-solo5/bin/rumprun-bake" >&2; exit 1; }
}
rr_image() {
  local tag="$1" stamp="$2" title="$3"
  rr_tree="$4" post_install=rumprun_tree image_with "$rootfs" "$tag" "$stamp" "$title" \
    gcc-11 g++-11 make binutils libc6-dev wget ca-certificates genisoimage
  # The image's own environment, so it is usable by hand too (bunny sets
  # PATH itself in every step).
  local c
  c=$(b from "oci:$layout:$tag")
  b config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/rumprun/rumprun-solo5/bin \
    --env RUMPRUN_TOOLCHAIN_TUPLE=x86_64-rumprun-netbsd "$c"
  b commit -q --timestamp 0 "$c" "oci:$layout:$tag" >/dev/null
}
if ! have rumprun-v2 "$rr_tag"; then
  tree="$shared_rr/rumprun-solo5.tar.zst"
  if [[ ! -f "$tree" ]]; then
    # No prebuilt tree (a user's clone): build it from the pinned sources.
    tree="$out/rumprun-src/rumprun-solo5.tar.zst"
    [[ -f "$tree" ]] || "$here/scripts/rumprun-toolchain.sh" --base "$base" "$out/rumprun-src"
  fi
  rr_image "$rr_tag" rumprun-v2 "bunny rumprun toolchain (Solo5 0.4.1)" "$tree"
fi
if want_rr9 && ! have rumprun-v09-v2 "$rr9_tag"; then
  rr_image "$rr9_tag" rumprun-v09-v2 "bunny rumprun toolchain (Solo5 v0.9.0 port)" \
    "$shared_rr/rumprun-solo5-v0.9.tar.zst"
fi

# v3: the modules include ext4 and what it needs, which the boot stage of
# a block-root guest loads (v2 had only the virtio ones).
if ! have kernel-v3 "$kernel_tag"; then

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
touch "$out/kernel-v3.done"
fi
echo "toolchain-image: wrote $layout ($gcc_tag, $kbuild_tag, $kernel_tag, $tools_tag, $clang_tag, $go_tag, $rr_tag$(want_rr9 && echo ", $rr9_tag"))"
