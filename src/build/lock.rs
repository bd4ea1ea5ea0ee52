//! `bunny.lock`, beside the BunnyFile: the manifest digest every dependency
//! layer (toolchain, kernel, ...) resolved to. Written on the first build and
//! honoured after it, so a retagged toolchain changes nothing until
//! `--update-lock`. JSON with sorted keys and a final newline, so the file is
//! stable and diffs well:
//!
//! ```json
//! {
//!   "layers": {
//!     "linux.toolchain": { "digest": "sha256:…", "reference": "oci:…:gcc-bookworm" }
//!   },
//!   "version": 1
//! }
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::BuildError;

pub const LOCK_FILE: &str = "bunny.lock";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    pub version: u32,
    /// `FRAMEWORK.LAYER` -> what it resolved to.
    pub layers: BTreeMap<String, LockedLayer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedLayer {
    /// The reference as given (default, config file or `--toolchain`).
    pub reference: String,
    /// The manifest digest it resolved to.
    pub digest: String,
}

/// `bunny.lock` beside `bunnyfile`.
pub fn lock_path(bunnyfile: &Path) -> PathBuf {
    bunnyfile
        .parent()
        .map(|p| p.join(LOCK_FILE))
        .unwrap_or_else(|| PathBuf::from(LOCK_FILE))
}

impl LockFile {
    /// Reads the lock file; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<LockFile, BuildError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(LockFile {
                    version: VERSION,
                    layers: BTreeMap::new(),
                })
            }
            Err(e) => {
                return Err(BuildError::Lock {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })
            }
        };
        LockFile::parse(path, &bytes)
    }

    /// Reads a lock file's bytes; `path` names it in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<LockFile, BuildError> {
        let lock: LockFile = serde_json::from_slice(bytes).map_err(|e| BuildError::Lock {
            path: path.to_path_buf(),
            message: format!("{e}; delete it or rebuild with --update-lock"),
        })?;
        if lock.version != VERSION {
            return Err(BuildError::Lock {
                path: path.to_path_buf(),
                message: format!(
                    "version {} is not one this bunny reads ({VERSION}); rebuild with --update-lock",
                    lock.version
                ),
            });
        }
        Ok(lock)
    }

    /// Writes the file atomically (temp file + rename beside it).
    pub fn save(&self, path: &Path) -> Result<(), BuildError> {
        let err = |e: std::io::Error| BuildError::Lock {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let value = serde_json::to_value(self).map_err(|e| BuildError::Lock {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut text = serde_json::to_string_pretty(&value).map_err(|e| BuildError::Lock {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        text.push('\n');
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
        tmp.write_all(text.as_bytes()).map_err(err)?;
        tmp.persist(path).map_err(|e| err(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_sorted() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(LOCK_FILE);
        let mut lock = LockFile::load(&path).unwrap();
        assert!(lock.layers.is_empty());
        for name in ["linux.toolchain", "linux.kernel"] {
            lock.layers.insert(
                name.into(),
                LockedLayer {
                    reference: format!("ref-{name}"),
                    digest: "sha256:00".into(),
                },
            );
        }
        lock.save(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.find("linux.kernel").unwrap() < text.find("linux.toolchain").unwrap());
        assert!(text.ends_with("}\n"));
        assert_eq!(LockFile::load(&path).unwrap(), lock);
        fs::write(&path, "{").unwrap();
        assert!(LockFile::load(&path)
            .unwrap_err()
            .to_string()
            .contains("--update-lock"));
    }
}
