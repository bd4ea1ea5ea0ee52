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

# 1 GiB in three shapes: 8 files of 64 MiB, 4096 of 64 KiB, 32768 of 8 KiB
# in 256 directories (random bytes, so no filesystem can shortcut them).
python3 - "$work/tree" <<'PY'
import os, sys
root = sys.argv[1]
rnd = open("/dev/urandom", "rb")
def put(path, size):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(rnd.read(n))
            left -= n
for i in range(8):
    put(f"{root}/big/f{i}", 64 << 20)
for i in range(4096):
    put(f"{root}/mid/d{i % 64}/f{i}", 64 << 10)
for i in range(32768):
    put(f"{root}/small/d{i % 256}/f{i}", 8 << 10)
PY
bytes=$(du -sb "$work/tree" | cut -f1)
cat "$work"/tree/big/* >/dev/null   # both tools read from the page cache

# time_one NAME CMD...: prints "seconds peak_kib"
time_one() {
  local log="$work/time.log"
  /usr/bin/time -v -o "$log" "$@" >/dev/null 2>"$work/err.log" || { cat "$work/err.log" >&2; exit 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/{print $2}' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$log")
  python3 -c 'import sys; p=sys.argv[1].split(":"); s=sum(float(x)*60**i for i,x in enumerate(reversed(p))); print(f"{s:.2f}", sys.argv[2])' "$wall" "$rss"
}
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

b_t=(); b_m=(); m_t=(); m_m=()
for _ in $(seq "$runs"); do
  rm -f "$work/bunny.img"
  read -r t m < <(time_one "$writer" "$work/tree" "$work/bunny.img"); b_t+=("$t"); b_m+=("$m")
  rm -f "$work/makefs.img"
  read -r t m < <(time_one makefs -t ffs -o version=2 "$work/makefs.img" "$work/tree"); m_t+=("$t"); m_m+=("$m")
done
bt=$(printf '%s\n' "${b_t[@]}" | median); mt=$(printf '%s\n' "${m_t[@]}" | median)
bm=$(printf '%s\n' "${b_m[@]}" | median); mm=$(printf '%s\n' "${m_m[@]}" | median)
bs=$(stat -c %s "$work/bunny.img"); msz=$(stat -c %s "$work/makefs.img")
mib() { python3 -c "print(f'{$1/1048576:.0f}')"; }
echo "# UFS2, $(mib "$bytes") MiB in $(find "$work/tree" -type f | wc -l) files, $runs runs, medians"
printf '| writer | time (s) | MiB/s | peak RSS (MiB) | image (MiB) |\n|---|---|---|---|---|\n'
printf '| bunny (src/layers/ufs.rs) | %s | %s | %s | %s |\n' "$bt" \
  "$(python3 -c "print(f'{$bytes/1048576/$bt:.0f}')")" "$(python3 -c "print(f'{$bm/1024:.1f}')")" "$(mib "$bs")"
printf '| makefs -t ffs (Debian 20190105) | %s | %s | %s | %s |\n' "$mt" \
  "$(python3 -c "print(f'{$bytes/1048576/$mt:.0f}')")" "$(python3 -c "print(f'{$mm/1024:.1f}')")" "$(mib "$msz")"
echo "bunny/makefs time ratio: $(python3 -c "print(f'{$bt/$mt:.2f}')")"
