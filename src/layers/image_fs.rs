//! An image's files on disk: every layer unpacked in order into one directory
//! (whiteouts applied, nothing escaping), and a cache of those per manifest
//! digest so kernels, initrds and included files are read in place.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageManifest};
use thiserror::Error;

use super::store::{Store, StoreError};
use super::unpack::{unpack_tar, UnpackError};

#[derive(Debug, Error)]
pub enum ImageFsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading manifest {digest}: {reason}")]
    Manifest { digest: String, reason: String },
    #[error("unpacking layer {digest}: {source}")]
    Layer {
        digest: String,
        #[source]
        source: UnpackError,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageFsError {
    let path = path.to_path_buf();
    move |source| ImageFsError::Io {
        action,
        path,
        source,
    }
}

pub fn read_manifest(store: &Store, manifest: &Descriptor) -> Result<ImageManifest, ImageFsError> {
    let digest = manifest.digest().to_string();
    let f = store.open_blob(&digest)?;
    ImageManifest::from_reader(BufReader::new(f)).map_err(|e| ImageFsError::Manifest {
        digest,
        reason: e.to_string(),
    })
}

/// Unpacks every layer of the image into `dir` (created if missing).
pub fn unpack_image(store: &Store, manifest: &Descriptor, dir: &Path) -> Result<(), ImageFsError> {
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let m = read_manifest(store, manifest)?;
    for layer in m.layers() {
        let digest = layer.digest().to_string();
        let blob: BufReader<File> = BufReader::new(store.open_blob(&digest)?);
        let media = layer.media_type().to_string();
        let res = if media.ends_with("+gzip") || media.ends_with(".gzip") {
            unpack_tar(flate2::read::GzDecoder::new(blob), dir)
        } else if media.ends_with("+zstd") || media.ends_with(".zstd") {
            let dec = zstd::stream::read::Decoder::with_buffer(blob)
                .map_err(io("starting zstd for", &store.root().join(&digest)))?;
            unpack_tar(dec, dir)
        } else {
            unpack_tar(blob, dir)
        };
        res.map_err(|source| ImageFsError::Layer { digest, source })?;
    }
    Ok(())
}

/// The image's files, unpacked once per manifest digest under
/// `<cache>/<hex>` (bunny uses `<store root>/rootfs`; staged in a temporary directory and renamed, so a
/// half-unpacked image is never used). Treat the result as read-only.
pub fn unpacked_image(
    store: &Store,
    manifest: &Descriptor,
    cache: &Path,
) -> Result<PathBuf, ImageFsError> {
    let digest = manifest.digest().to_string();
    let hex = digest.rsplit(':').next().unwrap_or(&digest);
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ImageFsError::Manifest {
            digest: digest.clone(),
            reason: "malformed digest".into(),
        });
    }
    let dir = cache.join(hex);
    if dir.is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache).map_err(io("creating", cache))?;
    let tmp = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(cache)
        .map_err(io("creating a directory in", cache))?;
    let staged = tmp.path().join("rootfs");
    unpack_image(store, manifest, &staged)?;
    if let Err(e) = std::fs::rename(&staged, &dir) {
        // Another process unpacked the same image first: use theirs.
        if !dir.is_dir() {
            return Err(io("moving the unpacked image to", &dir)(e));
        }
    }
    Ok(dir)
}
