#!/usr/bin/env bash
# Points bunny's framework layers at the images scripts/toolchain-image.sh
# built (target/toolchains/layout), in bunny's config file
# ($XDG_CONFIG_HOME/bunny/config.json, else ~/.config/bunny/config.json), so
# that `bunny build` finds them without `--toolchain` flags. The defaults
# they stand for (bunny/linux-toolchain:gcc-bookworm, ...) are published by
# no registry yet. Keys already in the file are kept unless --force; the
# file's other settings are kept. A BunnyFile's own names, `--toolchain` and
# bunny.lock still win over it.
# Usage: scripts/use-local-images.sh [--force] [LAYOUT]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
force=0
if [[ "${1:-}" == --force ]]; then force=1; shift; fi
layout="$(realpath "${1:-$here/target/toolchains/layout}")"
[[ -f "$layout/index.json" ]] || { echo "use-local-images: no images at $layout; run scripts/setup.sh" >&2; exit 1; }
config="${XDG_CONFIG_HOME:-$HOME/.config}/bunny/config.json"
mkdir -p "$(dirname "$config")"
python3 - "$layout" "$config" "$force" <<'PY'
import json, os, sys
layout, config, force = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
tags = {m.get("annotations", {}).get("org.opencontainers.image.ref.name")
        for m in json.load(open(os.path.join(layout, "index.json")))["manifests"]}
# FRAMEWORK.LAYER -> the tag toolchain-image.sh writes (first one present).
wanted = {
    "linux.toolchain": ["gcc-bookworm"],
    "linux.kernel": ["kernel-bookworm"],
    "linux.kernel-toolchain": ["kbuild-bookworm"],
    "freebsd.toolchain": ["clang-bookworm"],
    "freebsd.go-toolchain": ["go-bookworm"],
    "freebsd.kernel-toolchain": ["clang-bookworm"],
    # urunc passes Solo5 v0.9's named devices; 0.4.1 is the fallback.
    "rumprun.toolchain": ["rumprun-solo5-v0.9", "rumprun-solo5"],
}
doc = {}
if os.path.exists(config):
    with open(config) as f:
        doc = json.load(f)
layers = doc.setdefault("layers", {})
for key, candidates in wanted.items():
    tag = next((t for t in candidates if t in tags), None)
    if tag is None:
        print(f"use-local-images: {key}: none of {candidates} in {layout}", file=sys.stderr)
        continue
    ref = f"oci:{layout}:{tag}"
    if key in layers and layers[key] != ref and not force:
        print(f"use-local-images: {key}: keeping {layers[key]} (--force replaces it)")
        continue
    layers[key] = ref
    print(f"{key} = {ref}")
tmp = config + ".tmp"
with open(tmp, "w") as f:
    json.dump(doc, f, indent=2, sort_keys=True)
    f.write("\n")
os.replace(tmp, config)
print(f"use-local-images: wrote {config}")
PY
