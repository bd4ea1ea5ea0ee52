//! Single-application Linux guests: initrd, ext4 block or the container rootfs.

use std::fs;
use std::path::Path;

use super::{
    AppInfo, AppPackage, Framework, FrameworkError, LayerDep, PackInputs, StepInput, StepSpec,
    Support, KERNEL_LAYER,
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
                name: KERNEL_LAYER,
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
                name: KERNEL_LAYER,
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
            mounts: Vec::new(),
        }])
    }

    fn app_program(&self, app_name: &str) -> Option<String> {
        Some(format!("/bin/{app_name}"))
    }

    /// The app at `/bin/NAME`, the libraries it loads (taken from the
    /// toolchain it was built in) and the kernel's modules; the pipeline adds
    /// bunny-init as `/urunit`. With `app.shell`, busybox and a shell `/init`
    /// that sets up the guest and runs the app instead.
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
        // A kernel built from sources brings no modules (bunny's minimal
        // one has its drivers built in); the layer's belong to its kernel.
        let (kernel, modules) = match inputs.kernel {
            Some(built) => (built.to_path_buf(), None),
            None => {
                let root = (inputs.layer)(KERNEL_LAYER)?;
                let kernel = root.join(KERNEL_PATH.trim_start_matches('/'));
                if !kernel.is_file() {
                    return Err(FrameworkError::Missing {
                        what: "the kernel in the kernel layer",
                        path: kernel,
                        hint: "a linux kernel image holds the kernel at /.boot/kernel",
                    });
                }
                (kernel, Some(root.join("lib/modules")))
            }
        };
        let mut tree = Tree::new();
        tree.insert_dir("/bin", 0o755)?;
        let program = format!("/bin/{name}");
        tree.insert_file(&program, &binary, 0o755)?;
        if inputs.app.shell {
            add_shell(&mut tree, name, inputs.scratch)?;
        } else {
            let toolchain = (inputs.layer)("toolchain")?;
            let arch = inputs.app.architecture;
            for (guest, host) in libraries(&program, &binary, &toolchain, arch, inputs.scratch)? {
                tree.insert_file(&guest, &host, 0o755)?;
            }
        }
        if let Some(modules) = modules.filter(|m| m.is_dir()) {
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

/// glibc's loader searches its multiarch directories, then the classic ones.
fn library_dirs(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::Arm64 => &[
            "/lib/aarch64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/lib",
            "/usr/lib",
        ],
        _ => &[
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
            "/lib64",
            "/usr/lib64",
            "/lib",
            "/usr/lib",
        ],
    }
}

/// The loader and libraries a dynamically linked app needs, found in the
/// toolchain image it was built in (the libraries it linked against):
/// guest path -> host file. A static app needs none.
fn libraries(
    program: &str,
    binary: &Path,
    toolchain: &Path,
    arch: Arch,
    scratch: &Path,
) -> Result<Vec<(String, std::path::PathBuf)>, FrameworkError> {
    // The walk looks for the app's own files under a root of their own.
    let app_root = scratch.join("app-root");
    let staged = app_root.join(program.trim_start_matches('/'));
    let io = |context: String| move |source| FrameworkError::Io { context, source };
    if let Some(dir) = staged.parent() {
        fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    }
    fs::copy(binary, &staged).map_err(io(format!("copying {}", binary.display())))?;
    let found = super::freebsd::elf::needed_from(
        &[program.to_string()],
        &app_root,
        toolchain,
        library_dirs(arch),
    )
    .map_err(|e| match e {
        super::freebsd::FreeBsdError::MissingBase { file, needed_by } => {
            FrameworkError::Build(format!(
                "`{file}`{} is not in the toolchain image the app was built in; link the app statically (the default CFLAGS do) or build it where that library is",
                needed_by.map(|n| format!(", needed by `{n}`,")).unwrap_or_default()
            ))
        }
        other => other.into(),
    })?;
    Ok(found.into_iter().collect())
}

/// busybox and a shell `/init` (`app.shell`).
fn add_shell(tree: &mut Tree, name: &str, scratch: &Path) -> Result<(), FrameworkError> {
    let busybox = Path::new(BUSYBOX);
    if !busybox.is_file() {
        return Err(FrameworkError::Missing {
            what: "busybox for the init",
            path: busybox.to_path_buf(),
            hint: "apt-get install busybox-static",
        });
    }
    let init = scratch.join("init");
    fs::write(&init, init_script(name)).map_err(|source| FrameworkError::Io {
        context: format!("writing {}", init.display()),
        source,
    })?;
    tree.insert_file("/bin/busybox", busybox, 0o755)?;
    tree.insert_file("/init", &init, 0o755)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The host is Debian, as the toolchain image is: its own dynamically
    /// linked programs and libraries are a real toolchain root.
    #[test]
    fn a_dynamic_app_takes_its_loader_and_libraries_from_the_toolchain() {
        let scratch = tempfile::tempdir().unwrap();
        let host_ls = Path::new("/usr/bin/ls");
        let found = libraries(
            "/bin/app",
            host_ls,
            Path::new("/"),
            Arch::Amd64,
            scratch.path(),
        )
        .unwrap();
        let guests: Vec<&str> = found.iter().map(|(g, _)| g.as_str()).collect();
        assert!(
            guests.contains(&"/lib64/ld-linux-x86-64.so.2"),
            "the loader PT_INTERP names: {guests:?}"
        );
        assert!(
            guests.contains(&"/lib/x86_64-linux-gnu/libc.so.6"),
            "libc, found in the multiarch directory: {guests:?}"
        );
        for (_, host) in &found {
            assert!(host.is_file(), "{} is a file", host.display());
        }
        // A static program (Debian's busybox-static) needs nothing.
        let none = libraries(
            "/bin/app",
            Path::new(BUSYBOX),
            Path::new("/"),
            Arch::Amd64,
            scratch.path(),
        )
        .unwrap();
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn a_library_the_toolchain_lacks_is_named() {
        let scratch = tempfile::tempdir().unwrap();
        let empty = tempfile::tempdir().unwrap();
        let err = libraries(
            "/bin/app",
            Path::new("/usr/bin/ls"),
            empty.path(),
            Arch::Amd64,
            scratch.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not in the toolchain image"), "{err}");
        assert!(err.contains("link the app statically"), "{err}");
    }
}
