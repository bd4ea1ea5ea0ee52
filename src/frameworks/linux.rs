//! Single-application Linux guests: initrd, ext4 block or the container rootfs.

use std::fs;
use std::path::Path;

use super::{
    AppInfo, AppPackage, Framework, FrameworkError, LayerDep, PackInputs, StepInput, StepSpec,
    Support,
};
use crate::layers::tree::Tree;
use crate::oci::annotations::KERNEL_PATH;
use crate::platform::{Arch, BlockFs, Monitor, RootfsType};

/// Debian bookworm with gcc, make and libc6-dev (`scripts/toolchain-image.sh`).
pub const TOOLCHAIN: &str = "bunny/linux-toolchain:gcc-bookworm";
/// Debian bookworm's kernel at `/.boot/kernel`, its virtio modules in
/// `/lib/modules` (`scripts/toolchain-image.sh`).
pub const KERNEL: &str = "bunny/linux-kernel:bookworm";
/// Firecracker boots an uncompressed ELF `vmlinux`, not qemu's bzImage.
pub const KERNEL_FIRECRACKER: &str = "bunny/linux-kernel-firecracker:bookworm";
/// The busybox the init runs on (Debian's busybox-static on the host).
pub const BUSYBOX: &str = "/bin/busybox";

/// The app's Makefile is run in a copy of the sources (`/src` is read-only);
/// `CC`, `CFLAGS` and `LDFLAGS` come from the environment, so a Makefile that
/// sets its own wins, and one that does not links statically. The binary it
/// builds must be named after `app.name`.
const BUILD_SCRIPT: &str = r#"set -e
rm -rf /tmp/build
cp -a /src/. /tmp/build
cd /tmp/build
make
test -f "$APP" || { echo "make built no \`$APP\` (app.name) in the source directory" >&2; exit 1; }
install -m 0755 "$APP" "/out/$APP"
"#;

pub struct Linux;

impl Framework for Linux {
    fn name(&self) -> &str {
        "linux"
    }
    fn unikernel_type(&self) -> &str {
        "linux"
    }
    fn support(&self) -> Support {
        Support {
            monitors: &[
                Monitor::Qemu,
                Monitor::Firecracker,
                Monitor::CloudHypervisor,
            ],
            architectures: &[Arch::Amd64, Arch::Arm64],
            rootfs_types: &[RootfsType::Initrd, RootfsType::Block, RootfsType::Raw],
        }
    }
    fn app_rootfs_type(&self) -> RootfsType {
        RootfsType::Initrd
    }
    fn block_fs(&self) -> BlockFs {
        BlockFs::Ext4
    }
    fn block_mount_point(&self) -> &str {
        "/"
    }

    fn layers(&self) -> &'static [LayerDep] {
        &[
            LayerDep {
                name: "toolchain",
                reference: TOOLCHAIN,
            },
            LayerDep {
                name: "kernel",
                reference: KERNEL,
            },
        ]
    }

    fn kernel_layer(&self, monitor: Monitor) -> Option<LayerDep> {
        Some(match monitor {
            Monitor::Firecracker => LayerDep {
                name: "kernel-firecracker",
                reference: KERNEL_FIRECRACKER,
            },
            _ => LayerDep {
                name: "kernel",
                reference: KERNEL,
            },
        })
    }

    fn app_steps(&self, app: &AppInfo) -> Result<Vec<StepSpec>, FrameworkError> {
        Ok(vec![StepSpec {
            name: format!("make {}", app.name),
            image: "toolchain",
            input: StepInput::Source,
            command: vec!["sh".into(), "-c".into(), BUILD_SCRIPT.into()],
            env: vec![
                format!("APP={}", app.name),
                "CC=gcc".into(),
                "CFLAGS=-static -O2".into(),
                "LDFLAGS=-static".into(),
            ],
            workdir: "/src".into(),
            network: false,
        }])
    }

    /// An initrd: busybox, the kernel's virtio modules, the app at
    /// `/bin/NAME` and an `/init` that sets up the guest and runs it.
    fn package_app(&self, inputs: &PackInputs) -> Result<AppPackage, FrameworkError> {
        let name = &inputs.app.name;
        let binary = inputs.output.join(name);
        if !binary.is_file() {
            return Err(FrameworkError::Missing {
                what: "the built app",
                path: binary,
                hint: "the build step must leave /out/NAME",
            });
        }
        let kernel_root = (inputs.layer)("kernel")?;
        let kernel = kernel_root.join(KERNEL_PATH.trim_start_matches('/'));
        if !kernel.is_file() {
            return Err(FrameworkError::Missing {
                what: "the kernel in the kernel layer",
                path: kernel,
                hint: "a linux kernel image holds the kernel at /.boot/kernel",
            });
        }
        let busybox = Path::new(BUSYBOX);
        if !busybox.is_file() {
            return Err(FrameworkError::Missing {
                what: "busybox for the init",
                path: busybox.to_path_buf(),
                hint: "apt-get install busybox-static",
            });
        }
        let init = inputs.scratch.join("init");
        fs::write(&init, init_script(name)).map_err(|source| FrameworkError::Io {
            context: format!("writing {}", init.display()),
            source,
        })?;

        let mut tree = Tree::new();
        tree.insert_dir("/bin", 0o755)?;
        tree.insert_file("/bin/busybox", busybox, 0o755)?;
        tree.insert_file(&format!("/bin/{name}"), &binary, 0o755)?;
        tree.insert_file("/init", &init, 0o755)?;
        let modules = kernel_root.join("lib/modules");
        if modules.is_dir() {
            tree.insert_dir("/lib", 0o755)?;
            tree.insert_dir("/lib/modules", 0o755)?;
            let mut names: Vec<_> = fs::read_dir(&modules)
                .and_then(|rd| {
                    rd.map(|e| e.map(|e| e.file_name()))
                        .collect::<Result<_, _>>()
                })
                .map_err(|source| FrameworkError::Io {
                    context: format!("reading {}", modules.display()),
                    source,
                })?;
            names.sort();
            for m in names {
                let m = m.to_string_lossy().into_owned();
                if m.ends_with(".ko") {
                    tree.insert_file(&format!("/lib/modules/{m}"), &modules.join(&m), 0o644)?;
                }
            }
        }
        Ok(AppPackage {
            kernel,
            rootfs: tree,
            packages: Vec::new(),
        })
    }
}

/// The guest's init: pseudo filesystems, virtio modules, `lo` and the
/// interface the kernel's `ip=` names (urunc's IP::GW:MASK:HOST:IFACE:off),
/// then the app with the init's arguments; the guest powers off when it exits.
fn init_script(app: &str) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
         failover net_failover virtio_net virtio_blk; do
  [ -f "/lib/modules/$m.ko" ] && insmod "/lib/modules/$m.ko" 2>/dev/null
done
ifconfig lo 127.0.0.1 up
for a in $(cat /proc/cmdline); do
  case "$a" in ip=*)
    ip="${{a#ip=}}"
    addr=$(echo "$ip" | cut -d: -f1); gw=$(echo "$ip" | cut -d: -f3)
    mask=$(echo "$ip" | cut -d: -f4); dev=$(echo "$ip" | cut -d: -f6)
    ifconfig "${{dev:-eth0}}" "$addr" netmask "$mask" up
    [ -n "$gw" ] && route add default gw "$gw" ;;
  esac
done
echo "bunny-init: starting {app}"
/bin/{app} "$@"
echo "bunny-init: {app} exited with status $?"
poweroff -f
"#
    )
}
