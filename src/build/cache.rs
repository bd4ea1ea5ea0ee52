//! The step cache: a step's key hashes everything that can change its output
//! (the image digest, command, env, workdir, and every file of its inputs:
//! path, kind, mode and content). Outputs live under
//! `<store root>/build-cache/<key>/out`, written in a temp dir and renamed
//! there only when the step succeeded, so a failed step leaves nothing.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{io_ctx, BuildError};

pub fn cache_dir(store_root: &Path) -> PathBuf {
    store_root.join("build-cache")
}

/// Everything a step's key covers.
pub struct KeyInputs<'a> {
    pub image_digest: &'a str,
    pub command: &'a [String],
    pub env: &'a [String],
    pub workdir: &'a str,
    pub network: bool,
    /// Hashed by content, recursively.
    pub source: &'a Path,
    /// The step's read-only layer mounts, each as `TARGET=DIGEST`.
    pub mounts: &'a [String],
}

/// The step's key, as 64 hex digits.
pub fn step_key(inputs: &KeyInputs) -> Result<String, BuildError> {
    let mut h = Sha256::new();
    // Each field is length-prefixed so no two different inputs hash alike.
    let mut field = |tag: &str, bytes: &[u8]| {
        h.update(tag.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field("v", b"bunny-step-1");
    field("image", inputs.image_digest.as_bytes());
    for c in inputs.command {
        field("cmd", c.as_bytes());
    }
    for e in inputs.env {
        field("env", e.as_bytes());
    }
    field("workdir", inputs.workdir.as_bytes());
    field("net", &[u8::from(inputs.network)]);
    // Absent for steps without mounts, so their keys stay what they were.
    for m in inputs.mounts {
        field("mount", m.as_bytes());
    }
    let tree = tree_hash(inputs.source)?;
    field("src", tree.as_bytes());
    Ok(hex::encode(h.finalize()))
}

/// A directory's content hash: sorted entries, each as kind, relative path,
/// permission bits and content (or symlink target). `.git` is skipped: its
/// contents change with every clone while the checkout does not.
pub fn tree_hash(root: &Path) -> Result<String, BuildError> {
    let mut h = Sha256::new();
    walk(root, root, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

fn walk(root: &Path, dir: &Path, h: &mut Sha256) -> Result<(), BuildError> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .and_then(|rd| {
            rd.map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<Vec<_>>>()
        })
        .map_err(io_ctx(format!("reading {}", dir.display())))?;
    names.sort();
    for name in names {
        if dir == root && name == ".git" {
            continue;
        }
        let path = dir.join(&name);
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let meta =
            fs::symlink_metadata(&path).map_err(io_ctx(format!("reading {}", path.display())))?;
        let rel_bytes = rel.as_os_str().as_encoded_bytes();
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        let kind: &[u8] = if ft.is_dir() {
            b"d"
        } else if ft.is_symlink() {
            b"l"
        } else if ft.is_file() {
            b"f"
        } else {
            b"o"
        };
        h.update(kind);
        h.update((rel_bytes.len() as u64).to_le_bytes());
        h.update(rel_bytes);
        h.update(mode.to_le_bytes());
        if ft.is_dir() {
            walk(root, &path, h)?;
        } else if ft.is_symlink() {
            let target =
                fs::read_link(&path).map_err(io_ctx(format!("reading {}", path.display())))?;
            h.update(target.as_os_str().as_encoded_bytes());
        } else if ft.is_file() {
            let mut f =
                fs::File::open(&path).map_err(io_ctx(format!("reading {}", path.display())))?;
            let mut fh = Sha256::new();
            io::copy(&mut f, &mut fh).map_err(io_ctx(format!("reading {}", path.display())))?;
            h.update(fh.finalize());
        }
    }
    Ok(())
}

/// A cached step output, if the key has one.
pub fn lookup(store_root: &Path, key: &str) -> Option<PathBuf> {
    let out = cache_dir(store_root).join(key).join("out");
    out.is_dir().then_some(out)
}

/// A fresh output directory for a step whose result will be cached under
/// `key` by [`PendingOutput::commit`]; dropped uncommitted, it is removed.
pub struct PendingOutput {
    dir: tempfile::TempDir,
    key: String,
    cache: PathBuf,
}

impl PendingOutput {
    pub fn new(store_root: &Path, key: &str) -> Result<PendingOutput, BuildError> {
        let cache = cache_dir(store_root);
        fs::create_dir_all(&cache).map_err(io_ctx(format!("creating {}", cache.display())))?;
        let dir = tempfile::Builder::new()
            .prefix(".step-")
            .tempdir_in(&cache)
            .map_err(io_ctx(format!(
                "creating a temp dir in {}",
                cache.display()
            )))?;
        let out = dir.path().join("out");
        fs::create_dir(&out).map_err(io_ctx(format!("creating {}", out.display())))?;
        Ok(PendingOutput {
            dir,
            key: key.to_string(),
            cache,
        })
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Moves the output under its key; returns its final path.
    pub fn commit(self) -> Result<PathBuf, BuildError> {
        let done = self.cache.join(&self.key);
        if done.exists() {
            // A --no-cache rerun replaces the old result.
            fs::remove_dir_all(&done).map_err(io_ctx(format!("removing {}", done.display())))?;
        }
        let tmp = self.dir.keep();
        fs::rename(&tmp, &done).map_err(|e| {
            let _ = fs::remove_dir_all(&tmp);
            BuildError::Io {
                context: format!("renaming {} to {}", tmp.display(), done.display()),
                source: e,
            }
        })?;
        Ok(done.join("out"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_content() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a.c"), "int main(){}").unwrap();
        let cmd = vec!["make".to_string()];
        let km = |env: &[String], mounts: &[String]| {
            step_key(&KeyInputs {
                image_digest: "sha256:00",
                command: &cmd,
                env,
                workdir: "/src",
                network: false,
                source: d.path(),
                mounts,
            })
            .unwrap()
        };
        let k = |env: &[String]| km(env, &[]);
        let first = k(&[]);
        assert_eq!(first, k(&[]));
        assert_ne!(first, k(&["CC=clang".to_string()]));
        // A sysroot of another digest is another build.
        let sysroot = km(&[], &["/sysroot=sha256:01".to_string()]);
        assert_ne!(first, sysroot);
        assert_ne!(sysroot, km(&[], &["/sysroot=sha256:02".to_string()]));
        fs::write(d.path().join("a.c"), "int main(){return 1;}").unwrap();
        assert_ne!(first, k(&[]));
        fs::create_dir(d.path().join(".git")).unwrap();
        fs::write(d.path().join(".git/HEAD"), "x").unwrap();
        let with_git = k(&[]);
        fs::write(d.path().join(".git/HEAD"), "y").unwrap();
        assert_eq!(with_git, k(&[]));
    }
}
