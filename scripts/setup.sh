#!/usr/bin/env bash
# Installs everything bunny's build, examples and tests use on a fresh Debian 12
# machine. Idempotent: safe to run again; it only installs what is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(
  # image tools the tests use to read our output back independently
  skopeo umoci
  # real engines and registries the tests start themselves
  docker.io docker-registry containerd runc buildah
  apache2-utils openssl curl ca-certificates
  # rootfs writers: ext2/ext4 (mke2fs -d), UFS2 (makefs), cpio for cross-checks
  e2fsprogs makefs cpio
  # what the examples boot
  qemu-system-x86 busybox-static
  # network namespaces, tap devices
  iproute2
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not start daemons: tests start each service themselves.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# A real kernel to boot, extracted without touching /boot.
kdir="$here/target/linux-kernel"
if [[ ! -s "$kdir/vmlinuz" ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -qq "$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')")
  dpkg-deb -x "$tmp"/linux-image-*.deb "$tmp/x"
  mkdir -p "$kdir"
  cp "$(ls "$tmp"/x/boot/vmlinuz-* | head -n1)" "$kdir/vmlinuz.tmp"
  mv "$kdir/vmlinuz.tmp" "$kdir/vmlinuz"
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust with rustup (https://rustup.rs) and rerun" >&2
  exit 1
fi
rustup component add clippy rustfmt >/dev/null 2>&1 || true
echo "setup: ok (kernel at $kdir/vmlinuz)"
