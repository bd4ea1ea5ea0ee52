#!/usr/bin/env bash
# The main job: build examples/hello-linux into the local store and an OCI
# layout, then show what was built. (`bunny run` joins when issue 5 lands.)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
cargo build --release --quiet
bunny=target/release/bunny
export BUNNY_ROOT="${BUNNY_ROOT:-$here/target/demo/store}"
"$bunny" build --progress=plain -f examples/hello-linux/BunnyFile -t hello-linux:latest \
  --output type=oci,dest=target/demo/hello-linux-oci examples/hello-linux
"$bunny" images
"$bunny" inspect hello-linux:latest
