#!/usr/bin/env bash
# The main job: build examples/hello-linux into the local store and an OCI
# layout, show what was built, then boot it once under qemu (the guest prints
# its arguments and environment and powers off).
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
"$bunny" run --rm hello-linux:latest once
