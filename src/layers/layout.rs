//! OCI image layouts given as input (`oci:DIR:TAG`, `bunny run DIR`).
//!
//! A layout is read, never written: it may be on a read-only mount or
//! belong to someone else, and opening it as a [`Store`] would create
//! `tmp/` and `index.lock` in it. Its index says which digest an image has,
//! but nothing on disk proves the files match: so an image is used only
//! after [`Layout::import`] has copied its manifest, config and layers into
//! the local store, hashing each against the digest that names it. Everything
//! downstream (the unpacked-rootfs cache keyed by manifest digest above all)
//! then sees only content the store itself verified.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use thiserror::Error;

use super::store::{digest_hex, ref_name, Store, StoreError};

/// `index.json` of a layout with 100 000 images is about 20 MiB.
const MAX_INDEX_BYTES: u64 = 32 << 20;
/// Same cap as for a manifest or config fetched from a registry.
pub const MAX_JSON_BLOB_BYTES: u64 = 4 << 20;

#[derive(Debug, Error)]
pub enum LayoutError {
    #[error("{0} is not an OCI image layout (it has no oci-layout file)")]
    NotALayout(PathBuf),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a valid OCI {what}: {reason}")]
    Invalid {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{path} is more than {limit} bytes, more than a {what} can sensibly be")]
    TooLarge {
        path: PathBuf,
        what: &'static str,
        limit: u64,
    },
    #[error("{path} is not a regular file; a layout's blobs must be")]
    NotAFile { path: PathBuf },
    #[error("the OCI layout {dir} has no image `{wanted}`; it holds {available}")]
    NoSuchImage {
        dir: PathBuf,
        wanted: String,
        available: String,
    },
    #[error("the OCI layout {dir} holds {available}; name one as {dir}:TAG")]
    Ambiguous { dir: PathBuf, available: String },
    #[error("blob {digest} is missing from the OCI layout: there is no {path}")]
    Missing { digest: String, path: PathBuf },
    #[error("the OCI layout {dir} is damaged or forged: {source}")]
    Forged {
        dir: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayoutError + 'a {
    move |source| LayoutError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Opens `path` for reading, refusing symlinks and anything but a regular
/// file (a blob that is a symlink to `/etc/shadow` must not be copied), and
/// refusing files larger than `limit` before reading them.
fn open_regular(path: &Path, what: &'static str, limit: u64) -> Result<File, LayoutError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return Err(io_err("reading", path)(e)),
    };
    if !meta.file_type().is_file() {
        return Err(LayoutError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    if meta.len() > limit {
        return Err(LayoutError::TooLarge {
            path: path.to_path_buf(),
            what,
            limit,
        });
    }
    File::open(path).map_err(io_err("opening", path))
}

/// Reads a JSON file whole, never more than `limit` bytes even if it grows
/// while being read.
fn read_capped(path: &Path, what: &'static str, limit: u64) -> Result<Vec<u8>, LayoutError> {
    let f = open_regular(path, what, limit)?;
    let mut buf = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(io_err("reading", path))?;
    if buf.len() as u64 > limit {
        return Err(LayoutError::TooLarge {
            path: path.to_path_buf(),
            what,
            limit,
        });
    }
    Ok(buf)
}

/// An OCI image layout opened read-only.
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
    manifests: Vec<Descriptor>,
}

impl Layout {
    pub fn open(dir: &Path) -> Result<Layout, LayoutError> {
        if !dir.join("oci-layout").is_file() {
            return Err(LayoutError::NotALayout(dir.to_path_buf()));
        }
        let path = dir.join("index.json");
        let bytes = read_capped(&path, "index", MAX_INDEX_BYTES)?;
        let index: ImageIndex =
            serde_json::from_slice(&bytes).map_err(|e| LayoutError::Invalid {
                path: path.clone(),
                what: "index",
                reason: e.to_string(),
            })?;
        Ok(Layout {
            dir: dir.to_path_buf(),
            manifests: index.manifests().clone(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn available(&self) -> String {
        let names: Vec<String> = self
            .manifests
            .iter()
            .map(|d| match ref_name(d) {
                Some(n) => n.to_string(),
                None => d.digest().to_string(),
            })
            .collect();
        crate::summarize(&names, "image", "images")
    }

    /// The image named `wanted` (`TAG`, `NAME:TAG`, `NAME` for `NAME:latest`
    /// or a manifest digest); without a name, the only image or `latest`.
    pub fn find(&self, wanted: Option<&str>) -> Result<Descriptor, LayoutError> {
        let Some(want) = wanted else {
            if let [only] = self.manifests.as_slice() {
                return Ok(only.clone());
            }
            return self
                .find(Some("latest"))
                .map_err(|_| LayoutError::Ambiguous {
                    dir: self.dir.clone(),
                    available: self.available(),
                });
        };
        let matches = |d: &&Descriptor| {
            if want.starts_with("sha256:") {
                return d.digest().as_ref() == want;
            }
            ref_name(d).is_some_and(|n| {
                n == want || n == format!("{want}:latest") || n.rsplit(':').next() == Some(want)
            })
        };
        self.manifests
            .iter()
            .find(matches)
            .cloned()
            .ok_or_else(|| LayoutError::NoSuchImage {
                dir: self.dir.clone(),
                wanted: want.to_string(),
                available: self.available(),
            })
    }

    /// Copies the image `manifest` names into `store`, each blob hashed
    /// against its digest and size before the store takes it; a blob the
    /// store already has is not read again (the store's copy was verified
    /// when it was written). Returns the manifest's descriptor.
    pub fn import(&self, store: &Store, manifest: &Descriptor) -> Result<Descriptor, LayoutError> {
        self.copy_blob(store, manifest, MAX_JSON_BLOB_BYTES)?;
        let digest = manifest.digest().to_string();
        let path = store.blob_path(&digest)?;
        let bytes = read_capped(&path, "manifest", MAX_JSON_BLOB_BYTES)?;
        let file = self.blob_file(&digest)?;
        let m: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| LayoutError::Invalid {
                path: file,
                what: "image manifest",
                reason: e.to_string(),
            })?;
        self.copy_blob(store, m.config(), MAX_JSON_BLOB_BYTES)?;
        for layer in m.layers() {
            self.copy_blob(store, layer, u64::MAX)?;
        }
        // The size the store's copy really has, whatever the index said.
        let mut desc = manifest.clone();
        desc.set_size(bytes.len() as u64);
        Ok(desc)
    }

    fn blob_file(&self, digest: &str) -> Result<PathBuf, LayoutError> {
        Ok(self
            .dir
            .join("blobs")
            .join("sha256")
            .join(digest_hex(digest)?))
    }

    fn copy_blob(&self, store: &Store, desc: &Descriptor, limit: u64) -> Result<(), LayoutError> {
        let digest = desc.digest().to_string();
        let path = self.blob_file(&digest)?;
        if store.has_blob(&digest) {
            return Ok(());
        }
        let declared = desc.size();
        if declared > limit {
            return Err(LayoutError::TooLarge {
                path,
                what: "manifest or config",
                limit,
            });
        }
        let f = match open_regular(&path, "blob", declared) {
            Err(LayoutError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(LayoutError::Missing { digest, path })
            }
            // Larger than declared: refuse it as a size mismatch below
            // without copying it.
            Err(LayoutError::TooLarge { .. }) => {
                let actual = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
                return Err(LayoutError::Forged {
                    dir: self.dir.clone(),
                    source: StoreError::WrongSize {
                        digest,
                        declared,
                        actual,
                        source_name: path.display().to_string(),
                    },
                });
            }
            other => other?,
        };
        let mut w = store.blob_writer()?;
        // One byte past the declared size is enough to tell it is wrong.
        io::copy(&mut f.take(declared.saturating_add(1)), &mut w)
            .map_err(io_err("copying", &path))?;
        w.commit_verified(
            desc.media_type().as_ref(),
            &digest,
            Some(declared),
            &path.display().to_string(),
        )
        .map_err(|e| match e {
            e @ (StoreError::Mismatch { .. } | StoreError::WrongSize { .. }) => {
                LayoutError::Forged {
                    dir: self.dir.clone(),
                    source: e,
                }
            }
            other => LayoutError::Store(other),
        })?;
        Ok(())
    }
}
