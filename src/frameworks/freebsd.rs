//! FreeBSD single-application kernels booted by PVH: a UFS2 root disk, never
//! an initrd (urunc's FreeBSD contract).
//!
//! An `app` is made of binary packages from FreeBSD's package repository
//! ([`repo`]): bunny reads the catalogue, resolves dependencies, downloads
//! each `.pkg` into the store (checked against the catalogue's sha256) and
//! unpacks it ([`archive`]). The libraries the programs need come from the
//! `freebsd.base` layer (FreeBSD's `base.txz`, or its files), and only those
//! the ELF files ask for ([`elf`]). The kernel is the `freebsd.kernel`
//! layer's `/.boot/kernel`, a PVH-bootable kernel (the FIRECRACKER config).
//!
//! An app from local sources is a program already built for FreeBSD
//! (`language: binary`), or is compiled here in a build container:
//! `language: c` runs the sources' Makefile with clang cross-compiling for
//! FreeBSD (`freebsd.toolchain`) against the base layer as its sysroot,
//! mounted read-only at `/sysroot`; `language: go` runs `GOOS=freebsd go
//! build` (`freebsd.go-toolchain`). Either way the program is then packed as
//! a `binary` one.
//!
//! The guest boots with `init_path=/sbin/urunit`, bunny's FreeBSD stand-in
//! for urunc's urunit: a shell script that hands over to FreeBSD's own
//! `/sbin/init`, whose `/etc/rc` (generated here) reads urunit's config disk
//! (named by the `URUNIT_CONFIG` kernel environment variable) for the
//! environment, the arguments and the network, configures `vtnet0`, runs the
//! app and powers the guest off when it exits. Being named `urunit` is what
//! makes urunc (and bunny's runtime) pass that config disk.

pub mod archive;
pub mod elf;
pub mod repo;

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::{
    AppInfo, AppPackage, Framework, FrameworkError, LayerDep, LayerMount, PackInputs, StepInput,
    StepSpec, Support, KERNEL_LAYER,
};
use crate::layers::error::LayerError;
use crate::layers::store::{Store, StoreError};
use crate::layers::tree::Tree;
use crate::oci::annotations::KERNEL_PATH;
use crate::platform::{Arch, BlockFs, Monitor, RootfsType};

/// Directories every FreeBSD root needs, whatever built it: the kernel
/// mounts devfs on `/dev` before it starts init (without it init has no
/// `/dev/console`, so no console), and `/tmp` and `/var` are where base
/// programs write.
const ROOT_DIRS: [(&str, u32); 3] = [("/dev", 0o555), ("/tmp", 0o1777), ("/var", 0o755)];

/// FreeBSD 14.3's kernel distribution file (the GENERIC config, at
/// `/boot/kernel/kernel`), checked against the release's MANIFEST on the
/// first build and pinned in `bunny.lock` after it.
pub const KERNEL: &str = "https://download.freebsd.org/releases/amd64/14.3-RELEASE/kernel.txz";
/// FreeBSD 14.3's base system distribution file, pinned the same way.
pub const BASE: &str = "https://download.freebsd.org/releases/amd64/14.3-RELEASE/base.txz";
/// Where a kernel layer may hold the kernel: bunny's own images put it at
/// the annotation's path, FreeBSD's `kernel.txz` and `installkernel` at
/// `/boot/kernel/kernel`.
pub const KERNEL_PATHS: &[&str] = &[KERNEL_PATH, "/boot/kernel/kernel"];
pub const DEFAULT_ABI: &str = "FreeBSD:14:amd64";
/// `${ABI}` is replaced by the repository's ABI.
pub const DEFAULT_REPOSITORY: &str = "https://pkg.freebsd.org/${ABI}/quarterly";
/// Where a base layer may carry FreeBSD's base archive.
pub const BASE_ARCHIVE: &str = "base.txz";
/// The init bunny installs, named so that runtimes pass urunit's config.
pub const URUNIT: &str = "/sbin/urunit";
/// `app.language` for a program already built for FreeBSD.
pub const LANGUAGE_BINARY: &str = "binary";
/// Debian bookworm with clang-14, lld-14 and make
/// (`scripts/toolchain-image.sh`): cross-compiles C for FreeBSD.
pub const TOOLCHAIN: &str = "bunny/freebsd-toolchain:clang-bookworm";
/// Debian bookworm with golang-go (`scripts/toolchain-image.sh`).
pub const GO_TOOLCHAIN: &str = "bunny/freebsd-go:go-bookworm";
/// Where a C build step sees the base layer.
pub const SYSROOT: &str = "/sysroot";

/// `language: c`: the Makefile runs in a copy of the sources (`/src` is
/// read-only) with `CC` from the environment (a Makefile that sets its own
/// wins); the program it builds must be named after `app.name`.
const C_BUILD_SCRIPT: &str = r#"set -e
rm -rf /tmp/build
cp -a /src/. /tmp/build
cd /tmp/build
echo "+ make CC='$CC'"
make
test -f "$APP" || { echo "make built no \`$APP\` (app.name) in the source directory" >&2; exit 1; }
install -m 0755 "$APP" "/out/$APP"
"#;

/// `language: go`: the package in the sources' top directory, without the
/// network (vendored modules, else the standard library alone) and without
/// anything that changes from build to build (paths, build id, VCS stamp).
const GO_BUILD_SCRIPT: &str = r#"set -e
rm -rf /tmp/build
cp -a /src/. /tmp/build
cd /tmp/build
if [ ! -f go.mod ]; then
  export GO111MODULE=off
elif [ -d vendor ]; then
  export GOFLAGS=-mod=vendor
fi
echo "+ go build -trimpath -buildvcs=false -ldflags=-buildid= -o /out/$APP ."
go build -trimpath -buildvcs=false -ldflags=-buildid= -o "/out/$APP" .
"#;

/// What the guest's init needs from the base system, besides libraries.
pub const BASE_PROGRAMS: &[&str] = &[
    "/libexec/ld-elf.so.1",
    "/sbin/init",
    "/bin/sh",
    "/bin/kenv",
    "/bin/dd",
    "/sbin/mount",
    "/sbin/ifconfig",
    "/sbin/route",
    "/sbin/reboot",
];
/// What `/etc/rc` uses to mount volumes, taken when the base has them (a
/// root without them runs as before; its volumes need an existing mount
/// point and are not checked first).
pub const VOLUME_PROGRAMS: &[&str] = &["/bin/mkdir", "/sbin/fsck_ufs", "/usr/sbin/diskinfo"];
/// Where the app's program is looked for, first match wins.
const PROGRAM_DIRS: &[&str] = &[
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/bin",
    "/sbin",
];

#[derive(Debug, Error)]
pub enum FreeBsdError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("catalogue {url} line {line}: {message}")]
    Catalogue {
        url: String,
        line: usize,
        message: String,
    },
    #[error("package `{name}`{} is not in the repository's catalogue ({url})", needed_by.as_ref().map(|n| format!(", needed by `{n}`,")).unwrap_or_default())]
    MissingPackage {
        name: String,
        needed_by: Option<String>,
        url: String,
    },
    #[error(
        "package `{name}` version {wanted} is not in the catalogue ({url}); it has {available}"
    )]
    Version {
        name: String,
        wanted: String,
        available: String,
        url: String,
    },
    #[error("package `{name}` {version} from {url} is corrupted: its sha256 is {actual}, the catalogue says {expected}; refusing it")]
    Checksum {
        name: String,
        version: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{archive}: entry `{entry}` refused: {why}")]
    Escape {
        archive: String,
        entry: String,
        why: &'static str,
    },
    #[error("{archive}: entry `{entry}`: {source}")]
    Entry {
        archive: String,
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("{file}: not a readable ELF file: {message}")]
    Elf { file: String, message: String },
    #[error("`{file}`{} is in neither the packages nor the base layer", needed_by.as_ref().map(|n| format!(", needed by `{n}`,")).unwrap_or_default())]
    MissingBase {
        file: String,
        needed_by: Option<String>,
    },
    #[error("{context}: {source}")]
    Store {
        context: String,
        #[source]
        source: StoreError,
    },
}

impl FreeBsdError {
    pub(crate) fn io(context: &str, source: io::Error) -> FreeBsdError {
        FreeBsdError::Io {
            context: context.to_string(),
            source,
        }
    }
    pub(crate) fn store(context: &str) -> impl FnOnce(StoreError) -> FreeBsdError {
        let context = context.to_string();
        move |source| FreeBsdError::Store { context, source }
    }
}

impl From<FreeBsdError> for FrameworkError {
    fn from(e: FreeBsdError) -> FrameworkError {
        FrameworkError::Build(e.to_string())
    }
}

pub struct FreeBsd;

impl Framework for FreeBsd {
    fn name(&self) -> &str {
        "freebsd"
    }
    fn unikernel_type(&self) -> &str {
        "freebsd"
    }
    fn support(&self) -> Support {
        Support {
            monitors: &[Monitor::Qemu, Monitor::Firecracker],
            architectures: &[Arch::Amd64, Arch::Arm64],
            rootfs_types: &[RootfsType::Block, RootfsType::Raw],
        }
    }
    fn app_rootfs_type(&self) -> RootfsType {
        RootfsType::Block
    }
    fn block_fs(&self) -> BlockFs {
        BlockFs::Ufs2
    }
    fn block_mount_point(&self) -> &str {
        "/"
    }

    fn layers(&self) -> &'static [LayerDep] {
        &[
            LayerDep {
                name: KERNEL_LAYER,
                reference: KERNEL,
            },
            LayerDep {
                name: "base",
                reference: BASE,
            },
            LayerDep {
                name: "toolchain",
                reference: TOOLCHAIN,
            },
            LayerDep {
                name: "go-toolchain",
                reference: GO_TOOLCHAIN,
            },
        ]
    }

    /// Packing needs the kernel and the base; a build toolchain only when a
    /// step runs in it, so a packages-only or `binary` app never needs one.
    fn app_layers(&self, _app: &AppInfo, steps: &[StepSpec]) -> Vec<&'static str> {
        let mut names = vec!["kernel", "base"];
        for step in steps {
            for name in std::iter::once(step.image).chain(step.mounts.iter().map(|m| m.layer)) {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// The base layer as a sysroot: its `base.txz` unpacked (the same cache
    /// packing reads the base's libraries from).
    fn mount_dir(
        &self,
        layer: &str,
        files: &Path,
        store: &Store,
        progress: &dyn crate::pipeline::Progress,
    ) -> Result<PathBuf, FrameworkError> {
        match layer {
            "base" => base_dir(files, store, progress, "sysroot"),
            _ => Ok(files.to_path_buf()),
        }
    }

    /// Packages need no build steps: they are fetched when packing. A
    /// `binary` app is a program already built for FreeBSD, packed as it
    /// is; `c` and `go` apps are compiled first (see the module's docs).
    fn app_steps(&self, app: &AppInfo) -> Result<Vec<StepSpec>, FrameworkError> {
        if !app.packages.is_empty() {
            return Ok(Vec::new());
        }
        let language = app.language.as_deref();
        if matches!(language, Some("c" | "go")) && app.architecture != Arch::Amd64 {
            return Err(FrameworkError::Unsupported {
                framework: "freebsd".into(),
                what: "compile an `app` for an architecture other than x86_64 (cross-build it and write `language: binary`)",
            });
        }
        match language {
            None | Some(LANGUAGE_BINARY) => Ok(Vec::new()),
            Some("c") => {
                let target = format!("x86_64-unknown-freebsd{}", freebsd_major(app));
                Ok(vec![StepSpec {
                    name: format!("make {}", app.name),
                    image: "toolchain",
                    input: StepInput::Source,
                    command: vec!["sh".into(), "-c".into(), C_BUILD_SCRIPT.into()],
                    env: vec![
                        format!("APP={}", app.name),
                        format!("CC=clang --target={target} --sysroot={SYSROOT} -fuse-ld=lld"),
                        "CFLAGS=-O2".into(),
                        "SOURCE_DATE_EPOCH=0".into(),
                    ],
                    workdir: "/src".into(),
                    network: false,
                    mounts: vec![LayerMount {
                        layer: "base",
                        target: SYSROOT.into(),
                    }],
                }])
            }
            Some("go") => Ok(vec![StepSpec {
                name: format!("go build {}", app.name),
                image: "go-toolchain",
                input: StepInput::Source,
                command: vec!["sh".into(), "-c".into(), GO_BUILD_SCRIPT.into()],
                env: vec![
                    format!("APP={}", app.name),
                    "CGO_ENABLED=0".into(),
                    "GOOS=freebsd".into(),
                    "GOARCH=amd64".into(),
                    "GOPROXY=off".into(),
                    "GOTOOLCHAIN=local".into(),
                    "HOME=/tmp".into(),
                    "GOCACHE=/tmp/go-cache".into(),
                    "GOPATH=/tmp/go".into(),
                ],
                workdir: "/src".into(),
                network: false,
                mounts: Vec::new(),
            }]),
            Some("rust") => Err(FrameworkError::Build(
                "a Rust `app` is not compiled for FreeBSD: no Rust standard library for FreeBSD can be had to build with. Cross-build it with `cargo build --release --target x86_64-unknown-freebsd` where that target is installed, put the program in the sources named after `app.name` and write `language: binary`".into(),
            )),
            Some(_) => Err(FrameworkError::Unsupported {
                framework: "freebsd".into(),
                what: "build an `app` in this language (it compiles `c` and `go`; write `language: binary` for a program already built for FreeBSD, or list `packages`)",
            }),
        }
    }

    fn complete_block_root(&self, tree: &mut Tree) -> Result<(), LayerError> {
        for (dir, mode) in ROOT_DIRS {
            if tree.get(dir).is_none() {
                tree.insert_dir(dir, mode)?;
            }
        }
        Ok(())
    }

    fn package_app(&self, inputs: &PackInputs) -> Result<AppPackage, FrameworkError> {
        let kernel = kernel(inputs)?;
        // The same test the runtime makes: firecracker has virtio-mmio only.
        if inputs.app.monitor == Some(Monitor::Firecracker)
            && bunny_runtime::freebsd_bus(&kernel) == bunny_runtime::FreeBsdBus::Pci
        {
            return Err(FrameworkError::Build(format!(
                "the kernel {} has no virtio-mmio driver (a GENERIC-like config) and firecracker has no PCI: target qemu, or use a FIRECRACKER-config kernel",
                kernel.display()
            )));
        }
        let base = base_tree(inputs)?;
        let app_root = inputs.scratch.join("packages");
        fs::create_dir_all(&app_root).map_err(|source| FrameworkError::Io {
            context: format!("creating {}", app_root.display()),
            source,
        })?;
        let (program, packages) = if inputs.app.packages.is_empty() {
            (install_binary(inputs, &app_root)?, Vec::new())
        } else {
            let packages = install_packages(inputs, &app_root)?;
            (find_program(&app_root, &inputs.app.name)?, packages)
        };
        Ok(AppPackage {
            kernel,
            rootfs: rootfs(&app_root, &base, &program, inputs.scratch)?,
            packages,
        })
    }
}

/// The repository URL with the ABI filled in.
pub fn repository_url(app: &AppInfo) -> String {
    let repo = app.repository.as_ref();
    let abi = repo
        .and_then(|r| r.abi.as_ref())
        .map(|a| a.value.as_str())
        .unwrap_or(DEFAULT_ABI);
    repo.and_then(|r| r.url.as_ref())
        .map(|u| u.value.as_str())
        .unwrap_or(DEFAULT_REPOSITORY)
        .replace("${ABI}", abi)
}

fn kernel(inputs: &PackInputs) -> Result<PathBuf, FrameworkError> {
    if let Some(built) = inputs.kernel {
        return Ok(built.to_path_buf());
    }
    let root = (inputs.layer)(KERNEL_LAYER)?;
    if let Some(kernel) = KERNEL_PATHS
        .iter()
        .map(|p| root.join(p.trim_start_matches('/')))
        .find(|k| k.is_file())
    {
        return Ok(kernel);
    }
    if root.join("usr/src/tools/build/make.py").is_file() {
        return Err(FrameworkError::Unsupported {
            framework: "freebsd".into(),
            what: "take FreeBSD's sources as the kernel layer (build them with the BunnyFile's `kernel: {from: source, source: SRC, config: {base: FIRECRACKER}}`, or name a prebuilt kernel layer: --toolchain freebsd.kernel=REF)",
        });
    }
    Err(FrameworkError::Missing {
        what: "the kernel in the freebsd.kernel layer",
        path: root.join("boot/kernel/kernel"),
        hint: "a freebsd kernel layer is FreeBSD's kernel.txz (the kernel at /boot/kernel/kernel) or an image with the kernel at /.boot/kernel",
    })
}

/// The FreeBSD major version apps are built for: the repository ABI's
/// (`FreeBSD:14:amd64`), else the default one's.
pub fn freebsd_major(app: &AppInfo) -> u32 {
    let major = |abi: &str| -> Option<u32> {
        let mut parts = abi.split(':');
        (parts.next() == Some("FreeBSD"))
            .then(|| parts.next()?.parse().ok())
            .flatten()
    };
    app.repository
        .as_ref()
        .and_then(|r| r.abi.as_ref())
        .and_then(|a| major(&a.value))
        .or_else(|| major(DEFAULT_ABI))
        .unwrap_or(14)
}

/// The base system's files: the layer itself, or its `base.txz` unpacked
/// once into the store (keyed by the archive's sha256).
fn base_tree(inputs: &PackInputs) -> Result<PathBuf, FrameworkError> {
    let layer = (inputs.layer)("base")?;
    base_dir(&layer, inputs.store, inputs.progress, "pack app")
}

/// [`base_tree`] for a base layer whose files are at `layer`; `step` names
/// who asked, in the progress log.
fn base_dir(
    layer: &Path,
    store: &Store,
    progress: &dyn crate::pipeline::Progress,
    step: &str,
) -> Result<PathBuf, FrameworkError> {
    let archive_path = layer.join(BASE_ARCHIVE);
    if !archive_path.is_file() {
        return Ok(layer.to_path_buf());
    }
    let what = format!("the base layer's /{BASE_ARCHIVE}");
    let mut file = File::open(&archive_path).map_err(|e| FreeBsdError::io(&what, e))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(|e| FreeBsdError::io(&what, e))?;
    let hex = hex::encode(hasher.finalize());
    let cache = store.root().join("freebsd-base");
    let done = cache.join(&hex);
    if done.is_dir() {
        return Ok(done);
    }
    fs::create_dir_all(&cache)
        .map_err(|e| FreeBsdError::io(&format!("creating {}", cache.display()), e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(&cache)
        .map_err(|e| {
            FreeBsdError::io(&format!("creating a directory in {}", cache.display()), e)
        })?;
    progress.log(step, &format!("unpacking {what} ({hex})"));
    let file = File::open(&archive_path).map_err(|e| FreeBsdError::io(&what, e))?;
    archive::unpack(file, tmp.path(), &what)?;
    let staged = tmp.keep();
    if let Err(e) = fs::rename(&staged, &done) {
        // Another build may have unpacked the same base meanwhile.
        let _ = fs::remove_dir_all(&staged);
        if !done.is_dir() {
            return Err(FreeBsdError::io(&format!("renaming into {}", done.display()), e).into());
        }
    }
    Ok(done)
}

/// Puts the program the sources hold (named after the app) at
/// `/usr/local/bin/NAME` under `root`, once it is known to be a FreeBSD ELF
/// program; returns its guest path.
fn install_binary(inputs: &PackInputs, root: &Path) -> Result<String, FrameworkError> {
    let name = &inputs.app.name;
    let source = inputs.output.join(name);
    if name.contains('/') || !source.is_file() {
        return Err(FrameworkError::Missing {
            what: "the app's FreeBSD program in its sources",
            path: source,
            hint: "a freebsd `app` from sources is a program already built for FreeBSD, named after `app.name`",
        });
    }
    let bytes = fs::read(&source)
        .map_err(|e| FreeBsdError::io(&format!("reading {}", source.display()), e))?;
    check_freebsd_elf(name, &bytes)?;
    let guest = format!("/usr/local/bin/{name}");
    let host = root.join(guest.trim_start_matches('/'));
    if let Some(dir) = host.parent() {
        fs::create_dir_all(dir)
            .map_err(|e| FreeBsdError::io(&format!("creating {}", dir.display()), e))?;
    }
    fs::write(&host, &bytes)
        .map_err(|e| FreeBsdError::io(&format!("writing {}", host.display()), e))?;
    fs::set_permissions(&host, fs::Permissions::from_mode(0o755))
        .map_err(|e| FreeBsdError::io(&format!("chmod {}", host.display()), e))?;
    Ok(guest)
}

/// `ELFOSABI_FREEBSD`: what FreeBSD's toolchains (and Go's linker for
/// `GOOS=freebsd`) write in `e_ident[EI_OSABI]`.
const ELFOSABI_FREEBSD: u8 = 9;

/// A program FreeBSD's kernel runs: an ELF executable marked for FreeBSD,
/// by its OSABI byte or by the `FreeBSD` ABI note its crt1 carries.
pub fn check_freebsd_elf(name: &str, bytes: &[u8]) -> Result<(), FrameworkError> {
    let refuse = |why: String| {
        Err(FrameworkError::Build(format!(
            "`{name}` in the sources {why}; a freebsd app from sources is a program built for FreeBSD (GOOS=freebsd, --target x86_64-unknown-freebsd)"
        )))
    };
    if !bytes.starts_with(b"\x7fELF") {
        return refuse("is not an ELF program".into());
    }
    let elf = match goblin::elf::Elf::parse(bytes) {
        Ok(e) => e,
        Err(e) => return refuse(format!("is not a readable ELF file ({e})")),
    };
    if elf.header.e_type != goblin::elf::header::ET_EXEC
        && elf.header.e_type != goblin::elf::header::ET_DYN
    {
        return refuse("is not an executable".into());
    }
    if elf.header.e_machine != goblin::elf::header::EM_X86_64 {
        return refuse(format!(
            "is built for machine {}, not x86_64",
            elf.header.e_machine
        ));
    }
    let osabi = elf.header.e_ident[goblin::elf::header::EI_OSABI];
    let noted = elf
        .iter_note_headers(bytes)
        .into_iter()
        .flatten()
        .flatten()
        .any(|n| n.name == "FreeBSD");
    if osabi != ELFOSABI_FREEBSD && !noted {
        return refuse(format!(
            "is not built for FreeBSD (ELF OSABI {osabi}, no FreeBSD ABI note: a Linux program?)"
        ));
    }
    Ok(())
}

/// Fetches the app's packages and their dependencies and unpacks them all
/// into `root`; returns what was installed.
fn install_packages(
    inputs: &PackInputs,
    root: &Path,
) -> Result<Vec<super::InstalledPackage>, FreeBsdError> {
    let url = repository_url(inputs.app);
    let fetcher = repo::Fetcher::new()?;
    inputs
        .progress
        .log("pack app", &format!("reading the catalogue of {url}"));
    let catalogue = repo::fetch_catalogue(&fetcher, inputs.store, &url)?;
    let wanted = catalogue.resolve(&inputs.app.packages)?;
    let mut installed = Vec::new();
    for entry in wanted {
        installed.push(super::InstalledPackage {
            name: entry.name.clone(),
            version: entry.version.clone(),
            sha256: entry.sum.clone(),
            url: format!("{}/{}", url.trim_end_matches('/'), entry.path),
        });
        let file = repo::fetch_package(&fetcher, inputs.store, &url, entry)?;
        let what = format!("package {}-{}", entry.name, entry.version);
        let f = File::open(&file).map_err(|e| FreeBsdError::io(&what, e))?;
        let n = archive::unpack(f, root, &what)?;
        inputs.progress.log(
            "pack app",
            &format!("{what}: {n} files (sha256 {})", entry.sum),
        );
    }
    Ok(installed)
}

fn find_program(root: &Path, name: &str) -> Result<String, FrameworkError> {
    if name.contains('/') {
        return elf::resolve_in_root(root, name)
            .map(|_| name.to_string())
            .ok_or_else(|| FrameworkError::Missing {
                what: "the app's program in its packages",
                path: PathBuf::from(name),
                hint: "app.name is a program the packages install",
            });
    }
    PROGRAM_DIRS
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| elf::resolve_in_root(root, p).is_some())
        .ok_or_else(|| FrameworkError::Missing {
            what: "the app's program in its packages",
            path: PathBuf::from(format!("/usr/local/bin/{name}")),
            hint: "app.name names a program the packages install in a bin or sbin directory",
        })
}

/// Every path below `root`, sorted, without following symlinks.
fn walk(root: &Path) -> Result<Vec<(String, PathBuf, fs::Metadata)>, FreeBsdError> {
    let mut out = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, guest)) = pending.pop() {
        let mut names: Vec<_> = fs::read_dir(&dir)
            .and_then(|rd| {
                rd.map(|e| e.map(|e| e.file_name()))
                    .collect::<Result<_, _>>()
            })
            .map_err(|e| FreeBsdError::io(&format!("listing {}", dir.display()), e))?;
        names.sort();
        for name in names.into_iter().rev() {
            let host = dir.join(&name);
            let name = name.to_string_lossy();
            let g = format!("{guest}/{name}");
            let meta = fs::symlink_metadata(&host)
                .map_err(|e| FreeBsdError::io(&format!("reading {}", host.display()), e))?;
            if meta.is_dir() {
                pending.push((host.clone(), g.clone()));
            }
            out.push((g, host, meta));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The guest's rootfs: the packages' files, what they and the init need
/// from the base system, and the generated init files.
fn rootfs(app: &Path, base: &Path, program: &str, scratch: &Path) -> Result<Tree, FrameworkError> {
    let mut tree = Tree::new();
    let mut elf_files: Vec<String> = BASE_PROGRAMS
        .iter()
        .chain(
            VOLUME_PROGRAMS
                .iter()
                .filter(|p| elf::resolve_in_root(base, p).is_some()),
        )
        .map(|s| s.to_string())
        .collect();
    for (guest, host, meta) in walk(app)? {
        let ft = meta.file_type();
        if ft.is_dir() {
            tree.insert_dir(&guest, meta.permissions().mode())?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&host).map_err(|source| FrameworkError::Io {
                context: format!("reading {}", host.display()),
                source,
            })?;
            tree.insert_symlink(&guest, &target.to_string_lossy())?;
        } else if ft.is_file() {
            tree.insert_file(&guest, &host, meta.permissions().mode())?;
            if archive::is_elf(&host).map_err(|source| FrameworkError::Io {
                context: format!("reading {}", host.display()),
                source,
            })? {
                elf_files.push(guest);
            }
        }
    }
    let from_base = elf::needed_from_base(&elf_files, app, base)?;
    for (guest, host) in &from_base {
        let mode = fs::metadata(host)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o755);
        tree.insert_file(guest, host, mode)?;
    }

    let write = |name: &str, text: &str| -> Result<PathBuf, FrameworkError> {
        let path = scratch.join(name);
        fs::write(&path, text).map_err(|source| FrameworkError::Io {
            context: format!("writing {}", path.display()),
            source,
        })?;
        Ok(path)
    };
    for (dir, mode) in ROOT_DIRS
        .iter()
        .copied()
        .chain([("/etc", 0o755), ("/root", 0o750)])
    {
        tree.insert_dir(dir, mode)?;
    }
    tree.insert_file("/etc/rc", &write("rc", &rc_script(program))?, 0o644)?;
    tree.insert_file(URUNIT, &write("urunit", URUNIT_SCRIPT)?, 0o755)?;
    tree.insert_file(
        "/etc/passwd",
        &write("passwd", "root:*:0:0:Charlie &:/root:/bin/sh\n")?,
        0o644,
    )?;
    tree.insert_file("/etc/group", &write("group", "wheel:*:0:root\n")?, 0o644)?;
    Ok(tree)
}

/// `/sbin/urunit`: the kernel starts it as `init_path`; it becomes FreeBSD's
/// init (still pid 1), which runs `/etc/rc`.
pub const URUNIT_SCRIPT: &str = "#!/bin/sh\n\
# bunny: urunc passes urunit's config disk to an init named urunit; FreeBSD's\n\
# own init takes over here and /etc/rc reads that config.\n\
exec /sbin/init\n";

/// `/etc/rc`: urunit's config (env `UES..UEE`, process `UCS..UCE` with
/// `ARV:` arguments, volumes `UBS..UBE` with `ID:` and `MP:`, network
/// `UNS..UNE` with `IP:`, `GW:`, `MSK:`) read from the disk `URUNIT_CONFIG`
/// names, the volumes mounted, `vtnet0` configured, the app run, then
/// power off. Without a config the app runs without arguments. A volume's
/// disk is found by its UFS2 label (`/dev/ufs/ID`, which bunny writes), else
/// by its disk serial (qemu sets it; firecracker has none).
pub fn rc_script(program: &str) -> String {
    format!(
        r#"#!/bin/sh
# Generated by bunny: configures the guest from urunit's config disk, runs the app.
PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin
LD_LIBRARY_PATH=/usr/local/lib
export PATH LD_LIBRARY_PATH
mount -u -o rw / 2>/dev/null
ifconfig lo0 inet 127.0.0.1/8 up 2>/dev/null
set -- {program}
wd=/
conf=$(kenv -q URUNIT_CONFIG)
if [ -n "$conf" ] && dd if="$conf" of=/tmp/urunit.conf bs=512 2>/dev/null; then
  sec=
  while IFS= read -r l; do
    case "$sec:$l" in
      *:UES) sec=env ;;
      *:UCS) sec=cmd ;;
      *:UBS) sec=blk ;;
      *:UNS) sec=net ;;
      *:UEE|*:UCE|*:UBE|*:UNE|*:PAD) sec= ;;
      env:*=*) export "$l" ;;
      cmd:ARC:*) set -- ;;
      cmd:ARV:*) set -- "$@" "${{l#ARV:}}" ;;
      cmd:WD:*) wd="${{l#WD:}}" ;;
      blk:ID:*) vid="${{l#ID:}}"; vid="${{vid# }}" ;;
      blk:MP:*) mp="${{l#MP:}}"; vols="$vols ${{vid}}=${{mp# }}" ;;
      net:IP:*) ip="${{l#IP:}}" ;;
      net:GW:*) gw="${{l#GW:}}" ;;
      net:MSK:*) mask="${{l#MSK:}}" ;;
    esac
  done < /tmp/urunit.conf
  [ $# -gt 0 ] || set -- {program}
fi
for v in $vols; do
  id="${{v%%=*}}"; mp="${{v#*=}}"; dev=
  if [ -e "/dev/ufs/$id" ]; then
    dev="/dev/ufs/$id"
  else
    for d in /dev/vtbd*; do
      [ "$(diskinfo -s "$d" 2>/dev/null)" = "$id" ] && dev="$d"
    done
  fi
  if [ -z "$dev" ]; then
    echo "bunny-rc: no disk for volume $id ($mp)"
    continue
  fi
  mkdir -p "$mp"
  fsck_ufs -p "$dev" >/dev/null 2>&1
  if mount -t ufs "$dev" "$mp" 2>/dev/null || mount -t ufs -o ro "$dev" "$mp"; then
    echo "bunny-rc: volume $id ($dev) at $mp"
  else
    echo "bunny-rc: volume $id ($dev) could not be mounted at $mp"
  fi
done
if [ -n "$ip" ]; then
  ifconfig vtnet0 inet "$ip" netmask "${{mask:-255.255.255.0}}" up
  if [ -n "$gw" ]; then
    [ "$(kenv -q URUNIT_DEFROUTE)" = 1 ] && route -q add -host "$gw" -iface vtnet0
    route -q add default "$gw"
  fi
fi
cd "$wd" || cd /
echo "bunny-rc: starting $*"
"$@"
echo "bunny-rc: $1 exited with status $?"
reboot -p
"#
    )
}

/// The catalogue entries `app`'s packages resolve to, dependencies
/// included (the catalogue is downloaded; no package is).
pub fn resolve_packages(
    store: &Store,
    app: &AppInfo,
) -> Result<Vec<repo::CatalogueEntry>, FreeBsdError> {
    let url = repository_url(app);
    let fetcher = repo::Fetcher::new()?;
    let catalogue = repo::fetch_catalogue(&fetcher, store, &url)?;
    Ok(catalogue
        .resolve(&app.packages)?
        .into_iter()
        .cloned()
        .collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn app(language: Option<&str>, abi: Option<&str>) -> AppInfo {
        let pos = crate::bunnyfile::Pos::default();
        AppInfo {
            name: "hello".into(),
            language: language.map(String::from),
            monitor: Some(Monitor::Qemu),
            architecture: Arch::Amd64,
            packages: Vec::new(),
            repository: abi.map(|a| crate::bunnyfile::PackageRepository {
                url: None,
                abi: Some(crate::bunnyfile::Spanned {
                    value: a.to_string(),
                    pos,
                }),
                pos,
            }),
            shell: false,
        }
    }

    /// C compiles with clang for the repository's FreeBSD major against the
    /// base as `/sysroot`, Go with GOOS=freebsd without the network; only
    /// the layers a build runs in are resolved.
    #[test]
    fn sources_compile_in_the_toolchain_their_language_needs() {
        let c = FreeBsd
            .app_steps(&app(Some("c"), Some("FreeBSD:13:amd64")))
            .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].image, "toolchain");
        assert!(!c[0].network);
        assert!(c[0].env.contains(
            &"CC=clang --target=x86_64-unknown-freebsd13 --sysroot=/sysroot -fuse-ld=lld"
                .to_string()
        ));
        assert_eq!(
            c[0].mounts,
            vec![LayerMount {
                layer: "base",
                target: "/sysroot".into()
            }]
        );
        let c = FreeBsd.app_steps(&app(Some("c"), None)).unwrap();
        assert!(c[0]
            .env
            .iter()
            .any(|e| e.contains("x86_64-unknown-freebsd14 ")));
        assert_eq!(
            FreeBsd.app_layers(&app(Some("c"), None), &c),
            ["kernel", "base", "toolchain"]
        );

        let go = FreeBsd.app_steps(&app(Some("go"), None)).unwrap();
        assert_eq!(go[0].image, "go-toolchain");
        for e in [
            "GOOS=freebsd",
            "GOARCH=amd64",
            "CGO_ENABLED=0",
            "GOPROXY=off",
        ] {
            assert!(go[0].env.contains(&e.to_string()), "{e}");
        }
        assert!(go[0].mounts.is_empty() && !go[0].network);
        assert_eq!(
            FreeBsd.app_layers(&app(Some("go"), None), &go),
            ["kernel", "base", "go-toolchain"]
        );

        let binary = FreeBsd.app_steps(&app(Some("binary"), None)).unwrap();
        assert!(binary.is_empty());
        assert_eq!(
            FreeBsd.app_layers(&app(Some("binary"), None), &binary),
            ["kernel", "base"]
        );
        let rust = FreeBsd.app_steps(&app(Some("rust"), None)).unwrap_err();
        assert!(
            rust.to_string().contains("--target x86_64-unknown-freebsd"),
            "{rust}"
        );
        let mut arm = app(Some("c"), None);
        arm.architecture = Arch::Arm64;
        assert!(FreeBsd.app_steps(&arm).is_err());
        assert_eq!(freebsd_major(&app(None, Some("FreeBSD:15:amd64"))), 15);
        assert_eq!(freebsd_major(&app(None, Some("weird"))), 14);
    }

    /// bunny's `/etc/rc`, run by a POSIX sh with FreeBSD's tools replaced by
    /// recording stand-ins (no FreeBSD can boot here), mounts the volumes
    /// the runtime's urunit configuration names: by UFS2 label, else by
    /// disk serial, read-only when the disk refuses writes.
    #[test]
    fn rc_mounts_the_volumes_urunits_configuration_names() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("guest");
        for sub in ["dev/ufs", "tmp", "serial", "readonly", "bin"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        let annotations: BTreeMap<String, String> = [
            (bunny_runtime::ANNOT_TYPE, "freebsd"),
            (bunny_runtime::ANNOT_HYPERVISOR, "qemu"),
            (bunny_runtime::ANNOT_BINARY, "/.boot/kernel"),
            (bunny_runtime::ANNOT_BLOCK, "/.boot/rootfs"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = bunny_runtime::read_config(&annotations, d.path()).unwrap();
        let mut spec = bunny_runtime::RunSpec::new(d.path(), config);
        spec.args = ["/sbin/urunit", "/bin/echo", "app ran"]
            .map(String::from)
            .to_vec();
        spec.volumes = [("/data", false), ("/srv/www", true), ("/gone", false)]
            .iter()
            .enumerate()
            .map(|(n, (target, read_only))| bunny_runtime::Volume {
                path: format!("/v/{n}.img").into(),
                target: target.to_string(),
                read_only: *read_only,
            })
            .collect();
        let cmd = bunny_runtime::monitor_command(&spec, bunny_runtime::ResolvedAccel::Tcg).unwrap();
        let conf = &cmd
            .files
            .iter()
            .find(|(p, _)| p.ends_with("bunny-urunit.conf"))
            .unwrap()
            .1;
        // The disks in the monitor's order: root, urunit's config, volumes;
        // the first volume has bunny's UFS2 label, the second only its
        // serial (an image file of the user's) and is read-only; the third
        // never shows up.
        fs::write(root.join("dev/vtbd0"), b"").unwrap();
        fs::write(root.join("dev/vtbd1"), conf).unwrap();
        fs::write(root.join("dev/vtbd2"), b"").unwrap();
        fs::write(root.join("dev/ufs/bunnyvol0"), b"").unwrap();
        fs::write(root.join("dev/vtbd3"), b"").unwrap();
        fs::write(root.join("serial/vtbd3"), "bunnyvol1\n").unwrap();
        fs::write(root.join("readonly/vtbd3"), b"").unwrap();

        let standin =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/freebsd-tools/standin");
        for tool in [
            "kenv", "mount", "fsck_ufs", "diskinfo", "mkdir", "ifconfig", "route", "reboot",
        ] {
            std::os::unix::fs::symlink(&standin, root.join("bin").join(tool)).unwrap();
        }
        let r = root.display().to_string();
        // The guest root is itself under /tmp: /tmp/ first, PATH last.
        let rc = rc_script("/bin/false")
            .replace("/tmp/", &format!("{r}/tmp/"))
            .replace("/dev/", &format!("{r}/dev/"))
            .replace(
                "PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin",
                &format!("PATH={r}/bin:/usr/bin:/bin"),
            );
        // Nothing the rc runs may reach the host: every tool it names is a
        // stand-in, besides sh builtins, dd and echo.
        for word in [
            "reboot", "mount", "route", "ifconfig", "mkdir", "fsck_ufs", "kenv", "diskinfo",
        ] {
            assert!(root.join("bin").join(word).exists());
        }
        let log = d.path().join("calls");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&rc)
            .env("STANDIN_LOG", &log)
            .env("STANDIN_ROOT", &root)
            .current_dir(d.path())
            .output()
            .unwrap();
        let console = String::from_utf8_lossy(&out.stdout);
        let calls = fs::read_to_string(&log)
            .unwrap_or_else(|e| panic!("{e}: {console}\n{}", String::from_utf8_lossy(&out.stderr)));
        assert!(
            out.status.success(),
            "{console}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in [
            format!("bunny-rc: volume bunnyvol0 ({r}/dev/ufs/bunnyvol0) at /data"),
            format!("bunny-rc: volume bunnyvol1 ({r}/dev/vtbd3) at /srv/www"),
            "bunny-rc: no disk for volume bunnyvol2 (/gone)".to_string(),
            "app ran".to_string(),
        ] {
            assert!(console.lines().any(|l| l == line), "{line}\n{console}");
        }
        for call in [
            "mkdir -p /data".to_string(),
            format!("fsck_ufs -p {r}/dev/ufs/bunnyvol0"),
            format!("mount -t ufs {r}/dev/ufs/bunnyvol0 /data"),
            format!("diskinfo -s {r}/dev/vtbd3"),
            format!("mount -t ufs -o ro {r}/dev/vtbd3 /srv/www"),
            "reboot -p".to_string(),
        ] {
            assert!(calls.lines().any(|l| l == call), "{call}\n{calls}");
        }
        // The volumes are mounted before the app starts.
        let app = console.find("bunny-rc: starting").unwrap();
        assert!(
            console.find("bunny-rc: volume bunnyvol0").unwrap() < app,
            "{console}"
        );
    }
}
