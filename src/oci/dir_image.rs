//! A plain container image from directories, one layer each: what bunny's
//! own job image is packed with (images/bunny/build.sh), so the image comes
//! out of the same reproducible layer and manifest code as every unikernel
//! image bunny builds.
//!
//! A directory is taken as a whole root filesystem: symlinks are stored as
//! they are (an absolute target means the container's own root, as in any
//! container image), never followed; hard links become separate copies;
//! device nodes, fifos and sockets are refused (the runtime makes /dev).
//! Owners are not kept: every entry is root's, as in every bunny layer.

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oci_spec::image::Descriptor;

use super::error::OciError;
use super::image::{assemble, ImageConfig, ImageSpec};
use super::layer::{write_layer, LayerContent, LayerEntry, LayerOptions};
use crate::layers::store::Store;

/// The entries of `root`, sorted by path; `root` itself is not an entry.
pub fn dir_entries(root: &Path) -> Result<Vec<LayerEntry>, OciError> {
    let meta = fs::metadata(root).map_err(OciError::io("read", root))?;
    if !meta.is_dir() {
        return Err(OciError::NotADirectory(root.to_path_buf()));
    }
    let mut entries = Vec::new();
    // An explicit stack: deep trees must not exhaust the call stack.
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, image_dir)) = pending.pop() {
        let mut names = Vec::new();
        for item in fs::read_dir(&dir).map_err(OciError::io("list", &dir))? {
            names.push(item.map_err(OciError::io("list", &dir))?.file_name());
        }
        names.sort();
        for name in names {
            let host = dir.join(&name);
            let name = name
                .to_str()
                .ok_or_else(|| OciError::NonUtf8Path(host.clone()))?;
            let path = format!("{image_dir}/{name}");
            let meta = fs::symlink_metadata(&host).map_err(OciError::io("read", &host))?;
            let ft = meta.file_type();
            let mode = meta.permissions().mode() & 0o7777;
            let content = if ft.is_symlink() {
                let target = fs::read_link(&host).map_err(OciError::io("read symlink", &host))?;
                let target = target
                    .to_str()
                    .ok_or_else(|| OciError::NonUtf8Path(host.clone()))?;
                LayerContent::Symlink(target.to_string())
            } else if ft.is_dir() {
                pending.push((host.clone(), path.clone()));
                LayerContent::Dir
            } else if ft.is_file() {
                LayerContent::File(host.clone())
            } else {
                return Err(OciError::UnsupportedFileType {
                    path: host,
                    kind: special_kind(&ft),
                });
            };
            entries.push(LayerEntry {
                path,
                content,
                mode,
            });
        }
    }
    // The layer writer sorts again; sorted here too so callers see the
    // order the tar has.
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

fn special_kind(ft: &fs::FileType) -> &'static str {
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

/// Packs `dirs` (bottom layer first) with `config` into an image in `store`
/// and returns its manifest's descriptor. The same trees and settings give
/// the same digest: entry order, owners, mtimes (`opts.mtime`) and the
/// compressor's output depend on nothing else.
pub fn pack_dirs(
    dirs: &[PathBuf],
    config: ImageConfig,
    annotations: std::collections::BTreeMap<String, String>,
    opts: &LayerOptions,
    store: &Store,
) -> Result<Descriptor, OciError> {
    let mut layers = Vec::new();
    for dir in dirs {
        layers.push(write_layer(&dir_entries(dir)?, opts, store)?);
    }
    assemble(
        &ImageSpec {
            layers,
            config,
            annotations,
        },
        store,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn walks_a_rootfs_keeping_absolute_symlinks_and_modes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::write(root.join("usr/bin/tool"), b"x").unwrap();
        fs::set_permissions(
            root.join("usr/bin/tool"),
            fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        // Points outside the directory on the host, inside it in a container.
        symlink("/usr/bin/tool", root.join("usr/bin/alias")).unwrap();
        let entries = dir_entries(root).unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/bin",
                "/usr",
                "/usr/bin",
                "/usr/bin/alias",
                "/usr/bin/tool"
            ]
        );
        assert_eq!(entries[0].content, LayerContent::Symlink("usr/bin".into()));
        assert_eq!(
            entries[3].content,
            LayerContent::Symlink("/usr/bin/tool".into())
        );
        assert_eq!(entries[4].mode, 0o4755);
    }

    #[test]
    fn refuses_special_files_and_non_directories() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(matches!(
            dir_entries(d.path()),
            Err(OciError::UnsupportedFileType { kind: "fifo", .. })
        ));
        assert!(matches!(
            dir_entries(&fifo),
            Err(OciError::NotADirectory(_))
        ));
    }
}
