#!/usr/bin/env bash
# Builds bunny's minimal Linux guest kernel from Debian's linux-source
# package: `make tinyconfig`, kernels/linux-minimal.config merged over it,
# `make olddefconfig`, bzImage: what a BunnyFile's
#   kernel: {from: source, source: debian:linux-source-6.1, config: minimal}
# asks bunny to build. About 5-12 minutes on 2 cores, so it is built once into
# bunny's kernel cache CACHE (default target/kernel-cache; bunny reads it when
# BUNNY_KERNEL_CACHE points there) under the key bunny computes for that
# BunnyFile (src/build/kernel.rs `recipe`): the source tarball's sha256, the
# base, each fragment's sha256 and the host toolchain. The two must write the
# same recipe byte for byte; tests/kernel_source.rs checks they do.
# Then copies bzImage and the resolved config to OUT (default
# target/minimal-kernel) and, unless BUNNY_NO_KERNEL_IMAGE is set, writes the
# OCI image oci:LAYOUT:kernel-minimal (LAYOUT defaults to
# target/toolchains/layout) with the kernel at /.boot/kernel, for
# `--toolchain linux.kernel=...`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$here/target/minimal-kernel}"
layout="${2:-$here/target/toolchains/layout}"
cache="${3:-${BUNNY_KERNEL_CACHE:-$here/target/kernel-cache}}"
fragment="$here/kernels/linux-minimal.config"
tag=kernel-minimal

src=/usr/src/linux-source-6.1.tar.xz
[[ -f "$src" ]] || { echo "minimal-kernel: no $src; apt-get install linux-source-6.1" >&2; exit 1; }
for t in make gcc bc flex bison; do
  command -v "$t" >/dev/null || { echo "minimal-kernel: $t missing; run scripts/setup.sh" >&2; exit 1; }
done

tmps=()
trap 'rm -rf "${tmps[@]}"' EXIT
sha() { sha256sum "$1" | cut -d' ' -f1; }
recipe() {
  printf 'bunny-kernel 1\nframework linux\narch x86_64\nsource sha256:%s\nbase tinyconfig\nfragment sha256:%s\ntoolchain %s\ntoolchain %s\ntarget bzImage\n' \
    "$(sha "$src")" "$(sha "$fragment")" "$(gcc --version | head -n1)" "$(make --version | head -n1)"
}
key="$(recipe | sha256sum | cut -d' ' -f1)"
entry="$cache/$key"
# What this script keyed its output by before the kernel cache: a build it
# made then from the same tarball, fragment and compiler is the same kernel
# (the build is reproducible), so it is taken over rather than rebuilt.
old_key="$( { basename "$src"; stat -c %s "$src"; cat "$fragment"; gcc --version | head -n1; } | sha256sum | cut -c1-16)"
if [[ ! -s "$entry/bzImage" && -s "$out/bzImage" && -s "$out/config" \
      && "$(cat "$out/key" 2>/dev/null)" == "$old_key" ]]; then
  mkdir -p "$cache"
  work="$(mktemp -d "$cache/.build-XXXXXX")"
  tmps+=("$work")
  cp "$out/bzImage" "$out/config" "$work/"
  recipe >"$work/recipe"
  mv "$work" "$entry"
  echo "minimal-kernel: took over the build in $out into $entry"
fi
if [[ -s "$entry/bzImage" ]]; then
  echo "minimal-kernel: cached at $entry"
else
  mkdir -p "$cache"
  work="$(mktemp -d "$cache/.build-XXXXXX")"
  tmps+=("$work")
  start=$(date +%s)
  mkdir "$work/src" "$work/obj" "$work/out"
  tar -xf "$src" -C "$work/src" --strip-components=1
  # A fixed build identity keeps the image the same from build to build.
  export KBUILD_BUILD_TIMESTAMP="1970-01-01" KBUILD_BUILD_USER=bunny KBUILD_BUILD_HOST=bunny
  mk() { make -C "$work/src" O="$work/obj" -s ARCH=x86_64 "$@"; }
  mk tinyconfig >/dev/null
  sh "$work/src/scripts/kconfig/merge_config.sh" -m -O "$work/obj" "$work/obj/.config" "$fragment" >/dev/null
  mk olddefconfig >/dev/null
  # merge_config.sh warns, olddefconfig drops silently: fail on any option
  # of the fragment that did not survive resolution.
  missing=0
  while IFS= read -r line; do
    case "$line" in
      CONFIG_*=*) grep -qxF "$line" "$work/obj/.config" || { echo "minimal-kernel: $line did not take" >&2; missing=1; } ;;
      "# CONFIG_"*" is not set") ! grep -q "^${line:2:-11}=" "$work/obj/.config" || { echo "minimal-kernel: ${line:2} but it is set" >&2; missing=1; } ;;
    esac
  done <"$fragment"
  ((missing == 0)) || exit 1
  mk -j"$(nproc)" bzImage
  cp "$work/obj/arch/x86/boot/bzImage" "$work/out/bzImage"
  cp "$work/obj/.config" "$work/out/config"
  recipe >"$work/out/recipe"
  rm -rf "$entry"
  mv "$work/out" "$entry"
  echo "minimal-kernel: built $entry/bzImage ($(stat -c %s "$entry/bzImage") bytes) in $(( $(date +%s) - start )) s"
fi
mkdir -p "$out"
cp "$entry/bzImage" "$out/bzImage"
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
