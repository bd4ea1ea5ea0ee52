#!/usr/bin/env bash
# Volume images: how long `bunny run -v DIR:PATH` takes to make the disk of
# a directory holding 1 GiB of files (bench/lib.sh's tree: 36,872 files),
# as bunny makes it (`volumes::make_image` through bench/ufs2_write.rs):
# ext4 with `mke2fs -d` (linux guests), UFS2 with bunny's own writer
# (FreeBSD guests), and Debian's `makefs -t ffs` on the same tree as the
# reference; wall time (median of RUNS, alternating) and peak memory
# (/usr/bin/time -v, of bunny's process and the tools it runs). Each image
# is deleted once measured, the tree at the end.
# BENCH_TMP: where the tree and one image at a time go (about 3.5 GiB;
# /dev/shm keeps it off a small disk).
# Usage: bench/volume-image.sh [RUNS]   (needs e2fsprogs, makefs, /usr/bin/time, python3)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-3}"
cd "$here"
for t in mke2fs makefs /usr/bin/time python3; do
  command -v "$t" >/dev/null || { echo "volume-image: $t missing: run scripts/setup.sh" >&2; exit 1; }
done
cargo build --release --quiet --example ufs2_write
maker="$here/target/release/examples/ufs2_write"
work="$(mktemp -d -p "${BENCH_TMP:-${TMPDIR:-/tmp}}" bunny-volume.XXXXXX)"
trap 'rm -rf "$work"' EXIT
. "$here/bench/lib.sh"
bench_tree "$work/tree"
bytes=$(du -sb "$work/tree" | cut -f1)
files=$(find "$work/tree" -type f | wc -l)
cat "$work"/tree/big/* >/dev/null

declare -A t m size
for _ in $(seq "$runs"); do
  for k in ext4 ufs2 makefs; do
    img="$work/$k.img"
    if [[ $k == makefs ]]; then
      read -r s p < <(time_one makefs -t ffs -o version=2 "$img" "$work/tree")
    else
      read -r s p < <(time_one "$maker" --volume "$k" "$work/tree" "$img")
    fi
    t[$k]+="$s "; m[$k]+="$p "
    # Blocks the image really holds (both bunny images are sparse).
    size[$k]=$(( $(stat -c %b "$img") * 512 ))
    rm -f "$img"
  done
done
mib() { python3 -c "print(f'{$1/1048576:.0f}')"; }
echo "# volume image of $(mib "$bytes") MiB in $files files, $runs runs, medians (all: ext4 ${t[ext4]}/ ufs2 ${t[ufs2]}/ makefs ${t[makefs]})"
printf '| image | time (s) | MiB/s | peak RSS (MiB) | blocks used (MiB) |\n|---|---|---|---|---|\n'
for k in ext4 ufs2 makefs; do
  # shellcheck disable=SC2086
  s=$(median ${t[$k]}); p=$(median ${m[$k]})
  case $k in
    ext4) name='ext4, `mke2fs -d` (linux guests)' ;;
    ufs2) name="UFS2, bunny's writer (FreeBSD guests)" ;;
    makefs) name='UFS2, `makefs -t ffs` (reference)' ;;
  esac
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$s" \
    "$(python3 -c "print(f'{$bytes/1048576/$s:.0f}')")" "$(python3 -c "print(f'{$p/1024:.1f}')")" "$(mib "${size[$k]}")"
done
