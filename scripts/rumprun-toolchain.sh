#!/usr/bin/env bash
# Builds the rumprun toolchain for Solo5 0.4.1 (cloudkernels/rumprun, branch
# solo5) from public sources at pinned commits, the way the copy in
# ../shared/tools/rumprun was built, and writes into OUT_DIR:
#   rumprun-solo5.tar.zst  the installed tree, paths rumprun/rumprun-solo5/...
#                          (unpack at / of a toolchain image: its wrappers
#                          hold the absolute path /rumprun/rumprun-solo5)
#   solo5-spt, solo5-hvt   the 0.4.1 tenders that run what it bakes
#   rumprun-solo5.sources  the commits it was built from (the cache stamp)
#
# usage: scripts/rumprun-toolchain.sh [--base DIR] [--work DIR] [--jobs N]
#                                     [--keep-work] [--force] OUT_DIR
#   --base DIR   a Debian 12 (bookworm) rootfs to build in, e.g. a minbase
#                debootstrap or an unpacked gcc image; it is copied, never
#                changed. Without it, debootstrap makes a minbase one.
#   --work DIR   where the build root goes (default: a new dir under $TMPDIR);
#                about 2 GB. Removed after a good build unless --keep-work.
#   --jobs N     make jobs (default: the number of CPUs).
#   --keep-work  keep the build root after a good build too.
#   --force      build even if OUT_DIR already holds this build.
#
# Sources: cloned from GitHub at the pinned commits, unless these name local
# copies (the way to build offline):
#   RUMPRUN_SRC SRC_NETBSD_SRC BUILDRUMP_SRC SOLO5_SRC
# Each may be a git repository (work tree or bare) that holds the pinned
# commit, which is what gets built, or a plain source tree, used as it is.
# The Debian mirror (DEBIAN_MIRROR, default http://deb.debian.org/debian) is
# needed unless --base already has every package listed in $packages.
#
# Needs root (debootstrap, chroot, mounts), tar, zstd, unshare; git when a
# source is a repository or is cloned. About 10 minutes on 2 cores.
set -euo pipefail

rumprun_url=https://github.com/cloudkernels/rumprun.git
rumprun_commit=4ddcdd29356dd86f0d64be5923ec72998d8efed4    # branch solo5
src_netbsd_url=https://github.com/cloudkernels/src-netbsd.git
src_netbsd_commit=b84d52a97472825058b398b561b2263dc556b70c
buildrump_url=https://github.com/cloudkernels/buildrump.sh.git
buildrump_commit=8cb64b910fab79861cc68071f9f7460462023e8c
solo5_url=https://github.com/Solo5/solo5.git
solo5_commit=120848b058c27a359a6cad2cb37ba6adde403d77      # Solo5 0.4.1

# gcc-11 (bookworm's default is 12) is the compiler this toolchain was built
# and checked with; zlib1g-dev is for buildrump's host tools, libseccomp-dev
# for the spt tender.
packages=(gcc-11 g++-11 make binutils libc6-dev zlib1g-dev libseccomp-dev)
dest=/rumprun/rumprun-solo5

prog=rumprun-toolchain
die() { echo "$prog: $*" >&2; exit 1; }
usage() { sed -n '11,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

base= work= jobs=$(nproc 2>/dev/null || echo 2) keep=false force=false out=
while (($#)); do
  case "$1" in
    --base) [[ $# -ge 2 ]] || usage; base="$2"; shift 2 ;;
    --work) [[ $# -ge 2 ]] || usage; work="$2"; shift 2 ;;
    --jobs) [[ $# -ge 2 ]] || usage; jobs="$2"; shift 2 ;;
    --keep-work) keep=true; shift ;;
    --force) force=true; shift ;;
    -h|--help) usage ;;
    -*) echo "$prog: unknown option $1" >&2; usage ;;
    *) [[ -z "$out" ]] || usage; out="$1"; shift ;;
  esac
done
[[ -n "$out" ]] || usage
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "--jobs wants a positive number, not '$jobs'"

stamp_text() {
  printf 'rumprun %s\nsrc-netbsd %s\nbuildrump.sh %s\nsolo5 %s\n' \
    "$rumprun_commit" "$src_netbsd_commit" "$buildrump_commit" "$solo5_commit"
  local v
  for v in RUMPRUN_SRC SRC_NETBSD_SRC BUILDRUMP_SRC SOLO5_SRC; do
    # A plain tree cannot be named by a commit; record that it was used.
    [[ -n "${!v:-}" && ! -e "${!v}/.git" && ! -f "${!v}/HEAD" ]] && echo "$v=${!v} (plain tree)"
  done
  return 0
}

mkdir -p "$out"
out="$(cd "$out" && pwd)"
if ! $force && [[ -s "$out/rumprun-solo5.tar.zst" && -x "$out/solo5-spt" && -x "$out/solo5-hvt" ]] \
   && [[ "$(cat "$out/rumprun-solo5.sources" 2>/dev/null)" == "$(stamp_text)" ]]; then
  echo "$prog: already built in $out (--force to build again)"
  exit 0
fi

[[ $(id -u) == 0 ]] || die "needs root (debootstrap, chroot, bind mounts); run it with sudo"
for tool in tar zstd unshare chroot mount; do
  command -v "$tool" >/dev/null || die "$tool missing (Debian: apt-get install tar zstd util-linux mount coreutils)"
done
if [[ -n "$base" ]]; then
  [[ -x "$base/bin/sh" || -L "$base/bin/sh" ]] || die "--base $base is not a rootfs (no /bin/sh)"
  [[ -f "$base/etc/debian_version" ]] && [[ "$(cut -d. -f1 "$base/etc/debian_version")" == 12 ]] \
    || die "--base $base is not Debian 12 (bookworm): $(cat "$base/etc/debian_version" 2>/dev/null || echo 'no /etc/debian_version')"
else
  command -v debootstrap >/dev/null || die "debootstrap missing (apt-get install debootstrap), or pass --base DIR"
fi

for v in RUMPRUN_SRC SRC_NETBSD_SRC BUILDRUMP_SRC SOLO5_SRC; do
  [[ -z "${!v:-}" || -d "${!v}" ]] || die "$v=${!v} is not a directory"
  command -v git >/dev/null && continue
  [[ -n "${!v:-}" ]] || die "git missing (apt-get install git): it clones the sources unless $v names a local copy"
  [[ ! -e "${!v}/.git" && ! -f "${!v}/HEAD" ]] || die "git missing (apt-get install git): $v=${!v} is a git repository"
done

if [[ -z "$work" ]]; then
  work="$(mktemp -d "${TMPDIR:-/tmp}/rumprun-toolchain.XXXXXX")"
else
  mkdir -p "$work"; work="$(cd "$work" && pwd)"
  [[ -z "$(ls -A "$work")" ]] || die "--work $work is not empty; give an empty or new directory"
fi
root="$work/root"
log="$work/build.log"
ok=false
finish() {
  if $ok && ! $keep; then
    rm -rf "$work"
  elif ! $ok; then
    echo "$prog: failed; the build root and logs stay in $work (rm -rf it when done)" >&2
  fi
}
trap finish EXIT

# Runs a command in the build root, with /dev and /proc mounted in a private
# mount namespace: they vanish with it, whatever happens to the build.
in_root() {
  unshare --mount --propagation private /bin/sh -ec '
    root=$1; shift
    mount --rbind /dev "$root/dev"
    mount -t proc proc "$root/proc"
    exec chroot "$root" /usr/bin/env -i HOME=/root LC_ALL=C \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
  ' in_root "$root" "$@"
}

# --- the sources -------------------------------------------------------------
# fetch_source NAME ENVVAR URL COMMIT DIR: the tree of COMMIT in DIR.
fetch_source() {
  local name="$1" var="$2" url="$3" commit="$4" dir="$5" src="${!2:-}" gitdir
  mkdir -p "$dir"
  if [[ -n "$src" ]]; then
    if [[ -e "$src/.git" || -f "$src/HEAD" ]]; then
      git -C "$src" cat-file -e "$commit^{commit}" 2>/dev/null \
        || die "$var=$src does not hold $name commit $commit (git -C $src fetch it, or point $var elsewhere)"
      echo "$prog: $name $commit from $src"
      git -C "$src" archive --format=tar "$commit" | tar -x -C "$dir"
    else
      echo "$prog: $name from the plain tree $src (its commit cannot be checked; should be $commit)"
      cp -a "$src/." "$dir/"
    fi
  else
    gitdir="$work/git/$name.git"
    echo "$prog: $name $commit from $url"
    git init -q --bare "$gitdir"
    # GitHub serves a single commit by its id; a full fetch is the fallback.
    git -C "$gitdir" fetch -q --depth 1 "$url" "$commit" 2>/dev/null \
      || git -C "$gitdir" fetch -q "$url" '+refs/heads/*:refs/heads/*' \
      || die "cannot fetch $url (no network? set $var to a local copy)"
    git -C "$gitdir" cat-file -e "$commit^{commit}" 2>/dev/null || die "$url has no commit $commit"
    git -C "$gitdir" archive --format=tar "$commit" | tar -x -C "$dir"
  fi
}
tree="$work/src/rumprun"
fetch_source rumprun RUMPRUN_SRC "$rumprun_url" "$rumprun_commit" "$tree"
fetch_source src-netbsd SRC_NETBSD_SRC "$src_netbsd_url" "$src_netbsd_commit" "$tree/src-netbsd"
fetch_source buildrump.sh BUILDRUMP_SRC "$buildrump_url" "$buildrump_commit" "$tree/buildrump.sh"
fetch_source solo5 SOLO5_SRC "$solo5_url" "$solo5_commit" "$tree/solo5"
[[ -x "$tree/build-rr.sh" ]] || die "no build-rr.sh in the rumprun source (is RUMPRUN_SRC rumprun?)"

# --- the two Solo5 edits -----------------------------------------------------
# configure.sh takes a compiler for gcc only if __GNUC__ is one digit (4-9);
# gcc 11 says 11.
sed -i -E "s/\^#define __GNUC__ \[4-9\]\\$/^#define __GNUC__ ([4-9]|[1-9][0-9])$/" "$tree/solo5/configure.sh"
grep -qF '__GNUC__ ([4-9]|[1-9][0-9])$' "$tree/solo5/configure.sh" \
  || die "could not widen Solo5 configure.sh's gcc version check (is SOLO5_SRC Solo5 0.4.1?)"
# rumprun runs Solo5's default `make`, which also builds the genode bindings
# and their tests; rumprun uses only hvt and spt, and bookworm's ld refuses to
# link the genode test ("PHDR segment not covered by LOAD segment").
sed -i -E 's/^(all:.*) genode$/\1/' "$tree/solo5/GNUmakefile"
grep -qE '^all:' "$tree/solo5/GNUmakefile" && ! grep -qE '^all:.*genode' "$tree/solo5/GNUmakefile" \
  || die "could not drop genode from Solo5's all target (is SOLO5_SRC Solo5 0.4.1?)"

# --- the build root ----------------------------------------------------------
if [[ -n "$base" ]]; then
  echo "$prog: copying $base"
  # One file system: a /proc or /dev mounted in the base stays out.
  mkdir -p "$root"
  tar -C "$base" --one-file-system -cf - . | tar -C "$root" -xf -
else
  echo "$prog: debootstrap --variant=minbase bookworm (a few minutes)"
  debootstrap --variant=minbase bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
fi
mkdir -p "$root/dev" "$root/proc" "$root/tmp"
missing=()
for p in "${packages[@]}"; do
  in_root dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "$prog: apt-get install ${missing[*]}"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  { in_root apt-get update -qq && in_root env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$work/apt.log" 2>&1 \
    || { tail -n 20 "$work/apt.log" >&2; die "apt-get install ${missing[*]} failed (Debian mirror reachable?)"; }
fi
# First on PATH, so every compile of the build (and the toolchain's own
# wrappers later) gets gcc-11 and -fcommon: the NetBSD sources define the
# same variables in several files, which gcc >= 10 (-fno-common) refuses.
for w in gcc:gcc-11 cc:gcc-11 g++:g++-11 c++:g++-11; do
  printf '#!/bin/sh\nexec %s -fcommon "$@"\n' "${w#*:}" >"$root/usr/local/bin/${w%%:*}"
  chmod 755 "$root/usr/local/bin/${w%%:*}"
done
mkdir -p "$root/build"
mv "$tree" "$root/build/rumprun"
tree="$root/build/rumprun"

# --- build and install -------------------------------------------------------
# GIT names a missing command: build-rr.sh asks git for the branch to name its
# output, and outside a git checkout that stops the script without a word.
# NOGCCERROR: NetBSD's -Werror would fail on warnings newer gcc finds.
echo "$prog: build-rr.sh -j$jobs -d $dest solo5 build install (log: $log)"
start=$(date +%s)
in_root /bin/sh -ec "
  cd /build/rumprun
  export NOGCCERROR=1 GIT=/nonexistent/git
  ./build-rr.sh -j$jobs -d $dest solo5 build
  ./build-rr.sh -j$jobs -d $dest solo5 install
" >"$log" 2>&1 || { tail -n 40 "$log" >&2; die "build-rr.sh failed (full log: $log)"; }
echo "$prog: built in $(( $(date +%s) - start )) s"
for f in bin/rumprun-bake bin/x86_64-rumprun-netbsd-gcc; do
  [[ -x "$root$dest/$f" ]] || { tail -n 40 "$log" >&2; die "build-rr.sh ended, but $dest/$f is missing (log: $log)"; }
done
for t in spt hvt; do
  [[ -x "$tree/solo5/tenders/$t/solo5-$t" ]] || die "the Solo5 tender solo5-$t was not built (log: $log)"
done

# --- the outputs -------------------------------------------------------------
# Fixed owner, mtime and order, so the same sources give the same archive.
tar -C "$root" --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 \
  -cf - "${dest#/}" | zstd -q -T0 -10 -o "$out/rumprun-solo5.tar.zst.tmp" -f
for t in spt hvt; do
  install -m 755 "$tree/solo5/tenders/$t/solo5-$t" "$out/solo5-$t.tmp"
done
mv -f "$out/rumprun-solo5.tar.zst.tmp" "$out/rumprun-solo5.tar.zst"
mv -f "$out/solo5-spt.tmp" "$out/solo5-spt"
mv -f "$out/solo5-hvt.tmp" "$out/solo5-hvt"
stamp_text >"$out/rumprun-solo5.sources"
ok=true
echo "$prog: wrote $out/rumprun-solo5.tar.zst, solo5-spt, solo5-hvt"
