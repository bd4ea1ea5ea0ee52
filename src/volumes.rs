//! Volumes of `bunny run -v`: a host directory becomes an ext4 (Linux) or
//! ext2 (rumprun) disk image made with `mke2fs -d`
//! (`bunny_runtime::volume_image`, shared with bunny-runtime's bind
//! mounts) or a UFS2 one (FreeBSD, bunny's writer), attached to the guest
//! as an extra disk and, after the guest stops, written back into the
//! directory (ext) or kept; a disk image file is attached as it is, so
//! what the guest writes stays in it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("-v `{value}`: {reason}")]
    Bad { value: String, reason: String },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] bunny_runtime::volume_image::ImageError),
    #[error("{path} is in use by another run (a volume is attached to one run at a time)")]
    InUse { path: PathBuf },
    #[error("making the UFS2 image of {dir}")]
    Ufs {
        dir: PathBuf,
        #[source]
        source: crate::layers::LayerError,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::Io { what, path, source }
}

/// The filesystem a guest mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeFs {
    /// Linux: ext4 (the kernel's ext4 driver mounts ext2/3 images as well).
    Ext4,
    /// rumprun (NetBSD's ext2fs).
    Ext2,
    /// FreeBSD: UFS2, written by bunny (its kernel configs have no ext2fs).
    Ufs2,
}

impl VolumeFs {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeFs::Ext4 => "ext4",
            VolumeFs::Ext2 => "ext2",
            VolumeFs::Ufs2 => "ufs2",
        }
    }
}

/// What the user asked for with one `-v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeArg {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
    /// The image's size for a directory (`size=`), in bytes.
    pub size: Option<u64>,
    pub source_is_dir: bool,
    /// `keep`: the directory's image keeps the guest's changes (in the
    /// run's directory, for the run's next start) and the directory is
    /// left as it was.
    pub keep: bool,
}

/// Parses `SOURCE:TARGET[:OPTS]`, OPTS being a comma list of `ro`, `rw`,
/// `keep` and `size=N[KMG]`; SOURCE must exist (a directory or a disk image).
pub fn parse(value: &str) -> Result<VolumeArg, VolumeError> {
    let bad = |reason: &str| VolumeError::Bad {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let parts: Vec<&str> = value.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [s, t] => (*s, *t, ""),
        [s, t, o] => (*s, *t, *o),
        _ => return Err(bad(
            "write HOST_DIR:GUEST_PATH[:ro] or IMAGE_FILE:GUEST_PATH[:ro] (no `:` in the paths)",
        )),
    };
    if source.is_empty() {
        return Err(bad("the host side is empty"));
    }
    if !target.starts_with('/') || target == "/" {
        return Err(bad(
            "the guest path must be absolute and not `/` (the image's root stays the root)",
        ));
    }
    if target
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == ',')
        || target.split('/').any(|c| c == "..")
    {
        return Err(bad(
            "the guest path cannot hold blanks, quotes, commas, control characters or `..` (the guest's configuration carries it as one word)",
        ));
    }
    let mut read_only = false;
    let mut size = None;
    let mut keep = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "keep" => keep = true,
            _ => match o.strip_prefix("size=") {
                Some(s) => {
                    size = Some(parse_size(s).ok_or_else(|| {
                        bad(&format!("size `{s}`: write a number with K, M or G"))
                    })?)
                }
                None => {
                    return Err(bad(&format!(
                        "unknown option `{o}` (ro, rw, keep, size=N[KMG])"
                    )))
                }
            },
        }
    }
    let meta = fs::metadata(source).map_err(|e| VolumeError::Bad {
        value: value.to_string(),
        reason: format!("{source}: {e}"),
    })?;
    let source_is_dir = meta.is_dir();
    if !source_is_dir && !meta.is_file() {
        return Err(bad(
            "the host side must be a directory or a disk image file",
        ));
    }
    if size.is_some() && !source_is_dir {
        return Err(bad(
            "size= is for a directory; an image file has its own size",
        ));
    }
    if keep && (read_only || !source_is_dir) {
        return Err(bad(
            "keep is for a writable directory (an image file keeps the guest's writes itself; a read-only volume has none)",
        ));
    }
    let source = fs::canonicalize(source).map_err(|e| VolumeError::Bad {
        value: value.to_string(),
        reason: format!("{source}: {e}"),
    })?;
    Ok(VolumeArg {
        source,
        target: target.trim_end_matches('/').to_string(),
        read_only,
        size,
        source_is_dir,
        keep,
    })
}

fn parse_size(s: &str) -> Option<u64> {
    let (num, mul) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mul).filter(|n| *n > 0)
}

/// Holds a volume's source locked while a run uses it.
pub struct VolumeLock(#[allow(dead_code)] File);

pub fn lock(source: &Path) -> Result<VolumeLock, VolumeError> {
    let f = File::open(source).map_err(io("opening", source))?;
    match fs4::fs_std::FileExt::try_lock_exclusive(&f) {
        Ok(true) => Ok(VolumeLock(f)),
        Ok(false) => Err(VolumeError::InUse {
            path: source.to_path_buf(),
        }),
        Err(e) => Err(io("locking", source)(e)),
    }
}

/// Makes `image` (sparse) holding the tree under `dir`: the files' size
/// twice over plus 256 MiB, unless `size` says otherwise, so the guest has
/// room to write. `label`: the filesystem's volume name (UFS2, where
/// FreeBSD's GEOM shows it as `/dev/ufs/LABEL`).
pub fn make_image(
    dir: &Path,
    image: &Path,
    fs_type: VolumeFs,
    size: Option<u64>,
    label: &str,
) -> Result<(), VolumeError> {
    use bunny_runtime::volume_image;
    let bytes = match size {
        Some(b) => b,
        None => volume_image::default_size(dir)?,
    };
    if fs_type == VolumeFs::Ufs2 {
        return make_ufs2(dir, image, bytes, label);
    }
    Ok(volume_image::make_ext_image(
        dir,
        image,
        fs_type.as_str(),
        bytes,
    )?)
}

/// UFS2 through bunny's own writer, which FreeBSD's superblock checks
/// accept (Debian's makefs puts the superblock where FreeBSD refuses it).
/// Every entry gets the time of the make and root's ownership: the writer
/// is built for reproducible roots, not for copying metadata.
fn make_ufs2(dir: &Path, image: &Path, bytes: u64, label: &str) -> Result<(), VolumeError> {
    let ufs = |source| VolumeError::Ufs {
        dir: dir.to_path_buf(),
        source,
    };
    let mut tree = crate::layers::Tree::new();
    let mut names = Vec::new();
    for e in fs::read_dir(dir).map_err(io("reading", dir))? {
        names.push(e.map_err(io("reading", dir))?.file_name());
    }
    names.sort();
    for name in names {
        let name = name.to_str().ok_or_else(|| VolumeError::Bad {
            value: dir.display().to_string(),
            reason: format!("{name:?} is not UTF-8, which a UFS2 volume cannot name"),
        })?;
        tree.add_from_context(dir, name, &format!("/{name}"))
            .map_err(ufs)?;
    }
    let opts = crate::layers::BlockOptions {
        mtime: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        label: Some(label.to_string()),
    };
    crate::layers::ufs::build_volume(&tree, image, &opts, bytes).map_err(ufs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_arguments() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_str().unwrap();
        let v = parse(&format!("{dir}:/data:ro,size=1G")).unwrap();
        assert!(v.read_only && v.source_is_dir);
        assert_eq!(v.size, Some(1 << 30));
        assert_eq!(v.target, "/data");
        let img = d.path().join("x.img");
        fs::write(&img, b"").unwrap();
        let v = parse(&format!("{}:/srv/db/", img.display())).unwrap();
        assert!(!v.read_only && !v.source_is_dir);
        assert_eq!(v.target, "/srv/db");
        assert!(!v.keep);
        assert!(parse(&format!("{dir}:/data:keep,size=1G")).unwrap().keep);
        for (arg, needle) in [
            (dir.to_string(), "write HOST_DIR"),
            (format!("{dir}:data"), "absolute"),
            (format!("{dir}:/"), "absolute"),
            (format!("{dir}:/a b"), "blanks"),
            (format!("{dir}:/a/../b"), "`..`"),
            (format!("{dir}:/d:rx"), "unknown option"),
            (format!("{dir}:/d:size=lots"), "size `lots`"),
            (format!("{}:/d:size=1G", img.display()), "for a directory"),
            ("/nonexistent-bunny-volume:/d".to_string(), "nonexistent"),
            (format!("{dir}:/d:ro:x"), "write HOST_DIR"),
            (format!("{dir}:/d:ro,keep"), "keep is for a writable"),
            (
                format!("{}:/d:keep", img.display()),
                "keep is for a writable",
            ),
        ] {
            let e = parse(&arg).unwrap_err().to_string();
            assert!(e.contains(needle), "{arg}: {e}");
        }
    }

    #[test]
    fn one_run_at_a_time() {
        let d = tempfile::tempdir().unwrap();
        let first = lock(d.path()).unwrap();
        assert!(matches!(lock(d.path()), Err(VolumeError::InUse { .. })));
        drop(first);
        lock(d.path()).unwrap();
    }
}
