//! Volume disk images of host directories, for `bunny run -v` and for the
//! bind mounts an engine hands `bunny-runtime`: an ext4 (Linux) or ext2
//! (rumprun) image made with `mke2fs -d`, so the files keep their modes,
//! owners and times, and the guest's changes put back into the directory
//! once it stops (`e2fsck -p`, then `debugfs rdump`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
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
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_path_buf();
    move |source| ImageError::Io { what, path, source }
}

pub(crate) fn find_tool(tool: &'static str) -> Result<PathBuf, ImageError> {
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
    Err(ImageError::ToolMissing {
        tool,
        package: "e2fsprogs",
    })
}

fn run(cmd: &mut Command) -> Result<String, ImageError> {
    let describe = format!("{cmd:?}");
    let out = cmd
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| ImageError::ToolFailed {
            command: describe.clone(),
            status: "could not start".into(),
            stderr: e.to_string(),
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !out.status.success() {
        return Err(ImageError::ToolFailed {
            command: describe,
            status: out.status.to_string(),
            stderr,
        });
    }
    Ok(stderr)
}

/// Bytes the files under `dir` take, in 4 KiB blocks, and their number.
pub fn usage(dir: &Path) -> Result<(u64, u64), ImageError> {
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

/// Makes `image` (sparse), an ext2/3/4 filesystem (`fs_type`) holding the
/// tree under `dir`, `bytes` large.
pub fn make_ext_image(
    dir: &Path,
    image: &Path,
    fs_type: &str,
    bytes: u64,
) -> Result<(), ImageError> {
    let mke2fs = find_tool("mke2fs")?;
    let (_, count) = usage(dir)?;
    let inodes = (count * 2 + 4096).max(bytes / (64 << 10));
    fs::File::create(image).map_err(io("creating", image))?;
    run(Command::new(mke2fs)
        .args(["-q", "-F", "-t", fs_type, "-m", "0", "-N"])
        .arg(inodes.to_string())
        .arg("-d")
        .arg(dir)
        .arg(image)
        .arg(format!("{}k", bytes.div_ceil(1024))))?;
    Ok(())
}

/// The size a directory's image gets unless the user says otherwise: the
/// files' size twice over plus 256 MiB, so the guest has room to write.
pub fn default_size(dir: &Path) -> Result<u64, ImageError> {
    Ok(usage(dir)?.0 * 2 + (256 << 20))
}

/// Puts the image's tree back into `dir`: entries the guest removed go,
/// new and changed ones replace what is there. The image's own
/// `lost+found` is not copied.
pub fn write_back(image: &Path, dir: &Path) -> Result<(), ImageError> {
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
        return Err(ImageError::ToolFailed {
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
        return Err(ImageError::ToolFailed {
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
fn sync_tree(src: &Path, dst: &Path) -> Result<(), ImageError> {
    let names = |d: &Path| -> Result<Vec<std::ffi::OsString>, ImageError> {
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

fn remove_any(p: &Path) -> Result<(), ImageError> {
    let meta = fs::symlink_metadata(p).map_err(io("reading", p))?;
    if meta.is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    }
    .map_err(io("removing", p))
}

/// Renames (replacing a file at `dst`), or copies across filesystems.
fn move_entry(src: &Path, dst: &Path) -> Result<(), ImageError> {
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
    fn a_directory_goes_to_an_image_and_comes_back_with_the_changes() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("vol");
        fs::create_dir_all(dir.join("keep/deep")).unwrap();
        fs::write(dir.join("keep/deep/f"), b"deep").unwrap();
        fs::write(dir.join("gone"), b"x").unwrap();
        fs::write(dir.join("changed"), b"old").unwrap();
        let image = d.path().join("vol.img");
        make_ext_image(&dir, &image, "ext4", 64 << 20).unwrap();
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
}
