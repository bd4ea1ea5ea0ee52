//! The local store: an OCI image layout on disk.
//!
//! Keeping the store in the standard layout means every OCI tool reads it
//! directly (`skopeo inspect oci:ROOT:NAME`), and exporting an OCI layout is
//! a matter of copying blobs. Blobs are written to `root/tmp` first and only
//! renamed under their digest once complete and synced, so a crash or an
//! abandoned writer never leaves a partial blob that looks valid.
//! `index.json` is only ever replaced by rename while holding an exclusive
//! lock on `root/index.lock`, so concurrent `tag` calls (threads or
//! processes) cannot lose each other's entries or leave a torn file.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;
use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest, MediaType};
use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

/// Annotation naming an image inside an OCI layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

const OCI_LAYOUT_JSON: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid digest `{0}`: expected sha256:<64 lowercase hex digits>")]
    InvalidDigest(String),
    #[error("blob {0} is not in the store")]
    BlobNotFound(String),
    #[error("no image named `{name}` in the store at {root}")]
    NotFound { name: String, root: PathBuf },
    #[error("invalid image name `{0}`: names must be non-empty and contain no control characters")]
    InvalidName(String),
    #[error("{path} is not valid JSON of the expected shape: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid OCI data in {path}: {message}")]
    Spec { path: PathBuf, message: String },
    #[error("{source_name} is not blob {expected}: its content hashes to {actual}")]
    Mismatch {
        expected: String,
        actual: String,
        source_name: String,
    },
    #[error("{source_name} is {actual} bytes but blob {digest} was declared as {declared}")]
    WrongSize {
        digest: String,
        declared: u64,
        actual: u64,
        source_name: String,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Serialises with object keys sorted, whatever map type the value uses.
///
/// oci-spec keeps annotations and labels in `HashMap`s, whose iteration order
/// changes from run to run; going through `serde_json::Value` (a `BTreeMap`
/// without the `preserve_order` feature) makes the bytes, and so the digests,
/// reproducible.
pub fn canonical_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(value)?;
    serde_json::to_vec(&value)
}

/// Checks `sha256:<hex>` strictly and returns the hex part; anything else is
/// refused so a digest can never name a path outside `blobs/sha256`.
pub fn digest_hex(digest: &str) -> Result<&str, StoreError> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| StoreError::InvalidDigest(digest.to_string()))?;
    if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(hex)
    } else {
        Err(StoreError::InvalidDigest(digest.to_string()))
    }
}

/// Builds a descriptor for a blob whose digest was computed here.
pub fn descriptor(media_type: &str, size: u64, digest: &str) -> Result<Descriptor, StoreError> {
    let digest: Digest = digest
        .parse()
        .map_err(|_| StoreError::InvalidDigest(digest.to_string()))?;
    Ok(Descriptor::new(MediaType::from(media_type), size, digest))
}

/// The `org.opencontainers.image.ref.name` of a descriptor, if any.
pub fn ref_name(desc: &Descriptor) -> Option<&str> {
    desc.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

/// A content-addressed store laid out as an OCI image layout.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating the layout if it does not exist.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for dir in [store.blobs_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            store.write_atomic(&layout, OCI_LAYOUT_JSON)?;
        }
        store.clean_stale_tmp();
        let index = store.index_path();
        if !index.exists() {
            let _lock = store.lock(true)?;
            // Another process may have created it while we waited.
            if !index.exists() {
                store.write_index(&empty_index())?;
            }
        }
        Ok(store)
    }

    /// `$BUNNY_ROOT`, else `$XDG_DATA_HOME/bunny`, else `~/.local/share/bunny`.
    pub fn default_root() -> PathBuf {
        if let Some(root) = std::env::var_os("BUNNY_ROOT").filter(|v| !v.is_empty()) {
            return PathBuf::from(root);
        }
        if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(data).join("bunny");
        }
        let home = std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        home.join(".local/share/bunny")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Scratch space on the store's filesystem, for files that will become
    /// blobs (a rename from here never crosses filesystems).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// A scratch directory under `tmp/`, removed when dropped. Its owner
    /// holds a lock inside it, so a later [`Store::open`] can tell the
    /// scratch of a process that died (kill -9 mid-build) from a live one's
    /// and remove it.
    pub fn scratch(&self, what: &str) -> Result<Scratch, StoreError> {
        let tmp = self.tmp_dir();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{SCRATCH_PREFIX}{what}-"))
            .tempdir_in(&tmp)
            .map_err(io_err("create a scratch directory in", &tmp))?;
        let lock_path = dir.path().join(OWNER_LOCK);
        let lock = File::create(&lock_path).map_err(io_err("create", &lock_path))?;
        FileExt::lock_exclusive(&lock).map_err(io_err("lock", &lock_path))?;
        Ok(Scratch { dir, _lock: lock })
    }

    /// Removes what dead processes left in `tmp/`: scratch directories and
    /// blob temp files whose owner's lock nobody holds. Entries younger than
    /// a minute are left alone (their owner may not have locked them yet);
    /// anything else in `tmp/` (build steps' bundles, which may hold mounts)
    /// is never touched. Best effort: a failure only leaves files behind.
    fn clean_stale_tmp(&self) {
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else {
            return;
        };
        let settled = |meta: &fs::Metadata| {
            meta.modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > STALE_AFTER)
        };
        let unowned = |lock: &Path| {
            File::open(lock)
                .ok()
                // Ok(false): someone holds it.
                .is_some_and(|f| matches!(FileExt::try_lock_exclusive(&f), Ok(true)))
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if name.starts_with(SCRATCH_PREFIX) && meta.is_dir() {
                let lock = path.join(OWNER_LOCK);
                let dead = if lock.exists() {
                    unowned(&lock)
                } else {
                    // Killed between making the directory and locking it.
                    settled(&meta)
                };
                if dead {
                    let _ = fs::remove_dir_all(&path);
                }
            } else if name.starts_with(BLOB_PREFIX)
                && meta.is_file()
                && settled(&meta)
                && unowned(&path)
            {
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// Starts a new blob; nothing is visible under a digest until `commit`.
    pub fn blob_writer(&self) -> Result<BlobWriter, StoreError> {
        let tmp = self.tmp_dir();
        let file = tempfile::Builder::new()
            .prefix(BLOB_PREFIX)
            .tempfile_in(&tmp)
            .map_err(io_err("create temp file in", &tmp))?;
        // Held until the writer is dropped: the mark of a live writer.
        FileExt::lock_exclusive(file.as_file()).map_err(io_err("lock", file.path()))?;
        Ok(BlobWriter {
            out: BufWriter::with_capacity(256 * 1024, file),
            hasher: Sha256::new(),
            size: 0,
            blobs: self.blobs_dir(),
        })
    }

    pub fn put_bytes(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor, StoreError> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes)
            .map_err(io_err("write blob to", &self.tmp_dir()))?;
        w.commit(media_type)
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        Ok(self.blobs_dir().join(digest_hex(digest)?))
    }

    pub fn open_blob(&self, digest: &str) -> Result<File, StoreError> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::BlobNotFound(digest.to_string())
            } else {
                StoreError::Io {
                    action: "open blob",
                    path,
                    source: e,
                }
            }
        })
    }

    /// Reads a small JSON blob (manifest, config, index) whole.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let mut f = self.open_blob(digest)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(io_err("read blob", &self.blob_path(digest)?))?;
        Ok(buf)
    }

    /// Names `manifest` in `index.json`, replacing any image of the same name.
    pub fn tag(&self, name: &str, manifest: &Descriptor) -> Result<(), StoreError> {
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(StoreError::InvalidName(name.to_string()));
        }
        let _lock = self.lock(true)?;
        let mut index = self.read_index()?;
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) != Some(name))
            .cloned()
            .collect();
        let mut entry = manifest.clone();
        let mut annotations = entry.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME.to_string(), name.to_string());
        entry.set_annotations(Some(annotations));
        manifests.push(entry);
        // Sorted by name so the file does not depend on the order of tagging.
        manifests.sort_by(|a, b| ref_name(a).cmp(&ref_name(b)));
        index.set_manifests(manifests);
        self.write_index(&index)
    }

    /// Removes the name from `index.json`; blobs stay until a later cleanup.
    pub fn untag(&self, name: &str) -> Result<bool, StoreError> {
        let _lock = self.lock(true)?;
        let mut index = self.read_index()?;
        let before = index.manifests().len();
        let kept: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) != Some(name))
            .cloned()
            .collect();
        let removed = kept.len() != before;
        if removed {
            index.set_manifests(kept);
            self.write_index(&index)?;
        }
        Ok(removed)
    }

    /// Finds an image by name (`hello` also matches `hello:latest`) or by
    /// manifest digest.
    pub fn resolve(&self, name_or_digest: &str) -> Result<Descriptor, StoreError> {
        let list = self.list()?;
        if name_or_digest.starts_with("sha256:") {
            digest_hex(name_or_digest)?;
            if let Some((_, d)) = list
                .iter()
                .find(|(_, d)| d.digest().as_ref() == name_or_digest)
            {
                return Ok(d.clone());
            }
            return self.describe_manifest_blob(name_or_digest);
        }
        let wanted = [
            name_or_digest.to_string(),
            format!("{name_or_digest}:latest"),
        ];
        let last_segment = name_or_digest.rsplit('/').next().unwrap_or(name_or_digest);
        let candidates: &[String] = if last_segment.contains(':') {
            &wanted[..1]
        } else {
            &wanted[..]
        };
        for want in candidates {
            if let Some((_, d)) = list.iter().find(|(n, _)| n == want) {
                return Ok(d.clone());
            }
        }
        Err(StoreError::NotFound {
            name: name_or_digest.to_string(),
            root: self.root.clone(),
        })
    }

    fn describe_manifest_blob(&self, digest: &str) -> Result<Descriptor, StoreError> {
        let bytes = self.read_blob(digest)?;
        let path = self.blob_path(digest)?;
        let manifest: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Json { path, source })?;
        let media_type = manifest
            .media_type()
            .clone()
            .unwrap_or(MediaType::ImageManifest);
        descriptor(media_type.as_ref(), bytes.len() as u64, digest)
    }

    /// Every named image, sorted by name.
    pub fn list(&self) -> Result<Vec<(String, Descriptor)>, StoreError> {
        let _lock = self.lock(false)?;
        let index = self.read_index()?;
        let mut out: Vec<(String, Descriptor)> = index
            .manifests()
            .iter()
            .filter_map(|d| ref_name(d).map(|n| (n.to_string(), d.clone())))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Rehashes every blob and checks that every named image's manifest,
    /// config and layers are present. Returns one line per problem.
    pub fn verify(&self) -> Result<Vec<String>, StoreError> {
        let mut problems = Vec::new();
        let dir = self.blobs_dir();
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("read directory", &dir))? {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            names.push(entry.file_name());
        }
        names.sort();
        let mut present = BTreeSet::new();
        for name in names {
            let name = name.to_string_lossy().into_owned();
            let path = dir.join(&name);
            let digest = format!("sha256:{name}");
            if digest_hex(&digest).is_err() {
                problems.push(format!("{}: not named by a sha256 digest", path.display()));
                continue;
            }
            let mut f = File::open(&path).map_err(io_err("open blob", &path))?;
            let mut hasher = Sha256::new();
            io::copy(&mut f, &mut hasher).map_err(io_err("read blob", &path))?;
            let actual = hex::encode(hasher.finalize());
            if actual != name {
                problems.push(format!(
                    "blob {digest} is corrupt: its content hashes to sha256:{actual}"
                ));
            }
            present.insert(digest);
        }
        for (name, desc) in self.list()? {
            let mdigest = desc.digest().to_string();
            if !present.contains(&mdigest) {
                problems.push(format!("image `{name}`: manifest {mdigest} is missing"));
                continue;
            }
            let bytes = self.read_blob(&mdigest)?;
            let manifest: ImageManifest = match serde_json::from_slice(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    problems.push(format!(
                        "image `{name}`: manifest {mdigest} does not parse: {e}"
                    ));
                    continue;
                }
            };
            let referenced = std::iter::once(manifest.config()).chain(manifest.layers().iter());
            for d in referenced {
                let digest = d.digest().to_string();
                if !present.contains(&digest) {
                    problems.push(format!("image `{name}`: blob {digest} is missing"));
                }
            }
        }
        Ok(problems)
    }

    fn lock(&self, exclusive: bool) -> Result<File, StoreError> {
        let path = self.root.join("index.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open lock file", &path))?;
        let locked = if exclusive {
            FileExt::lock_exclusive(&file)
        } else {
            FileExt::lock_shared(&file)
        };
        locked.map_err(io_err("lock", &path))?;
        // The lock is released when the returned file is dropped.
        Ok(file)
    }

    fn read_index(&self) -> Result<ImageIndex, StoreError> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json { path, source })
    }

    fn write_index(&self, index: &ImageIndex) -> Result<(), StoreError> {
        let path = self.index_path();
        let bytes = canonical_json(index).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        self.write_atomic(&path, &bytes)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = self.tmp_dir();
        let mut f = NamedTempFile::new_in(&tmp).map_err(io_err("create temp file in", &tmp))?;
        f.write_all(bytes).map_err(io_err("write", f.path()))?;
        publish_mode(f.as_file(), path)?;
        f.as_file().sync_all().map_err(io_err("sync", path))?;
        f.persist(path).map_err(|e| StoreError::Io {
            action: "rename temp file to",
            path: path.to_path_buf(),
            source: e.error,
        })?;
        Ok(())
    }
}

/// Names in `tmp/` the stale-file cleaner knows.
const SCRATCH_PREFIX: &str = "scratch-";
const BLOB_PREFIX: &str = "blob-";
const OWNER_LOCK: &str = ".owner.lock";
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// A scratch directory in the store; see [`Store::scratch`].
#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
    _lock: File,
}

impl Scratch {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Temp files are created 0600; published files are world-readable like
/// any other image layout, so other users and tools can read an export.
pub(crate) fn publish_mode(file: &File, path: &Path) -> Result<(), StoreError> {
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(io_err("set permissions of", path))
}

pub(crate) fn empty_index() -> ImageIndex {
    let mut index = ImageIndex::default();
    index.set_schema_version(2);
    index.set_media_type(Some(MediaType::ImageIndex));
    index.set_manifests(Vec::new());
    index
}

/// Writes one blob while hashing it; see [`Store::blob_writer`].
#[derive(Debug)]
pub struct BlobWriter {
    out: BufWriter<NamedTempFile>,
    hasher: Sha256,
    size: u64,
    blobs: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The digest of what was written so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }

    /// Commits only if what was written is exactly the blob `expected`
    /// (of `declared` bytes, when known) names; otherwise the temp file is
    /// dropped and nothing is stored. `source_name` says where the bytes
    /// came from (a file, a URL) for the error.
    pub fn commit_verified(
        self,
        media_type: &str,
        expected: &str,
        declared: Option<u64>,
        source_name: &str,
    ) -> Result<Descriptor, StoreError> {
        let actual = self.digest();
        if actual != expected {
            return Err(StoreError::Mismatch {
                expected: expected.to_string(),
                actual,
                source_name: source_name.to_string(),
            });
        }
        if let Some(declared) = declared.filter(|d| *d != self.size) {
            return Err(StoreError::WrongSize {
                digest: expected.to_string(),
                declared,
                actual: self.size,
                source_name: source_name.to_string(),
            });
        }
        self.commit(media_type)
    }

    /// Syncs the blob and moves it under its digest. If the store already has
    /// that blob the temp file is simply dropped.
    pub fn commit(self, media_type: &str) -> Result<Descriptor, StoreError> {
        let BlobWriter {
            out,
            hasher,
            size,
            blobs,
        } = self;
        let file = out.into_inner().map_err(|e| StoreError::Io {
            action: "flush blob to",
            path: blobs.clone(),
            source: e.into_error(),
        })?;
        let hex = hex::encode(hasher.finalize());
        let digest = format!("sha256:{hex}");
        let target = blobs.join(&hex);
        if !target.is_file() {
            publish_mode(file.as_file(), &target)?;
            file.as_file()
                .sync_all()
                .map_err(io_err("sync blob", file.path()))?;
            file.persist(&target).map_err(|e| StoreError::Io {
                action: "rename blob to",
                path: target.clone(),
                source: e.error,
            })?;
        }
        descriptor(media_type, size, &digest)
    }
}
