//! The set of files that goes into a guest rootfs, independent of the format
//! it is written in. Keys are normalised relative paths ("etc/passwd"), kept
//! sorted so every writer emits entries in the same order on every run.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::error::LayerError;

/// Mode given to directories that are created implicitly as parents.
pub const DEFAULT_DIR_MODE: u32 = 0o755;
/// Permission bits (including setuid, setgid and sticky) kept in [`Entry::mode`].
pub const PERMISSION_BITS: u32 = 0o7777;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// Permission bits incl. setuid etc., no file-type bits.
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    /// Contents are read from `source` when an image is written; `size` is
    /// what the file held when it was added.
    File {
        source: PathBuf,
        size: u64,
    },
    Symlink {
        target: String,
    },
}

/// Normalises a rootfs destination: absolute or relative, `.` and empty
/// components dropped, `..` resolved. The root itself normalises to "".
pub fn normalize_dest(dst: &str) -> Result<String, LayerError> {
    if dst.contains('\0') {
        return Err(LayerError::InvalidDestination {
            path: dst.to_string(),
            reason: "contains a NUL byte",
        });
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in dst.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(LayerError::EscapesRoot {
                        path: dst.to_string(),
                    });
                }
            }
            name => parts.push(name),
        }
    }
    Ok(parts.join("/"))
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    pub fn insert_dir(&mut self, dst: &str, mode: u32) -> Result<(), LayerError> {
        self.insert(
            dst,
            Entry {
                kind: EntryKind::Dir,
                mode: mode & PERMISSION_BITS,
            },
        )
    }

    /// Adds a regular file whose contents are read from `source` (symlinks
    /// to it are followed) when an image is written.
    pub fn insert_file(&mut self, dst: &str, source: &Path, mode: u32) -> Result<(), LayerError> {
        let meta = fs::metadata(source).map_err(|e| LayerError::io("reading", source, e))?;
        if !meta.is_file() {
            return Err(LayerError::NotAFile {
                path: source.to_path_buf(),
            });
        }
        self.insert(
            dst,
            Entry {
                kind: EntryKind::File {
                    source: source.to_path_buf(),
                    size: meta.len(),
                },
                mode: mode & PERMISSION_BITS,
            },
        )
    }

    pub fn insert_symlink(&mut self, dst: &str, target: &str) -> Result<(), LayerError> {
        if target.is_empty() || target.contains('\0') {
            return Err(LayerError::InvalidDestination {
                path: dst.to_string(),
                reason: "a symlink target must be non-empty and contain no NUL byte",
            });
        }
        self.insert(
            dst,
            Entry {
                kind: EntryKind::Symlink {
                    target: target.to_string(),
                },
                mode: 0o777,
            },
        )
    }

    /// Adds `src` (a file or a directory, recursively) from the build context
    /// at `dst`. A `dst` ending in `/` with a file `src` puts the file inside
    /// that directory under its own name.
    ///
    /// `src` must stay inside `context`: `..`, absolute paths and symlinks
    /// that resolve outside are errors naming the include entry. Symlinks
    /// found inside a copied directory are kept as symlinks when they resolve
    /// inside the context, and are errors otherwise.
    pub fn add_from_context(
        &mut self,
        context: &Path,
        src: &str,
        dst: &str,
    ) -> Result<(), LayerError> {
        let entry = src.to_string();
        let (ctx_real, rel, real) = resolve(context, src)?;
        let meta = fs::metadata(&real).map_err(|e| LayerError::io("reading", &real, e))?;
        let mode = meta.permissions().mode();
        if meta.is_dir() {
            let dst_norm = normalize_dest(dst)?;
            self.insert_dir(&dst_norm, mode)?;
            self.add_dir_contents(&ctx_real, &entry, &real, &dst_norm)
        } else if meta.is_file() {
            let dst = if dst.ends_with('/') {
                let name = rel
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| LayerError::NonUtf8Path { path: rel.clone() })?;
                format!("{dst}{name}")
            } else {
                dst.to_string()
            };
            self.insert_with_size(&dst, &real, mode, meta.len())
        } else {
            Err(LayerError::UnsupportedFileType {
                entry,
                path: real,
                kind: file_kind(&meta.file_type()),
            })
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        normalize_dest(path).ok().and_then(|p| self.entries.get(&p))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum of the sizes of all files.
    pub fn content_size(&self) -> u64 {
        self.entries
            .values()
            .map(|e| match e.kind {
                EntryKind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }

    fn insert_with_size(
        &mut self,
        dst: &str,
        source: &Path,
        mode: u32,
        size: u64,
    ) -> Result<(), LayerError> {
        self.insert(
            dst,
            Entry {
                kind: EntryKind::File {
                    source: source.to_path_buf(),
                    size,
                },
                mode: mode & PERMISSION_BITS,
            },
        )
    }

    /// Walks a directory of the context without following symlinks; an
    /// explicit stack keeps deep trees from exhausting the call stack.
    fn add_dir_contents(
        &mut self,
        ctx_real: &Path,
        entry: &str,
        dir: &Path,
        dst: &str,
    ) -> Result<(), LayerError> {
        let mut pending = vec![(dir.to_path_buf(), dst.to_string())];
        while let Some((dir, dst)) = pending.pop() {
            let mut names = Vec::new();
            for item in fs::read_dir(&dir).map_err(|e| LayerError::io("listing", &dir, e))? {
                let item = item.map_err(|e| LayerError::io("listing", &dir, e))?;
                names.push(item.file_name());
            }
            names.sort();
            for name in names {
                let host = dir.join(&name);
                let name = name
                    .to_str()
                    .ok_or_else(|| LayerError::NonUtf8Path { path: host.clone() })?;
                let child_dst = if dst.is_empty() {
                    name.to_string()
                } else {
                    format!("{dst}/{name}")
                };
                let meta =
                    fs::symlink_metadata(&host).map_err(|e| LayerError::io("reading", &host, e))?;
                let ft = meta.file_type();
                let mode = meta.permissions().mode();
                if ft.is_symlink() {
                    let target = fs::read_link(&host)
                        .map_err(|e| LayerError::io("reading symlink", &host, e))?;
                    let target_str = target
                        .to_str()
                        .ok_or_else(|| LayerError::NonUtf8Path { path: host.clone() })?
                        .to_string();
                    if !resolves_inside(ctx_real, &dir, &target) {
                        return Err(LayerError::SymlinkEscape {
                            entry: entry.to_string(),
                            link: host,
                            target: target_str,
                        });
                    }
                    self.insert_symlink(&child_dst, &target_str)?;
                } else if ft.is_dir() {
                    self.insert_dir(&child_dst, mode)?;
                    pending.push((host, child_dst));
                } else if ft.is_file() {
                    self.insert_with_size(&child_dst, &host, mode, meta.len())?;
                } else {
                    return Err(LayerError::UnsupportedFileType {
                        entry: entry.to_string(),
                        path: host,
                        kind: file_kind(&ft),
                    });
                }
            }
        }
        Ok(())
    }

    fn insert(&mut self, dst: &str, entry: Entry) -> Result<(), LayerError> {
        let path = normalize_dest(dst)?;
        if path.is_empty() {
            // The root always exists and is always a directory.
            return match entry.kind {
                EntryKind::Dir => Ok(()),
                _ => Err(LayerError::InvalidDestination {
                    path: dst.to_string(),
                    reason: "the rootfs root can only be a directory",
                }),
            };
        }
        self.ensure_parents(&path)?;
        let replacing_dir_with_content = matches!(
            (self.entries.get(&path).map(|e| &e.kind), &entry.kind),
            (
                Some(EntryKind::Dir),
                EntryKind::File { .. } | EntryKind::Symlink { .. }
            )
        ) && self.has_children(&path);
        if replacing_dir_with_content {
            return Err(LayerError::Conflict {
                path,
                reason: "a non-empty directory cannot be replaced by a file or symlink",
            });
        }
        // Later inserts win, as later COPY steps overwrite earlier ones.
        self.entries.insert(path, entry);
        Ok(())
    }

    fn ensure_parents(&mut self, path: &str) -> Result<(), LayerError> {
        for (pos, _) in path.match_indices('/') {
            let parent = &path[..pos];
            match self.entries.get(parent) {
                Some(Entry {
                    kind: EntryKind::Dir,
                    ..
                }) => {}
                Some(_) => {
                    return Err(LayerError::Conflict {
                        path: path.to_string(),
                        reason: "a parent of it is a file or symlink, not a directory",
                    })
                }
                None => {
                    self.entries.insert(
                        parent.to_string(),
                        Entry {
                            kind: EntryKind::Dir,
                            mode: DEFAULT_DIR_MODE,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    fn has_children(&self, path: &str) -> bool {
        let prefix = format!("{path}/");
        self.entries
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }
}

/// Resolves `src` (a path relative to the build context) to the real file it
/// names, refusing `..`, absolute paths and symlinks that lead outside.
/// Errors name `src`, as the BunnyFile wrote it.
pub fn resolve_in_context(context: &Path, src: &str) -> Result<PathBuf, LayerError> {
    resolve(context, src).map(|(_, _, real)| real)
}

/// Returns the canonical context, `src` as a clean relative path, and the
/// canonical path it resolves to.
fn resolve(context: &Path, src: &str) -> Result<(PathBuf, PathBuf, PathBuf), LayerError> {
    let outside = |reason: String| LayerError::OutsideContext {
        entry: src.to_string(),
        reason,
    };
    if src.contains('\0') {
        return Err(outside("contains a NUL byte".into()));
    }
    if src.starts_with('/') {
        return Err(outside(
            "is an absolute path; includes are relative to the build context".into(),
        ));
    }
    let mut rel = PathBuf::new();
    for part in src.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(outside("uses `..`, which leaves the build context".into())),
            name => rel.push(name),
        }
    }

    let ctx_real = fs::canonicalize(context)
        .map_err(|e| LayerError::io("resolving build context", context, e))?;
    let full = ctx_real.join(&rel);
    let real = fs::canonicalize(&full).map_err(|e| LayerError::io("reading", &full, e))?;
    if !real.starts_with(&ctx_real) {
        return Err(outside(format!(
            "resolves to `{}`, outside the build context `{}`",
            real.display(),
            ctx_real.display()
        )));
    }
    Ok((ctx_real, rel, real))
}

fn file_kind(ft: &fs::FileType) -> &'static str {
    if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

/// Whether a symlink found in `link_dir` (a real path inside the context)
/// resolves inside the context. Dangling links are judged lexically.
fn resolves_inside(ctx_real: &Path, link_dir: &Path, target: &Path) -> bool {
    let joined = link_dir.join(target);
    match fs::canonicalize(&joined) {
        Ok(real) => real.starts_with(ctx_real),
        Err(_) => {
            let mut out = PathBuf::new();
            for c in joined.components() {
                match c {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::CurDir => {}
                    other => out.push(other.as_os_str()),
                }
            }
            out.starts_with(ctx_real)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_destinations() {
        assert_eq!(normalize_dest("/etc/passwd").unwrap(), "etc/passwd");
        assert_eq!(normalize_dest("etc//./x/../passwd/").unwrap(), "etc/passwd");
        assert_eq!(normalize_dest("/").unwrap(), "");
        assert!(matches!(
            normalize_dest("a/../../x"),
            Err(LayerError::EscapesRoot { path }) if path == "a/../../x"
        ));
    }
}
