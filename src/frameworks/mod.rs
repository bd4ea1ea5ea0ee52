//! Frameworks: what each unikernel framework supports and how it is packaged.
//!
//! Validation reads [`Framework::support`] so that a framework x monitor x
//! rootfs combination urunc cannot boot is refused before anything is built.
//! Building from source plugs in behind the same trait: a framework
//! names its dependency layers ([`Framework::layers`]: toolchain image, kernel
//! image, by reference with a version), the steps that build an `app` in them
//! ([`Framework::app_steps`]) and how the steps' output becomes a kernel and a
//! rootfs ([`Framework::package_app`]). `crate::build` runs the steps; rumprun
//! and freebsd fill in their steps here.

pub mod freebsd;
pub mod generic;
mod linux;
mod mirage;
mod rumprun;
mod unikraft;

pub use generic::Generic;

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::layers::error::LayerError;
use crate::layers::tree::Tree;
use crate::platform::{Arch, BlockFs, Monitor, RootfsType};

/// An image a framework builds or packs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerDep {
    /// `toolchain`, `kernel`, ...; `bunny.lock` and overrides call the layer
    /// `FRAMEWORK.NAME`.
    pub name: &'static str,
    /// The default reference, with its version; overridden by
    /// `--toolchain FRAMEWORK[.NAME]=REF` or the config file.
    pub reference: &'static str,
}

/// What a step reads at `/src`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepInput {
    /// The app's sources.
    Source,
    /// The output of an earlier step, by name.
    Step(String),
}

/// A directory a step sees read-only, made from one of the framework's
/// layers (see [`Framework::mount_dir`]): a sysroot, headers, libraries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerMount {
    /// The [`LayerDep::name`] of the layer.
    pub layer: &'static str,
    /// Where the step sees it (absolute; not `/src`, `/out` or `/tmp`).
    pub target: String,
}

/// One build step as a framework describes it; the executor adds the image's
/// rootfs, the mounts (`/src` read-only, `/out` read-write, the
/// [`StepSpec::mounts`] read-only), the cache and the isolation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSpec {
    pub name: String,
    /// The [`LayerDep::name`] of the image the step runs in.
    pub image: &'static str,
    pub input: StepInput,
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: String,
    /// Steps have no network unless they say so.
    pub network: bool,
    /// Layers the step reads besides its image.
    pub mounts: Vec<LayerMount>,
}

/// The BunnyFile's `app`, as frameworks see it.
#[derive(Debug, Clone)]
pub struct AppInfo {
    pub name: String,
    pub language: Option<String>,
    /// The monitor the image targets (rumprun bakes its kernel for
    /// one: solo5 hvt/spt, or the hw platform on qemu). None when the caller
    /// built the app without a plan; frameworks that need it refuse then.
    pub monitor: Option<Monitor>,
    /// The architecture the image targets (rumprun's toolchain tuple).
    pub architecture: Arch,
    /// Binary packages the app is made of (freebsd).
    pub packages: Vec<crate::bunnyfile::PackageReq>,
    pub repository: Option<crate::bunnyfile::PackageRepository>,
    /// `app.shell`: the guest keeps a shell instead of the cut rootfs.
    pub shell: bool,
}

/// The name of the layer a framework's kernel comes from, when it is not
/// built from sources.
pub const KERNEL_LAYER: &str = "kernel";

/// What packing an app gets: the last step's output and the framework's
/// other layers, unpacked.
pub struct PackInputs<'a> {
    pub app: &'a AppInfo,
    /// The last step's `/out`.
    pub output: &'a Path,
    /// A kernel built from sources: it replaces the [`KERNEL_LAYER`], which
    /// was not resolved (and whose modules belong to another kernel).
    pub kernel: Option<&'a Path>,
    /// A dependency layer's unpacked rootfs, by [`LayerDep::name`].
    pub layer: &'a dyn Fn(&str) -> Result<PathBuf, FrameworkError>,
    /// A directory that lives until the image is written, for generated files.
    pub scratch: &'a Path,
    /// The store, for downloads a framework keeps (freebsd's packages).
    pub store: &'a crate::layers::store::Store,
    pub progress: &'a dyn crate::pipeline::Progress,
}

/// A built app, ready for the pipeline to pack.
pub struct AppPackage {
    pub kernel: PathBuf,
    /// The guest's rootfs files (an initrd for linux).
    pub rootfs: Tree,
    /// Binary packages installed (freebsd), for the SBOM.
    pub packages: Vec<InstalledPackage>,
}

/// A binary package an app was made of, as its repository's catalogue
/// described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPackage {
    pub name: String,
    pub version: String,
    /// sha256 of the package file, hex (checked when it was fetched).
    pub sha256: String,
    pub url: String,
}

#[derive(Debug, Error)]
pub enum FrameworkError {
    #[error("framework `{framework}` cannot {what} yet")]
    Unsupported {
        framework: String,
        what: &'static str,
    },
    #[error("{what} is missing: {path} ({hint})")]
    Missing {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    #[error("layer `{0}` is not one this framework declares")]
    UnknownLayer(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// Resolving or unpacking a layer failed (the executor's error, as text).
    #[error("{0}")]
    Build(String),
}

/// What a framework can boot, as urunc's contract allows it.
#[derive(Debug, Clone, Copy)]
pub struct Support {
    pub monitors: &'static [Monitor],
    pub architectures: &'static [Arch],
    pub rootfs_types: &'static [RootfsType],
}

/// One unikernel framework.
pub trait Framework: Send + Sync {
    /// The name written in `platforms.framework`.
    fn name(&self) -> &str;

    /// The value of `com.urunc.unikernel.unikernelType`.
    fn unikernel_type(&self) -> &str;

    fn support(&self) -> Support;

    /// The rootfs type used when the build file names none but has content.
    /// Go bunny's rule, which a file it builds must keep: `initrd` for
    /// unikraft, `raw` (the files stay in the image's layers and urunc hands
    /// them over with `mountRootfs`) for every other framework.
    fn default_rootfs_type(&self) -> RootfsType {
        RootfsType::Raw
    }

    /// The form an `app`'s files take when the BunnyFile names none: `app`
    /// is bunny's own extension, so it may default to what boots best.
    fn app_rootfs_type(&self) -> RootfsType {
        self.default_rootfs_type()
    }

    /// The filesystem a `block` rootfs is written in.
    fn block_fs(&self) -> BlockFs;

    /// Where the guest mounts a `block` rootfs (`blkMntPoint`).
    fn block_mount_point(&self) -> &str;

    /// Adds what every block root of this framework needs and the tree
    /// lacks; entries the tree already has are kept as they are.
    fn complete_block_root(&self, _tree: &mut Tree) -> Result<(), LayerError> {
        Ok(())
    }

    /// False for frameworks bunny only packages generically.
    fn is_known(&self) -> bool {
        true
    }

    /// Every image building and packing an `app` may need (what
    /// `--toolchain FRAMEWORK.NAME=REF` may override).
    fn layers(&self) -> &'static [LayerDep] {
        &[]
    }

    /// The [`LayerDep::name`]s building and packing this `app` with these
    /// `steps` uses: only those are resolved, so an app needs no image it
    /// does not use. Every declared layer by default.
    fn app_layers(&self, _app: &AppInfo, _steps: &[StepSpec]) -> Vec<&'static str> {
        self.layers().iter().map(|l| l.name).collect()
    }

    /// The directory a step mounts for `layer`, whose files are at `files`
    /// (a framework whose layer holds an archive unpacks it here).
    fn mount_dir(
        &self,
        _layer: &str,
        files: &Path,
        _store: &crate::layers::store::Store,
        _progress: &dyn crate::pipeline::Progress,
    ) -> Result<PathBuf, FrameworkError> {
        Ok(files.to_path_buf())
    }

    /// The kernel image a guest gets on `monitor` when its build file names
    /// no kernel (a Containerfile without `binary`), as Go bunny takes one
    /// kernel per hypervisor. `None`: the file must name its kernel.
    fn kernel_layer(&self, _monitor: Monitor) -> Option<LayerDep> {
        None
    }

    /// The steps that build `app`, in order.
    fn app_steps(&self, _app: &AppInfo) -> Result<Vec<StepSpec>, FrameworkError> {
        Err(FrameworkError::Unsupported {
            framework: self.name().to_string(),
            what: "build an `app` from source (it is packaged only; use `kernel:`)",
        })
    }

    /// Where the app's program is in the guest when the app runs under
    /// bunny-init (the image's entrypoint after the init, unless the build
    /// file names one). `None`: the framework's guests do not use
    /// bunny-init (it is a Linux program).
    fn app_program(&self, _app_name: &str) -> Option<String> {
        None
    }

    /// Turns the steps' output into a kernel and a rootfs.
    fn package_app(&self, _inputs: &PackInputs) -> Result<AppPackage, FrameworkError> {
        Err(FrameworkError::Unsupported {
            framework: self.name().to_string(),
            what: "package an `app` built from source",
        })
    }
}

static KNOWN: &[&dyn Framework] = &[
    &linux::Linux,
    &rumprun::Rumprun,
    &freebsd::FreeBsd,
    &unikraft::Unikraft,
    &mirage::Mirage,
];

/// The default reference of a framework's layer `name`: one of its
/// [`Framework::layers`] or a per-monitor kernel layer.
pub fn layer_reference(framework: &dyn Framework, name: &str) -> Option<&'static str> {
    framework
        .layers()
        .iter()
        .copied()
        .chain(
            Monitor::ALL
                .iter()
                .filter_map(|m| framework.kernel_layer(*m)),
        )
        .find(|l| l.name == name)
        .map(|l| l.reference)
}

/// The frameworks bunny knows by name.
pub fn known() -> &'static [&'static dyn Framework] {
    KNOWN
}

/// Resolves a framework name; unknown names get the generic packager, as the
/// Go bunny does (callers warn).
pub fn resolve(name: &str) -> Box<dyn Framework> {
    match KNOWN.iter().find(|f| f.name() == name) {
        Some(f) => Box::new(Known(*f)),
        None => Box::new(Generic::new(name)),
    }
}

struct Known(&'static dyn Framework);

impl Framework for Known {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn unikernel_type(&self) -> &str {
        self.0.unikernel_type()
    }
    fn support(&self) -> Support {
        self.0.support()
    }
    fn default_rootfs_type(&self) -> RootfsType {
        self.0.default_rootfs_type()
    }
    fn app_rootfs_type(&self) -> RootfsType {
        self.0.app_rootfs_type()
    }
    fn block_fs(&self) -> BlockFs {
        self.0.block_fs()
    }
    fn block_mount_point(&self) -> &str {
        self.0.block_mount_point()
    }
    fn complete_block_root(&self, tree: &mut Tree) -> Result<(), LayerError> {
        self.0.complete_block_root(tree)
    }
    fn is_known(&self) -> bool {
        self.0.is_known()
    }
    fn layers(&self) -> &'static [LayerDep] {
        self.0.layers()
    }
    fn kernel_layer(&self, monitor: Monitor) -> Option<LayerDep> {
        self.0.kernel_layer(monitor)
    }
    fn app_layers(&self, app: &AppInfo, steps: &[StepSpec]) -> Vec<&'static str> {
        self.0.app_layers(app, steps)
    }
    fn mount_dir(
        &self,
        layer: &str,
        files: &Path,
        store: &crate::layers::store::Store,
        progress: &dyn crate::pipeline::Progress,
    ) -> Result<PathBuf, FrameworkError> {
        self.0.mount_dir(layer, files, store, progress)
    }
    fn app_steps(&self, app: &AppInfo) -> Result<Vec<StepSpec>, FrameworkError> {
        self.0.app_steps(app)
    }
    fn app_program(&self, app_name: &str) -> Option<String> {
        self.0.app_program(app_name)
    }
    fn package_app(&self, inputs: &PackInputs) -> Result<AppPackage, FrameworkError> {
        self.0.package_app(inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_rules_hold() {
        let fb = resolve("freebsd");
        assert!(!fb.support().rootfs_types.contains(&RootfsType::Initrd));
        assert_eq!(fb.block_fs(), BlockFs::Ufs2);
        assert_eq!(fb.block_mount_point(), "/");

        let uk = resolve("unikraft");
        assert!(!uk.support().rootfs_types.contains(&RootfsType::Block));

        let rr = resolve("rumprun");
        assert_eq!(rr.block_fs(), BlockFs::Ext2);
        assert_eq!(rr.block_mount_point(), "/data");
        assert!(!rr.support().monitors.contains(&Monitor::Firecracker));

        let lx = resolve("linux");
        assert_eq!(lx.block_fs(), BlockFs::Ext4);
        assert!(!lx.support().monitors.contains(&Monitor::Hvt));
    }

    #[test]
    fn unknown_frameworks_are_generic() {
        let f = resolve("nanos");
        assert!(!f.is_known());
        assert_eq!(f.unikernel_type(), "nanos");
        assert_eq!(f.support().monitors, Monitor::ALL);
        // Guests urunc boots are known names, packaged the same way.
        let f = resolve("mewz");
        assert!(f.is_known());
        assert_eq!(f.default_rootfs_type(), RootfsType::Raw);
    }

    #[test]
    fn default_rootfs_types_are_go_bunnys() {
        for name in ["linux", "rumprun", "freebsd", "mirage", "hermit", "nanos"] {
            assert_eq!(
                resolve(name).default_rootfs_type(),
                RootfsType::Raw,
                "{name}"
            );
        }
        assert_eq!(
            resolve("unikraft").default_rootfs_type(),
            RootfsType::Initrd
        );
        assert_eq!(resolve("linux").app_rootfs_type(), RootfsType::Initrd);
        assert_eq!(resolve("rumprun").app_rootfs_type(), RootfsType::Block);
        assert_eq!(resolve("freebsd").app_rootfs_type(), RootfsType::Block);
        assert_eq!(resolve("mirage").block_mount_point(), "/");
    }
}
