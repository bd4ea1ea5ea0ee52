//! `bunny-frontend pack`: bunny's own build, run by BuildKit as an exec op.
//!
//! The frontend turns a build file into LLB whose last exec op runs this
//! binary (mounted from the frontend image) with everything the build reads
//! mounted read-only: the context, each image the file names, the
//! framework's layers and the toolchain steps' output. It builds the image
//! exactly as `bunny build` does (same planner, writers, init, config), into a
//! throw-away store, then lays the image's files out in one output mount and
//! its config and annotations in another, which the frontend returns to
//! BuildKit. So `docker build` and `bunny build` give the same bytes: there
//! is one implementation, not two.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use bunny::layers::store::Store;
use bunny::oci::layer::{Compression, CompressionChoice};
use bunny::pipeline::{self, BuildOptions, ImageSource, Progress};
use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};

use crate::error::FrontendError;

/// Where the pack op finds its spec.
pub const SPEC_DIR: &str = "/.bunny/spec";
pub const SPEC_FILE: &str = "pack.json";
/// The frontend image, mounted into the pack op (the binary and bunny-init).
pub const BIN_DIR: &str = "/.bunny/bin";
/// The outputs: the image's files, and its config and annotations.
pub const OUT_DIR: &str = "/.bunny/out";
pub const META_DIR: &str = "/.bunny/meta";
pub const META_CONFIG: &str = "config.json";
pub const META_ANNOTATIONS: &str = "annotations.json";
/// Written instead of the image when the pack step fails and the spec asks
/// for it: `{"message", "code", "line"}`.
pub const META_ERROR: &str = "error.json";

/// A pack step's failure as the frontend reads it back from [`META_ERROR`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PackFailure {
    pub message: String,
    /// The gRPC code: NotFound when a file the build reads is missing,
    /// else Unknown.
    pub code: i32,
    /// The build file's line the failure is about, when known.
    pub line: Option<usize>,
}

/// Everything the pack op needs besides its mounts; written by the frontend
/// as a small file in the LLB.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PackSpec {
    pub file_name: String,
    /// The build file itself (at most 1 MiB, as the parsers accept).
    pub file: String,
    pub epoch: u64,
    /// The build context's mount point.
    pub context: String,
    /// `from: IMAGE` references -> their mounted files and (when BuildKit
    /// resolved it) their config.
    pub images: BTreeMap<String, PackImage>,
    /// A framework layer's mount point, by layer name (`toolchain`,
    /// `kernel`, ...).
    pub layers: BTreeMap<String, String>,
    /// The last toolchain step's `/out`, for a BunnyFile with `app`.
    pub app_output: Option<String>,
    /// A Containerfile's kernel image (linux guests without a kernel).
    pub kernel: Option<PackImage>,
    /// bunny-init (Containerfile linux guests).
    pub init: Option<String>,
    pub out: String,
    pub meta: String,
    /// Report a failure the inputs decide (a missing file, a bad path) in
    /// `meta` and exit 0 instead of failing the step: the frontend then
    /// returns it with its code and line, where BuildKit would only say that
    /// a process exited 1. The LLB a user solves directly (`--llb`) leaves
    /// it off, so a failure fails the solve.
    #[serde(default)]
    pub report_errors: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PackImage {
    pub reference: String,
    pub dir: String,
    /// The image config's `config` object (Env, Cmd, Labels, ...).
    pub config: Option<serde_json::Value>,
}

struct MountedImages<'a> {
    images: &'a BTreeMap<String, PackImage>,
    /// A Containerfile's kernel image, the framework's `kernel` layer.
    kernel: Option<&'a PackImage>,
}

impl ImageSource for MountedImages<'_> {
    fn layer(
        &self,
        framework: &dyn bunny::frameworks::Framework,
        name: &str,
    ) -> Result<(String, PathBuf), Box<dyn std::error::Error + Send + Sync>> {
        match self.kernel {
            Some(k) if name.starts_with("kernel") => {
                Ok((k.reference.clone(), PathBuf::from(&k.dir)))
            }
            _ => Err(format!(
                "layer `{}.{name}` was not mounted into the pack step",
                framework.name()
            )
            .into()),
        }
    }

    fn files(&self, reference: &str) -> Result<PathBuf, Box<dyn std::error::Error + Send + Sync>> {
        self.images
            .get(reference)
            .map(|i| PathBuf::from(&i.dir))
            .ok_or_else(|| format!("image `{reference}` was not mounted into the pack step").into())
    }

    fn config(&self, reference: &str) -> Option<oci_spec::image::Config> {
        let value = self.images.get(reference)?.config.clone()?;
        serde_json::from_value(value).ok()
    }
}

/// Progress as plain lines on stderr: BuildKit shows them under the step.
struct Lines;

impl Progress for Lines {
    fn start(&self, _step: &str) {}
    fn finish(&self, step: &str, detail: &str) {
        eprintln!("{step}: {detail}");
    }
    fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }
}

/// Runs the pack step described by the spec at `path`.
pub fn run(path: &Path) -> Result<(), FrontendError> {
    let bytes = std::fs::read(path).map_err(FrontendError::io(format!(
        "reading the pack spec {}",
        path.display()
    )))?;
    let spec: PackSpec = serde_json::from_slice(&bytes).map_err(|e| FrontendError::Io {
        context: format!("reading the pack spec {}", path.display()),
        source: std::io::Error::other(e),
    })?;
    match pack(&spec) {
        // Only failures the inputs decide are reported: BuildKit caches a
        // step that exits 0, and a passing fault (a full disk, a package
        // mirror down) must not be replayed from the cache.
        Err(e) if spec.report_errors && pack_code(&e) != crate::error::code::UNKNOWN => {
            let chain = crate::gateway::chain(&e);
            // Named after the build file, as the frontend's own errors are.
            let message = if chain.starts_with(&spec.file_name) {
                chain
            } else {
                format!("{}: {chain}", spec.file_name)
            };
            let failure = PackFailure {
                message,
                code: pack_code(&e),
                line: pack_line(&e),
            };
            // Also in the step's log, as without the report.
            eprintln!("bunny-frontend: error: {}", failure.message);
            let p = Path::new(&spec.meta).join(META_ERROR);
            let json = serde_json::to_vec(&failure).map_err(|e| FrontendError::Io {
                context: format!("encoding {}", p.display()),
                source: std::io::Error::other(e),
            })?;
            std::fs::write(&p, json).map_err(FrontendError::io(format!("writing {}", p.display())))
        }
        r => r,
    }
}

/// NotFound when the failure comes from a file that is not there (an
/// include's source in an image, a kernel path), else Unknown.
fn pack_code(e: &FrontendError) -> i32 {
    match e {
        FrontendError::Pack { code, .. } => *code,
        e => match (classify(e), e.code()) {
            (crate::error::code::UNKNOWN, crate::error::code::INVALID_ARGUMENT) => {
                crate::error::code::INVALID_ARGUMENT
            }
            (c, _) => c,
        },
    }
}

/// A failure's code from its chain: a file that is not there is NotFound,
/// a path or file the rootfs writers refuse is InvalidArgument (both are
/// decided by the inputs); anything else is Unknown.
fn classify(e: &(dyn std::error::Error + 'static)) -> i32 {
    use bunny::layers::LayerError as L;
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::NotFound {
                return crate::error::code::NOT_FOUND;
            }
        }
        if let Some(
            L::EscapesRoot { .. }
            | L::InvalidDestination { .. }
            | L::OutsideContext { .. }
            | L::SymlinkEscape { .. }
            | L::UnsupportedFileType { .. }
            | L::NotAFile { .. }
            | L::NonUtf8Path { .. }
            | L::Conflict { .. },
        ) = s.downcast_ref::<L>()
        {
            return crate::error::code::INVALID_ARGUMENT;
        }
        source = s.source();
    }
    crate::error::code::UNKNOWN
}

/// The build file's line a pipeline error names (`... (BunnyFile line N)`,
/// as bunny's planner words it whatever the file is called).
fn pack_line(e: &FrontendError) -> Option<usize> {
    if let Some(pos) = e.position() {
        return Some(pos.line);
    }
    let text = e.to_string();
    let marker = "(BunnyFile line ";
    let at = text.find(marker)? + marker.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn pack(spec: &PackSpec) -> Result<(), FrontendError> {
    let scratch = tempfile::Builder::new()
        .prefix("bunny-pack-")
        .tempdir()
        .map_err(FrontendError::io("creating a scratch directory"))?;
    let store = Store::open(&scratch.path().join("store")).map_err(|e| FrontendError::Io {
        context: "opening a scratch store".into(),
        source: std::io::Error::other(crate::gateway::chain(&e)),
    })?;
    let opts = BuildOptions {
        tags: Vec::new(),
        // The layers are unpacked right away: compressing them would be
        // wasted work (the digests of the files do not depend on it).
        compression: CompressionChoice::Fixed(Compression::None),
        epoch: spec.epoch,
        gzip_initrd: false,
        outputs: Vec::new(),
    };
    let images = MountedImages {
        images: &spec.images,
        kernel: spec.kernel.as_ref(),
    };
    let context = Path::new(&spec.context);
    let progress = Lines;
    let fail = |e: &(dyn std::error::Error + 'static)| FrontendError::Pack {
        file: spec.file_name.clone(),
        message: crate::gateway::chain(e),
        code: classify(e),
    };
    // One planner and one packer for both formats: each becomes the same
    // build model first.
    let (model, app_opts) = match crate::translate::detect(&spec.file) {
        crate::translate::Syntax::BunnyFile => {
            let parsed = bunny::bunnyfile::parse_bytes(&spec.file_name, spec.file.as_bytes())?;
            let app_opts = bunny::build::AppOptions {
                prebuilt: Some(bunny::build::PrebuiltSteps {
                    output: spec
                        .app_output
                        .as_ref()
                        .map(PathBuf::from)
                        .unwrap_or_else(|| context.to_path_buf()),
                    layers: spec
                        .layers
                        .iter()
                        .map(|(k, v)| (k.clone(), PathBuf::from(v)))
                        .collect(),
                }),
                ..Default::default()
            };
            (
                bunny::bunnyfile::spec::to_spec(&parsed.bunnyfile, &spec.file_name),
                app_opts,
            )
        }
        crate::translate::Syntax::Containerfile => {
            let parsed = bunny::containerfile::parse_bytes(&spec.file_name, spec.file.as_bytes())
                .map_err(|e| fail(&e))?;
            let model =
                bunny::containerfile::to_spec(&parsed.containerfile, &spec.file_name, &images)
                    .map_err(|e| fail(&e))?;
            (model, bunny::build::AppOptions::default())
        }
    };
    let mut plan = pipeline::plan(
        &model,
        &pipeline::PlanInputs {
            context,
            architecture: None,
            images: &images,
            init: spec.init.as_ref().map(PathBuf::from),
        },
    )
    .map_err(|e| fail(&e))?;
    let _app =
        pipeline::prepare_app(&mut plan, &store, &app_opts, &progress).map_err(|e| fail(&e))?;
    let manifest = pipeline::build(&plan, &store, &opts, &progress)
        .map_err(|e| fail(&e))?
        .manifest;
    lay_out(&store, manifest.digest().as_ref(), spec)
}

/// The image's files into `spec.out` (timestamps = SOURCE_DATE_EPOCH, as in
/// the layers), its config and manifest annotations into `spec.meta`.
fn lay_out(store: &Store, manifest: &str, spec: &PackSpec) -> Result<(), FrontendError> {
    let out = Path::new(&spec.out);
    let unpacked = bunny::layers::store::descriptor(
        oci_spec::image::MediaType::ImageManifest.as_ref(),
        0,
        manifest,
    )
    .map_err(bunny::layers::image_fs::ImageFsError::from)
    .and_then(|desc| bunny::layers::image_fs::unpack_image(store, &desc, out));
    unpacked.map_err(|e| FrontendError::Pack {
        file: spec.file_name.clone(),
        message: crate::gateway::chain(&e),
        code: crate::error::code::UNKNOWN,
    })?;
    stamp(out, spec.epoch)?;
    let t = filetime::FileTime::from_unix_time(i64::try_from(spec.epoch).unwrap_or(i64::MAX), 0);
    filetime::set_file_times(out, t, t).map_err(FrontendError::io(format!(
        "setting the time of {}",
        out.display()
    )))?;

    let read_json = |digest: &str| -> Result<BufReader<std::fs::File>, FrontendError> {
        store
            .open_blob(digest)
            .map(BufReader::new)
            .map_err(|e| FrontendError::Io {
                context: format!("reading blob {digest}"),
                source: std::io::Error::other(crate::gateway::chain(&e)),
            })
    };
    let bad = |what: &str, e: &dyn std::error::Error| FrontendError::Io {
        context: format!("reading the image's {what}"),
        source: std::io::Error::other(e.to_string()),
    };
    let m = ImageManifest::from_reader(read_json(manifest)?).map_err(|e| bad("manifest", &e))?;
    let config = ImageConfiguration::from_reader(read_json(m.config().digest().as_ref())?)
        .map_err(|e| bad("config", &e))?;
    let meta = Path::new(&spec.meta);
    let write = |name: &str, json: serde_json::Result<Vec<u8>>| -> Result<(), FrontendError> {
        let p = meta.join(name);
        let bytes = json.map_err(|e| FrontendError::Io {
            context: format!("encoding {}", p.display()),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&p, bytes).map_err(FrontendError::io(format!("writing {}", p.display())))
    };
    write(META_CONFIG, serde_json::to_vec(&config))?;
    let annotations: BTreeMap<String, String> = m
        .annotations()
        .clone()
        .map(|a| a.into_iter().collect())
        .unwrap_or_default();
    write(META_ANNOTATIONS, serde_json::to_vec(&annotations))
}

/// Sets every entry's modification time to `epoch`: the unpacker writes
/// contents and modes, and BuildKit exports the files with their mtimes.
fn stamp(dir: &Path, epoch: u64) -> Result<(), FrontendError> {
    let t = filetime::FileTime::from_unix_time(i64::try_from(epoch).unwrap_or(i64::MAX), 0);
    let entries =
        std::fs::read_dir(dir).map_err(FrontendError::io(format!("reading {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(FrontendError::io(format!("reading {}", dir.display())))?;
        let path = entry.path();
        let ty = entry
            .file_type()
            .map_err(FrontendError::io(format!("reading {}", path.display())))?;
        if ty.is_dir() {
            stamp(&path, epoch)?;
        }
        filetime::set_symlink_file_times(&path, t, t).map_err(FrontendError::io(format!(
            "setting the time of {}",
            path.display()
        )))?;
    }
    Ok(())
}
