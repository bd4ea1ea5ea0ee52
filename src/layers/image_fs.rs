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

/// Checks every unpacked image under `cache` (`<hex>/` plus `inner`, e.g.
/// `rootfs` for the toolchain cache) against a fresh unpack of the store's
/// own blobs for manifest `sha256:<hex>`: an entry the store holds no
/// manifest for, or whose files differ in any path, type, mode, content or
/// link target, is a problem. The cache is trusted by later builds and runs
/// as if it were the image, so this is what proves it still is.
pub fn verify_cache(
    store: &Store,
    cache: &Path,
    inner: Option<&str>,
) -> Result<Vec<String>, ImageFsError> {
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(cache) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(problems),
        Err(e) => return Err(io("reading", cache)(e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // `.unpack-*`, `.verify-*`: someone's work in progress.
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    for name in names {
        let dir = match inner {
            Some(i) => cache.join(&name).join(i),
            None => cache.join(&name),
        };
        let digest = format!("sha256:{name}");
        if crate::layers::store::digest_hex(&digest).is_err() || !store.has_blob(&digest) {
            problems.push(format!(
                "{}: an unpacked image with no manifest {digest} in the store; remove it",
                dir.display()
            ));
            continue;
        }
        let desc = crate::layers::store::descriptor(
            oci_spec::image::MediaType::ImageManifest.as_ref(),
            0,
            &digest,
        )?;
        let tmp = tempfile::Builder::new()
            .prefix(".verify-")
            .tempdir_in(cache)
            .map_err(io("creating a directory in", cache))?;
        let fresh = tmp.path().join("rootfs");
        if let Err(e) = unpack_image(store, &desc, &fresh) {
            problems.push(format!(
                "{}: image {digest} no longer unpacks: {}",
                dir.display(),
                crate::error_chain(&e)
            ));
            continue;
        }
        let want = fingerprint(&fresh)?;
        let have = fingerprint(&dir)?;
        let differing: Vec<&String> = want
            .keys()
            .chain(have.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|p| want.get(*p) != have.get(*p))
            .collect();
        if let Some(first) = differing.first() {
            let show = |m: &std::collections::BTreeMap<String, String>| {
                m.get(*first).cloned().unwrap_or_else(|| "absent".into())
            };
            problems.push(format!(
                "{}: does not match image {digest}: {} path(s) differ, the first /{first} (image: {}; cache: {}); remove it",
                dir.display(),
                differing.len(),
                show(&want),
                show(&have)
            ));
        }
    }
    Ok(problems)
}

/// Every path under `root` mapped to its type, mode and content (sha256 of
/// a file, target of a link); mtimes and owners are left out.
fn fingerprint(root: &Path) -> Result<std::collections::BTreeMap<String, String>, ImageFsError> {
    use sha2::Digest as _;
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io("reading", &dir))? {
            let entry = entry.map_err(io("reading", &dir))?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).map_err(io("reading", &path))?;
            let mode = meta.permissions().mode() & 0o7777;
            let rel = path
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let what = if meta.is_dir() {
                todo.push(path.clone());
                format!("directory {mode:o}")
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).map_err(io("reading", &path))?;
                format!("link to {}", target.display())
            } else if meta.is_file() {
                let mut f = File::open(&path).map_err(io("opening", &path))?;
                let mut h = sha2::Sha256::new();
                std::io::copy(&mut f, &mut h).map_err(io("reading", &path))?;
                format!("file {mode:o} sha256:{}", hex::encode(h.finalize()))
            } else {
                format!("special {mode:o}")
            };
            out.insert(rel, what);
        }
    }
    Ok(out)
}
