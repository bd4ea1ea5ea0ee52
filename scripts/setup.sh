#!/usr/bin/env bash
# Installs everything bunny's build, examples and tests use on a fresh Debian 12
# machine. Idempotent: safe to run again; it only installs what is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(
  # protoc: generates the BuildKit gateway client (frontend/build.rs)
  protobuf-compiler
  # image tools the tests use to read our output back independently
  skopeo umoci
  # real engines and registries the tests start themselves
  docker.io docker-registry containerd runc buildah
  apache2-utils openssl curl ca-certificates
  # the CI jobs of docs/ci.md read the metadata file with jq
  jq
  # rootfs writers: ext2/ext4 (mke2fs -d); makefs, the UFS2 writer bunny
  # replaced, for bench/ufs2.sh; cpio for cross-checks
  e2fsprogs makefs cpio
  # `file` checks the static binaries (bunny-init, bunny-frontend) are static
  file
  # what the examples boot
  qemu-system-x86 busybox-static
  # the virtio NIC's option ROM qemu loads (efi-virtio.rom)
  ipxe-qemu
  # the build images of the linux and freebsd frameworks (gcc, clang,
  # go: scripts/toolchain-image.sh)
  debootstrap git
  # network namespaces, tap devices
  iproute2
  # CNI's bridge, host-local and loopback plugins: pods through containerd's
  # CRI plugin (tests/cri.rs)
  containernetworking-plugins
  # the Solo5 tenders (solo5-spt sandboxes the guest with seccomp); zstd
  # unpacks the prebuilt tools beside this project's checkouts
  libseccomp2 zstd
  # the static qemu wrapper urunc runs under TCG (see below)
  gcc libc6-dev
  # readelf: the rumprun tests read the unikernels' ELF notes with it
  binutils
  # the minimal guest kernel (scripts/minimal-kernel.sh): Debian's kernel
  # sources and what building them takes
  linux-source-6.1 make bc flex bison libelf-dev libssl-dev xz-utils
  # kill (procps) and flock (util-linux) in tests; /usr/bin/time and python3 in bench/
  procps util-linux time python3
  # a real FreeBSD program for the freebsd app tests: Go cross-compiles a
  # static GOOS=freebsd binary (seconds, cached under target/go-freebsd-cache)
  golang-go
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

# A real kernel to boot (Debian's linux-image-amd64), extracted without
# touching /boot, with the virtio modules the examples load from their initrd
# (Debian builds virtio, virtio-net and virtio-blk as modules), ufs, with
# which the tests read bunny's UFS2 images back, and ext4 with what it
# needs, for `bunny run -v` volumes.
kdir="$here/target/linux-kernel"
kmods="virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
       failover net_failover virtio_net virtio_blk ufs crc16 mbcache jbd2 crc32c_generic ext4"
kmissing=0
for m in $kmods; do [[ -s "$kdir/modules/$m.ko" ]] || kmissing=1; done
if [[ ! -s "$kdir/vmlinuz" || $kmissing == 1 ]]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
  (cd "$tmp" && apt-get download -qq "$pkg" 2>/dev/null)
  dpkg-deb -x "$tmp"/linux-image-*.deb "$tmp/x"
  rm -rf "$kdir" && mkdir -p "$kdir/modules"
  for m in $kmods; do
    find "$tmp"/x/lib/modules -name "$m.ko" -exec cp {} "$kdir/modules/" \;
  done
  cp "$(ls "$tmp"/x/boot/vmlinuz-* | head -n1)" "$kdir/vmlinuz"
fi

# The hello-linux example's context gets the kernel, busybox and the modules.
"$here/examples/hello-linux/prepare.sh" "$kdir"

# The toolchain and kernel images for `app` builds (linux, rumprun, and
# freebsd's clang and go images, which also compile the tests' stand-in
# FreeBSD sysroot): debootstrap takes minutes the first time; cached under
# target/toolchains, one stamp per image.
"$here/scripts/toolchain-image.sh"

# Third-party tools no package registry has. Beside this project's own
# checkouts they come prebuilt in ../shared/tools (read-only; README there);
# on a user's clone the rumprun recipe above builds the 0.4.1 tenders too.
shared="${BUNNY_SHARED_TOOLS:-$here/../shared/tools}"
install_bin() { # SRC NAME: install SRC (zstd-compressed if *.zst) as /usr/local/bin/NAME
  local dst="/usr/local/bin/$2"
  if [[ "$1" == *.zst ]]; then
    zstd -qdc "$1" >"$dst.tmp"
  else
    cp "$1" "$dst.tmp"
  fi
  chmod 0755 "$dst.tmp" && mv "$dst.tmp" "$dst"
}
# Solo5 tenders. A unikernel runs only under a tender of its own Solo5 ABI:
# v0.9 (named devices, what urunc passes) is `solo5-spt`/`solo5-hvt`, the
# 0.4.1 one (`--net=`/`--disk=`) is `solo5-spt-0.4`/`solo5-hvt-0.4`; bunny
# picks by the `.note.solo5.manifest` the unikernel carries or lacks.
if [[ -d "$shared/rumprun" ]]; then
  install_bin "$shared/rumprun/solo5-spt" solo5-spt-0.4
  install_bin "$shared/rumprun/solo5-hvt" solo5-hvt-0.4
  for t in solo5-spt solo5-hvt solo5-elftool; do install_bin "$shared/rumprun/solo5-v0.9/$t" "$t"; done
else
  src="$here/target/toolchains/rumprun-src"
  install_bin "$src/solo5-spt" solo5-spt-0.4
  install_bin "$src/solo5-hvt" solo5-hvt-0.4
  echo "setup: no Solo5 v0.9 tenders (only beside this project's checkouts); v0.9 rumprun guests will not boot" >&2
fi
# urunc, to boot the same images under the real thing. It execs qemu with
# -enable-kvm, which hangs here, so a wrapper first on containerd's PATH
# turns that into TCG and logs each command line (README in ../shared/tools).
if [[ -d "$shared/urunc" ]]; then
  install_bin "$shared/urunc/urunc.zst" urunc
  install_bin "$shared/urunc/containerd-shim-urunc-v2.zst" containerd-shim-urunc-v2
  w=/usr/lib/qemu-tcg
  if [[ ! -x "$w/qemu-system-x86_64" || "$shared/urunc/qemu-tcg.c" -nt "$w/qemu-system-x86_64" ]]; then
    mkdir -p "$w/bin"
    cp /usr/bin/qemu-system-x86_64 "$w/bin/"
    gcc -O2 -static -o "$w/qemu-system-x86_64" "$shared/urunc/qemu-tcg.c"
  fi
  # qemu finds its data relative to its binary ($w/bin/../share/qemu,
  # ../share/seabios, ../lib/ipxe/qemu): without lib, a virtio NIC's option
  # ROM (efi-virtio.rom, package ipxe-qemu) is missing and qemu refuses to
  # start ("failed to find romfile"), also inside urunc's chroot, which
  # bind-mounts /usr/lib and /usr/share/qemu.
  ln -sfn /usr/share "$w/share"
  ln -sfn /usr/lib "$w/lib"
else
  echo "setup: urunc not installed (its prebuilt binaries are only beside this project's checkouts); the urunc tests will say so" >&2
fi

# crictl, to drive containerd's CRI as a kubelet does (tests/cri.rs). Beside
# this project's checkouts it is ../shared/tools/cri-tools (built from source);
# elsewhere install crictl from kubernetes-sigs/cri-tools' releases.
if [[ -f "$shared/cri-tools/crictl.zst" ]]; then
  install_bin "$shared/cri-tools/crictl.zst" crictl
elif ! command -v crictl >/dev/null; then
  echo "setup: crictl not installed (prebuilt only beside this project's checkouts): install it from https://github.com/kubernetes-sigs/cri-tools/releases; the CRI test will say so" >&2
fi

# Current BuildKit (buildkitd, buildctl): the frontend tests run against it
# as well as against dockerd 20.10's BuildKit 0.8; tests start their own
# daemon. Beside this project's checkouts it is ../shared/tools/buildkit
# (v0.32.0-57-g73ed6825c, built from source); elsewhere BuildKit's release
# tarball of v0.32.0, checked against the sha256 pinned below.
buildkit_version=v0.32.0
declare -A buildkit_sha256=(
  # From a third party's lock file (ConchSandbox/Conch-ci runner-env.lock.yaml),
  # not checked against GitHub here (no internet on the project's machines).
  [arm64]=bff1c800e765022cc498959d37250dd6101a07b8388f595d1548aaa378373e74
  # Unknown: set BUNNY_BUILDKIT_SHA256 to the published digest of
  # buildkit-v0.32.0.linux-amd64.tar.gz to allow the download.
  [amd64]=
)
if [[ -d "$shared/buildkit" ]]; then
  install_bin "$shared/buildkit/buildkitd.zst" buildkitd
  install_bin "$shared/buildkit/buildctl.zst" buildctl
elif ! buildctl --version 2>/dev/null | grep -q "$buildkit_version"; then
  arch="$(dpkg --print-architecture)"
  sum="${BUNNY_BUILDKIT_SHA256:-${buildkit_sha256[$arch]:-}}"
  tarball="buildkit-$buildkit_version.linux-$arch.tar.gz"
  url="https://github.com/moby/buildkit/releases/download/$buildkit_version/$tarball"
  if [[ -z "$sum" ]]; then
    echo "setup: BuildKit not installed: no sha256 pinned for $tarball; set BUNNY_BUILDKIT_SHA256 to its digest (see https://github.com/moby/buildkit/releases/tag/$buildkit_version) and rerun, or install buildkitd and buildctl $buildkit_version on PATH; the current-BuildKit tests will say so" >&2
  else
    bk="$(mktemp -d)"
    curl -fsSL --proto '=https' -o "$bk/$tarball" "$url"
    echo "$sum  $bk/$tarball" | sha256sum -c --quiet -
    tar -xzf "$bk/$tarball" -C "$bk" bin/buildkitd bin/buildctl
    install_bin "$bk/bin/buildkitd" buildkitd
    install_bin "$bk/bin/buildctl" buildctl
    rm -rf "$bk"
  fi
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust with rustup (https://rustup.rs) and rerun" >&2
  exit 1
fi
rustup component add clippy rustfmt >/dev/null 2>&1 || true

# bunny's minimal Linux kernel (tinyconfig + kernels/linux-minimal.config)
# from Debian's linux-source, built by bunny itself in the kbuild-bookworm
# build container: about 5-12 minutes on 2 cores the first time, into
# bunny's kernel cache target/kernel-cache under the key a BunnyFile's
# `kernel: {from: source, source: debian:linux-source-6.1, config: minimal}`
# computes (tests point BUNNY_KERNEL_CACHE there), copied to
# target/minimal-kernel; also the image oci:target/toolchains/layout:kernel-minimal.
cargo build -q -p bunny --manifest-path "$here/Cargo.toml"
BUNNY="$here/target/debug/bunny" "$here/scripts/minimal-kernel.sh"

# bunny-init, the init Containerfile-built Linux guests run, must be
# static (a guest has no loader). Only the glibc target exists here, so glibc
# links statically; `--target` keeps the flag off build scripts and proc
# macros. bunny finds it at target/bunny-init/... (or $BUNNY_INIT).
RUSTFLAGS="-C target-feature=+crt-static" cargo build -q -p bunny-init --release \
  --target x86_64-unknown-linux-gnu --target-dir "$here/target/bunny-init" \
  --manifest-path "$here/Cargo.toml"
# The BuildKit frontend image holds a static bunny-frontend; built
# here (minutes the first time) so the test suite only checks it is current.
# Same flags and target dir as tests/frontend_buildkit.rs.
CARGO_TARGET_DIR="$here/target/frontend-static" RUSTFLAGS="-C target-feature=+crt-static -C debuginfo=0" \
  cargo build -q -p bunny-frontend --target x86_64-unknown-linux-gnu --manifest-path "$here/Cargo.toml"
# bunny's own job image (images/bunny, docs/ci.md), built twice from scratch
# (fresh rootfs and store) to check that one lock and one set of binaries
# give one digest; redone when the lock or the script changes. It leaves the
# Debian layer compressed in target/bunny-image/store, so tests/bunny_image.rs
# only packs its bunny layer anew.
img="$here/target/bunny-image"
want="$(cat "$here/images/bunny/packages.lock" "$here/images/bunny/build.sh" | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$img/built-from" 2>/dev/null)" != "$want" ]]; then
  cargo build -q -p bunny -p bunny-runtime --manifest-path "$here/Cargo.toml"
  rm -rf "$img/store"
  # Copies: another cargo command may relink target/debug/bunny meanwhile.
  scratch="$(mktemp -d)"
  mkdir "$scratch/bin" "$scratch/work"
  cp "$here"/target/debug/{bunny,bunny-runtime} "$scratch/bin/"
  build_image() {
    env -u BUNNY_ROOT BUNNY_FRONTEND= SOURCE_DATE_EPOCH=0 BUNNY_BIN_DIR="$scratch/bin" \
      BUNNY_IMAGE_DEBS="$img/debs" "$@" "$here/images/bunny/build.sh" | tail -n1
  }
  first="$(build_image)"
  second="$(build_image BUNNY_IMAGE_WORK="$scratch/work")"
  rm -rf "$scratch"
  echo "setup: bunny's image: $first; built again from scratch: $second"
  [[ "$first" == "$second" ]] || { echo "setup: bunny's image is not reproducible" >&2; exit 1; }
  echo "$want" >"$img/built-from"
fi
echo "setup: ok (kernel at $kdir/vmlinuz)"
