#!/usr/bin/env bash
# Puts the parts hello-linux packages into its build context: the Debian kernel,
# busybox-static and the virtio modules. They are not checked in (they come
# from Debian's packages); scripts/setup.sh calls this.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kdir="${1:-$here/../../target/linux-kernel}"
[[ -s "$kdir/vmlinuz" ]] || { echo "prepare: no kernel at $kdir/vmlinuz; run scripts/setup.sh" >&2; exit 1; }
[[ -x /bin/busybox ]] || { echo "prepare: /bin/busybox missing; apt-get install busybox-static" >&2; exit 1; }
mkdir -p "$here/rootfs/bin" "$here/rootfs/lib/modules"
cp -f "$kdir/vmlinuz" "$here/vmlinuz"
cp -f /bin/busybox "$here/rootfs/bin/busybox"
cp -f "$kdir"/modules/*.ko "$here/rootfs/lib/modules/"
