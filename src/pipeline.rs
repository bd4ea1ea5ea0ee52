//! `bunny build` end to end: a validated BunnyFile becomes a [`Plan`] (what
//! goes where, all paths resolved inside the context), and the plan becomes an
//! image in the store, then in each requested output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::image::Descriptor;
use thiserror::Error;

use crate::bunnyfile::{Include, Source};
use crate::frameworks::{self, Framework};
use crate::layers::block::{build_block, BlockOptions};
use crate::layers::error::LayerError;
use crate::layers::initrd::{write_initrd, InitrdOptions};
use crate::layers::store::{Store, StoreError};
use crate::layers::tree::{resolve_in_context, EntryKind, Tree};
use crate::model::{KernelSpec, Spec, INIT_CONFIG_PATH, INIT_PATH};
use crate::oci::annotations::{
    UruncConfig, KERNEL_PATH, KEY_BLK_MNT_POINT, KEY_INITRD, KEY_MOUNT_ROOTFS, PREFIX, ROOTFS_PATH,
    URUNC_JSON_PATH,
};
use crate::oci::error::OciError;
use crate::oci::image::{assemble, ImageConfig, ImageSpec};
use crate::oci::layer::{
    write_layer, CompressionChoice, Layer, LayerContent, LayerEntry, LayerOptions,
};
use crate::oci::output::{export, Output};
use crate::platform::{Arch, BlockFs, Monitor, RootfsType};

/// Where `from: IMAGE` references are found: the CLI looks in the store and
/// pulls what is missing; tests can serve directories.
pub trait ImageSource {
    /// The image's files on disk, read-only.
    fn files(&self, reference: &str) -> Result<PathBuf, Box<dyn std::error::Error + Send + Sync>>;

    /// The image's own config (Env, Cmd, Entrypoint, Labels), for inputs that
    /// inherit it as `FROM` does; called after [`ImageSource::files`]. `None`
    /// when it cannot be read.
    fn config(&self, _reference: &str) -> Option<oci_spec::image::Config> {
        None
    }

    /// A framework's dependency layer by name (its kernel image, ...): the
    /// reference used and the image's files. By default the framework's own
    /// reference; the CLI applies `--toolchain` overrides, the BuildKit
    /// frontend hands over what it mounted.
    fn layer(
        &self,
        framework: &dyn Framework,
        name: &str,
    ) -> Result<(String, PathBuf), Box<dyn std::error::Error + Send + Sync>> {
        let reference = frameworks::layer_reference(framework, name)
            .ok_or_else(|| format!("framework `{}` has no `{name}` layer", framework.name()))?;
        Ok((reference.to_string(), self.files(reference)?))
    }
}

/// Where the pipeline reports what it is doing; the CLI draws it.
pub trait Progress: Send + Sync {
    fn start(&self, step: &str);
    fn finish(&self, step: &str, detail: &str);
    fn warn(&self, message: &str);
    /// One line a build step printed; displays that draw bars
    /// override this to print above them.
    fn log(&self, step: &str, line: &str) {
        eprintln!("[{step}] {line}");
    }
}

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error("image `{reference}`")]
    Image {
        reference: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{what} is not supported; {hint}")]
    Unsupported { what: String, hint: &'static str },
    #[error("kernel `{path}`")]
    Kernel {
        path: String,
        #[source]
        source: LayerError,
    },
    #[error("rootfs `{path}`")]
    RootfsPath {
        path: String,
        #[source]
        source: LayerError,
    },
    #[error("include `{entry}` (BunnyFile line {line})")]
    Include {
        entry: String,
        line: usize,
        #[source]
        source: LayerError,
    },
    #[error("writing the {what} rootfs")]
    Rootfs {
        what: &'static str,
        #[source]
        source: LayerError,
    },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The urunc keys, with the user's labels over bunny's, do not make a
    /// configuration urunc can use.
    #[error("{message}; add `LABEL com.urunc.unikernel.binary=/path/of/the/kernel` (the path the COPY put it at) if the kernel is missing")]
    Labels { message: String },
    #[error("{file}:{line}: {message}")]
    User {
        file: String,
        line: usize,
        message: String,
    },
    #[error("bunny-init: {message}")]
    Init { message: String },
    /// bunny-init would start a program the guest's files lack.
    #[error("the image runs `{program}` under bunny-init, but the app's rootfs has no such file (it holds {files}); drop `entrypoint` to run the app, or set `app.shell: true` to keep busybox and a shell /init")]
    AppProgram { program: String, files: String },
    #[error("internal error: {what}; please report it")]
    Internal { what: &'static str },
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Building the `app` in build containers.
    #[error(transparent)]
    Build(#[from] crate::build::BuildError),
}

/// The kernel the image carries.
#[derive(Debug)]
pub enum KernelInput {
    Local(PathBuf),
    /// Built from the spec's `app` by [`prepare_app`].
    App,
    /// Already among the rootfs files at this path (a raw rootfs that brings
    /// its own kernel); `binary` names it there.
    InRootfs(String),
    /// Built from its sources by [`prepare_app`], with the context its
    /// files are read from.
    Source(Box<crate::build::kernel::KernelSource>, PathBuf),
}

/// The guest's rootfs, as the image will carry it.
pub enum RootfsPlan {
    None,
    Initrd(Tree),
    Block(Tree, BlockFs),
    /// Files in the image's own layers, handed over by `mountRootfs`.
    Raw(Tree),
    /// A prebuilt initrd or block image from the context.
    Prebuilt {
        path: PathBuf,
        kind: RootfsType,
    },
}

impl RootfsPlan {
    fn tree_mut(&mut self) -> Option<&mut Tree> {
        match self {
            RootfsPlan::Initrd(t) | RootfsPlan::Block(t, _) | RootfsPlan::Raw(t) => Some(t),
            RootfsPlan::None | RootfsPlan::Prebuilt { .. } => None,
        }
    }
}

/// Everything `build` needs, decided and checked up front.
pub struct Plan {
    pub framework: Box<dyn Framework>,
    pub monitor: Monitor,
    pub architecture: Arch,
    pub kernel: KernelInput,
    pub rootfs: RootfsPlan,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
    pub cmdline: Option<String>,
    pub unikernel_version: Option<String>,
    /// The rootfs type the spec asked for (kept for an app's files when the
    /// spec itself brings none).
    pub rootfs_kind: RootfsType,
    /// Labels besides the computed urunc keys; a urunc key here is the
    /// user's and wins.
    pub labels: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    /// `uid:gid`, numbers.
    pub user: Option<String>,
    /// The `app` to build before packing, and the context it is read from;
    /// [`prepare_app`] builds it.
    pub app: Option<(crate::bunnyfile::App, PathBuf)>,
    /// The static bunny-init the caller named, for the boot stage (else
    /// [`crate::containerfile::find_init`]).
    pub init_binary: Option<PathBuf>,
    /// Files the plan generated (the init's configuration), alive until the
    /// image is written.
    _generated: Option<tempfile::TempDir>,
}

impl Plan {
    /// urunc's settings for this image, as bunny computes them.
    pub fn urunc(&self) -> UruncConfig {
        let (initrd, block, blk_mnt_point, mount_rootfs) = match &self.rootfs {
            RootfsPlan::None => (None, None, None, false),
            RootfsPlan::Initrd(_)
            | RootfsPlan::Prebuilt {
                kind: RootfsType::Initrd,
                ..
            } => (Some(ROOTFS_PATH.to_string()), None, None, false),
            RootfsPlan::Block(..)
            | RootfsPlan::Prebuilt {
                kind: RootfsType::Block,
                ..
            } => (
                None,
                Some(ROOTFS_PATH.to_string()),
                Some(self.framework.block_mount_point().to_string()),
                false,
            ),
            RootfsPlan::Raw(_)
            | RootfsPlan::Prebuilt {
                kind: RootfsType::Raw,
                ..
            } => (None, None, None, true),
        };
        // The boot stage is the initrd that mounts the block root: both are
        // handed to the guest, and the kernel runs the initrd's /init.
        let initrd = match (&initrd, self.boot_stage_modules()) {
            (None, Some(_)) => Some(BOOT_STAGE_PATH.to_string()),
            _ => initrd,
        };
        UruncConfig {
            unikernel_type: self.framework.unikernel_type().to_string(),
            hypervisor: self.monitor.as_str().to_string(),
            binary: match &self.kernel {
                KernelInput::InRootfs(p) => p.clone(),
                KernelInput::Local(_) | KernelInput::App | KernelInput::Source(..) => {
                    KERNEL_PATH.to_string()
                }
            },
            cmdline: self.cmdline.clone(),
            initrd,
            block,
            blk_mnt_point,
            mount_rootfs,
            unikernel_version: self.unikernel_version.clone(),
            use_dm_block: None,
        }
    }

    /// The kernel modules a Linux guest's boot stage loads to mount its
    /// block root (virtio-pci, virtio-blk, ext4 and what they depend on),
    /// by name; `None` when the guest needs no stage: not a block root, the
    /// user named an initrd, or the rootfs carries no `virtio_blk.ko` (the
    /// kernel then has it built in, or cannot boot this root at all).
    pub fn boot_stage_modules(&self) -> Option<BTreeMap<String, PathBuf>> {
        if self.framework.unikernel_type() != "linux" || self.labels.contains_key(KEY_INITRD) {
            return None;
        }
        let RootfsPlan::Block(tree, _) = &self.rootfs else {
            return None;
        };
        let mut all = BTreeMap::new();
        for (path, entry) in tree.iter() {
            let (Some(rest), EntryKind::File { source, .. }) =
                (path.strip_prefix("lib/modules/"), &entry.kind)
            else {
                continue;
            };
            let file = rest.rsplit('/').next().unwrap_or(rest);
            if let Some(stem) = file.strip_suffix(".ko") {
                all.entry(stem.replace('-', "_"))
                    .or_insert_with(|| source.clone());
            }
        }
        if !all.contains_key("virtio_blk") {
            return None;
        }
        let mut wanted: Vec<String> = STAGE_MODULES.iter().map(|m| m.to_string()).collect();
        let mut chosen = BTreeMap::new();
        while let Some(name) = wanted.pop() {
            let Some(source) = all.get(&name) else {
                // Not among the files: built into the kernel.
                continue;
            };
            if chosen.contains_key(&name) {
                continue;
            }
            let bytes = std::fs::read(source).unwrap_or_default();
            wanted.extend(modinfo_depends(&bytes));
            chosen.insert(name, source.clone());
        }
        Some(chosen)
    }

    /// The urunc settings the image carries and its annotations: bunny's
    /// computed keys, each overridden by a value the user set, plus the
    /// user's other labels. A key the user did not ask for is never written
    /// over one they set.
    pub fn annotations(&self) -> Result<(UruncConfig, BTreeMap<String, String>), PipelineError> {
        let mut keys = self.urunc().to_annotations();
        let users = |k: &str| self.labels.get(k).map(String::as_str);
        // Go bunny's rule for files that name their own root: an initrd or
        // a root block image is the rootfs, so the container's files are not
        // also handed over.
        if users(KEY_MOUNT_ROOTFS).is_none()
            && (users(KEY_INITRD).is_some() || users(KEY_BLK_MNT_POINT) == Some("/"))
        {
            keys.insert(KEY_MOUNT_ROOTFS.into(), "false".into());
        }
        for (k, v) in &self.labels {
            if k.starts_with(PREFIX) {
                keys.insert(k.clone(), v.clone());
            }
        }
        let urunc = UruncConfig::from_annotations(&keys).map_err(|e| PipelineError::Labels {
            message: e.to_string(),
        })?;
        let mut annotations = urunc.to_annotations();
        for (k, v) in &self.labels {
            if !k.starts_with(PREFIX) {
                annotations.insert(k.clone(), v.clone());
            }
        }
        Ok((urunc, annotations))
    }
}

/// Where a Linux guest's boot stage (an initrd holding bunny-init and the
/// modules that mount the block root) sits in the image.
pub const BOOT_STAGE_PATH: &str = "/.boot/initrd";
/// The file that tells bunny-init it is the boot stage, not the guest's init.
const BOOT_STAGE_MARKER: &str = "/.bunny/boot-stage";
/// What mounting a virtio block root with ext4 takes; their dependencies
/// come from each module's `.modinfo`. ext4 asks the crypto API for crc32c
/// at mount time (no `depends=`): without crc32c_generic loaded the mount
/// fails with "Cannot load crc32c driver".
const STAGE_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "ext4", "crc32c_generic"];

/// A module's `depends=` names (`-` read as `_`, as the kernel does).
fn modinfo_depends(bytes: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(start) = bytes.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let rest = &bytes[start + KEY.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

/// What planning reads besides the spec.
pub struct PlanInputs<'a> {
    /// The build context.
    pub context: &'a Path,
    /// Overrides the spec's architecture (`--platform`).
    pub architecture: Option<Arch>,
    pub images: &'a dyn ImageSource,
    /// The static bunny-init for specs that ask for it (default:
    /// [`crate::containerfile::find_init`]).
    pub init: Option<PathBuf>,
}

/// Resolves a spec against its context. Nothing is written but the init's
/// configuration.
pub fn plan(spec: &Spec, inputs: &PlanInputs) -> Result<Plan, PipelineError> {
    let context = inputs.context;
    let images = inputs.images;
    let image_files = |reference: &str| {
        images
            .files(reference)
            .map_err(|source| PipelineError::Image {
                reference: reference.to_string(),
                source,
            })
    };
    let framework = frameworks::resolve(&spec.framework);

    let mut layer_kernel = None;
    let kernel = match &spec.kernel {
        KernelSpec::File { from, path, .. } => match from {
            Source::Local => {
                KernelInput::Local(resolve_in_context(context, in_image(path)).map_err(
                    |source| PipelineError::Kernel {
                        path: path.clone(),
                        source,
                    },
                )?)
            }
            Source::Image(r) => KernelInput::Local(
                resolve_in_context(&image_files(r)?, in_image(path)).map_err(|source| {
                    PipelineError::Kernel {
                        path: format!("{path} in image {r}"),
                        source,
                    }
                })?,
            ),
            Source::Scratch => {
                return Err(PipelineError::Unsupported {
                    what: "a kernel `from: scratch`".into(),
                    hint: "write `from: local` or `from: IMAGE` with a `path`",
                })
            }
        },
        KernelSpec::Layer(name) => {
            let (reference, dir) =
                images
                    .layer(framework.as_ref(), name)
                    .map_err(|source| PipelineError::Image {
                        reference: format!("{}.{name}", framework.name()),
                        source,
                    })?;
            let path = resolve_in_context(&dir, in_image(KERNEL_PATH)).map_err(|source| {
                PipelineError::Kernel {
                    path: format!("{KERNEL_PATH} in the kernel image {reference}"),
                    source,
                }
            })?;
            layer_kernel = Some(dir);
            KernelInput::Local(path)
        }
        KernelSpec::InRootfs(p) => KernelInput::InRootfs(p.clone()),
        KernelSpec::Source(ks) => {
            // The files it names must be in the context: said now, not after
            // the sources are hashed.
            crate::build::kernel::check_context(ks, context)
                .map_err(|e| PipelineError::Build(e.into()))?;
            KernelInput::Source(ks.clone(), context.to_path_buf())
        }
        KernelSpec::App if spec.app.is_some() => KernelInput::App,
        // The validator already refuses this; kept as an error, not a panic.
        KernelSpec::App => {
            return Err(PipelineError::Unsupported {
                what: "a BunnyFile with neither `kernel` nor `app`".into(),
                hint: "add `kernel:` (a prebuilt kernel) or `app:` (build from source)",
            })
        }
    };

    let kind = spec.rootfs.kind;
    let from_files = |tree: Tree| match kind {
        RootfsType::Initrd => RootfsPlan::Initrd(tree),
        RootfsType::Block => RootfsPlan::Block(tree, framework.block_fs()),
        RootfsType::Raw => RootfsPlan::Raw(tree),
    };
    let mut rootfs = match (&spec.rootfs.from, &spec.rootfs.path) {
        (Source::Image(r), Some((p, _))) => RootfsPlan::Prebuilt {
            path: resolve_in_context(&image_files(r)?, in_image(p)).map_err(|source| {
                PipelineError::RootfsPath {
                    path: format!("{p} in image {r}"),
                    source,
                }
            })?,
            kind,
        },
        // The image's own files are the rootfs, with the includes on top
        // (Go bunny's raw-rootfs update, and Dockerfile's FROM + COPY).
        (Source::Image(r), None) => {
            let mut tree = Tree::new();
            tree.add_from_context(&image_files(r)?, ".", "/")
                .map_err(|source| PipelineError::RootfsPath {
                    path: format!("the files of image {r}"),
                    source,
                })?;
            add_includes(&mut tree, context, &spec.rootfs.include, &image_files)?;
            from_files(tree)
        }
        (Source::Local, Some((p, _))) => RootfsPlan::Prebuilt {
            path: resolve_in_context(context, in_image(p)).map_err(|source| {
                PipelineError::RootfsPath {
                    path: p.clone(),
                    source,
                }
            })?,
            kind,
        },
        (Source::Local, None) => RootfsPlan::None,
        (Source::Scratch, _) if spec.rootfs.include.is_empty() && !spec.init => RootfsPlan::None,
        (Source::Scratch, _) => {
            let mut tree = Tree::new();
            add_includes(&mut tree, context, &spec.rootfs.include, &image_files)?;
            from_files(tree)
        }
    };

    // `FROM image` inherits the image's config as Dockerfile does: its Env
    // (overridden key by key), Entrypoint and Cmd (a new ENTRYPOINT drops the
    // old Cmd), Labels (overridden by the file's), WorkingDir and User.
    let base = spec.inherit.as_ref().and_then(|(r, _)| images.config(r));
    let mut labels: BTreeMap<String, String> = base
        .as_ref()
        .and_then(|c| c.labels().clone())
        .map(|l| l.into_iter().collect())
        .unwrap_or_default();
    labels.extend(spec.labels.clone());
    let mut entrypoint = spec
        .entrypoint
        .clone()
        .or_else(|| base.as_ref().and_then(|c| c.entrypoint().clone()))
        .unwrap_or_default();
    let cmd = match (&spec.cmd, &spec.entrypoint) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => base
            .as_ref()
            .and_then(|c| c.cmd().clone())
            .unwrap_or_default(),
    };
    let mut env: Vec<String> = base
        .as_ref()
        .and_then(|c| c.env().clone())
        .unwrap_or_default();
    for e in &spec.env {
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|old| old.split('=').next() != Some(key));
        env.push(e.clone());
    }
    let working_dir = spec
        .workdir
        .clone()
        .or_else(|| base.as_ref().and_then(|c| c.working_dir().clone()));

    let mut user = None;
    let mut generated = None;
    if let Some((u, pos)) = &spec.user {
        let empty = Tree::new();
        let tree = match &rootfs {
            RootfsPlan::Initrd(t) | RootfsPlan::Block(t, _) | RootfsPlan::Raw(t) => t,
            _ => &empty,
        };
        user = Some(
            resolve_user(u, tree).map_err(|message| PipelineError::User {
                file: spec.origin.clone(),
                line: pos.line,
                message,
            })?,
        );
    }
    if spec.init {
        let init = match &inputs.init {
            Some(p) => p.clone(),
            None => crate::containerfile::find_init().map_err(|e| PipelineError::Init {
                message: e.to_string(),
            })?,
        };
        crate::containerfile::check_static(&init).map_err(|e| PipelineError::Init {
            message: e.to_string(),
        })?;
        let tree = rootfs.tree_mut().ok_or(PipelineError::Unsupported {
            what: "bunny-init with a prebuilt rootfs file".into(),
            hint: "build the rootfs from files, or turn the init off",
        })?;
        tree.insert_file(INIT_PATH, &init, 0o755)
            .map_err(|source| PipelineError::Rootfs {
                what: "init",
                source,
            })?;
        if let Some(text) = init_config(working_dir.as_deref(), user) {
            let dir = tempfile::Builder::new()
                .prefix("bunny-plan-")
                .tempdir()
                .map_err(|source| PipelineError::Io {
                    context: "creating a scratch directory".into(),
                    source,
                })?;
            let p = dir.path().join("urunit.conf");
            std::fs::write(&p, text).map_err(|source| PipelineError::Io {
                context: format!("writing {}", p.display()),
                source,
            })?;
            tree.insert_file(INIT_CONFIG_PATH, &p, 0o644)
                .map_err(|source| PipelineError::Rootfs {
                    what: "init configuration",
                    source,
                })?;
            generated = Some(dir);
        }
        // The kernel's modules (virtio_net, ...) go where bunny-init loads
        // them from, unless the image brings its own.
        if let Some(dir) = &layer_kernel {
            if dir.join("lib/modules").is_dir() && tree.get("lib/modules").is_none() {
                tree.add_from_context(dir, "lib/modules", "/lib/modules")
                    .map_err(|source| PipelineError::Rootfs {
                        what: "kernel modules",
                        source,
                    })?;
            }
        }
        entrypoint.insert(0, INIT_PATH.to_string());
    }

    Ok(Plan {
        monitor: spec.monitor,
        architecture: inputs.architecture.unwrap_or(spec.architecture),
        kernel,
        rootfs,
        cmd,
        entrypoint,
        env,
        cmdline: spec.cmdline.clone(),
        unikernel_version: spec.unikernel_version.clone(),
        rootfs_kind: kind,
        labels,
        working_dir,
        user: user
            .map(|(u, g)| format!("{u}:{g}"))
            .or_else(|| base.as_ref().and_then(|c| c.user().clone())),
        app: spec.app.clone().map(|a| (a, context.to_path_buf())),
        framework,
        init_binary: inputs.init.clone(),
        _generated: generated,
    })
}

/// `USER` as numbers: a name is looked up in the rootfs's /etc/passwd; the
/// group defaults to the user's (or the uid). Numbers, because docker
/// resolves a name against the container's own /etc/passwd, which a
/// unikernel image lacks.
fn resolve_user(user: &str, tree: &Tree) -> Result<(u32, u32), String> {
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let (uid, pw_gid) = match u.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => lookup_user(tree, u).ok_or_else(|| {
            format!("USER `{u}` is not a number and not in the image's /etc/passwd")
        })?,
    };
    let gid = if g.is_empty() {
        pw_gid.unwrap_or(uid)
    } else {
        g.parse::<u32>()
            .map_err(|_| format!("USER group `{g}` must be a number"))?
    };
    Ok((uid, gid))
}

fn lookup_user(tree: &Tree, name: &str) -> Option<(u32, Option<u32>)> {
    let entry = tree.get("etc/passwd")?;
    let EntryKind::File { source, .. } = &entry.kind else {
        return None;
    };
    let text = std::fs::read_to_string(source).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || f[0] != name {
            return None;
        }
        let uid: u32 = f[2].parse().ok()?;
        Some((uid, f[3].parse::<u32>().ok()))
    })
}

/// urunit's `UCS` block for the working directory and the user.
fn init_config(workdir: Option<&str>, user: Option<(u32, u32)>) -> Option<String> {
    if workdir.is_none() && user.is_none() {
        return None;
    }
    let mut s = String::from("UCS\n");
    if let Some((uid, gid)) = user {
        s.push_str(&format!("UID: {uid}\nGID: {gid}\n"));
    }
    if let Some(w) = workdir {
        s.push_str(&format!("WD: {w}\n"));
    }
    s.push_str("UCE\n");
    Some(s)
}

/// Builds the plan's kernel from its sources (see [`crate::build::kernel`])
/// and its `app` in build containers, and points the plan's kernel and
/// rootfs at the result (the app's files join any `include`d ones in the
/// initrd; a kernel built from source wins over the app's framework's).
/// Call before [`build`]; keep the returned value alive until `build` has
/// written the image (it owns generated files the plan points at).
pub fn prepare_app(
    plan: &mut Plan,
    store: &Store,
    opts: &crate::build::AppOptions,
    progress: &dyn Progress,
) -> Result<Option<crate::build::BuiltApp>, PipelineError> {
    // The steps may depend on the target (rumprun bakes per monitor; a
    // Linux kernel for Firecracker is its ELF vmlinux).
    let opts = crate::build::AppOptions {
        monitor: Some(plan.monitor),
        architecture: Some(plan.architecture),
        ..opts.clone()
    };
    let mut from_source = None;
    if let KernelInput::Source(ks, context) = &plan.kernel {
        let built = crate::build::kernel::build_kernel(
            ks,
            plan.framework.name(),
            plan.architecture,
            context,
            store,
            &opts,
            progress,
        )?;
        from_source = Some(built.kernel.clone());
        plan.kernel = KernelInput::Local(built.kernel);
    }
    let Some((app, context)) = &plan.app else {
        return Ok(None);
    };
    let opts = crate::build::AppOptions {
        kernel: from_source,
        ..opts
    };
    let built = crate::build::build_app(
        app,
        plan.framework.as_ref(),
        context,
        store,
        &opts,
        progress,
    )?;
    plan.kernel = KernelInput::Local(built.kernel.clone());
    // An app that brings no files (a rumprun kernel) and a BunnyFile that
    // includes none leave the guest without a rootfs, not with an empty one.
    if built.rootfs.is_empty() && matches!(plan.rootfs, RootfsPlan::None) {
        return Ok(Some(built));
    }
    // The app's files join the rootfs the BunnyFile describes (its includes
    // stay), in the form it asked for (an app's default: an initrd for
    // linux, a block image for rumprun and freebsd).
    let (mut tree, wrap): (Tree, WrapRootfs) =
        match std::mem::replace(&mut plan.rootfs, RootfsPlan::None) {
            RootfsPlan::None => (
                Tree::new(),
                match plan.rootfs_kind {
                    RootfsType::Initrd => |t, _| RootfsPlan::Initrd(t),
                    RootfsType::Block => |t, f| RootfsPlan::Block(t, f.block_fs()),
                    RootfsType::Raw => |t, _| RootfsPlan::Raw(t),
                },
            ),
            RootfsPlan::Initrd(t) => (t, |t, _| RootfsPlan::Initrd(t)),
            RootfsPlan::Block(t, _) => (t, |t, f| RootfsPlan::Block(t, f.block_fs())),
            RootfsPlan::Raw(t) => (t, |t, _| RootfsPlan::Raw(t)),
            RootfsPlan::Prebuilt { .. } => {
                return Err(PipelineError::Unsupported {
                    what: "adding an app's files to a prebuilt rootfs file".into(),
                    hint: "build the rootfs from `include` (from: scratch) instead",
                })
            }
        };
    for (path, entry) in built.rootfs.iter() {
        let dst = format!("/{path}");
        let added = match &entry.kind {
            EntryKind::Dir => tree.insert_dir(&dst, entry.mode),
            EntryKind::File { source, .. } => tree.insert_file(&dst, source, entry.mode),
            EntryKind::Symlink { target } => tree.insert_symlink(&dst, target),
        };
        added.map_err(|source| PipelineError::Rootfs {
            what: "app",
            source,
        })?;
    }
    // The cut rootfs has only the app: an entrypoint written for a shell
    // init (`/init`) would leave bunny-init nothing to start.
    if plan.entrypoint.first().map(String::as_str) == Some(INIT_PATH) {
        let program = plan.entrypoint.get(1).or(plan.cmd.first());
        if let Some(p) = program.filter(|p| p.starts_with('/')) {
            if tree.get(p.trim_start_matches('/')).is_none() {
                let mut files: Vec<String> = tree
                    .iter()
                    .filter(|(_, e)| !matches!(e.kind, EntryKind::Dir))
                    .map(|(path, _)| format!("/{path}"))
                    .filter(|path| !path.starts_with("/lib/modules/"))
                    .collect();
                files.truncate(8);
                return Err(PipelineError::AppProgram {
                    program: p.clone(),
                    files: files.join(", "),
                });
            }
        }
    }
    plan.rootfs = wrap(tree, plan.framework.as_ref());
    Ok(Some(built))
}

/// Paths inside an image are written from its root (`/.boot/kernel`); the
/// same escape checks as for the context apply below that root.
fn in_image(path: &str) -> &str {
    match path.trim_start_matches('/') {
        "" => ".",
        p => p,
    }
}

fn add_includes(
    tree: &mut Tree,
    context: &Path,
    include: &[Include],
    image_files: &dyn Fn(&str) -> Result<PathBuf, PipelineError>,
) -> Result<(), PipelineError> {
    for inc in include {
        let (base, source) = match &inc.from {
            // Docker, BuildKit and Go bunny read a leading `/` as the
            // context's root.
            Source::Local => (context.to_path_buf(), in_image(&inc.source)),
            Source::Image(r) => (image_files(r)?, in_image(&inc.source)),
            Source::Scratch => {
                return Err(PipelineError::Unsupported {
                    what: format!("include `{}` from scratch", inc.source),
                    hint: "include from `local` (the context) or from an image",
                })
            }
        };
        tree.add_from_context(&base, source, &inc.destination)
            .map_err(|source| PipelineError::Include {
                entry: format!("{}:{}", inc.source, inc.destination),
                line: inc.pos.line,
                source,
            })?;
    }
    Ok(())
}

/// Puts a finished tree back into the rootfs form it came from.
type WrapRootfs = fn(Tree, &dyn Framework) -> RootfsPlan;

/// How to build, beyond what the BunnyFile says.
pub struct BuildOptions {
    pub tags: Vec<String>,
    pub compression: CompressionChoice,
    /// SOURCE_DATE_EPOCH: every timestamp in the image.
    pub epoch: u64,
    pub gzip_initrd: bool,
    pub outputs: Vec<Output>,
}

/// What a build produced.
pub struct Built {
    pub manifest: Descriptor,
    pub urunc: UruncConfig,
}

/// Writes the plan's image into the store, tags it, and exports it.
pub fn build(
    plan: &Plan,
    store: &Store,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<Built, PipelineError> {
    let layer_opts = LayerOptions {
        mtime: opts.epoch,
        compression: opts.compression,
    };
    let scratch = store.scratch("build")?;

    // The kernel layer and the rootfs are independent: build them side by
    // side (hashing and compression are the whole cost of packing).
    let (kernel_layer, rootfs_layers) = std::thread::scope(|s| {
        let kernel = s.spawn(|| kernel_layer(plan, store, &layer_opts, progress));
        let rootfs = rootfs_layers(plan, store, opts, &layer_opts, scratch.path(), progress);
        let kernel = kernel.join().map_err(|_| PipelineError::Internal {
            what: "the kernel layer's thread panicked",
        });
        Ok::<_, PipelineError>((kernel??, rootfs?))
    })?;
    let mut layers: Vec<Layer> = kernel_layer.into_iter().collect();
    layers.extend(rootfs_layers);

    let (urunc, annotations) = plan.annotations()?;
    progress.start("urunc.json layer");
    let layer = write_layer(
        &[LayerEntry {
            path: URUNC_JSON_PATH.into(),
            content: LayerContent::Bytes(urunc.urunc_json()),
            mode: 0o644,
        }],
        &layer_opts,
        store,
    )?;
    progress.finish("urunc.json layer", &short(&layer.descriptor));
    layers.push(layer);

    let spec = ImageSpec {
        layers,
        config: ImageConfig {
            os: "linux".into(),
            architecture: plan.architecture,
            cmd: plan.cmd.clone(),
            entrypoint: plan.entrypoint.clone(),
            env: plan.env.clone(),
            labels: annotations.clone(),
            working_dir: plan.working_dir.clone(),
            user: plan.user.clone(),
            created_epoch: opts.epoch,
        },
        annotations,
    };
    let manifest = publish(&spec, store, opts, progress)?;
    Ok(Built { manifest, urunc })
}

/// The last stage of every build: writes the image's config and manifest,
/// tags it and exports it to each requested output.
pub fn publish(
    spec: &ImageSpec,
    store: &Store,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<Descriptor, PipelineError> {
    progress.start("manifest");
    let manifest = assemble(spec, store)?;
    for tag in &opts.tags {
        store.tag(tag, &manifest)?;
    }
    progress.finish("manifest", manifest.digest().as_ref());
    for out in &opts.outputs {
        let step = format!("export {}", describe(out));
        progress.start(&step);
        export(store, &manifest, &opts.tags, out)?;
        progress.finish(&step, "");
    }
    Ok(manifest)
}

fn kernel_layer(
    plan: &Plan,
    store: &Store,
    layer_opts: &LayerOptions,
    progress: &dyn Progress,
) -> Result<Option<Layer>, PipelineError> {
    let (path, kernel) = match &plan.kernel {
        KernelInput::Local(k) => (KERNEL_PATH.to_string(), k.clone()),
        // A raw rootfs carries the kernel in its own files layer; an initrd
        // or block rootfs does not show its files to urunc, so the kernel
        // gets a layer of its own at the path `binary` names.
        KernelInput::InRootfs(p) => match &plan.rootfs {
            RootfsPlan::Raw(_) => return Ok(None),
            RootfsPlan::Initrd(t) | RootfsPlan::Block(t, _) => {
                match t.get(p.trim_start_matches('/')).map(|e| &e.kind) {
                    Some(EntryKind::File { source, .. }) => (p.clone(), source.clone()),
                    _ => {
                        return Err(PipelineError::Labels {
                            message: format!(
                                "com.urunc.unikernel.binary names `{p}`, which no COPY put in the image"
                            ),
                        })
                    }
                }
            }
            RootfsPlan::None | RootfsPlan::Prebuilt { .. } => {
                return Err(PipelineError::Labels {
                    message: format!(
                        "com.urunc.unikernel.binary names `{p}`, but the image has no files"
                    ),
                })
            }
        },
        KernelInput::App => {
            return Err(PipelineError::Internal {
                what: "the app was not built (prepare_app) before packing",
            })
        }
        KernelInput::Source(..) => {
            return Err(PipelineError::Internal {
                what: "the kernel was not built (prepare_app) before packing",
            })
        }
    };
    // The kernel keeps its own mode, as Go bunny's copy does (timestamps are
    // the epoch's, for reproducible digests).
    let mode = std::fs::metadata(&kernel)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
        .map_err(|source| PipelineError::Io {
            context: format!("reading {}", kernel.display()),
            source,
        })?;
    progress.start("kernel layer");
    let layer = write_layer(
        &[LayerEntry {
            path,
            content: LayerContent::File(kernel),
            mode,
        }],
        layer_opts,
        store,
    )?;
    progress.finish("kernel layer", &short(&layer.descriptor));
    Ok(Some(layer))
}

/// Writes the rootfs (initrd or block image, or the raw files) and its layers.
fn rootfs_layers(
    plan: &Plan,
    store: &Store,
    opts: &BuildOptions,
    layer_opts: &LayerOptions,
    scratch: &Path,
    progress: &dyn Progress,
) -> Result<Vec<Layer>, PipelineError> {
    let mut layers = Vec::new();
    let rootfs_file: Option<PathBuf> = match &plan.rootfs {
        RootfsPlan::None | RootfsPlan::Raw(_) => None,
        RootfsPlan::Prebuilt { path, .. } => Some(path.clone()),
        RootfsPlan::Initrd(tree) => {
            progress.start("initrd");
            let path = scratch.join("rootfs.cpio");
            let file = std::fs::File::create(&path).map_err(|source| PipelineError::Io {
                context: format!("creating {}", path.display()),
                source,
            })?;
            let size = write_initrd(
                tree,
                std::io::BufWriter::new(file),
                &InitrdOptions {
                    mtime: opts.epoch,
                    gzip: opts.gzip_initrd,
                },
            )
            .map_err(|source| PipelineError::Rootfs {
                what: "initrd",
                source,
            })?;
            progress.finish("initrd", &format!("{} entries, {size} bytes", tree.len()));
            Some(path)
        }
        RootfsPlan::Block(tree, fs) => {
            progress.start("block image");
            let mut tree = tree.clone();
            plan.framework
                .complete_block_root(&mut tree)
                .map_err(|source| PipelineError::Rootfs {
                    what: "block",
                    source,
                })?;
            let tree = &tree;
            let path = scratch.join("rootfs.img");
            build_block(
                tree,
                *fs,
                &path,
                &BlockOptions {
                    mtime: opts.epoch,
                    label: None,
                },
            )
            .map_err(|source| PipelineError::Rootfs {
                what: "block",
                source,
            })?;
            progress.finish("block image", &format!("{fs}, {} entries", tree.len()));
            Some(path)
        }
    };
    if let Some(path) = rootfs_file {
        let mut entries = vec![LayerEntry {
            path: ROOTFS_PATH.into(),
            content: LayerContent::File(path),
            mode: 0o644,
        }];
        if let Some(modules) = plan.boot_stage_modules() {
            progress.start("boot stage");
            let stage = write_boot_stage(plan, &modules, opts, scratch)?;
            progress.finish("boot stage", &format!("{} modules", modules.len()));
            entries.push(LayerEntry {
                path: BOOT_STAGE_PATH.into(),
                content: LayerContent::File(stage),
                mode: 0o644,
            });
        }
        progress.start("rootfs layer");
        let layer = write_layer(&entries, layer_opts, store)?;
        progress.finish("rootfs layer", &short(&layer.descriptor));
        layers.push(layer);
    }
    if let RootfsPlan::Raw(tree) = &plan.rootfs {
        progress.start("rootfs files layer");
        let layer = write_layer(&tree_entries(tree), layer_opts, store)?;
        progress.finish("rootfs files layer", &short(&layer.descriptor));
        layers.push(layer);
    }
    Ok(layers)
}

/// The boot stage's initrd: bunny-init as `/init`, the marker that makes it
/// act as the stage, and the modules.
fn write_boot_stage(
    plan: &Plan,
    modules: &BTreeMap<String, PathBuf>,
    opts: &BuildOptions,
    scratch: &Path,
) -> Result<PathBuf, PipelineError> {
    let init = match &plan.init_binary {
        Some(p) => p.clone(),
        None => crate::containerfile::find_init().map_err(|e| PipelineError::Init {
            message: format!("the boot stage that mounts the block root needs it: {e}"),
        })?,
    };
    crate::containerfile::check_static(&init).map_err(|e| PipelineError::Init {
        message: e.to_string(),
    })?;
    let marker = scratch.join("boot-stage");
    std::fs::write(&marker, b"").map_err(|source| PipelineError::Io {
        context: format!("writing {}", marker.display()),
        source,
    })?;
    let rootfs = |source| PipelineError::Rootfs {
        what: "boot stage",
        source,
    };
    let mut tree = Tree::new();
    tree.insert_file("/init", &init, 0o755).map_err(rootfs)?;
    tree.insert_dir("/.bunny", 0o755).map_err(rootfs)?;
    tree.insert_file(BOOT_STAGE_MARKER, &marker, 0o644)
        .map_err(rootfs)?;
    tree.insert_dir("/lib", 0o755).map_err(rootfs)?;
    tree.insert_dir("/lib/modules", 0o755).map_err(rootfs)?;
    for (name, source) in modules {
        tree.insert_file(&format!("/lib/modules/{name}.ko"), source, 0o644)
            .map_err(rootfs)?;
    }
    let path = scratch.join("boot-stage.cpio");
    let file = std::fs::File::create(&path).map_err(|source| PipelineError::Io {
        context: format!("creating {}", path.display()),
        source,
    })?;
    write_initrd(
        &tree,
        std::io::BufWriter::new(file),
        &InitrdOptions {
            mtime: opts.epoch,
            gzip: opts.gzip_initrd,
        },
    )
    .map_err(rootfs)?;
    Ok(path)
}

fn tree_entries(tree: &Tree) -> Vec<LayerEntry> {
    tree.iter()
        .map(|(path, entry)| LayerEntry {
            path: format!("/{path}"),
            content: match &entry.kind {
                EntryKind::Dir => LayerContent::Dir,
                EntryKind::File { source, .. } => LayerContent::File(source.clone()),
                EntryKind::Symlink { target } => LayerContent::Symlink(target.clone()),
            },
            mode: entry.mode,
        })
        .collect()
}

fn short(d: &Descriptor) -> String {
    let digest = d.digest().to_string();
    let hex = digest.rsplit(':').next().unwrap_or(&digest);
    format!("{} ({} bytes)", &hex[..hex.len().min(12)], d.size())
}

fn describe(out: &Output) -> String {
    match out {
        Output::OciLayout { dir } => format!("oci layout {}", dir.display()),
        Output::OciArchive { file } => format!("oci archive {}", file.display()),
        Output::DockerArchive { file } => format!("docker archive {}", file.display()),
    }
}
