#!/usr/bin/env bash
# UFS2 write speed: bunny's writer (src/layers/ufs.rs, through bench/ufs2_write.rs,
# the same call a build makes) against Debian's `makefs -t ffs -o version=2`
# on the same generated 1 GiB tree, in the same run; wall time (median of
# RUNS, alternating the two) and peak memory (/usr/bin/time -v).
# Note: Debian's makefs writes the superblock at 8192, which FreeBSD refuses
# (docs/freebsd.md); it is here as the speed reference only.
# Usage: bench/ufs2.sh [RUNS]   (needs makefs, /usr/bin/time, python3: scripts/setup.sh)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-3}"
cd "$here"
for t in makefs /usr/bin/time python3; do
  command -v "$t" >/dev/null || { echo "ufs2: $t missing: run scripts/setup.sh" >&2; exit 1; }
done
cargo build --release --quiet --example ufs2_write
writer="$here/target/release/examples/ufs2_write"
work="$(mktemp -d "${TMPDIR:-/tmp}/bunny-ufs2.XXXXXX")"
trap 'rm -rf "$work"' EXIT

. "$here/bench/lib.sh"
bench_tree "$work/tree"
bytes=$(du -sb "$work/tree" | cut -f1)
cat "$work"/tree/big/* >/dev/null   # both tools read from the page cache

b_t=(); b_m=(); m_t=(); m_m=()
for _ in $(seq "$runs"); do
  rm -f "$work/bunny.img"
  read -r t m < <(time_one "$writer" "$work/tree" "$work/bunny.img"); b_t+=("$t"); b_m+=("$m")
  rm -f "$work/makefs.img"
  read -r t m < <(time_one makefs -t ffs -o version=2 "$work/makefs.img" "$work/tree"); m_t+=("$t"); m_m+=("$m")
done
bt=$(median "${b_t[@]}"); mt=$(median "${m_t[@]}")
bm=$(median "${b_m[@]}"); mm=$(median "${m_m[@]}")
bs=$(stat -c %s "$work/bunny.img"); msz=$(stat -c %s "$work/makefs.img")
mib() { python3 -c "print(f'{$1/1048576:.0f}')"; }
echo "# UFS2, $(mib "$bytes") MiB in $(find "$work/tree" -type f | wc -l) files, $runs runs, medians"
printf '| writer | time (s) | MiB/s | peak RSS (MiB) | image (MiB) |\n|---|---|---|---|---|\n'
printf '| bunny (src/layers/ufs.rs) | %s | %s | %s | %s |\n' "$bt" \
  "$(python3 -c "print(f'{$bytes/1048576/$bt:.0f}')")" "$(python3 -c "print(f'{$bm/1024:.1f}')")" "$(mib "$bs")"
printf '| makefs -t ffs (Debian 20190105) | %s | %s | %s | %s |\n' "$mt" \
  "$(python3 -c "print(f'{$bytes/1048576/$mt:.0f}')")" "$(python3 -c "print(f'{$mm/1024:.1f}')")" "$(mib "$msz")"
echo "bunny/makefs time ratio: $(python3 -c "print(f'{$bt/$mt:.2f}')")"
