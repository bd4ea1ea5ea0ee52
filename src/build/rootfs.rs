//! Images unpacked for build steps: each manifest digest is unpacked once
//! into `<store root>/toolchains/<hex>/rootfs` and then only read. The unpack
//! goes to a temp directory beside it and is renamed into place when
//! complete, so an interrupted unpack never looks like a finished one.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use super::{io_ctx, BuildError, ResolvedImage};
use crate::layers::store::digest_hex;

/// Where unpacked images live under a store root.
pub fn cache_dir(store_root: &Path) -> PathBuf {
    store_root.join("toolchains")
}

/// The image's files as a directory, unpacking them on first use.
/// Returns the rootfs path and whether this call unpacked it.
pub fn unpacked_rootfs(
    cache_root: &Path,
    image: &ResolvedImage,
) -> Result<(PathBuf, bool), BuildError> {
    let digest = image.digest();
    let hex = digest_hex(&digest).map_err(|source| BuildError::ImageStore {
        reference: image.reference.clone(),
        source,
    })?;
    let cache = cache_dir(cache_root);
    fs::create_dir_all(&cache).map_err(io_ctx(format!("creating {}", cache.display())))?;
    let done = cache.join(hex);
    let rootfs = done.join("rootfs");
    if rootfs.is_dir() {
        return Ok((rootfs, false));
    }
    // Two builds wanting the same image unpack it once.
    let lock_path = cache.join(format!("{hex}.lock"));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_ctx(format!("opening {}", lock_path.display())))?;
    FileExt::lock_exclusive(&lock).map_err(io_ctx(format!("locking {}", lock_path.display())))?;
    if rootfs.is_dir() {
        return Ok((rootfs, false));
    }
    let tmp = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(&cache)
        .map_err(io_ctx(format!(
            "creating a temp dir in {}",
            cache.display()
        )))?;
    let target = tmp.path().join("rootfs");
    fs::create_dir(&target).map_err(io_ctx(format!("creating {}", target.display())))?;
    crate::layers::image_fs::unpack_image(&image.store, &image.manifest, &target).map_err(
        |source| BuildError::ImageFs {
            reference: image.reference.clone(),
            source,
        },
    )?;
    let tmp_path = tmp.keep();
    fs::rename(&tmp_path, &done).map_err(|e| {
        let _ = fs::remove_dir_all(&tmp_path);
        BuildError::Io {
            context: format!("renaming {} to {}", tmp_path.display(), done.display()),
            source: e,
        }
    })?;
    Ok((rootfs, true))
}
