//! Paths named by the image, resolved inside its rootfs.
//!
//! urunc runs the monitor chrooted in the container rootfs; we do not chroot,
//! so we resolve the way a chroot would (absolute symlinks restart at the
//! rootfs) and refuse anything that would leave it.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use crate::config::NOT_IN_IMAGE;
use crate::RuntimeError;

/// More links than Linux itself follows means a loop.
const MAX_LINKS: usize = 40;

fn bad(what: &'static str, path: &str, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::BadImagePath {
        what,
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// The components of an image path, refusing `..` and empty paths.
fn image_components(path: &str, what: &'static str) -> Result<Vec<OsString>, RuntimeError> {
    let mut out = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => {
                return Err(bad(
                    what,
                    path,
                    "contains \"..\", which could leave the image",
                ))
            }
            Component::Prefix(_) => return Err(bad(what, path, "is not a Unix path")),
        }
    }
    if out.is_empty() {
        return Err(bad(what, path, "names no file"));
    }
    Ok(out)
}

/// Where an image path lies under `rootfs`, without touching the disk.
pub(crate) fn lexical_in_rootfs(
    rootfs: &Path,
    path: &str,
    what: &'static str,
) -> Result<PathBuf, RuntimeError> {
    let mut p = rootfs.to_path_buf();
    p.extend(image_components(path, what)?);
    Ok(p)
}

/// Resolves `path` (as seen inside the image) to a host path of a regular
/// file under `rootfs`, following symlinks as a chroot would and refusing
/// any that lead out of it.
pub fn resolve_in_rootfs(
    rootfs: &Path,
    path: &str,
    what: &'static str,
) -> Result<PathBuf, RuntimeError> {
    let mut pending: VecDeque<OsString> = image_components(path, what)?.into();
    let mut done: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == "." {
            continue;
        }
        if c == ".." {
            if done.pop().is_none() {
                return Err(bad(what, path, "is a symlink that leads out of the image"));
            }
            continue;
        }
        done.push(c);
        let host: PathBuf = rootfs.join(done.iter().collect::<PathBuf>());
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(bad(what, path, "has a symlink loop"));
                }
                let target =
                    std::fs::read_link(&host).map_err(|source| RuntimeError::ReadFile {
                        path: host.clone(),
                        source,
                    })?;
                done.pop();
                if target.is_absolute() {
                    done.clear();
                }
                for tc in target.components().rev() {
                    match tc {
                        Component::Normal(n) => pending.push_front(n.to_os_string()),
                        Component::ParentDir => pending.push_front("..".into()),
                        Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                    }
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(bad(what, path, NOT_IN_IMAGE))
            }
            Err(source) => return Err(RuntimeError::ReadFile { path: host, source }),
        }
    }
    let host = rootfs.join(done.iter().collect::<PathBuf>());
    let meta = std::fs::metadata(&host).map_err(|source| RuntimeError::ReadFile {
        path: host.clone(),
        source,
    })?;
    if !meta.is_file() {
        return Err(bad(what, path, "is not a regular file"));
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn plain_and_linked_paths_stay_inside() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join(".boot")).unwrap();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::fs::write(r.join("usr/lib/vmlinuz"), b"k").unwrap();
        symlink("/usr/lib/vmlinuz", r.join(".boot/abs")).unwrap();
        symlink("../usr/lib/vmlinuz", r.join(".boot/rel")).unwrap();

        let want = r.join("usr/lib/vmlinuz");
        assert_eq!(
            resolve_in_rootfs(r, "/usr/lib/vmlinuz", "kernel").unwrap(),
            want
        );
        assert_eq!(resolve_in_rootfs(r, "/.boot/abs", "kernel").unwrap(), want);
        assert_eq!(resolve_in_rootfs(r, "/.boot/rel", "kernel").unwrap(), want);
        assert_eq!(
            resolve_in_rootfs(r, "usr/./lib/vmlinuz", "kernel").unwrap(),
            want
        );
    }

    #[test]
    fn escapes_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let up = "../".repeat(r.components().count() + 2);
        symlink(
            format!("{up}{}", outside.path().join("secret").display()),
            r.join("out"),
        )
        .unwrap();
        symlink("loop", r.join("loop")).unwrap();
        std::fs::create_dir(r.join("dir")).unwrap();

        for (p, needle) in [
            ("/../etc/passwd", "\"..\""),
            ("/.boot/../../x", "\"..\""),
            ("/out", "leads out of the image"),
            ("/loop", "symlink loop"),
            ("/missing", NOT_IN_IMAGE),
            ("/dir", "not a regular file"),
            ("/", "names no file"),
        ] {
            let e = resolve_in_rootfs(r, p, "kernel").unwrap_err().to_string();
            assert!(e.contains(needle), "{p}: {e}");
            assert!(e.contains("kernel"), "{p}: {e}");
        }
        assert!(lexical_in_rootfs(r, "/a/../b", "initrd").is_err());
        assert_eq!(
            lexical_in_rootfs(r, "/a/b", "initrd").unwrap(),
            r.join("a/b")
        );
    }
}
