# Shared helpers of the bench scripts (sourced, not run). Each function
# uses the caller's $work (a scratch directory) and, for the HTTP ones,
# $port.

# bench_tree DIR: 1 GiB in three shapes: 8 files of 64 MiB, 4096 of 64 KiB,
# 32768 of 8 KiB in 256 directories (random bytes, so no filesystem can
# shortcut them).
bench_tree() {
  python3 - "$1" <<'PY'
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
}

# time_one CMD...: runs CMD under /usr/bin/time -v; prints "seconds peak_kib".
time_one() {
  local log="$work/time.log"
  /usr/bin/time -v -o "$log" "$@" >/dev/null 2>"$work/err.log" || { cat "$work/err.log" >&2; exit 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/{print $2}' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$log")
  python3 -c 'import sys; p=sys.argv[1].split(":"); s=sum(float(x)*60**i for i,x in enumerate(reversed(p))); print(f"{s:.2f}", sys.argv[2])' "$wall" "$rss"
}

# median N...: the median of its arguments.
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

now() { date +%s%N; }

# wait_http: polls http://127.0.0.1:$port/ and prints the time of the
# first 200 (nanoseconds), or fails after about 30 s of refusals.
wait_http() {
  for _ in $(seq 3000); do
    if curl -fs -m 1 -o /dev/null "http://127.0.0.1:$port/"; then now; return; fi
    sleep 0.01
  done
  echo "no HTTP answer" >&2; return 1
}

# stop_guest: hello-linux's own way out (its httpd's /cgi-bin/stop).
stop_guest() { curl -fs -m 2 -o /dev/null "http://127.0.0.1:$port/cgi-bin/stop" || true; }
