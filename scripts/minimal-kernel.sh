#!/usr/bin/env bash
# Builds bunny's minimal Linux guest kernel from Debian's linux-source
# package: `make tinyconfig`, kernels/linux-minimal.config merged over it,
# `make olddefconfig`, bzImage. About 5 minutes on 2 cores, so it is built
# once and cached under OUT (default target/minimal-kernel), keyed by the
# source tarball and the fragment; a run that finds the key only checks it.
# Writes OUT/bzImage, OUT/config (the resolved .config) and, unless
# BUNNY_NO_KERNEL_IMAGE is set, the OCI image oci:LAYOUT:kernel-minimal
# (LAYOUT defaults to target/toolchains/layout) with the kernel at
# /.boot/kernel, for `--toolchain linux.kernel=...`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$here/target/minimal-kernel}"
layout="${2:-$here/target/toolchains/layout}"
fragment="$here/kernels/linux-minimal.config"
tag=kernel-minimal

src="$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -n1 || true)"
[[ -n "$src" ]] || { echo "minimal-kernel: no /usr/src/linux-source-*.tar.xz; apt-get install linux-source-6.1" >&2; exit 1; }
for t in make gcc bc flex bison; do
  command -v "$t" >/dev/null || { echo "minimal-kernel: $t missing; run scripts/setup.sh" >&2; exit 1; }
done

tmps=()
trap 'rm -rf "${tmps[@]}"' EXIT
key="$( { basename "$src"; stat -c %s "$src"; cat "$fragment"; gcc --version | head -n1; } | sha256sum | cut -c1-16)"
if [[ -s "$out/bzImage" && "$(cat "$out/key" 2>/dev/null)" == "$key" ]]; then
  echo "minimal-kernel: cached at $out/bzImage"
else
  work="$(mktemp -d "${TMPDIR:-/tmp}/bunny-kernel.XXXXXX")"
  tmps+=("$work")
  start=$(date +%s)
  tar -xJf "$src" -C "$work"
  ksrc="$(echo "$work"/linux-source-*)"
  # A fixed build identity keeps the image the same from build to build.
  export KBUILD_BUILD_TIMESTAMP="1970-01-01" KBUILD_BUILD_USER=bunny KBUILD_BUILD_HOST=bunny
  mk() { make -C "$ksrc" -s ARCH=x86_64 "$@"; }
  mk tinyconfig >/dev/null
  "$ksrc/scripts/kconfig/merge_config.sh" -m -O "$ksrc" "$ksrc/.config" "$fragment" >/dev/null
  mk olddefconfig >/dev/null
  # merge_config.sh warns, olddefconfig drops silently: fail on any option
  # of the fragment that did not survive resolution.
  missing=0
  while IFS= read -r line; do
    case "$line" in
      CONFIG_*=*) grep -qxF "$line" "$ksrc/.config" || { echo "minimal-kernel: $line did not take" >&2; missing=1; } ;;
      "# CONFIG_"*" is not set") ! grep -q "^${line:2:-11}=" "$ksrc/.config" || { echo "minimal-kernel: ${line:2} but it is set" >&2; missing=1; } ;;
    esac
  done <"$fragment"
  ((missing == 0)) || exit 1
  mk -j"$(nproc)" bzImage
  mkdir -p "$out"
  cp "$ksrc/arch/x86/boot/bzImage" "$out/bzImage"
  cp "$ksrc/.config" "$out/config"
  echo "$key" >"$out/key"
  echo "minimal-kernel: built $out/bzImage ($(stat -c %s "$out/bzImage") bytes) in $(( $(date +%s) - start )) s"
fi

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
