//! Volumes of `bunny run -v`: a host directory becomes an ext4 (Linux) or
//! ext2 (rumprun) disk image made with `mke2fs -d`, attached to the guest
//! as an extra disk and, after the guest stops, written back into the
//! directory; a disk image file is attached as it is, so what the guest
//! writes stays in it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

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
    #[error("`{tool}` is missing: install {package} (apt-get install {package})")]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },
    #[error("{command} failed ({status}): {stderr}")]
    ToolFailed {
        command: String,
        status: String,
        stderr: String,
    },
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

fn find_tool(tool: &'static str) -> Result<PathBuf, VolumeError> {
    for dir in std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/sbin", "/usr/sbin"].map(PathBuf::from))
    {
        let p = dir.join(tool);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(VolumeError::ToolMissing {
        tool,
        package: "e2fsprogs",
    })
}

fn run(cmd: &mut Command) -> Result<String, VolumeError> {
    let describe = format!("{cmd:?}");
    let out = cmd
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| VolumeError::ToolFailed {
            command: describe.clone(),
            status: "could not start".into(),
            stderr: e.to_string(),
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !out.status.success() {
        return Err(VolumeError::ToolFailed {
            command: describe,
            status: out.status.to_string(),
            stderr,
        });
    }
    Ok(stderr)
}

/// Bytes the files under `dir` take, in 4 KiB blocks, and their number.
fn usage(dir: &Path) -> Result<(u64, u64), VolumeError> {
    let mut bytes = 0u64;
    let mut count = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io("reading", &d))? {
            let e = e.map_err(io("reading", &d))?;
            let meta = e.metadata().map_err(io("reading", &e.path()))?;
            count += 1;
            bytes += meta.len().div_ceil(4096) * 4096 + 4096 * u64::from(meta.is_dir());
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok((bytes, count))
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
    let (used, count) = usage(dir)?;
    let bytes = size.unwrap_or(used * 2 + (256 << 20));
    if fs_type == VolumeFs::Ufs2 {
        return make_ufs2(dir, image, bytes, label);
    }
    let mke2fs = find_tool("mke2fs")?;
    let inodes = (count * 2 + 4096).max(bytes / (64 << 10));
    File::create(image).map_err(io("creating", image))?;
    run(Command::new(mke2fs)
        .args(["-q", "-F", "-t", fs_type.as_str(), "-m", "0", "-N"])
        .arg(inodes.to_string())
        .arg("-d")
        .arg(dir)
        .arg(image)
        .arg(format!("{}k", bytes.div_ceil(1024))))?;
    Ok(())
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

/// Puts the image's tree back into `dir`: entries the guest removed go,
/// new and changed ones replace what is there. The image's own
/// `lost+found` is not copied.
pub fn write_back(image: &Path, dir: &Path) -> Result<(), VolumeError> {
    let debugfs = find_tool("debugfs")?;
    let e2fsck = find_tool("e2fsck")?;
    // A guest stopped hard may leave the filesystem unclean: preen it first
    // (exit 1 means "fixed").
    let out = Command::new(e2fsck)
        .args(["-p"])
        .arg(image)
        .env("LC_ALL", "C")
        .output()
        .map_err(io("running e2fsck on", image))?;
    if !matches!(out.status.code(), Some(0) | Some(1)) {
        return Err(VolumeError::ToolFailed {
            command: format!("e2fsck -p {}", image.display()),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        });
    }
    // The dump goes beside the directory when it can (renames, not copies).
    let parent = dir.parent().unwrap_or(dir);
    let staging = tempfile::Builder::new()
        .prefix(".bunny-volume-")
        .tempdir_in(parent)
        .or_else(|_| {
            tempfile::Builder::new()
                .prefix("bunny-volume-")
                .tempdir_in(image.parent().unwrap_or(Path::new("/tmp")))
        })
        .map_err(io("making a directory beside", dir))?;
    let target = staging.path().to_string_lossy().replace('"', "\"\"");
    let stderr = run(Command::new(debugfs)
        .arg("-R")
        .arg(format!("rdump / \"{target}\""))
        .arg(image))?;
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs "))
        .collect();
    if !errors.is_empty() {
        return Err(VolumeError::ToolFailed {
            command: format!("debugfs -R 'rdump /' {}", image.display()),
            status: "command errors".into(),
            stderr: errors.join("; "),
        });
    }
    let lost = staging.path().join("lost+found");
    if lost.is_dir() && !dir.join("lost+found").exists() {
        fs::remove_dir_all(&lost).map_err(io("removing", &lost))?;
    }
    sync_tree(staging.path(), dir)
}

/// Makes `dst` hold exactly what `src` holds, moving entries out of `src`.
fn sync_tree(src: &Path, dst: &Path) -> Result<(), VolumeError> {
    let names = |d: &Path| -> Result<Vec<std::ffi::OsString>, VolumeError> {
        let mut v = Vec::new();
        for e in fs::read_dir(d).map_err(io("reading", d))? {
            v.push(e.map_err(io("reading", d))?.file_name());
        }
        Ok(v)
    };
    let wanted = names(src)?;
    for name in names(dst)? {
        if !wanted.contains(&name) {
            remove_any(&dst.join(&name))?;
        }
    }
    for name in wanted {
        let (s, d) = (src.join(&name), dst.join(&name));
        let smeta = fs::symlink_metadata(&s).map_err(io("reading", &s))?;
        let dmeta = fs::symlink_metadata(&d).ok();
        if smeta.is_dir() {
            match dmeta {
                Some(m) if m.is_dir() => {
                    fs::set_permissions(&d, smeta.permissions())
                        .map_err(io("setting the mode of", &d))?;
                    sync_tree(&s, &d)?;
                }
                _ => {
                    if dmeta.is_some() {
                        remove_any(&d)?;
                    }
                    move_entry(&s, &d)?;
                }
            }
        } else {
            if dmeta.as_ref().is_some_and(|m| m.is_dir()) {
                remove_any(&d)?;
            }
            move_entry(&s, &d)?;
        }
    }
    Ok(())
}

fn remove_any(p: &Path) -> Result<(), VolumeError> {
    let meta = fs::symlink_metadata(p).map_err(io("reading", p))?;
    if meta.is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    }
    .map_err(io("removing", p))
}

/// Renames (replacing a file at `dst`), or copies across filesystems.
fn move_entry(src: &Path, dst: &Path) -> Result<(), VolumeError> {
    if fs::rename(src, dst).is_ok() {
        return Ok(());
    }
    let meta = fs::symlink_metadata(src).map_err(io("reading", src))?;
    if meta.is_dir() {
        fs::create_dir(dst).map_err(io("creating", dst))?;
        fs::set_permissions(dst, meta.permissions()).map_err(io("setting the mode of", dst))?;
        for e in fs::read_dir(src).map_err(io("reading", src))? {
            let e = e.map_err(io("reading", src))?;
            move_entry(&e.path(), &dst.join(e.file_name()))?;
        }
        Ok(())
    } else if meta.file_type().is_symlink() {
        let t = fs::read_link(src).map_err(io("reading", src))?;
        let _ = fs::remove_file(dst);
        std::os::unix::fs::symlink(t, dst).map_err(io("creating", dst))
    } else {
        // Through a temporary name, so `dst` is never half written.
        let tmp = dst.with_file_name(format!(
            ".{}.bunny-tmp",
            dst.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        fs::copy(src, &tmp).map_err(io("copying to", &tmp))?;
        fs::rename(&tmp, dst).map_err(io("replacing", dst))
    }
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
    fn a_directory_goes_to_an_image_and_comes_back_with_the_changes() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("vol");
        fs::create_dir_all(dir.join("keep/deep")).unwrap();
        fs::write(dir.join("keep/deep/f"), b"deep").unwrap();
        fs::write(dir.join("gone"), b"x").unwrap();
        fs::write(dir.join("changed"), b"old").unwrap();
        let image = d.path().join("vol.img");
        make_image(&dir, &image, VolumeFs::Ext4, None, "bunnyvol0").unwrap();
        // Change the image as a guest would, with debugfs.
        let new = d.path().join("new");
        fs::write(&new, b"new contents").unwrap();
        let script = d.path().join("cmds");
        fs::write(
            &script,
            format!(
                "rm /gone\nrm /changed\nwrite {} /changed\nmkdir /made\n",
                new.display()
            ),
        )
        .unwrap();
        run(Command::new(find_tool("debugfs").unwrap())
            .arg("-w")
            .arg("-f")
            .arg(&script)
            .arg(&image))
        .unwrap();
        write_back(&image, &dir).unwrap();
        assert!(!dir.join("gone").exists());
        assert_eq!(fs::read(dir.join("changed")).unwrap(), b"new contents");
        assert_eq!(fs::read(dir.join("keep/deep/f")).unwrap(), b"deep");
        assert!(dir.join("made").is_dir());
        assert!(!dir.join("lost+found").exists());
        // Nothing of the staging is left beside the directory.
        let left: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".bunny-volume-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
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
