//! Unpacking layer tars into a directory without letting any entry land
//! outside it: `..` and absolute names are refused, parents are never followed
//! through symlinks, hard links must point inside, and OCI whiteouts apply.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum UnpackError {
    #[error("layer entry `{entry}` would land outside the target: {why}")]
    Escape { entry: String, why: &'static str },
    #[error("layer entry `{entry}` is a {kind}; bunny does not create device nodes or fifos (a toolchain or base image must hold none: the build container gets its /dev from the runtime, so delete them before committing the image)")]
    Special { entry: String, kind: &'static str },
    #[error("layer entry `{entry}`: {source}")]
    Entry {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("reading the layer: {0}")]
    Read(#[source] io::Error),
}

/// What an unpack wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Unpacks an uncompressed tar stream into `target` (which must exist).
/// setuid and setgid bits are dropped: nothing bunny unpacks needs them.
pub fn unpack_tar<R: Read>(reader: R, target: &Path) -> Result<UnpackStats, UnpackError> {
    let mut archive = tar::Archive::new(reader);
    let mut stats = UnpackStats::default();
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = clean(&name)?;
        let Some(file_name) = rel.file_name().map(|f| f.to_string_lossy().into_owned()) else {
            // The archive's root itself ("./"): nothing to create.
            continue;
        };
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        let parent = safe_parent(target, parent_rel, &name)?;
        let io_err = |source| UnpackError::Entry {
            entry: name.clone(),
            source,
        };

        if file_name == OPAQUE {
            if parent.is_dir() {
                for child in fs::read_dir(&parent).map_err(io_err)? {
                    remove_any(&child.map_err(io_err)?.path()).map_err(io_err)?;
                }
            }
            stats.whiteouts += 1;
            continue;
        }
        if let Some(hidden) = file_name.strip_prefix(WHITEOUT) {
            if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
                return Err(UnpackError::Escape {
                    entry: name,
                    why: "a whiteout must name a sibling",
                });
            }
            let victim = parent.join(hidden);
            if victim.symlink_metadata().is_ok() {
                remove_any(&victim).map_err(io_err)?;
            }
            stats.whiteouts += 1;
            continue;
        }

        let dest = parent.join(&file_name);
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o1777;
        // A later layer may replace a directory with a file or the reverse.
        if !kind.is_dir() {
            if let Ok(meta) = dest.symlink_metadata() {
                if meta.is_dir() && !meta.file_type().is_symlink() {
                    fs::remove_dir_all(&dest).map_err(io_err)?;
                } else {
                    fs::remove_file(&dest).map_err(io_err)?;
                }
            }
        }
        match kind {
            tar::EntryType::Directory => {
                match dest.symlink_metadata() {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        fs::remove_file(&dest).map_err(io_err)?;
                        fs::create_dir(&dest).map_err(io_err)?;
                    }
                    Err(_) => fs::create_dir(&dest).map_err(io_err)?,
                }
                set_mode(&dest, mode).map_err(io_err)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut out = fs::File::create(&dest).map_err(io_err)?;
                stats.bytes += io::copy(&mut entry, &mut out).map_err(io_err)?;
                set_mode(&dest, mode).map_err(io_err)?;
            }
            tar::EntryType::Symlink => {
                let target_name =
                    entry
                        .link_name()
                        .map_err(io_err)?
                        .ok_or_else(|| UnpackError::Escape {
                            entry: name.clone(),
                            why: "a symlink without a target",
                        })?;
                // Stored as written: the link is never followed while unpacking.
                std::os::unix::fs::symlink(target_name, &dest).map_err(io_err)?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .ok_or_else(|| UnpackError::Escape {
                        entry: name.clone(),
                        why: "a hard link without a target",
                    })?;
                let link_rel = clean(&link).map_err(|_| UnpackError::Escape {
                    entry: format!("{name} (a hard link to {link})"),
                    why: "its target contains `..`",
                })?;
                let link_parent =
                    safe_parent(target, link_rel.parent().unwrap_or(Path::new("")), &name)?;
                let src = match link_rel.file_name() {
                    Some(f) => link_parent.join(f),
                    None => {
                        return Err(UnpackError::Escape {
                            entry: name,
                            why: "a hard link to the root",
                        })
                    }
                };
                let meta = src.symlink_metadata().map_err(io_err)?;
                if meta.file_type().is_symlink() || !meta.is_file() {
                    return Err(UnpackError::Escape {
                        entry: name,
                        why: "a hard link must name a regular file unpacked before it",
                    });
                }
                fs::hard_link(&src, &dest).map_err(io_err)?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(UnpackError::Special {
                    entry: name,
                    kind: "device node",
                })
            }
            tar::EntryType::Fifo => {
                return Err(UnpackError::Special {
                    entry: name,
                    kind: "fifo",
                })
            }
            // PAX and GNU long-name records are folded into entries by `tar`.
            _ => continue,
        }
        stats.entries += 1;
    }
    Ok(stats)
}

/// A tar name as a relative path with no `..`, or an error.
fn clean(name: &str) -> Result<PathBuf, UnpackError> {
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            // Image layers commonly carry absolute names; they mean the same
            // as relative ones under the target.
            Component::RootDir => {}
            Component::ParentDir => {
                return Err(UnpackError::Escape {
                    entry: name.to_string(),
                    why: "it contains `..`",
                })
            }
            Component::Prefix(_) => {
                return Err(UnpackError::Escape {
                    entry: name.to_string(),
                    why: "it has a path prefix",
                })
            }
        }
    }
    Ok(out)
}

/// Creates (as directories) and returns the parent of an entry, refusing to
/// pass through any symlink on the way.
fn safe_parent(target: &Path, rel: &Path, entry: &str) -> Result<PathBuf, UnpackError> {
    let mut dir = target.to_path_buf();
    for c in rel.components() {
        dir.push(c);
        match dir.symlink_metadata() {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(UnpackError::Escape {
                    entry: entry.to_string(),
                    why: "a parent directory is a symlink",
                })
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(UnpackError::Escape {
                    entry: entry.to_string(),
                    why: "a parent is not a directory",
                })
            }
            Err(_) => fs::create_dir(&dir).map_err(|source| UnpackError::Entry {
                entry: entry.to_string(),
                source,
            })?,
        }
    }
    Ok(dir)
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn remove_any(path: &Path) -> io::Result<()> {
    let meta = path.symlink_metadata()?;
    if meta.is_dir() && !meta.file_type().is_symlink() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o6755);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`; hostile archives are written raw.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(kind);
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        let t = target.as_bytes();
        h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }

    #[test]
    fn plain_files_land_and_lose_setuid() {
        let t = tempfile::tempdir().unwrap();
        let data = tar_of(|b| file(b, "/a/b/c.txt", b"hi"));
        let s = unpack_tar(&data[..], t.path()).unwrap();
        assert_eq!(s.entries, 1);
        let p = t.path().join("a/b/c.txt");
        assert_eq!(fs::read(&p).unwrap(), b"hi");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o755
        );
    }

    #[test]
    fn dotdot_is_refused() {
        let outer = tempfile::tempdir().unwrap();
        let t = outer.path().join("t");
        fs::create_dir(&t).unwrap();
        let data = tar_of(|b| file(b, "../../evil", b"x"));
        let err = unpack_tar(&data[..], &t).unwrap_err();
        assert!(err.to_string().contains("../../evil"), "{err}");
        assert!(!outer.path().join("evil").exists());
    }

    #[test]
    fn file_through_symlink_is_refused() {
        let outer = tempfile::tempdir().unwrap();
        let t = outer.path().join("t");
        fs::create_dir(&t).unwrap();
        let data = tar_of(|b| {
            link(
                b,
                tar::EntryType::Symlink,
                "etc",
                outer.path().to_str().unwrap(),
            );
            file(b, "etc/passwd", b"x");
        });
        let err = unpack_tar(&data[..], &t).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(!outer.path().join("passwd").exists());
    }

    #[test]
    fn hardlink_out_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let data = tar_of(|b| link(b, tar::EntryType::Link, "pw", "../../etc/passwd"));
        assert!(unpack_tar(&data[..], t.path()).is_err());
        assert!(!t.path().join("pw").exists());
    }

    #[test]
    fn devices_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let data = tar_of(|b| link(b, tar::EntryType::Char, "dev/null", ""));
        let err = unpack_tar(&data[..], t.path()).unwrap_err();
        assert!(err.to_string().contains("device"), "{err}");
    }

    #[test]
    fn whiteouts_apply() {
        let t = tempfile::tempdir().unwrap();
        let l1 = tar_of(|b| {
            file(b, "a/keep", b"1");
            file(b, "a/gone", b"2");
            file(b, "d/x", b"3");
        });
        let l2 = tar_of(|b| {
            file(b, "a/.wh.gone", b"");
            file(b, "d/.wh..wh..opq", b"");
        });
        unpack_tar(&l1[..], t.path()).unwrap();
        let s = unpack_tar(&l2[..], t.path()).unwrap();
        assert_eq!(s.whiteouts, 2);
        assert!(t.path().join("a/keep").exists());
        assert!(!t.path().join("a/gone").exists());
        assert!(t.path().join("d").is_dir());
        assert!(!t.path().join("d/x").exists());
    }
}
