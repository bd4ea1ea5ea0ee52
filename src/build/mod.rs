//! Build containers: a framework's build steps run in a toolchain
//! image under an OCI runtime (runc by default), with the sources read-only at
//! `/src`, a fresh output directory at `/out`, no network and a step cache.
//!
//! - [`resolve_image`]: the one place an image reference becomes blobs.
//! - [`rootfs`]: each image's layers, unpacked once per manifest digest.
//! - [`runner`]: one step under the OCI runtime.
//! - [`cache`]: step keys (toolchain, command, env, inputs) and cached outputs.
//! - [`lock`]: `bunny.lock`, the digests every dependency layer resolved to.
//! - [`app`]: the `app` section end to end, for the pipeline.
//!
//! Choosing the layers: each framework declares its layers with default
//! references ([`crate::frameworks::Framework::layers`], e.g. linux's
//! `bunny/linux-toolchain:gcc-bookworm` and `bunny/linux-kernel:bookworm`).
//! A layer `FRAMEWORK.NAME` is taken from, first to last:
//! `--toolchain FRAMEWORK=REF` (NAME `toolchain`) or
//! `--toolchain FRAMEWORK.NAME=REF`; the config file
//! `$XDG_CONFIG_HOME/bunny/config.json` (`~/.config/...` without it), shaped
//! `{"layers": {"linux.toolchain": "oci:/images:gcc-bookworm"}}`; the
//! framework's default. `bunny.lock` beside the BunnyFile then pins each
//! layer's digest (see [`lock`]); `--update-lock` re-resolves.
//!
//! Store layout this module adds under the store root: `toolchains/<hex>/rootfs`
//! (unpacked images), `build-cache/<key>/out` (step outputs), `sources/<commit>`
//! (git checkouts); all written in temp dirs beside them and renamed when
//! complete.

pub mod app;
pub mod cache;
pub mod fetch;
pub mod kernel;
pub mod lock;
pub mod rootfs;
pub mod runner;

use std::path::{Path, PathBuf};

use oci_spec::image::Descriptor;
use thiserror::Error;

use crate::layers::layout::{Layout, LayoutError};
use crate::layers::store::{Store, StoreError};
use crate::layers::unpack::UnpackError;

pub use app::{app_info, build_app, AppOptions, BuiltApp, PrebuiltSteps};
pub use runner::{Step, StepOutcome};

#[derive(Debug, Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("image `{reference}`: {message}")]
    Image { reference: String, message: String },
    #[error("image `{reference}`: {source}")]
    ImageStore {
        reference: String,
        #[source]
        source: StoreError,
    },
    #[error("the OCI layout {} is outside the build context {}; copy it into the context, or allow it with --allow-layout {}", layout.display(), context.display(), layout.display())]
    LayoutOutsideContext { layout: PathBuf, context: PathBuf },
    #[error("image `{reference}`: {source}")]
    Layout {
        reference: String,
        #[source]
        source: LayoutError,
    },
    #[error("image `{reference}`: {source}")]
    ImageFs {
        reference: String,
        #[source]
        source: crate::layers::image_fs::ImageFsError,
    },
    #[error("unpacking layer {digest} of image {manifest}: {source}")]
    Unpack {
        manifest: String,
        digest: String,
        #[source]
        source: UnpackError,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("step `{step}` could not start the OCI runtime `{runtime}`: {source} (install runc, or pass --oci-runtime PATH)")]
    RuntimeStart {
        step: String,
        runtime: String,
        #[source]
        source: std::io::Error,
    },
    #[error("step `{step}` failed ({status}): {command}\n--- last {} lines ---\n{}", last_lines.len(), last_lines.join("\n"))]
    StepFailed {
        step: String,
        command: String,
        status: String,
        last_lines: Vec<String>,
    },
    #[error("writing the step's OCI config: {0}")]
    Spec(String),
    #[error("`{command}` failed ({status}): {stderr}")]
    Tool {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("lock file {path}: {message}")]
    Lock { path: PathBuf, message: String },
    #[error("config file {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("app `{app}`: {message}")]
    App { app: String, message: String },
    #[error("framework `{framework}`: {message}")]
    Framework { framework: String, message: String },
    #[error("{key}: cannot get `{reference}` (named by {from}): {source}; name a layer you have with --toolchain {key}=REF (a registry reference, a store name, oci:DIR:TAG, or a release file by URL or path, e.g. a mirror's kernel.txz), in the config file's \"layers\", or in {lock}, which keeps the reference and digest of the last build")]
    LayerUnavailable {
        key: String,
        reference: String,
        from: String,
        lock: String,
        #[source]
        source: Box<BuildError>,
    },
    #[error("packing the app: {0}")]
    Layer(#[from] crate::layers::error::LayerError),
    #[error(transparent)]
    Fetch(Box<fetch::FetchError>),
    #[error(transparent)]
    Kernel(Box<kernel::KernelError>),
}

impl From<fetch::FetchError> for BuildError {
    fn from(e: fetch::FetchError) -> BuildError {
        BuildError::Fetch(Box::new(e))
    }
}

pub(crate) fn io_ctx(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let context = context.into();
    move |source| BuildError::Io { context, source }
}

/// A dependency layer as resolved: an image, or an archive file (see
/// [`fetch`]).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a handful per build
pub enum ResolvedLayer {
    Image(ResolvedImage),
    Archive(fetch::FetchedArchive),
}

impl ResolvedLayer {
    /// What `bunny.lock` records: the image's manifest digest, or the
    /// archive file's sha256.
    pub fn digest(&self) -> String {
        match self {
            ResolvedLayer::Image(i) => i.digest(),
            ResolvedLayer::Archive(a) => a.digest.clone(),
        }
    }
    pub fn reference(&self) -> &str {
        match self {
            ResolvedLayer::Image(i) => &i.reference,
            ResolvedLayer::Archive(a) => &a.reference,
        }
    }
    /// The layer's files: the image's rootfs or the archive's contents,
    /// unpacked once in the store.
    pub fn files(&self, store_root: &Path) -> Result<PathBuf, BuildError> {
        match self {
            ResolvedLayer::Image(i) => rootfs::unpacked_rootfs(store_root, i).map(|(p, _)| p),
            ResolvedLayer::Archive(a) => Ok(fetch::unpacked(store_root, a)?),
        }
    }
}

/// A resolved image: the store holding its blobs and its manifest.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub reference: String,
    pub store: Store,
    pub manifest: Descriptor,
}

impl ResolvedImage {
    pub fn digest(&self) -> String {
        self.manifest.digest().to_string()
    }
}

/// Finds an image's blobs and manifest.
///
/// Accepted today:
/// - `oci:DIR[:TAG]`: an OCI image layout (TAG defaults to `latest`),
/// - a path to an OCI image layout directory (its only image, or `latest`),
/// - a name (or `sha256:` manifest digest) in the local `store`.
///
/// With `registry`, a reference missing from the store (or any reference,
/// with `always_pull`) is pulled into `store` for the host's platform first.
pub fn resolve_image(
    store: &Store,
    reference: &str,
    registry: Option<&crate::oci::registry::RegistryOptions>,
    always_pull: bool,
) -> Result<(Store, Descriptor), BuildError> {
    let store_err = |source| BuildError::ImageStore {
        reference: reference.to_string(),
        source,
    };
    if let Some(rest) = reference.strip_prefix("oci:") {
        let (dir, tag) = split_layout_ref(rest);
        return import_layout(store, reference, Path::new(dir), tag);
    }
    let path = Path::new(reference);
    if path.join("oci-layout").is_file() {
        return import_layout(store, reference, path, None);
    }
    let local = if always_pull && registry.is_some() {
        Err(StoreError::NotFound {
            name: reference.to_string(),
            root: store.root().to_path_buf(),
        })
    } else {
        store.resolve(reference)
    };
    match local {
        Ok(desc) => Ok((store.clone(), desc)),
        Err(StoreError::NotFound { .. }) if registry.is_some() => {
            let opts = registry.ok_or(BuildError::Image {
                reference: reference.to_string(),
                message: "no registry options".into(),
            })?;
            let pulled = crate::oci::registry::pull(
                store,
                reference,
                &crate::oci::registry::PlatformWanted::host(),
                opts,
            )
            .map_err(|e| BuildError::Image {
                reference: reference.to_string(),
                message: format!("not in the local store, and pulling it failed: {e}"),
            })?;
            Ok((store.clone(), pulled.manifest))
        }
        Err(StoreError::NotFound { .. }) => Err(BuildError::Image {
            reference: reference.to_string(),
            message: format!(
                "not in the local store at {} and not an OCI layout (`oci:DIR:TAG`), \
                 and this build is offline; `bunny pull {reference}` fetches it",
                store.root().display()
            ),
        }),
        Err(source) => Err(store_err(source)),
    }
}

/// `DIR:TAG` -> (DIR, TAG); the tag is what follows the last `:` unless that
/// part looks like a path.
fn split_layout_ref(rest: &str) -> (&str, Option<&str>) {
    match rest.rsplit_once(':') {
        Some((dir, tag)) if !tag.is_empty() && !tag.contains('/') && !dir.is_empty() => {
            (dir, Some(tag))
        }
        _ => (rest, None),
    }
}

/// A layout named by a BunnyFile or Containerfile, which the repository
/// wrote and the user may not have read: it must lie inside the build
/// context (a relative DIR is taken from there) or under a directory the
/// user passed with `--allow-layout`, as no other file outside the context
/// may be read. A layout comes back as `oci:REALDIR[:TAG]`; any other
/// reference unchanged.
pub fn contain_layout(
    reference: &str,
    context: &Path,
    allowed: &[PathBuf],
) -> Result<String, BuildError> {
    let (dir, tag) = match reference.strip_prefix("oci:") {
        Some(rest) => split_layout_ref(rest),
        None => {
            // A bare path to a layout, as resolve_image accepts one.
            let p = Path::new(reference);
            if !(p.join("oci-layout").is_file() || context.join(p).join("oci-layout").is_file()) {
                return Ok(reference.to_string());
            }
            (reference, None)
        }
    };
    let base = context.join(dir);
    let real = std::fs::canonicalize(&base).map_err(|e| BuildError::Image {
        reference: reference.to_string(),
        message: format!("the OCI layout {}: {e}", base.display()),
    })?;
    let under = |root: &Path| std::fs::canonicalize(root).is_ok_and(|r| real.starts_with(r));
    if !(under(context) || allowed.iter().any(|a| under(a))) {
        return Err(BuildError::LayoutOutsideContext {
            layout: real,
            context: context.to_path_buf(),
        });
    }
    Ok(match tag {
        Some(t) => format!("oci:{}:{t}", real.display()),
        None => format!("oci:{}", real.display()),
    })
}

/// An input layout's image, copied into `store` and verified blob by blob:
/// from here on only the store's copy is used.
pub fn import_layout(
    store: &Store,
    reference: &str,
    dir: &Path,
    tag: Option<&str>,
) -> Result<(Store, Descriptor), BuildError> {
    let layout_err = |source| BuildError::Layout {
        reference: reference.to_string(),
        source,
    };
    let layout = Layout::open(dir).map_err(layout_err)?;
    let desc = layout.find(tag).map_err(layout_err)?;
    let desc = layout.import(store, &desc).map_err(layout_err)?;
    Ok((store.clone(), desc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_refs_split() {
        assert_eq!(split_layout_ref("/a/b:tag"), ("/a/b", Some("tag")));
        assert_eq!(split_layout_ref("/a/b"), ("/a/b", None));
        assert_eq!(split_layout_ref("rel/dir"), ("rel/dir", None));
    }

    #[test]
    fn missing_images_say_how_to_get_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = resolve_image(&store, "example.org/tool:1", None, false).unwrap_err();
        assert!(
            err.to_string().contains("bunny pull example.org/tool:1"),
            "{err}"
        );
        let err = resolve_image(&store, "oci:/nonexistent:x", None, false).unwrap_err();
        assert!(err.to_string().contains("not an OCI image layout"), "{err}");
    }
}
