//! UFS2 images through makefs (the NetBSD/MirBSD port Debian ships), plus the
//! fix-ups that make its output reproducible.
//!
//! makefs writes two kinds of run-dependent bytes into UFS2 images: the
//! in-memory pointers `fs_csp`/`fs_maxcluster` land in every superblock copy
//! (they differ with ASLR), and inode blocks initialised while populating get
//! generation numbers from `srandom(time(NULL))`. Both are meaningless on
//! disk: kernels replace the pointers when mounting and give an inode a fresh
//! generation number when it is allocated, so they are zeroed here. Inode
//! timestamps come from an mtree spec (`time=`) and `-T`, because makefs does
//! not clamp UFS2 inode times itself.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use super::block::{find_tool, run, BlockOptions};
use super::error::LayerError;
use super::tree::{EntryKind, Tree};

/// `fs_volname` holds 32 bytes including the terminating NUL.
pub const MAX_LABEL: usize = 31;

pub const FS_UFS2_MAGIC: u32 = 0x1954_0119;
/// Where a UFS2 superblock may sit: FreeBSD's newfs uses 65536, makefs the
/// UFS1 location 8192 (with `fs_sblockloc` saying so, which FreeBSD accepts).
pub const SUPERBLOCK_LOCATIONS: [u64; 2] = [65536, 8192];

// Byte offsets within `struct fs`.
const FS_SBLKNO: usize = 8;
const FS_IBLKNO: usize = 16;
const FS_NCG: usize = 44;
const FS_BSIZE: usize = 48;
const FS_FSIZE: usize = 52;
const FS_IPG: usize = 184;
const FS_FPG: usize = 188;
const FS_VOLNAME: usize = 680;
const FS_POINTERS: std::ops::Range<usize> = 728..856;
const FS_SBLOCKLOC: usize = 1000;
const FS_MAGIC: usize = 1372;
const SB_READ: usize = 2048;

const DINODE2_SIZE: u64 = 256;
const DI_GEN: usize = 80;

pub(crate) fn build(
    tree: &Tree,
    staging: &Path,
    work: &Path,
    image: &Path,
    opts: &BlockOptions,
) -> Result<(), LayerError> {
    let makefs = find_tool("makefs", "makefs")?;
    let mtime = i64::try_from(opts.mtime).map_err(|_| LayerError::MtimeOutOfRange {
        mtime: opts.mtime,
        format: "UFS2",
        max: i64::MAX as u64,
    })?;

    let spec = mtree_spec(tree, opts.mtime)?;
    let spec_path = work.join("rootfs.mtree");
    fs::write(&spec_path, spec).map_err(|e| LayerError::io("writing", &spec_path, e))?;

    // makefs sizes the image from the tree itself; -b/-f add the headroom
    // and -M keeps tiny trees above its minimum filesystem size.
    let mut cmd = Command::new(&makefs);
    cmd.env("LC_ALL", "C")
        .args(["-t", "ffs", "-B", "le", "-o", "version=2", "-T"])
        .arg(mtime.to_string())
        .arg("-F")
        .arg(&spec_path)
        .args(["-b", "20%", "-f", "20%", "-M", "4m"])
        .arg(image)
        .arg(staging);
    run(&mut cmd)?;

    normalise_image(image, opts.label.as_deref())
}

/// The mtree spec that gives every entry owner 0:0, its mode and the fixed
/// timestamp. Names are written with octal escapes, which makefs decodes with
/// strunvis.
fn mtree_spec(tree: &Tree, mtime: u64) -> Result<String, LayerError> {
    let mut s = String::from("#mtree\n");
    let line = |s: &mut String, name: &str, kind: &str, mode: u32| {
        let _ = writeln!(
            s,
            "{name} type={kind} uid=0 gid=0 mode=0{mode:o} time={mtime}.0"
        );
    };
    line(&mut s, ".", "dir", 0o755);
    for (path, entry) in tree.iter() {
        if path.contains(['?', '*', '[']) {
            return Err(LayerError::UnsupportedName {
                path: path.to_string(),
                fs: "ufs2",
                reason: "makefs treats `?`, `*` and `[` in spec names as patterns",
            });
        }
        let mut name = String::from(".");
        for part in path.split('/') {
            name.push('/');
            name.push_str(&escape(part));
        }
        let (kind, mode) = match entry.kind {
            EntryKind::Dir => ("dir", entry.mode),
            EntryKind::File { .. } => ("file", entry.mode),
            EntryKind::Symlink { .. } => ("link", 0o777),
        };
        line(&mut s, &name, kind, mode);
    }
    Ok(s)
}

fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"._-+,:@%~^".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\{b:03o}");
        }
    }
    out
}

/// The parts of a UFS2 superblock the fix-ups and the tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Byte offset of the primary superblock.
    pub location: u64,
    pub ncg: u64,
    pub fpg: u64,
    pub fsize: u64,
    pub bsize: u64,
    pub sblkno: u64,
    pub iblkno: u64,
    pub ipg: u64,
}

fn i32_at(buf: &[u8], off: usize) -> i64 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[off..off + 4]);
    i64::from(i32::from_le_bytes(b))
}

fn i64_at(buf: &[u8], off: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[off..off + 8]);
    i64::from_le_bytes(b)
}

fn read_at(file: &File, path: &Path, off: u64, buf: &mut [u8]) -> Result<(), LayerError> {
    file.read_exact_at(buf, off)
        .map_err(|e| LayerError::io("reading", path, e))
}

/// Finds and decodes the primary UFS2 superblock of a little-endian image.
pub fn read_superblock(path: &Path) -> Result<Superblock, LayerError> {
    let file = File::open(path).map_err(|e| LayerError::io("opening", path, e))?;
    find_superblock(&file, path)
}

fn find_superblock(file: &File, path: &Path) -> Result<Superblock, LayerError> {
    let bad = |reason: String| LayerError::BadImage {
        path: path.to_path_buf(),
        reason,
    };
    let len = file
        .metadata()
        .map_err(|e| LayerError::io("reading", path, e))?
        .len();
    for location in SUPERBLOCK_LOCATIONS {
        if location + SB_READ as u64 > len {
            continue;
        }
        let mut sb = [0u8; SB_READ];
        read_at(file, path, location, &mut sb)?;
        let magic = i32_at(&sb, FS_MAGIC) as u32;
        if magic != FS_UFS2_MAGIC || i64_at(&sb, FS_SBLOCKLOC) != location as i64 {
            continue;
        }
        let field = |off: usize, name: &str| -> Result<u64, LayerError> {
            let v = i32_at(&sb, off);
            if v <= 0 {
                return Err(bad(format!("superblock field {name} is {v}")));
            }
            Ok(v as u64)
        };
        let sb = Superblock {
            location,
            ncg: field(FS_NCG, "fs_ncg")?,
            fpg: field(FS_FPG, "fs_fpg")?,
            fsize: field(FS_FSIZE, "fs_fsize")?,
            bsize: field(FS_BSIZE, "fs_bsize")?,
            sblkno: field(FS_SBLKNO, "fs_sblkno")?,
            iblkno: field(FS_IBLKNO, "fs_iblkno")?,
            ipg: field(FS_IPG, "fs_ipg")?,
        };
        let end = sb
            .ncg
            .checked_mul(sb.fpg)
            .and_then(|f| f.checked_mul(sb.fsize));
        if !sb.fsize.is_power_of_two()
            || end.is_none_or(|e| e > len.saturating_add(sb.fpg * sb.fsize))
        {
            return Err(bad("superblock geometry does not fit the image".into()));
        }
        return Ok(sb);
    }
    Err(bad(format!(
        "no UFS2 superblock (magic {FS_UFS2_MAGIC:#x}) at offset 65536 or 8192"
    )))
}

fn normalise_image(path: &Path, label: Option<&str>) -> Result<(), LayerError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| LayerError::io("opening", path, e))?;
    let sb = find_superblock(&file, path)?;
    let len = file
        .metadata()
        .map_err(|e| LayerError::io("reading", path, e))?
        .len();

    let mut copies = vec![sb.location];
    for cg in 0..sb.ncg {
        copies.push((cg * sb.fpg + sb.sblkno) * sb.fsize);
    }
    for at in copies {
        if at + SB_READ as u64 > len {
            continue;
        }
        let mut buf = [0u8; SB_READ];
        read_at(&file, path, at, &mut buf)?;
        if i32_at(&buf, FS_MAGIC) as u32 != FS_UFS2_MAGIC {
            return Err(LayerError::BadImage {
                path: path.to_path_buf(),
                reason: format!("expected a superblock copy at offset {at}"),
            });
        }
        buf[FS_POINTERS].fill(0);
        if let Some(label) = label {
            let field = &mut buf[FS_VOLNAME..FS_VOLNAME + MAX_LABEL + 1];
            field.fill(0);
            field[..label.len()].copy_from_slice(label.as_bytes());
        }
        file.write_all_at(&buf, at)
            .map_err(|e| LayerError::io("writing", path, e))?;
    }

    // Zero every inode's generation number, in chunks so large inode tables
    // are never held in memory at once.
    const CHUNK_INODES: u64 = 4096;
    let mut buf = vec![0u8; (CHUNK_INODES * DINODE2_SIZE) as usize];
    for cg in 0..sb.ncg {
        let table = (cg * sb.fpg + sb.iblkno) * sb.fsize;
        let mut done = 0;
        while done < sb.ipg {
            let n = (sb.ipg - done).min(CHUNK_INODES);
            let at = table + done * DINODE2_SIZE;
            let bytes = (n * DINODE2_SIZE) as usize;
            if at + bytes as u64 > len {
                break;
            }
            let chunk = &mut buf[..bytes];
            read_at(&file, path, at, chunk)?;
            let mut changed = false;
            for inode in chunk.chunks_exact_mut(DINODE2_SIZE as usize) {
                let gen = &mut inode[DI_GEN..DI_GEN + 4];
                if gen.iter().any(|b| *b != 0) {
                    gen.fill(0);
                    changed = true;
                }
            }
            if changed {
                file.write_all_at(chunk, at)
                    .map_err(|e| LayerError::io("writing", path, e))?;
            }
            done += n;
        }
    }
    file.sync_all()
        .map_err(|e| LayerError::io("writing", path, e))
}
