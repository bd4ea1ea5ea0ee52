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

# bench_binaries PROFILE: builds bunny and bunny-runtime (release or debug)
# and sets $bunny and $runtime to them.
bench_binaries() {
  if [[ "$1" == release ]]; then
    cargo build --release --quiet -p bunny -p bunny-runtime
  else
    cargo build --quiet -p bunny -p bunny-runtime
  fi
  bunny="$here/target/$1/bunny"
  runtime="$here/target/$1/bunny-runtime"
}

# start_containerd: a private containerd (CRI off) under $work; sets
# $ctdpid and the array ctr (`"${ctr[@]}" ...` in namespace `bench`).
# Extra environment for it (PATH, ...) may be given as NAME=VALUE args.
start_containerd() {
  cat >"$work/config.toml" <<TOML
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/c.sock"
[ttrpc]
  address = "$work/c.ttrpc"
TOML
  env "$@" containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
  ctdpid=$!
  ctr=(ctr -a "$work/c.sock" -n bench)
  for _ in $(seq 200); do "${ctr[@]}" version >/dev/null 2>&1 && break; sleep 0.05; done
}

# container_netns NS VETH PREFIX: a network namespace as a CNI plugin would
# wire it: eth0 at PREFIX.2/30 inside, VETH at PREFIX.1 on the host.
container_netns() {
  ip netns add "$1"
  ip link add "$2" type veth peer name eth0 netns "$1"
  ip addr add "$3.1/30" dev "$2"; ip link set "$2" up
  ip -n "$1" addr add "$3.2/30" dev eth0; ip -n "$1" link set eth0 up
  ip -n "$1" link set lo up; ip -n "$1" route add default via "$3.1"
}

# first_http URL: the time of the first 200 from URL (nanoseconds).
first_http() {
  for _ in $(seq 6000); do
    if curl -fs -m 1 -o /dev/null "$1"; then now; return; fi
    sleep 0.01
  done
  echo "no answer from $1" >&2; return 1
}

# stop_task NAME: kills a containerd task and removes it and its container.
stop_task() {
  "${ctr[@]}" task kill -s SIGKILL "$1" >/dev/null 2>&1 || true
  for _ in $(seq 100); do "${ctr[@]}" task ls 2>/dev/null | grep -q "$1.*RUNNING" || break; sleep 0.05; done
  "${ctr[@]}" task delete "$1" >/dev/null 2>&1 || true
  "${ctr[@]}" containers rm "$1" >/dev/null 2>&1 || true
}
