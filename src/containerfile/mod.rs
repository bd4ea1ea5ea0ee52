//! Containerfile input (issue 11): the Dockerfile-like format pun, bima and
//! the Go bunny read, as an alternative to a BunnyFile.
//!
//! [`parse`]/[`load`] read the file into a [`Containerfile`] (errors are
//! [`Diagnostic`]s with `file:line:col`, like BunnyFile errors); [`build`]
//! turns it into the same image a BunnyFile build makes: the urunc keys in
//! manifest annotations, config labels and `/urunc.json`. Linux guests get
//! the framework's default kernel when no `com.urunc.unikernel.binary` is
//! given, and bunny-init at `/urunit` ahead of the entrypoint unless
//! `LABEL bunny.urunit=false`. The format is documented in
//! `docs/containerfile.md`, the init in `docs/init.md`.

mod parse;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use parse::{is_containerfile, INSTRUCTIONS};

use crate::bunnyfile::{Diagnostic, Diagnostics, Pos, Severity};
use crate::layers::block::{build_block, BlockOptions};
use crate::layers::error::LayerError;
use crate::layers::initrd::{write_initrd, InitrdOptions};
use crate::layers::store::Store;
use crate::layers::tree::{EntryKind, Tree};
use crate::oci::annotations::{
    UruncConfig, KERNEL_PATH, KEY_BINARY, KEY_BLK_MNT_POINT, KEY_BLOCK, KEY_CMDLINE,
    KEY_HYPERVISOR, KEY_INITRD, KEY_MOUNT_ROOTFS, KEY_UNIKERNEL_TYPE, KEY_USE_DM_BLOCK, PREFIX,
    ROOTFS_PATH,
};
use crate::oci::error::OciError;
use crate::oci::image::{ImageConfig, ImageSpec};
use crate::oci::layer::{write_layer, LayerContent, LayerEntry, LayerOptions};
use crate::pipeline::{BuildOptions, Built, ImageSource, Progress};
use crate::platform::{Arch, BlockFs};

/// Largest Containerfile accepted, as for BunnyFiles.
pub const MAX_FILE_BYTES: usize = crate::bunnyfile::MAX_FILE_BYTES;
/// The label that turns the init off (the Go bunny's name).
pub const LABEL_URUNIT: &str = "bunny.urunit";
/// The label choosing the guest rootfs form for Linux: initrd, block, raw.
pub const LABEL_ROOTFS: &str = "bunny.rootfs";
/// Where the init goes. urunc passes its urunit configuration only to an
/// init whose path contains `urunit`, so the name matters.
pub const INIT_PATH: &str = "/urunit";
/// The init's configuration baked into the image (WORKDIR, USER), in
/// urunit's format.
pub const INIT_CONFIG_PATH: &str = "/.bunny/urunit.conf";

/// `FROM`'s argument.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Base {
    #[default]
    Scratch,
    Image(String),
}

/// One source of a `COPY` (or local `ADD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInstr {
    /// `--from=IMAGE`; `None` is the build context.
    pub from: Option<String>,
    pub source: String,
    /// Ends in `/` when the source goes inside it.
    pub dest: String,
    pub pos: Pos,
}

/// A parsed Containerfile, `ARG`s substituted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Containerfile {
    pub base: Base,
    pub from_pos: Pos,
    pub copies: Vec<CopyInstr>,
    pub labels: BTreeMap<String, String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// In order; a later `ENV` of the same name replaces the earlier one.
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub user_pos: Pos,
}

impl Containerfile {
    /// Whether bunny-init goes in (linux guests unless `bunny.urunit=false`).
    pub fn wants_init(&self) -> bool {
        self.unikernel_type() == "linux"
            && self.labels.get(LABEL_URUNIT).map(String::as_str) != Some("false")
    }

    /// `com.urunc.unikernel.unikernelType`, `linux` when missing.
    pub fn unikernel_type(&self) -> &str {
        self.labels
            .get(KEY_UNIKERNEL_TYPE)
            .map(String::as_str)
            .unwrap_or("linux")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub containerfile: Containerfile,
    pub warnings: Vec<Diagnostic>,
}

#[derive(Debug, Error)]
pub enum ContainerfileError {
    #[error("cannot read Containerfile {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every error found (at least one), and any warnings, in file order.
    #[error("{}", Diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ContainerfileError {
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ContainerfileError::Invalid(d) => d,
            ContainerfileError::Io { .. } => &[],
        }
    }
}

fn invalid(file: &str, pos: Pos, message: String, help: &str) -> ContainerfileError {
    ContainerfileError::Invalid(vec![Diagnostic {
        file: file.to_string(),
        pos,
        message,
        help: Some(help.to_string()),
        severity: Severity::Error,
    }])
}

/// Parses a Containerfile held in memory; `file_name` is used in diagnostics.
pub fn parse(file_name: &str, text: &str) -> Result<Parsed, ContainerfileError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(invalid(
            file_name,
            Pos { line: 1, col: 1 },
            format!(
                "the file is {} bytes; a Containerfile may be at most {MAX_FILE_BYTES} bytes",
                text.len()
            ),
            "is this the right file?",
        ));
    }
    match parse::parse(file_name, text) {
        (Some(containerfile), warnings) => Ok(Parsed {
            containerfile,
            warnings,
        }),
        (None, diags) => Err(ContainerfileError::Invalid(diags)),
    }
}

/// Like [`parse`], for bytes that may not be UTF-8.
pub fn parse_bytes(file_name: &str, bytes: &[u8]) -> Result<Parsed, ContainerfileError> {
    match std::str::from_utf8(bytes) {
        Ok(t) => parse(file_name, t),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            Err(invalid(
                file_name,
                Pos { line, col: 1 },
                "the file is not valid UTF-8".into(),
                "save the Containerfile as UTF-8 text",
            ))
        }
    }
}

/// Reads and parses the Containerfile at `path`.
pub fn load(path: &Path) -> Result<Parsed, ContainerfileError> {
    let io = |source| ContainerfileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    parse_bytes(&path.display().to_string(), &bytes)
}

#[derive(Debug, Error)]
pub enum ContainerfileBuildError {
    #[error("{file}:{line}: image `{reference}`")]
    Image {
        file: String,
        line: usize,
        reference: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{file}:{line}: COPY `{source_path}` to `{dest}`")]
    Copy {
        file: String,
        line: usize,
        source_path: String,
        dest: String,
        #[source]
        source: Box<LayerError>,
    },
    #[error("the image's files")]
    BaseFiles(#[source] Box<LayerError>),
    #[error("the default kernel image `{reference}`")]
    Kernel {
        reference: String,
        #[source]
        source: Box<crate::build::BuildError>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("bunny-init: {0}")]
    Init(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the {what}")]
    Layer {
        what: &'static str,
        #[source]
        source: Box<LayerError>,
    },
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Store(#[from] crate::layers::store::StoreError),
    #[error(transparent)]
    Publish(#[from] crate::pipeline::PipelineError),
}

/// What a Containerfile build needs besides the file.
pub struct BuildInputs<'a> {
    pub file_name: String,
    pub context: &'a Path,
    /// `FROM IMAGE` and `COPY --from=IMAGE`.
    pub images: &'a dyn ImageSource,
    /// The kernel image for Linux guests without a binary (default: the
    /// linux framework's `kernel` layer, `bunny/linux-kernel:bookworm`).
    pub kernel_image: Option<String>,
    /// The kernel image's files, already at hand (the BuildKit frontend
    /// mounts the image); when set, `kernel_image` is only its name.
    pub kernel_files: Option<PathBuf>,
    pub registry: Option<crate::oci::registry::RegistryOptions>,
    /// The static bunny-init binary (default: [`find_init`]).
    pub init: Option<PathBuf>,
    pub architecture: Arch,
}

/// The linux framework's default kernel image reference.
pub fn default_kernel_image() -> String {
    crate::frameworks::resolve("linux")
        .layers()
        .iter()
        .find(|l| l.name == "kernel")
        .map(|l| l.reference.to_string())
        .unwrap_or_else(|| "bunny/linux-kernel:bookworm".into())
}

/// Finds the static bunny-init: `$BUNNY_INIT`, else beside the running
/// bunny (`bunny-init`), else where `scripts/setup.sh` builds it
/// (`target/bunny-init/x86_64-unknown-linux-gnu/release/bunny-init`).
pub fn find_init() -> Result<PathBuf, ContainerfileBuildError> {
    if let Some(p) = std::env::var_os("BUNNY_INIT") {
        let p = PathBuf::from(p);
        check_static(&p)?;
        return Ok(p);
    }
    let mut tried = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let mut candidates = vec![dir.join("bunny-init")];
        // target/{debug,release}/bunny -> target/bunny-init/...; and tests'
        // target/debug/deps.
        for up in [dir.parent(), dir.parent().and_then(Path::parent)]
            .into_iter()
            .flatten()
        {
            candidates.push(up.join("bunny-init/x86_64-unknown-linux-gnu/release/bunny-init"));
        }
        for c in candidates {
            if c.is_file() && check_static(&c).is_ok() {
                return Ok(c);
            }
            tried.push(c.display().to_string());
        }
    }
    Err(ContainerfileBuildError::Init(format!(
        "no statically linked bunny-init found (tried {}); build it with `bash scripts/setup.sh` or set BUNNY_INIT=PATH",
        tried.join(", ")
    )))
}

/// A guest has no dynamic loader, so the init must be a static ELF: no
/// PT_INTERP program header.
pub fn check_static(path: &Path) -> Result<(), ContainerfileBuildError> {
    let bytes = std::fs::read(path).map_err(|source| ContainerfileBuildError::Io {
        context: format!("reading {}", path.display()),
        source,
    })?;
    let bad = |why: &str| {
        Err(ContainerfileBuildError::Init(format!(
            "{}: {why}",
            path.display()
        )))
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return bad("not a 64-bit little-endian ELF executable");
    }
    let u = |o: usize, n: usize| -> Option<u64> {
        let s = bytes.get(o..o + n)?;
        let mut v = 0u64;
        for (i, b) in s.iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        Some(v)
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u(32, 8), u(54, 2), u(56, 2)) else {
        return bad("truncated ELF header");
    };
    for i in 0..phnum {
        let Some(off) = usize::try_from(phoff + i * phentsize).ok() else {
            return bad("bad program header offset");
        };
        match u(off, 4) {
            Some(3) => {
                return bad(
                    "dynamically linked (has an interpreter); build it with -C target-feature=+crt-static",
                )
            }
            Some(_) => {}
            None => return bad("truncated program headers"),
        }
    }
    Ok(())
}

/// urunit's `UCS` block for WORKDIR and USER.
/// USER as numbers: a name is looked up in the image's /etc/passwd; the
/// group defaults to the user's (or the uid).
fn resolve_user(
    cf: &Containerfile,
    tree: &Tree,
    file: &str,
) -> Result<Option<(u32, u32)>, ContainerfileBuildError> {
    let Some(user) = &cf.user else {
        return Ok(None);
    };
    let (u, g) = user.split_once(':').unwrap_or((user.as_str(), ""));
    let (uid, pw_gid) = match u.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => lookup_user(tree, u).ok_or_else(|| {
            ContainerfileBuildError::Invalid(format!(
                "{file}:{}: USER `{u}` is not a number and not in the image's /etc/passwd",
                cf.user_pos.line
            ))
        })?,
    };
    let gid = if g.is_empty() {
        pw_gid.unwrap_or(uid)
    } else {
        g.parse::<u32>().map_err(|_| {
            ContainerfileBuildError::Invalid(format!(
                "{file}:{}: USER group `{g}` must be a number",
                cf.user_pos.line
            ))
        })?
    };
    Ok(Some((uid, gid)))
}

fn init_config(cf: &Containerfile, user: Option<(u32, u32)>) -> Option<String> {
    if cf.workdir.is_none() && user.is_none() {
        return None;
    }
    let mut s = String::from("UCS\n");
    if let Some((uid, gid)) = user {
        s.push_str(&format!("UID: {uid}\nGID: {gid}\n"));
    }
    if let Some(w) = &cf.workdir {
        s.push_str(&format!("WD: {w}\n"));
    }
    s.push_str("UCE\n");
    Some(s)
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

/// How the guest gets its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Initrd,
    Block,
    Raw,
}

/// Builds the image: writes layers, config and manifest into `store`, tags
/// and exports it as `opts` asks.
pub fn build(
    cf: &Containerfile,
    inputs: &BuildInputs,
    store: &Store,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<Built, ContainerfileBuildError> {
    let file = inputs.file_name.as_str();
    let image_err = |line: usize, reference: &str| {
        let reference = reference.to_string();
        let file = file.to_string();
        move |source| ContainerfileBuildError::Image {
            file,
            line,
            reference,
            source,
        }
    };
    let layer_opts = LayerOptions {
        mtime: opts.epoch,
        compression: opts.compression,
    };
    let scratch = store.scratch("containerfile")?;

    // The files: the base image's, then each COPY in order.
    let mut tree = Tree::new();
    if let Base::Image(r) = &cf.base {
        progress.start(&format!("image {r}"));
        let dir = inputs
            .images
            .files(r)
            .map_err(image_err(cf.from_pos.line, r))?;
        tree.add_from_context(&dir, ".", "/")
            .map_err(|e| ContainerfileBuildError::BaseFiles(Box::new(e)))?;
        progress.finish(&format!("image {r}"), &format!("{} entries", tree.len()));
    }
    for c in &cf.copies {
        let base = match &c.from {
            None => inputs.context.to_path_buf(),
            Some(r) => inputs.images.files(r).map_err(image_err(c.pos.line, r))?,
        };
        let src = match &c.from {
            Some(_) => match c.source.trim_start_matches('/') {
                "" => ".",
                s => s,
            },
            None => c.source.as_str(),
        };
        tree.add_from_context(&base, src, &c.dest)
            .map_err(|source| ContainerfileBuildError::Copy {
                file: file.to_string(),
                line: c.pos.line,
                source_path: c.source.clone(),
                dest: c.dest.clone(),
                source: Box::new(source),
            })?;
    }

    // `FROM image` inherits the image's config as docker does: its Env
    // (overridden key by key), Entrypoint and Cmd (a new ENTRYPOINT drops the
    // old Cmd) and Labels (overridden by this file's).
    let base_config = match &cf.base {
        Base::Image(r) => inputs.images.config(r),
        Base::Scratch => None,
    };
    let linux = cf.unikernel_type() == "linux";
    let mut labels = base_config
        .as_ref()
        .and_then(|c| c.labels().clone())
        .map(|l| l.into_iter().collect::<std::collections::BTreeMap<_, _>>())
        .unwrap_or_default();
    labels.extend(cf.labels.clone());
    labels
        .entry(KEY_UNIKERNEL_TYPE.into())
        .or_insert_with(|| "linux".into());
    labels
        .entry(KEY_HYPERVISOR.into())
        .or_insert_with(|| "qemu".into());

    let base_entrypoint = base_config.as_ref().and_then(|c| c.entrypoint().clone());
    let base_cmd = base_config.as_ref().and_then(|c| c.cmd().clone());
    let mut entrypoint = cf
        .entrypoint
        .clone()
        .or(base_entrypoint)
        .unwrap_or_default();
    let cmd = match (&cf.cmd, &cf.entrypoint) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => base_cmd.unwrap_or_default(),
    };
    let user = resolve_user(cf, &tree, file)?;
    let with_init = cf.wants_init();
    if with_init {
        let init = match &inputs.init {
            Some(p) => {
                check_static(p)?;
                p.clone()
            }
            None => find_init()?,
        };
        tree.insert_file(INIT_PATH, &init, 0o755)
            .map_err(|source| ContainerfileBuildError::Layer {
                what: "init",
                source: Box::new(source),
            })?;
        if let Some(text) = init_config(cf, user) {
            let p = scratch.path().join("urunit.conf");
            std::fs::write(&p, text).map_err(|source| ContainerfileBuildError::Io {
                context: format!("writing {}", p.display()),
                source,
            })?;
            tree.insert_file(INIT_CONFIG_PATH, &p, 0o644)
                .map_err(|source| ContainerfileBuildError::Layer {
                    what: "init configuration",
                    source: Box::new(source),
                })?;
        }
        entrypoint.insert(0, INIT_PATH.to_string());
    }

    let mut layers = Vec::new();
    let needs_kernel = linux && !labels.contains_key(KEY_BINARY);
    if needs_kernel {
        let reference = inputs
            .kernel_image
            .clone()
            .unwrap_or_else(default_kernel_image);
        progress.start("kernel");
        let kernel_err = |source| ContainerfileBuildError::Kernel {
            reference: reference.clone(),
            source: Box::new(source),
        };
        let root = match &inputs.kernel_files {
            Some(dir) => dir.clone(),
            None => {
                let (src_store, manifest) =
                    crate::build::resolve_image(store, &reference, inputs.registry.as_ref(), false)
                        .map_err(kernel_err)?;
                let resolved = crate::build::ResolvedImage {
                    reference: reference.clone(),
                    store: src_store,
                    manifest,
                };
                crate::build::rootfs::unpacked_rootfs(store.root(), &resolved)
                    .map_err(kernel_err)?
                    .0
            }
        };
        let kernel = root.join(KERNEL_PATH.trim_start_matches('/'));
        if !kernel.is_file() {
            return Err(ContainerfileBuildError::Invalid(format!(
                "the kernel image `{reference}` has no kernel at {KERNEL_PATH}"
            )));
        }
        // The kernel's modules (virtio_net, ...) go where bunny-init loads
        // them from, unless the image brings its own.
        let modules = root.join("lib/modules");
        if modules.is_dir() && tree.get("lib/modules").is_none() {
            tree.add_from_context(&root, "lib/modules", "/lib/modules")
                .map_err(|source| ContainerfileBuildError::Layer {
                    what: "kernel modules",
                    source: Box::new(source),
                })?;
        }
        let layer = write_layer(
            &[LayerEntry {
                path: KERNEL_PATH.into(),
                content: LayerContent::File(kernel),
                mode: 0o755,
            }],
            &layer_opts,
            store,
        )?;
        progress.finish("kernel", &reference);
        layers.push(layer);
        labels.insert(KEY_BINARY.into(), KERNEL_PATH.into());
    }

    // Linux guests with bunny's kernel get their files as an initrd (what
    // `bunny run` and urunc both boot), unless told otherwise.
    let form = match labels.get(LABEL_ROOTFS).map(String::as_str) {
        Some("initrd") => Form::Initrd,
        Some("block") => Form::Block,
        Some("raw") => Form::Raw,
        Some(other) => {
            return Err(ContainerfileBuildError::Invalid(format!(
                "{file}: LABEL {LABEL_ROOTFS}=`{other}`: use initrd, block or raw"
            )))
        }
        None if needs_kernel
            && labels.get(KEY_MOUNT_ROOTFS).map(String::as_str) != Some("true") =>
        {
            Form::Initrd
        }
        None => Form::Raw,
    };
    match form {
        Form::Initrd | Form::Block => {
            let is_initrd = form == Form::Initrd;
            let path = scratch.path().join(if is_initrd {
                "rootfs.cpio"
            } else {
                "rootfs.img"
            });
            progress.start("rootfs");
            if is_initrd {
                let f =
                    std::fs::File::create(&path).map_err(|source| ContainerfileBuildError::Io {
                        context: format!("creating {}", path.display()),
                        source,
                    })?;
                write_initrd(
                    &tree,
                    std::io::BufWriter::new(f),
                    &InitrdOptions {
                        mtime: opts.epoch,
                        gzip: opts.gzip_initrd,
                    },
                )
                .map_err(|source| ContainerfileBuildError::Layer {
                    what: "initrd",
                    source: Box::new(source),
                })?;
                labels.insert(KEY_INITRD.into(), ROOTFS_PATH.into());
            } else {
                build_block(
                    &tree,
                    BlockFs::Ext4,
                    &path,
                    &BlockOptions {
                        mtime: opts.epoch,
                        label: None,
                    },
                )
                .map_err(|source| ContainerfileBuildError::Layer {
                    what: "block image",
                    source: Box::new(source),
                })?;
                labels.insert(KEY_BLOCK.into(), ROOTFS_PATH.into());
                labels.insert(KEY_BLK_MNT_POINT.into(), "/".into());
            }
            layers.push(write_layer(
                &[LayerEntry {
                    path: ROOTFS_PATH.into(),
                    content: LayerContent::File(path),
                    mode: 0o644,
                }],
                &layer_opts,
                store,
            )?);
            progress.finish("rootfs", &format!("{} entries", tree.len()));
            labels
                .entry(KEY_MOUNT_ROOTFS.into())
                .or_insert_with(|| "false".into());
        }
        Form::Raw => {
            if !tree.is_empty() {
                progress.start("files layer");
                let entries: Vec<LayerEntry> = tree
                    .iter()
                    .map(|(path, e)| LayerEntry {
                        path: format!("/{path}"),
                        content: match &e.kind {
                            EntryKind::Dir => LayerContent::Dir,
                            EntryKind::File { source, .. } => LayerContent::File(source.clone()),
                            EntryKind::Symlink { target } => LayerContent::Symlink(target.clone()),
                        },
                        mode: e.mode,
                    })
                    .collect();
                layers.push(write_layer(&entries, &layer_opts, store)?);
                progress.finish("files layer", &format!("{} entries", tree.len()));
            }
            // The Go bunny's rule: with no initrd and no block root, urunc
            // gets the container rootfs.
            if !labels.contains_key(KEY_MOUNT_ROOTFS)
                && !labels.contains_key(KEY_INITRD)
                && labels.get(KEY_BLK_MNT_POINT).map(String::as_str) != Some("/")
            {
                labels.insert(KEY_MOUNT_ROOTFS.into(), "true".into());
            }
        }
    }
    if !labels.contains_key(KEY_CMDLINE) && (!entrypoint.is_empty() || !cmd.is_empty()) {
        labels.insert(
            KEY_CMDLINE.into(),
            entrypoint
                .iter()
                .chain(cmd.iter())
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    if let Some(v) = labels.get(KEY_MOUNT_ROOTFS).cloned() {
        labels.entry(KEY_USE_DM_BLOCK.into()).or_insert(v);
    }
    let urunc = UruncConfig::from_annotations(&labels).map_err(|e| {
        ContainerfileBuildError::Invalid(format!(
            "{file}: {e}; add `LABEL {KEY_BINARY}=/path/of/the/kernel` (the path the COPY put it at)"
        ))
    })?;
    // The urunc keys as urunc reads them, plus every other LABEL.
    let mut annotations = urunc.to_annotations();
    for (k, v) in &labels {
        if !k.starts_with(PREFIX) {
            annotations.insert(k.clone(), v.clone());
        }
    }

    progress.start("urunc.json layer");
    layers.push(write_layer(&[urunc.layer_entry()], &layer_opts, store)?);
    progress.finish("urunc.json layer", "");

    let spec = ImageSpec {
        layers,
        config: ImageConfig {
            os: "linux".into(),
            architecture: inputs.architecture,
            cmd,
            entrypoint,
            env: {
                let mut env: Vec<String> = base_config
                    .as_ref()
                    .and_then(|c| c.env().clone())
                    .unwrap_or_default();
                for (k, v) in &cf.env {
                    env.retain(|e| e.split('=').next() != Some(k.as_str()));
                    env.push(format!("{k}={v}"));
                }
                env
            },
            labels: annotations.clone(),
            // Numbers, not names: docker resolves a name against the
            // container's own /etc/passwd, which a unikernel image lacks.
            working_dir: cf
                .workdir
                .clone()
                .or_else(|| base_config.as_ref().and_then(|c| c.working_dir().clone())),
            user: match user {
                Some((uid, gid)) => Some(format!("{uid}:{gid}")),
                None => base_config.as_ref().and_then(|c| c.user().clone()),
            },
            created_epoch: opts.epoch,
        },
        annotations,
    };
    let manifest = crate::pipeline::publish(&spec, store, opts, progress)?;
    Ok(Built { manifest, urunc })
}
