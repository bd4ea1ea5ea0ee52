//! `bunny build` end to end: a validated BunnyFile becomes a [`Plan`] (what
//! goes where, all paths resolved inside the context), and the plan becomes an
//! image in the store, then in each requested output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::image::Descriptor;
use thiserror::Error;

use crate::bunnyfile::{BunnyFile, Include, Source};
use crate::frameworks::{self, Framework};
use crate::layers::block::{build_block, BlockOptions};
use crate::layers::error::LayerError;
use crate::layers::initrd::{write_initrd, InitrdOptions};
use crate::layers::store::{Store, StoreError};
use crate::layers::tree::{resolve_in_context, EntryKind, Tree};
use crate::oci::annotations::{UruncConfig, KERNEL_PATH, ROOTFS_PATH, URUNC_JSON_PATH};
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
}

/// Where the pipeline reports what it is doing; the CLI draws it.
pub trait Progress: Send + Sync {
    fn start(&self, step: &str);
    fn finish(&self, step: &str, detail: &str);
    fn warn(&self, message: &str);
    /// One line a build step printed (issue 7); displays that draw bars
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
    #[error("internal error: {what}; please report it")]
    Internal { what: &'static str },
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Building the `app` in build containers (issue 7).
    #[error(transparent)]
    Build(#[from] crate::build::BuildError),
}

/// The kernel the image carries.
#[derive(Debug)]
pub enum KernelInput {
    Local(PathBuf),
    /// Built from the BunnyFile's `app` by [`prepare_app`] (issue 7).
    App,
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
    /// The `app` to build before packing, and the context it is read from
    /// (issue 7); [`prepare_app`] builds it.
    pub app: Option<(crate::bunnyfile::App, PathBuf)>,
}

impl Plan {
    /// urunc's settings for this image.
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
        UruncConfig {
            unikernel_type: self.framework.unikernel_type().to_string(),
            hypervisor: self.monitor.as_str().to_string(),
            binary: KERNEL_PATH.to_string(),
            cmdline: self.cmdline.clone(),
            initrd,
            block,
            blk_mnt_point,
            mount_rootfs,
            unikernel_version: self.unikernel_version.clone(),
        }
    }
}

/// Resolves a BunnyFile against its context. Nothing is written.
pub fn plan(
    bf: &BunnyFile,
    context: &Path,
    architecture: Option<Arch>,
    images: &dyn ImageSource,
) -> Result<Plan, PipelineError> {
    let image_files = |reference: &str| {
        images
            .files(reference)
            .map_err(|source| PipelineError::Image {
                reference: reference.to_string(),
                source,
            })
    };
    let framework = frameworks::resolve(&bf.platforms.framework.value);

    let kernel = match &bf.kernel {
        Some(k) => match &k.from.value {
            Source::Local => {
                KernelInput::Local(resolve_in_context(context, &k.path.value).map_err(
                    |source| PipelineError::Kernel {
                        path: k.path.value.clone(),
                        source,
                    },
                )?)
            }
            Source::Image(r) => KernelInput::Local(
                resolve_in_context(&image_files(r)?, in_image(&k.path.value)).map_err(
                    |source| PipelineError::Kernel {
                        path: format!("{} in image {r}", k.path.value),
                        source,
                    },
                )?,
            ),
            Source::Scratch => {
                return Err(PipelineError::Unsupported {
                    what: "a kernel `from: scratch`".into(),
                    hint: "write `from: local` or `from: IMAGE` with a `path`",
                })
            }
        },
        // Issue 7: the framework builds the kernel side from `app`.
        None if bf.app.is_some() => KernelInput::App,
        // The validator already refuses this; kept as an error, not a panic.
        None => {
            return Err(PipelineError::Unsupported {
                what: "a BunnyFile with neither `kernel` nor `app`".into(),
                hint: "add `kernel:` (a prebuilt kernel) or `app:` (build from source)",
            })
        }
    };

    let kind = bf.rootfs.kind_or(framework.default_rootfs_type());
    let rootfs = match &bf.rootfs.from.value {
        Source::Image(r) => {
            let dir = image_files(r)?;
            match &bf.rootfs.path {
                Some(p) => RootfsPlan::Prebuilt {
                    path: resolve_in_context(&dir, in_image(&p.value)).map_err(|source| {
                        PipelineError::RootfsPath {
                            path: format!("{} in image {r}", p.value),
                            source,
                        }
                    })?,
                    kind,
                },
                // The image's own files are the rootfs, with the includes on top
                // (the Go bunny's raw-rootfs update).
                None => {
                    let mut tree = Tree::new();
                    tree.add_from_context(&dir, ".", "/").map_err(|source| {
                        PipelineError::RootfsPath {
                            path: format!("the files of image {r}"),
                            source,
                        }
                    })?;
                    add_includes(&mut tree, context, &bf.rootfs.include, &image_files)?;
                    match kind {
                        RootfsType::Initrd => RootfsPlan::Initrd(tree),
                        RootfsType::Block => RootfsPlan::Block(tree, framework.block_fs()),
                        RootfsType::Raw => RootfsPlan::Raw(tree),
                    }
                }
            }
        }
        Source::Local => match &bf.rootfs.path {
            Some(p) => RootfsPlan::Prebuilt {
                path: resolve_in_context(context, &p.value).map_err(|source| {
                    PipelineError::RootfsPath {
                        path: p.value.clone(),
                        source,
                    }
                })?,
                kind,
            },
            None => RootfsPlan::None,
        },
        Source::Scratch if bf.rootfs.include.is_empty() => RootfsPlan::None,
        Source::Scratch => {
            let mut tree = Tree::new();
            add_includes(&mut tree, context, &bf.rootfs.include, &image_files)?;
            match kind {
                RootfsType::Initrd => RootfsPlan::Initrd(tree),
                RootfsType::Block => RootfsPlan::Block(tree, framework.block_fs()),
                RootfsType::Raw => RootfsPlan::Raw(tree),
            }
        }
    };

    let cmdline = match &bf.cmdline {
        Some(c) => Some(c.value.clone()),
        // The Go bunny joins `cmd`; with an `entrypoint` (our extension) the
        // process urunc starts is entrypoint + cmd, so that is what we join.
        None if !bf.cmd.is_empty() || !bf.entrypoint.is_empty() => Some(
            bf.entrypoint
                .iter()
                .chain(bf.cmd.iter())
                .map(|c| c.value.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        None => None,
    };

    Ok(Plan {
        monitor: bf.platforms.monitor.value,
        architecture: architecture.unwrap_or(bf.platforms.architecture.value),
        kernel,
        rootfs,
        // The Go bunny's rule: with no `cmd`, the image's Cmd is `cmdline`
        // split at spaces, so urunc's process args match the annotation.
        cmd: if bf.cmd.is_empty() {
            bf.cmdline
                .as_ref()
                .map(|c| c.value.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        } else {
            bf.cmd.iter().map(|s| s.value.clone()).collect()
        },
        entrypoint: bf.entrypoint.iter().map(|s| s.value.clone()).collect(),
        env: bf.envs.iter().map(|s| s.value.clone()).collect(),
        cmdline,
        unikernel_version: bf.platforms.version.as_ref().map(|v| v.value.clone()),
        app: bf.app.clone().map(|a| (a, context.to_path_buf())),
        framework,
    })
}

/// Issue 7: builds the plan's `app` in build containers and points the plan's
/// kernel and rootfs at the result (the app's files join any `include`d ones
/// in the initrd). Call before [`build`]; keep the returned value alive until
/// `build` has written the image (it owns generated files the plan points at).
pub fn prepare_app(
    plan: &mut Plan,
    store: &Store,
    opts: &crate::build::AppOptions,
    progress: &dyn Progress,
) -> Result<Option<crate::build::BuiltApp>, PipelineError> {
    let Some((app, context)) = &plan.app else {
        return Ok(None);
    };
    // The steps may depend on the target (rumprun bakes per monitor).
    let opts = crate::build::AppOptions {
        monitor: Some(plan.monitor),
        architecture: Some(plan.architecture),
        ..opts.clone()
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
    // stay), in the framework's default form when it names none: an initrd
    // for linux, a block image for rumprun and freebsd.
    let (mut tree, wrap): (Tree, WrapRootfs) =
        match std::mem::replace(&mut plan.rootfs, RootfsPlan::None) {
            RootfsPlan::None => (
                Tree::new(),
                match plan.framework.default_rootfs_type() {
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
            Source::Local => (context.to_path_buf(), inc.source.as_str()),
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
    let mut layers = vec![kernel_layer];
    layers.extend(rootfs_layers);

    let urunc = plan.urunc();
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

    let annotations: BTreeMap<String, String> = urunc.to_annotations();
    let spec = ImageSpec {
        layers,
        config: ImageConfig {
            os: "linux".into(),
            architecture: plan.architecture,
            cmd: plan.cmd.clone(),
            entrypoint: plan.entrypoint.clone(),
            env: plan.env.clone(),
            labels: annotations.clone(),
            working_dir: None,
            user: None,
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
) -> Result<Layer, PipelineError> {
    let kernel = match &plan.kernel {
        KernelInput::Local(k) => k,
        KernelInput::App => {
            return Err(PipelineError::Internal {
                what: "the app was not built (prepare_app) before packing",
            })
        }
    };
    progress.start("kernel layer");
    let layer = write_layer(
        &[LayerEntry {
            path: KERNEL_PATH.into(),
            content: LayerContent::File(kernel.clone()),
            mode: 0o755,
        }],
        layer_opts,
        store,
    )?;
    progress.finish("kernel layer", &short(&layer.descriptor));
    Ok(layer)
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
        progress.start("rootfs layer");
        let layer = write_layer(
            &[LayerEntry {
                path: ROOTFS_PATH.into(),
                content: LayerContent::File(path),
                mode: 0o644,
            }],
            layer_opts,
            store,
        )?;
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
