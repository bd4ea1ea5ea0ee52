//! Layers that are archives rather than images: FreeBSD's release
//! distribution files (`kernel.txz`, `base.txz`, `src.txz`) from its download
//! tree, a mirror, or a local file.
//!
//! A reference is an archive when it is an `http(s)://` or `file://` URL, or
//! an absolute path, whose last segment ends in `.txz`, `.tar.xz`, `.tgz`,
//! `.tar.gz`, `.tar.zst` or `.tar`. It may end in a fragment of `&`-separated
//! options: `sha256=HEX` pins the file, other options are the framework's
//! (freebsd reads `kernconf=`).
//!
//! The file's sha256 is taken from, first to last: the reference's
//! `sha256=`; `bunny.lock` (the digest the last build recorded for the same
//! reference); the `MANIFEST` beside the file, as FreeBSD publishes one in
//! every release directory (tab-separated: file, sha256, file count, ...).
//! A file whose digest is known from none of them is refused. The download
//! is streamed into the content-addressed store, bounded, with progress, and
//! checked before the store takes it: a file whose sha256 differs is refused
//! naming the file, the expected and the actual digest. A file the store
//! already holds under that digest is not downloaded again. Each archive is
//! unpacked once, into `STORE/archives/<sha256>`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use fs4::fs_std::FileExt;
use thiserror::Error;

use crate::frameworks::freebsd::{archive, repo::Fetcher, FreeBsdError};
use crate::layers::store::{Store, StoreError};
use crate::pipeline::Progress;

/// Media type bunny records for archive layers (never pushed).
pub const ARCHIVE_MEDIA_TYPE: &str = "application/x-tar";
/// A release file larger than this is not one (base.txz is about 200 MB).
pub const MAX_ARCHIVE_BYTES: u64 = 4 << 30;
/// A MANIFEST is a few hundred bytes.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
const EXTENSIONS: &[&str] = &[".txz", ".tar.xz", ".tgz", ".tar.gz", ".tar.zst", ".tar"];
/// How often a download reports its progress.
const REPORT_EVERY: u64 = 16 << 20;

#[derive(Debug, Error)]
pub enum FetchError {
    #[error("{file} from {url} has sha256 {actual}, but {from} says {expected}; refusing it")]
    Checksum {
        file: String,
        url: String,
        expected: String,
        actual: String,
        from: String,
    },
    #[error("{url}: no sha256 is known for it: add `#sha256=HEX` to the reference, or serve FreeBSD's MANIFEST beside it ({manifest})")]
    NoDigest { url: String, manifest: String },
    #[error("{url}: the server does not have it")]
    NotFound { url: String },
    #[error("{url}: MANIFEST line {line}: {message}")]
    Manifest {
        url: String,
        line: usize,
        message: String,
    },
    #[error("reference `{reference}`: {message}")]
    Reference { reference: String, message: String },
    #[error(transparent)]
    Download(#[from] FreeBsdError),
    #[error("{context}: {source}")]
    Store {
        context: String,
        #[source]
        source: StoreError,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> FetchError {
    let context = context.into();
    move |source| FetchError::Io { context, source }
}

/// A reference naming an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRef {
    /// `http(s)://` or `file://`, without the fragment.
    pub url: String,
    /// Lowercase hex, from `#sha256=`.
    pub sha256: Option<String>,
    /// The fragment's other `KEY=VALUE` options.
    pub options: BTreeMap<String, String>,
}

impl ArchiveRef {
    /// The file's name (the URL's last segment).
    pub fn file_name(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or(&self.url)
    }
}

/// `Some` when `reference` names an archive (see the module's rules); an
/// archive reference with a malformed fragment is an error.
pub fn parse_archive_ref(reference: &str) -> Result<Option<ArchiveRef>, FetchError> {
    let (base, fragment) = match reference.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (reference, None),
    };
    let url = if base.starts_with('/') {
        format!("file://{base}")
    } else if ["http://", "https://", "file://"]
        .iter()
        .any(|s| base.starts_with(s))
    {
        base.to_string()
    } else {
        return Ok(None);
    };
    let last = url.rsplit('/').next().unwrap_or_default();
    if !EXTENSIONS
        .iter()
        .any(|e| last.len() > e.len() && last.ends_with(e))
    {
        return Ok(None);
    }
    let bad = |message: String| FetchError::Reference {
        reference: reference.to_string(),
        message,
    };
    let mut sha256 = None;
    let mut options = BTreeMap::new();
    for part in fragment
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("`{part}` is not KEY=VALUE")))?;
        if k == "sha256" {
            let hex = v.trim_start_matches("sha256:").to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("`{v}` is not a sha256 (64 hex digits)")));
            }
            sha256 = Some(hex);
        } else {
            options.insert(k.to_string(), v.to_string());
        }
    }
    Ok(Some(ArchiveRef {
        url,
        sha256,
        options,
    }))
}

/// An archive in the store.
#[derive(Debug, Clone)]
pub struct FetchedArchive {
    pub reference: String,
    pub archive: ArchiveRef,
    /// `sha256:HEX` of the file.
    pub digest: String,
    pub path: PathBuf,
}

/// Counts what passes through and reports it now and then.
struct Counting<'a, W: Write> {
    inner: W,
    done: u64,
    next: u64,
    started: Instant,
    progress: &'a dyn Progress,
    step: &'a str,
    name: &'a str,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.done += n as u64;
        if self.done >= self.next {
            self.next = self.done + REPORT_EVERY;
            self.progress.log(
                self.step,
                &format!(
                    "{}: {} MiB ({:.1} s)",
                    self.name,
                    self.done >> 20,
                    self.started.elapsed().as_secs_f64()
                ),
            );
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The sha256 FreeBSD's `MANIFEST` records for `file`.
pub fn manifest_digest(text: &str, file: &str, url: &str) -> Result<Option<String>, FetchError> {
    for (n, line) in text.lines().enumerate() {
        let mut fields = line.split('\t');
        if fields.next() != Some(file) {
            continue;
        }
        let sum = fields.next().unwrap_or_default().to_ascii_lowercase();
        if sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(FetchError::Manifest {
                url: url.to_string(),
                line: n + 1,
                message: format!("`{file}` has no sha256 in the second field"),
            });
        }
        return Ok(Some(sum));
    }
    Ok(None)
}

/// Makes `reference` available in the store. `locked` is the `sha256:HEX`
/// the lock file recorded for this reference (None with `--update-lock`).
pub fn fetch_archive(
    store: &Store,
    reference: &str,
    archive: &ArchiveRef,
    locked: Option<&str>,
    progress: &dyn Progress,
    step: &str,
) -> Result<FetchedArchive, FetchError> {
    let url = archive.url.as_str();
    let name = archive.file_name();
    let (hex, from) = if let Some(h) = &archive.sha256 {
        (h.clone(), "the reference".to_string())
    } else if let Some(l) = locked.and_then(|l| l.strip_prefix("sha256:")) {
        (l.to_string(), "bunny.lock".to_string())
    } else {
        let dir = url.rsplit_once('/').map(|(d, _)| d).unwrap_or(url);
        let manifest_url = format!("{dir}/MANIFEST");
        let fetcher = Fetcher::new()?;
        let mut text = Vec::new();
        if !fetcher.get(&manifest_url, &mut text, MAX_MANIFEST_BYTES)? {
            return Err(FetchError::NoDigest {
                url: url.to_string(),
                manifest: format!("{manifest_url} is not there"),
            });
        }
        let text = String::from_utf8_lossy(&text);
        match manifest_digest(&text, name, &manifest_url)? {
            Some(h) => {
                progress.log(step, &format!("{name}: sha256 {h} from {manifest_url}"));
                (h, manifest_url)
            }
            None => {
                return Err(FetchError::NoDigest {
                    url: url.to_string(),
                    manifest: format!("{manifest_url} does not list {name}"),
                })
            }
        }
    };
    let digest = format!("sha256:{hex}");
    let store_err = |context: String| move |source| FetchError::Store { context, source };
    if !store.has_blob(&digest) {
        progress.log(step, &format!("downloading {url}"));
        let fetcher = Fetcher::new()?;
        let writer = store.blob_writer().map_err(store_err(url.to_string()))?;
        let mut counting = Counting {
            inner: writer,
            done: 0,
            next: REPORT_EVERY,
            started: Instant::now(),
            progress,
            step,
            name,
        };
        if !fetcher.get(url, &mut counting, MAX_ARCHIVE_BYTES)? {
            return Err(FetchError::NotFound {
                url: url.to_string(),
            });
        }
        let (done, started) = (counting.done, counting.started);
        // Checked before the store takes it: a changed file never enters
        // the store, not even under its own digest.
        counting
            .inner
            .commit_verified(ARCHIVE_MEDIA_TYPE, &digest, None, url)
            .map_err(|e| match e {
                StoreError::Mismatch { actual, .. } => FetchError::Checksum {
                    file: name.to_string(),
                    url: url.to_string(),
                    expected: hex.clone(),
                    actual: actual.trim_start_matches("sha256:").to_string(),
                    from: from.clone(),
                },
                other => store_err(url.to_string())(other),
            })?;
        progress.log(
            step,
            &format!(
                "{name}: {} MiB in {:.1} s, sha256 {hex}",
                done >> 20,
                started.elapsed().as_secs_f64()
            ),
        );
    }
    let path = store
        .blob_path(&digest)
        .map_err(store_err(url.to_string()))?;
    Ok(FetchedArchive {
        reference: reference.to_string(),
        archive: archive.clone(),
        digest,
        path,
    })
}

/// Where archives are unpacked.
pub fn cache_dir(store_root: &Path) -> PathBuf {
    store_root.join("archives")
}

/// The archive's files, unpacked once into `STORE/archives/<sha256>`.
pub fn unpacked(store_root: &Path, fetched: &FetchedArchive) -> Result<PathBuf, FetchError> {
    let hex = fetched.digest.trim_start_matches("sha256:");
    let cache = cache_dir(store_root);
    fs::create_dir_all(&cache).map_err(io_err(format!("creating {}", cache.display())))?;
    let done = cache.join(hex);
    if done.is_dir() {
        return Ok(done);
    }
    // Two builds wanting the same archive unpack it once.
    let lock_path = cache.join(format!("{hex}.lock"));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(format!("opening {}", lock_path.display())))?;
    FileExt::lock_exclusive(&lock).map_err(io_err(format!("locking {}", lock_path.display())))?;
    if done.is_dir() {
        return Ok(done);
    }
    let tmp = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(&cache)
        .map_err(io_err(format!(
            "creating a directory in {}",
            cache.display()
        )))?;
    let what = fetched.archive.file_name().to_string();
    let file = File::open(&fetched.path).map_err(io_err(what.clone()))?;
    archive::unpack(file, tmp.path(), &what)?;
    let staged = tmp.keep();
    fs::rename(&staged, &done).map_err(io_err(format!("renaming into {}", done.display())))?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_references_parse() {
        let r = parse_archive_ref(
            "https://download.freebsd.org/releases/amd64/14.3-RELEASE/src.txz#kernconf=FIRECRACKER",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.file_name(), "src.txz");
        assert_eq!(r.sha256, None);
        assert_eq!(r.options["kernconf"], "FIRECRACKER");
        let hex = "ab".repeat(32);
        let r = parse_archive_ref(&format!("/srv/kernel.txz#sha256={}", hex.to_uppercase()))
            .unwrap()
            .unwrap();
        assert_eq!(r.url, "file:///srv/kernel.txz");
        assert_eq!(r.sha256.as_deref(), Some(hex.as_str()));
        assert!(parse_archive_ref("bunny/freebsd-base:14.3")
            .unwrap()
            .is_none());
        assert!(parse_archive_ref("oci:/x/y:tag").unwrap().is_none());
        assert!(parse_archive_ref("https://example.org/dir/")
            .unwrap()
            .is_none());
        assert!(parse_archive_ref("/srv/base.txz#sha256=12").is_err());
        assert!(parse_archive_ref("/srv/base.txz#junk").is_err());
    }

    #[test]
    fn manifest_lines_give_the_digest() {
        let hex = "0f".repeat(32);
        let text = format!(
            "base-dbg.txz\t{}\t10\tbase_dbg\t\"Base system (Debugging)\"\toff\nbase.txz\t{hex}\t12345\tbase\t\"Base system (MANDATORY)\"\ton\n",
            "1".repeat(64)
        );
        assert_eq!(
            manifest_digest(&text, "base.txz", "u").unwrap().as_deref(),
            Some(hex.as_str())
        );
        assert_eq!(manifest_digest(&text, "kernel.txz", "u").unwrap(), None);
        assert!(manifest_digest("kernel.txz\tnothex\n", "kernel.txz", "u").is_err());
    }
}
