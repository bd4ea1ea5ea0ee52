#!/usr/bin/env bash
# How long `bunny run` takes to stop after Ctrl-C (SIGINT) or `docker stop`
# style SIGTERM: the time from the signal to bunny's exit, with the guest
# (hello-linux under TCG) up and serving. The tests only bound this
# generously (15 s) so a loaded machine cannot fail them; this is the figure.
# Usage: bench/stop-latency.sh [RUNS]   (needs scripts/setup.sh first)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-5}"
cd "$here"
cargo build --release --quiet
bunny="$here/target/release/bunny"
work="$(mktemp -d)"
bpid=""
trap '[ -n "$bpid" ] && kill -9 "$bpid" 2>/dev/null; rm -rf "$work"' EXIT
root="$work/store"
"$bunny" --root "$root" build --progress=quiet -t hello examples/hello-linux >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

now() { date +%s%N; }
wait_http() {
  for _ in $(seq 3000); do
    curl -fs -m 1 -o /dev/null "http://127.0.0.1:$port/" && return
    sleep 0.01
  done
  echo "no HTTP answer" >&2; return 1
}

for sig in INT TERM; do
  declare -a ms=()
  for _ in $(seq "$runs"); do
    "$bunny" --root "$root" run --rm --accel tcg -p "127.0.0.1:$port:80" hello >/dev/null 2>&1 &
    bpid=$!
    wait_http
    t0=$(now)
    kill -s "$sig" "$bpid"
    wait "$bpid" || true
    bpid=""
    ms+=($(( ($(now) - t0) / 1000000 )))
  done
  sorted=($(printf '%s\n' "${ms[@]}" | sort -n))
  echo "SIG$sig -> exit: median ${sorted[$(( ${#sorted[@]} / 2 ))]} ms (runs: ${ms[*]})"
done
