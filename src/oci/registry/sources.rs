//! Which remote repositories are known to hold which blobs, so a push to
//! another repository on the same registry can ask for a cross-repository
//! mount instead of uploading. It is only a hint (a wrong entry just costs
//! a failed mount and a normal upload), kept in its own file under the
//! store root and updated under a lock, atomically.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use super::error::{io_err, RegistryError};

const FILE: &str = "registry-sources.json";
const LOCK: &str = "registry-sources.lock";
/// Enough choices for a mount; keeps the file small.
const MAX_PER_BLOB: usize = 8;

type Map = BTreeMap<String, Vec<String>>;

pub(crate) struct Sources {
    path: PathBuf,
    lock: PathBuf,
}

impl Sources {
    pub fn new(store_root: &Path) -> Sources {
        Sources {
            path: store_root.join(FILE),
            lock: store_root.join(LOCK),
        }
    }

    fn read(&self) -> Map {
        // A missing or damaged hint file only means no mounts are tried.
        fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Repositories (`host/repo`) on `host` other than `repo` known to hold `digest`.
    pub fn candidates(&self, digest: &str, host: &str, repo: &str) -> Vec<String> {
        let prefix = format!("{host}/");
        let me = format!("{host}/{repo}");
        self.read()
            .get(digest)
            .map(|v| {
                v.iter()
                    .filter(|r| r.starts_with(&prefix) && **r != me)
                    .filter_map(|r| r.strip_prefix(&prefix).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records that `host/repo` holds each of `digests`.
    pub fn record(&self, digests: &[String], host: &str, repo: &str) -> Result<(), RegistryError> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(io_err("open lock file", &self.lock))?;
        FileExt::lock_exclusive(&lock).map_err(io_err("lock", &self.lock))?;
        let mut map = self.read();
        let location = format!("{host}/{repo}");
        for d in digests {
            let list = map.entry(d.clone()).or_default();
            list.retain(|l| *l != location);
            list.insert(0, location.clone());
            list.truncate(MAX_PER_BLOB);
        }
        let bytes = serde_json::to_vec(&map).map_err(|e| RegistryError::Io {
            action: "serialise",
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut tmp =
            tempfile::NamedTempFile::new_in(dir).map_err(io_err("create temp file in", dir))?;
        tmp.write_all(&bytes).map_err(io_err("write", tmp.path()))?;
        tmp.persist(&self.path).map_err(|e| RegistryError::Io {
            action: "replace",
            path: self.path.clone(),
            source: e.error,
        })?;
        Ok(())
    }
}
