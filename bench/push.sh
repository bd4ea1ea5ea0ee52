#!/usr/bin/env bash
# Push benchmark: `bunny push` vs `skopeo copy oci:DIR docker://...`
# of the same image (hello-linux) to the same local registry, fresh (an empty
# registry each run) and unchanged re-push, as median wall times and ratios.
# Usage: bench/push.sh [RUNS]   (needs scripts/setup.sh first)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-10}"
cd "$here"
cargo build --release --quiet
bunny="$here/target/release/bunny"
work="$(mktemp -d)"
. "$here/bench/registry.sh"
trap 'stop_registry; rm -rf "$work"' EXIT

"$bunny" --root "$work/store" build --progress=quiet -t hello:b -o "type=oci,dest=$work/oci" examples/hello-linux >/dev/null
# the layout's ref name is the tag part
dest="127.0.0.1:$port/bench/hello:b"

ms() { echo $(( ($2 - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

declare -A t
for mode in fresh repush; do
  for tool in bunny skopeo; do
    vals=()
    for _ in $(seq "$runs"); do
      if [[ $mode == fresh ]]; then start_registry; rm -f "$work/store/registry-sources.json"; fi
      if [[ $mode == repush && -z "$regpid" ]]; then start_registry; fi
      if [[ $mode == repush ]]; then  # make sure the image is there already
        "$bunny" --root "$work/store" push --progress=quiet hello:b "$dest" >/dev/null
      fi
      t0=$(date +%s%N)
      case $tool in
        bunny) "$bunny" --root "$work/store" push --progress=quiet hello:b "$dest" >/dev/null ;;
        skopeo) skopeo copy -q --dest-tls-verify=false "oci:$work/oci:b" "docker://$dest" >/dev/null ;;
      esac
      t1=$(date +%s%N)
      vals+=("$(ms "$t0" "$t1")")
    done
    t[$mode-$tool]=$(printf '%s\n' "${vals[@]}" | median)
  done
done
echo "# $runs runs each; median wall time in ms; image: hello-linux (~9.6 MB)"
printf "%-10s %10s %10s %14s\n" case bunny_ms skopeo_ms skopeo/bunny
for mode in fresh repush; do
  b=${t[$mode-bunny]}; s=${t[$mode-skopeo]}
  printf "%-10s %10s %10s %14s\n" "$mode" "$b" "$s" "$(awk -v b="$b" -v s="$s" 'BEGIN{printf "%.2f", (b>0? s/b : 0)}')"
done
