#!/usr/bin/env bash
# Builds bunny's minimal Linux guest kernel from Debian's linux-source
# package (`make tinyconfig`, kernels/linux-minimal.config merged over it,
# `make olddefconfig`, bzImage) by asking bunny itself to build what a
# BunnyFile's
#   kernel: {from: source, source: debian:linux-source-6.1, config: minimal}
# names, in its default build container (the kbuild-bookworm image
# scripts/toolchain-image.sh makes). About 5-12 minutes on 2 cores, so it is
# built once into bunny's kernel cache CACHE (default target/kernel-cache;
# bunny reads it when BUNNY_KERNEL_CACHE points there) under the key bunny
# computes (src/build/kernel.rs `recipe`): the source tarball's sha256, the
# base, the fragment's sha256 and the build image's digest. The script
# writes the same recipe to find the entry without running bunny when it is
# there; tests/kernel_source.rs checks the two agree.
# Then copies bzImage, vmlinux (the ELF Firecracker boots) and the resolved
# config to OUT (default
# target/minimal-kernel) and, unless BUNNY_NO_KERNEL_IMAGE is set, writes the
# OCI image oci:LAYOUT:kernel-minimal (LAYOUT defaults to
# target/toolchains/layout) with the kernel at /.boot/kernel, for
# `--toolchain linux.kernel=...`.
# bunny is $BUNNY, else target/debug/bunny (built with cargo if missing).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$here/target/minimal-kernel}"
layout="${2:-$here/target/toolchains/layout}"
cache="${3:-${BUNNY_KERNEL_CACHE:-$here/target/kernel-cache}}"
fragment="$here/kernels/linux-minimal.config"
tag=kernel-minimal
kbuild="oci:$layout:kbuild-bookworm"

src=/usr/src/linux-source-6.1.tar.xz
[[ -f "$src" ]] || { echo "minimal-kernel: no $src; apt-get install linux-source-6.1" >&2; exit 1; }
manifest="$(skopeo inspect --raw "$kbuild" 2>/dev/null)" \
  || { echo "minimal-kernel: no kernel build image $kbuild; run scripts/toolchain-image.sh" >&2; exit 1; }

tmps=()
trap 'rm -rf "${tmps[@]}"' EXIT
sha() { sha256sum "$1" | cut -d' ' -f1; }
recipe() {
  printf 'bunny-kernel 1\nframework linux\narch x86_64\nsource sha256:%s\nbase tinyconfig\nfragment sha256:%s\ntoolchain image sha256:%s\ntarget bzImage\n' \
    "$(sha "$src")" "$(sha "$fragment")" "$(printf '%s' "$manifest" | sha256sum | cut -d' ' -f1)"
}
key="$(recipe | sha256sum | cut -d' ' -f1)"
entry="$cache/$key"
# An entry without the vmlinux is an older bunny's: bunny builds it again.
if [[ -s "$entry/bzImage" && -s "$entry/vmlinux" ]]; then
  echo "minimal-kernel: cached at $entry"
else
  bunny="${BUNNY:-$here/target/debug/bunny}"
  if [[ -z "${BUNNY:-}" && ! -x "$bunny" ]]; then
    cargo build -q -p bunny --manifest-path "$here/Cargo.toml"
  fi
  work="$(mktemp -d "${TMPDIR:-/tmp}/bunny-minimal-kernel.XXXXXX")"
  tmps+=("$work")
  mkdir "$work/ctx"
  cat >"$work/ctx/BunnyFile" <<'BUNNYFILE'
version: v0.1
platforms:
  framework: linux
  monitor: qemu
  architecture: x86_64
kernel:
  from: source
  source: debian:linux-source-6.1
  config: minimal
BUNNYFILE
  start=$(date +%s)
  # A throwaway store: only the kernel cache entry is kept.
  BUNNY_ROOT="$work/store" BUNNY_KERNEL_CACHE="$cache" "$bunny" build --progress=plain \
    --toolchain "linux.kernel-toolchain=$kbuild" -f "$work/ctx/BunnyFile" "$work/ctx"
  [[ -s "$entry/bzImage" && -s "$entry/vmlinux" ]] || {
    echo "minimal-kernel: bunny built no $entry/bzImage: this script's recipe and src/build/kernel.rs disagree" >&2
    exit 1
  }
  echo "minimal-kernel: built $entry/bzImage ($(stat -c %s "$entry/bzImage") bytes) in $(( $(date +%s) - start )) s"
fi
mkdir -p "$out"
cp "$entry/bzImage" "$out/bzImage"
cp "$entry/vmlinux" "$out/vmlinux"
cp "$entry/config" "$out/config"
echo "$key" >"$out/key"

[[ -n "${BUNNY_NO_KERNEL_IMAGE:-}" ]] && exit 0
if [[ -f "$out/image.key" && "$(cat "$out/image.key")" == "$key" ]] \
   && skopeo inspect --raw "oci:$layout:$tag" >/dev/null 2>&1; then
  exit 0
fi
command -v buildah >/dev/null || { echo "minimal-kernel: buildah missing; run scripts/setup.sh" >&2; exit 1; }
img="$(mktemp -d "${TMPDIR:-/tmp}/bunny-kimg.XXXXXX")"
tmps+=("$img")
mkdir -p "$img/tree/.boot" "$layout"
cp "$out/bzImage" "$img/tree/.boot/kernel"
b() { BUILDAH_ISOLATION=chroot buildah --root "$img/root" --runroot "$img/run" --storage-driver vfs "$@"; }
c=$(b from scratch)
b add "$c" "$img/tree/" / >/dev/null
b config --label org.opencontainers.image.title="bunny minimal Linux kernel (tinyconfig + kernels/linux-minimal.config)" "$c"
b commit -q --timestamp 0 "$c" "oci:$layout:$tag" >/dev/null
echo "$key" >"$out/image.key"
echo "minimal-kernel: wrote oci:$layout:$tag"
