#!/usr/bin/env bash
# Crash safety: kill bunny with SIGKILL at random points during
# build, push and pull until KILLS kills have landed mid-operation; after
# every round the store must verify clean, and at the end a build, a push and
# a pull must succeed.
# Usage: bench/crash-safety.sh [KILLS]   (default 50; needs scripts/setup.sh)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:-50}"
cd "$here"
cargo build --release --quiet
bunny="$here/target/release/bunny"
work="$(mktemp -d)"
. "$here/bench/registry.sh"
trap 'stop_registry; rm -rf "$work"' EXIT
start_registry

# A context with a big incompressible file, so kills land mid-stream.
ctx="$work/ctx"; mkdir -p "$ctx/data"
cp examples/hello-linux/vmlinuz "$ctx/kernel"
head -c 128M /dev/urandom >"$ctx/data/blob"
cat >"$ctx/BunnyFile" <<'YML'
version: v0.1
platforms: {framework: linux, monitor: qemu}
kernel: {from: local, path: kernel}
rootfs:
  type: initrd
  include: ["data:/data"]
YML
store="$work/store"
ref="127.0.0.1:$port/crash/img:1"
"$bunny" --root "$work/seed" build --progress=quiet -t "$ref" "$ctx" >/dev/null
"$bunny" --root "$work/seed" push --progress=quiet "$ref" >/dev/null

kills=0
rounds=0
for i in $(seq $((target * 4))); do
  [[ $kills -ge $target ]] && break
  rounds=$i
  case $((i % 3)) in
    0) cmd=("$bunny" --root "$store" build --progress=quiet -t "crash:$i" "$ctx") ;;
    1) cmd=("$bunny" --root "$store" pull --progress=quiet "$ref") ;;
    2) "$bunny" --root "$store" build --progress=quiet -t "$ref" "$ctx" >/dev/null 2>&1 || true
       cmd=("$bunny" --root "$store" push --progress=quiet "$ref" "127.0.0.1:$port/crash/p$i:1") ;;
  esac
  "${cmd[@]}" >/dev/null 2>&1 &
  pid=$!
  sleep "0.$(printf '%03d' $((RANDOM % 250)))"
  if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
  wait "$pid" 2>/dev/null || true
  if ! out=$("$bunny" --root "$store" store verify 2>&1); then
    echo "round $i (${cmd[3]}): the store is damaged after kill -9:"; echo "$out"; exit 1
  fi
done
"$bunny" --root "$store" build --progress=quiet -t after "$ctx" >/dev/null
"$bunny" --root "$store" pull --progress=quiet "$ref" >/dev/null
"$bunny" --root "$store" push --progress=quiet after "127.0.0.1:$port/crash/after:1" >/dev/null
"$bunny" --root "$store" store verify >/dev/null
# What killed processes left in tmp/: scratch dirs are removed by the next
# command that opens the store (their owner's lock is free); blob temp files
# once they are a minute old. Nothing goes to /tmp.
scratch_left=$(find "$store/tmp" -maxdepth 1 -name 'scratch-*' | wc -l)
blobs_left=$(find "$store/tmp" -maxdepth 1 -name 'blob-*' | wc -l)
old_blobs_left=$(find "$store/tmp" -maxdepth 1 -name 'blob-*' -mmin +1 | wc -l)
echo "left in the store's tmp/: $scratch_left scratch dirs, $blobs_left blob temp files ($old_blobs_left older than a minute)"
if [[ $scratch_left -ne 0 || $old_blobs_left -ne 0 ]]; then
  echo "stale scratch survived a store open" >&2; exit 1
fi
if [[ $kills -lt $target ]]; then
  echo "only $kills of $target kills landed mid-operation in $rounds rounds" >&2; exit 1
fi
echo "$rounds rounds, $kills kill -9 mid-operation; store verified clean after each; build, pull and push succeed afterwards"
