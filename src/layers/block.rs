//! Builds a block rootfs image (ext2, ext4 or UFS2) from a [`Tree`], without
//! root and byte-identical across runs.
//!
//! ext images come from the host's e2fsprogs: the tree is staged into a
//! temporary directory holding only contents, and the metadata the guest
//! sees (modes, owner 0:0, timestamps) is applied by a debugfs script,
//! because staging cannot set ctimes or, without root, owners. UFS2 images
//! are written by [`super::ufs`] itself.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::error::LayerError;
use super::tree::{EntryKind, Tree};
use super::ufs;
use crate::platform::BlockFs;

const EXT_BLOCK: u64 = 4096;
const EXT_INODE_SIZE: u64 = 256;
const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockOptions {
    /// Timestamp of every entry and of the filesystem itself.
    pub mtime: u64,
    pub label: Option<String>,
}

/// Builds the image at `out`. The image is written to a temporary file in
/// the same directory and renamed into place only once complete.
pub fn build_block(
    tree: &Tree,
    fs: BlockFs,
    out: &Path,
    opts: &BlockOptions,
) -> Result<(), LayerError> {
    check_label(fs, opts.label.as_deref())?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let work = tempfile::Builder::new()
        .prefix(".bunny-block-")
        .tempdir_in(&dir)
        .map_err(|e| LayerError::io("creating a work directory in", &dir, e))?;

    let image = tempfile::Builder::new()
        .prefix(".bunny-image-")
        .tempfile_in(&dir)
        .map_err(|e| LayerError::io("creating a temporary image in", &dir, e))?;
    match fs {
        BlockFs::Ext2 | BlockFs::Ext4 => {
            let staging = work.path().join("root");
            stage(tree, &staging)?;
            build_ext(tree, fs, &staging, work.path(), image.path(), opts)?
        }
        // Written directly from the sources, with no staging copy.
        BlockFs::Ufs2 => ufs::build(tree, image.path(), opts)?,
    }
    image
        .persist(out)
        .map_err(|e| LayerError::io("renaming the image to", out, e.error))?;
    Ok(())
}

pub(crate) fn check_label(fs: BlockFs, label: Option<&str>) -> Result<(), LayerError> {
    let Some(label) = label else { return Ok(()) };
    let max = match fs {
        BlockFs::Ext2 | BlockFs::Ext4 => 16,
        BlockFs::Ufs2 => ufs::MAX_LABEL,
    };
    let bad = |reason: String| LayerError::InvalidLabel {
        label: label.to_string(),
        reason,
    };
    if label.len() > max {
        return Err(bad(format!("{fs} labels hold at most {max} bytes")));
    }
    if label.chars().any(|c| c.is_control()) {
        return Err(bad("control characters are not allowed".into()));
    }
    Ok(())
}

/// Copies the tree's contents into `root`. Files are readable and dirs
/// writable here regardless of their final modes, so the tools can read them
/// without root.
fn stage(tree: &Tree, root: &Path) -> Result<(), LayerError> {
    fs::create_dir(root).map_err(|e| LayerError::io("creating", root, e))?;
    for (path, entry) in tree.iter() {
        let dst = root.join(path);
        match &entry.kind {
            EntryKind::Dir => {
                fs::create_dir(&dst).map_err(|e| LayerError::io("creating", &dst, e))?;
            }
            EntryKind::Symlink { target } => {
                std::os::unix::fs::symlink(target, &dst)
                    .map_err(|e| LayerError::io("creating symlink", &dst, e))?;
            }
            EntryKind::File { source, size } => {
                // fs::copy uses copy_file_range, which reflinks where the
                // filesystem can.
                let copied =
                    fs::copy(source, &dst).map_err(|e| LayerError::io("copying", source, e))?;
                if copied != *size {
                    return Err(LayerError::FileChanged {
                        path: source.clone(),
                        expected: *size,
                        actual: copied,
                    });
                }
                fs::set_permissions(&dst, fs::Permissions::from_mode(0o644))
                    .map_err(|e| LayerError::io("setting permissions on", &dst, e))?;
            }
        }
    }
    Ok(())
}

/// Finds a host tool on PATH or in the sbin directories, which a non-root
/// PATH often lacks.
pub(crate) fn find_tool(name: &'static str, package: &'static str) -> Result<PathBuf, LayerError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(
        ["/usr/local/sbin", "/usr/sbin", "/sbin"]
            .into_iter()
            .map(PathBuf::from),
    );
    for dir in dirs {
        let candidate = dir.join(name);
        if let Ok(meta) = fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(LayerError::ToolMissing {
        tool: name,
        package,
    })
}

/// Runs a tool to completion; a non-zero exit becomes an error carrying the
/// command line and stderr. Returns stderr for callers that check it.
pub(crate) fn run(cmd: &mut Command) -> Result<String, LayerError> {
    let command = describe(cmd);
    let output = cmd.output().map_err(|e| LayerError::ToolFailed {
        command: command.clone(),
        status: "could not start".into(),
        stderr: e.to_string(),
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let detail = if stderr.trim().is_empty() {
            stdout.trim().to_string()
        } else {
            stderr.trim().to_string()
        };
        return Err(LayerError::ToolFailed {
            command,
            status: output.status.to_string(),
            stderr: detail,
        });
    }
    Ok(stderr)
}

pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// A stable identity for the image, derived from what goes into it, so two
/// images with different contents do not share a UUID while the same inputs
/// always give the same one.
pub(crate) fn tree_digest(tree: &Tree, fs: BlockFs, opts: &BlockOptions, salt: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(fs.as_str().as_bytes());
    h.update(opts.mtime.to_le_bytes());
    h.update(opts.label.as_deref().unwrap_or("").as_bytes());
    for (path, entry) in tree.iter() {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(entry.mode.to_le_bytes());
        match &entry.kind {
            EntryKind::Dir => h.update(b"d"),
            EntryKind::File { size, .. } => {
                h.update(b"f");
                h.update(size.to_le_bytes());
            }
            EntryKind::Symlink { target } => {
                h.update(b"l");
                h.update(target.as_bytes());
                h.update([0]);
            }
        }
    }
    h.finalize().into()
}

fn uuid_from(digest: &[u8; 32]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    // Mark it as a random (version 4, RFC 4122 variant) UUID.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Our own mke2fs.conf, so the features and geometry do not depend on the
/// host's /etc/mke2fs.conf. The features are Debian 12's defaults, which
/// kernels from 3.18 on (ext4) and rumprun/FreeBSD (ext2) mount.
const MKE2FS_CONF: &str = "\
[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text2 = {
\t}
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
\tfloppy = {
\t}
\tsmall = {
\t}
\tdefault = {
\t}
\tbig = {
\t}
\thuge = {
\t}
";

struct ExtSize {
    bytes: u64,
    inodes: u64,
    journal_mib: u64,
}

fn ext_size(tree: &Tree, fs: BlockFs) -> ExtSize {
    let blocks_of = |n: u64| n.div_ceil(EXT_BLOCK);
    let mut data_blocks = 0u64;
    let mut dir_bytes: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (path, entry) in tree.iter() {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        // A directory entry: 8-byte header plus the name, 4-byte aligned.
        *dir_bytes.entry(parent).or_insert(0) += (8 + name.len() as u64).div_ceil(4) * 4;
        match &entry.kind {
            EntryKind::File { size, .. } => {
                let b = blocks_of(*size);
                // Indirect/extent blocks: generous for ext2's one per 1024.
                data_blocks += b + b / 1000 + 1;
            }
            EntryKind::Symlink { target } if target.len() >= 60 => data_blocks += 1,
            _ => {}
        }
    }
    let dirs = tree
        .iter()
        .filter(|(_, e)| matches!(e.kind, EntryKind::Dir))
        .count() as u64
        + 1;
    data_blocks += dirs + dir_bytes.values().map(|b| blocks_of(*b)).sum::<u64>();

    let entries = tree.len() as u64;
    let inodes = (entries + entries / 2 + 256).max(1024);
    let content = data_blocks * EXT_BLOCK + inodes * EXT_INODE_SIZE;
    let journal_mib = match fs {
        BlockFs::Ext4 if content < 128 * MIB => 4,
        BlockFs::Ext4 if content < 1024 * MIB => 16,
        BlockFs::Ext4 => 64,
        _ => 0,
    };
    // 20% headroom plus a few MiB for group descriptors, bitmaps, the
    // reserved GDT blocks and lost+found; rounded up to whole MiB.
    let bytes = content + content / 5 + journal_mib * MIB + 4 * MIB;
    ExtSize {
        bytes: bytes.div_ceil(MIB) * MIB,
        inodes,
        journal_mib,
    }
}

/// Quotes a path for debugfs' command parser: inside double quotes a
/// doubled quote stands for one.
fn debugfs_quote(path: &str) -> String {
    format!("\"/{}\"", path.replace('"', "\"\""))
}

fn build_ext(
    tree: &Tree,
    fs: BlockFs,
    staging: &Path,
    work: &Path,
    image: &Path,
    opts: &BlockOptions,
) -> Result<(), LayerError> {
    let mke2fs = find_tool("mke2fs", "e2fsprogs")?;
    let debugfs = find_tool("debugfs", "e2fsprogs")?;
    let fs_name = fs.as_str();

    for (path, _) in tree.iter() {
        if path.contains('\n') || path.contains('\r') {
            return Err(LayerError::UnsupportedName {
                path: path.to_string(),
                fs: if fs == BlockFs::Ext2 { "ext2" } else { "ext4" },
                reason: "line breaks in names cannot be passed to debugfs",
            });
        }
    }

    let conf = work.join("mke2fs.conf");
    fs::write(&conf, MKE2FS_CONF).map_err(|e| LayerError::io("writing", &conf, e))?;

    let uuid = uuid_from(&tree_digest(tree, fs, opts, "uuid"));
    let hash_seed = uuid_from(&tree_digest(tree, fs, opts, "hash_seed"));
    // e2fsprogs treats a fake time of 0 as unset and falls back to the clock,
    // so the timestamps mke2fs stamps itself use at least 1.
    let fake_time = opts.mtime.max(1).to_string();

    let env = |cmd: &mut Command| {
        cmd.env("MKE2FS_CONFIG", &conf)
            .env("E2FSPROGS_FAKE_TIME", &fake_time)
            .env("SOURCE_DATE_EPOCH", opts.mtime.to_string())
            .env("LC_ALL", "C")
            .env("E2FSPROGS_LIBMAGIC_SUPPRESS", "1");
        for var in [
            "MKE2FS_SYNC",
            "MKE2FS_DEVICE_SECTSIZE",
            "MKE2FS_DEVICE_PHYS_SECTSIZE",
            "MKE2FS_FIRST_META_BG",
            "E2FSPROGS_FAKE_RANDOM",
        ] {
            cmd.env_remove(var);
        }
    };

    let mut size = ext_size(tree, fs);
    let mut attempt = 0;
    loop {
        attempt += 1;
        // mke2fs extends the file to the size given; start from empty so a
        // retry leaves nothing of the previous attempt.
        fs::File::create(image).map_err(|e| LayerError::io("creating", image, e))?;
        let mut cmd = Command::new(&mke2fs);
        env(&mut cmd);
        cmd.args(["-q", "-F", "-t", fs_name, "-b"])
            .arg(EXT_BLOCK.to_string())
            .arg("-I")
            .arg(EXT_INODE_SIZE.to_string())
            .args(["-m", "0", "-N"])
            .arg(size.inodes.to_string())
            .arg("-U")
            .arg(&uuid)
            .arg("-E")
            .arg(format!("hash_seed={hash_seed},root_owner=0:0"));
        if size.journal_mib > 0 {
            cmd.arg("-J").arg(format!("size={}", size.journal_mib));
        }
        if let Some(label) = &opts.label {
            cmd.arg("-L").arg(label);
        }
        cmd.arg("-d")
            .arg(staging)
            .arg(image)
            .arg(format!("{}k", size.bytes / 1024));
        match run(&mut cmd) {
            Ok(_) => break,
            Err(LayerError::ToolFailed { stderr, .. })
                if attempt < 4 && is_out_of_space(&stderr) =>
            {
                // The estimate was short (many tiny files, deep trees); grow
                // deterministically and try again.
                size.bytes = (size.bytes + size.bytes / 2).div_ceil(MIB) * MIB;
                size.inodes += size.inodes / 2;
            }
            Err(e) => return Err(e),
        }
    }

    let script = debugfs_script(tree, opts.mtime)?;
    let script_path = work.join("debugfs.cmds");
    fs::write(&script_path, script).map_err(|e| LayerError::io("writing", &script_path, e))?;
    let mut cmd = Command::new(&debugfs);
    env(&mut cmd);
    cmd.arg("-w").arg("-f").arg(&script_path).arg(image);
    let stderr = run(&mut cmd)?;
    // debugfs exits 0 even when a command fails; its only expected stderr
    // line is the version banner.
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs "))
        .collect();
    if !errors.is_empty() {
        return Err(LayerError::ToolFailed {
            command: describe(&cmd),
            status: "command errors".into(),
            stderr: errors.join("\n"),
        });
    }
    Ok(())
}

fn is_out_of_space(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("could not allocate")
        || s.contains("no free space")
        || s.contains("no space left")
        || s.contains("inode table") && s.contains("full")
        || s.contains("no free inodes")
}

fn debugfs_script(tree: &Tree, mtime: u64) -> Result<String, LayerError> {
    let mut s = String::new();
    let mut set = |path: &str, mode: u32| -> std::fmt::Result {
        let p = if path.is_empty() {
            "/".to_string()
        } else {
            debugfs_quote(path)
        };
        writeln!(s, "sif {p} mode 0{mode:o}")?;
        writeln!(s, "sif {p} uid 0")?;
        writeln!(s, "sif {p} gid 0")?;
        for field in ["atime", "mtime", "ctime"] {
            writeln!(s, "sif {p} {field} @{mtime}")?;
        }
        Ok(())
    };
    let fmt_err = |_| LayerError::Output {
        what: "debugfs script",
        source: std::io::Error::other("formatting failed"),
    };
    set("", 0o040755).map_err(fmt_err)?;
    for (path, entry) in tree.iter() {
        let mode = match entry.kind {
            EntryKind::Dir => 0o040000 | entry.mode,
            EntryKind::File { .. } => 0o100000 | entry.mode,
            EntryKind::Symlink { .. } => 0o120777,
        };
        set(path, mode).map_err(fmt_err)?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_names_the_debian_package() {
        let err = find_tool("bunny-no-such-tool", "some-package").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("bunny-no-such-tool") && msg.contains("some-package"),
            "{msg}"
        );
    }

    #[test]
    fn debugfs_paths_are_quoted() {
        assert_eq!(debugfs_quote("a b/c\"d"), "\"/a b/c\"\"d\"");
    }

    #[test]
    fn uuids_are_well_formed_and_content_dependent() {
        let mut t = Tree::new();
        let o = BlockOptions::default();
        let a = uuid_from(&tree_digest(&t, BlockFs::Ext4, &o, "uuid"));
        t.insert_dir("x", 0o755).unwrap();
        let b = uuid_from(&tree_digest(&t, BlockFs::Ext4, &o, "uuid"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
