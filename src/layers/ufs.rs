//! UFS2 images written directly, the way FreeBSD's own newfs/makefs lay
//! them out, so that FreeBSD's kernel accepts them as a root filesystem.
//!
//! FreeBSD (since 13.2) validates every superblock it reads and refuses a
//! UFS2 superblock that is not at byte 65536 with `fs_sblockloc` saying so;
//! the makefs Debian ships (a NetBSD port) puts it at 8192. Writing the
//! format here also makes the image reproducible by construction (no
//! pointers or random generation numbers to scrub) and streams file
//! contents from their sources into place, with no staging copy.
//!
//! Layout: 32 KiB blocks of 8 fragments of 4 KiB (FreeBSD's defaults), no
//! soft updates, no check-hashes, every inode initialised. Inodes are
//! handed out in tree order from the root (inode 2); data goes
//! sequentially through the cylinder groups, file tails share partly used
//! blocks as fragments.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::block::BlockOptions;
use super::error::LayerError;
use super::tree::{EntryKind, Tree};

/// `fs_volname` holds 32 bytes including the terminating NUL.
pub const MAX_LABEL: usize = 31;

pub const FS_UFS2_MAGIC: u32 = 0x1954_0119;
/// Where FreeBSD looks for (and insists on) the UFS2 superblock.
pub const SBLOCK_UFS2: u64 = 65536;
/// Bytes FreeBSD reads for a superblock.
pub const SBLOCKSIZE: u64 = 8192;

const BSIZE: u64 = 32768;
const FSIZE: u64 = 4096;
const FRAG: u64 = BSIZE / FSIZE;
const FRAGSHIFT: u32 = FRAG.trailing_zeros();
const DEV_BSIZE: u64 = 512;
const DINODE_SIZE: u64 = 256;
const INOPB: u64 = BSIZE / DINODE_SIZE;
const INOPF: u64 = INOPB / FRAG;
const NINDIR: u64 = BSIZE / 8;
const NDADDR: usize = 12;
const NIADDR: usize = 3;
/// Symlink targets shorter than this live in the inode's block pointers.
const MAXSYMLINKLEN: u64 = ((NDADDR + NIADDR) * 8) as u64;
const DIRBLKSIZ: usize = 512;
const ROOTINO: u64 = 2;
const CG_MAGIC: i32 = 0x09_0255;
const SIZEOF_FS: u64 = 1376;
const SIZEOF_CG: u64 = 168;
/// newfs' default on a 1 MiB MAXPHYS system: maxphys / bsize, and the
/// cluster summary that goes with it.
const MAXCONTIG: u64 = 32;
const CONTIGSUMSIZE: u64 = 16;
const MINFREE: i32 = 8;
const AVGFILESIZE: i32 = 16384;
const AVGFPDIR: i32 = 64;
const FS_FLAGS_UPDATED: i8 = 0x80u8 as i8;
const FS_44INODEFMT: i32 = 2;
/// Room the cylinder group map must leave in its block (newfs' fudge).
const CGSIZEFUDGE: u64 = 8;
/// Largest cylinder group, in fragments (512 MiB); its maps stay well
/// inside one block.
const MAX_FPG: u64 = 131072;
/// Smallest image bunny writes; small trees get this much room to grow.
const MIN_IMAGE: u64 = 4 << 20;
/// Consecutive blocks copied with one read and one write.
const RUN_BLOCKS: u64 = 32;

const fn howmany(x: u64, y: u64) -> u64 {
    x.div_ceil(y)
}
const fn roundup(x: u64, y: u64) -> u64 {
    howmany(x, y) * y
}

const SBLKNO: u64 = roundup(howmany(SBLOCK_UFS2 + SBLOCKSIZE, FSIZE), FRAG);
const CBLKNO: u64 = SBLKNO + roundup(howmany(SBLOCKSIZE, FSIZE), FRAG);
const IBLKNO: u64 = CBLKNO + FRAG;

// Byte offsets within `struct fs` (FreeBSD sys/ufs/ffs/fs.h).
mod sb {
    pub const SBLKNO: usize = 8;
    pub const CBLKNO: usize = 12;
    pub const IBLKNO: usize = 16;
    pub const DBLKNO: usize = 20;
    pub const NCG: usize = 44;
    pub const BSIZE: usize = 48;
    pub const FSIZE: usize = 52;
    pub const FRAG: usize = 56;
    pub const MINFREE: usize = 60;
    pub const BMASK: usize = 72;
    pub const FMASK: usize = 76;
    pub const BSHIFT: usize = 80;
    pub const FSHIFT: usize = 84;
    pub const MAXCONTIG: usize = 88;
    pub const MAXBPG: usize = 92;
    pub const FRAGSHIFT: usize = 96;
    pub const FSBTODB: usize = 100;
    pub const SBSIZE: usize = 104;
    pub const NINDIR: usize = 116;
    pub const INOPB: usize = 120;
    pub const OPTIM: usize = 128;
    pub const ID: usize = 144;
    pub const CSSIZE: usize = 156;
    pub const CGSIZE: usize = 160;
    pub const IPG: usize = 184;
    pub const FPG: usize = 188;
    pub const CLEAN: usize = 209;
    pub const OLD_FLAGS: usize = 211;
    pub const VOLNAME: usize = 680;
    pub const MAXBSIZE: usize = 860;
    pub const PROVIDERSIZE: usize = 872;
    pub const SBLOCKLOC: usize = 1000;
    pub const CSTOTAL: usize = 1008;
    pub const TIME: usize = 1072;
    pub const SIZE: usize = 1080;
    pub const DSIZE: usize = 1088;
    pub const CSADDR: usize = 1096;
    pub const AVGFILESIZE: usize = 1196;
    pub const AVGFPDIR: usize = 1200;
    pub const CONTIGSUMSIZE: usize = 1316;
    pub const MAXSYMLINKLEN: usize = 1320;
    pub const OLD_INODEFMT: usize = 1324;
    pub const MAXFILESIZE: usize = 1328;
    pub const QBMASK: usize = 1336;
    pub const QFMASK: usize = 1344;
    pub const MAGIC: usize = 1372;
}

// Byte offsets within `struct cg`.
mod cg {
    pub const MAGIC: usize = 4;
    pub const CGX: usize = 12;
    pub const NDBLK: usize = 20;
    pub const CS: usize = 24;
    pub const FRSUM: usize = 52;
    pub const IUSEDOFF: usize = 92;
    pub const FREEOFF: usize = 96;
    pub const NEXTFREEOFF: usize = 100;
    pub const CLUSTERSUMOFF: usize = 104;
    pub const CLUSTEROFF: usize = 108;
    pub const NCLUSTERBLKS: usize = 112;
    pub const NIBLK: usize = 116;
    pub const INITEDIBLK: usize = 120;
    pub const TIME: usize = 136;
}

// Byte offsets within `struct ufs2_dinode`.
mod di {
    pub const MODE: usize = 0;
    pub const NLINK: usize = 2;
    pub const SIZE: usize = 16;
    pub const BLOCKS: usize = 24;
    pub const ATIME: usize = 32;
    pub const MTIME: usize = 40;
    pub const CTIME: usize = 48;
    pub const BIRTHTIME: usize = 56;
    pub const DB: usize = 112;
    pub const IB: usize = 208;
}

const S_IFDIR: u16 = 0o040000;
const S_IFREG: u16 = 0o100000;
const S_IFLNK: u16 = 0o120000;
const DT_DIR: u8 = 4;
const DT_REG: u8 = 8;
const DT_LNK: u8 = 10;

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn puti32(b: &mut [u8], off: usize, v: i32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
fn puti64(b: &mut [u8], off: usize, v: i64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// What an inode's contents are read from when it is written.
enum Data<'a> {
    None,
    Source(&'a Path),
    Bytes(Vec<u8>),
}

struct Node<'a> {
    path: &'a str,
    mode: u16,
    nlink: u16,
    size: u64,
    /// Set for directories: indices of the children in `nodes`.
    children: Vec<usize>,
}

impl Node<'_> {
    fn is_dir(&self) -> bool {
        self.mode & 0o170000 == S_IFDIR
    }
}

/// Blocks a file of `size` bytes occupies: (full blocks, tail fragments,
/// indirect blocks). Files of at most `NDADDR` blocks end in fragments.
fn footprint(size: u64, path: &str) -> Result<(u64, u64, u64), LayerError> {
    let nblocks = howmany(size, BSIZE);
    if nblocks <= NDADDR as u64 {
        if nblocks == 0 {
            return Ok((0, 0, 0));
        }
        let tail = howmany(size - (nblocks - 1) * BSIZE, FSIZE);
        return if tail == FRAG {
            Ok((nblocks, 0, 0))
        } else {
            Ok((nblocks - 1, tail, 0))
        };
    }
    let beyond = nblocks - NDADDR as u64;
    let indirect = if beyond <= NINDIR {
        1
    } else if beyond <= NINDIR + NINDIR * NINDIR {
        2 + howmany(beyond - NINDIR, NINDIR)
    } else {
        return Err(LayerError::UnsupportedName {
            path: path.to_string(),
            fs: "ufs2",
            reason: "files above 512 GiB are not supported",
        });
    };
    Ok((nblocks, 0, indirect))
}

fn dirent_size(namlen: usize) -> usize {
    (8 + namlen + 1 + 3) & !3
}

/// A directory's contents: `.`, `..` and the children, in DIRBLKSIZ chunks
/// that no entry crosses; the last entry of a chunk takes its remainder.
fn directory(entries: &[(u32, u8, &[u8])]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(DIRBLKSIZ);
    let mut chunk_start = 0usize;
    let mut last: Option<usize> = None;
    for (ino, kind, name) in entries {
        let size = dirent_size(name.len());
        if out.len() + size > chunk_start + DIRBLKSIZ {
            if let Some(at) = last {
                let reclen = chunk_start + DIRBLKSIZ - at;
                put16(&mut out, at + 4, reclen as u16);
            }
            out.resize(chunk_start + DIRBLKSIZ, 0);
            chunk_start += DIRBLKSIZ;
        }
        let at = out.len();
        out.resize(at + size, 0);
        put32(&mut out, at, *ino);
        put16(&mut out, at + 4, size as u16);
        out[at + 6] = *kind;
        out[at + 7] = name.len() as u8;
        out[at + 8..at + 8 + name.len()].copy_from_slice(name);
        last = Some(at);
    }
    if let Some(at) = last {
        let reclen = chunk_start + DIRBLKSIZ - at;
        put16(&mut out, at + 4, reclen as u16);
    }
    out.resize(chunk_start + DIRBLKSIZ, 0);
    out
}

/// The cylinder group geometry chosen for a tree.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    ncg: u64,
    fpg: u64,
    ipg: u64,
    dblkno: u64,
    /// Fragments of the cylinder group summary at the start of cg 0's data.
    csfrags: u64,
}

impl Geometry {
    fn size(&self) -> u64 {
        self.ncg * self.fpg
    }
    fn cgsize(&self) -> u64 {
        cgsize(self.ipg, self.fpg)
    }
}

/// FreeBSD's CGSIZE for a UFS2 filesystem with a cluster summary.
fn cgsize(ipg: u64, fpg: u64) -> u64 {
    SIZEOF_CG
        + howmany(ipg, 8)
        + howmany(fpg, 8)
        + 4
        + CONTIGSUMSIZE * 4
        + howmany(fpg >> FRAGSHIFT, 8)
}

/// Picks cylinder groups of at most `max_fpg` fragments that hold `data`
/// fragments and `inodes` inodes.
fn geometry(data: u64, inodes: u64, max_fpg: u64) -> Geometry {
    let mut ncg = 1u64;
    loop {
        let ipg = roundup(howmany(inodes, ncg).max(INOPB), INOPB);
        let dblkno = IBLKNO + ipg / INOPF;
        let csfrags = howmany(ncg * 16, FSIZE);
        let fpg = roundup(howmany(data + csfrags, ncg) + dblkno, FRAG);
        if fpg <= max_fpg && cgsize(ipg, fpg) <= BSIZE - CGSIZEFUDGE {
            return Geometry {
                ncg,
                fpg,
                ipg,
                dblkno,
                csfrags,
            };
        }
        ncg += 1;
    }
}

/// Hands out fragments: whole blocks sequentially through the cylinder
/// groups' data areas, and tails from a partly used block.
struct Allocator {
    geo: Geometry,
    used: Vec<u64>,
    cg: u64,
    next: u64,
    partial: Option<(u64, u64)>,
}

impl Allocator {
    fn new(geo: Geometry) -> Allocator {
        let mut a = Allocator {
            geo,
            used: vec![0; howmany(geo.size(), 64) as usize],
            cg: 0,
            next: 0,
            partial: None,
        };
        for c in 0..geo.ncg {
            let base = c * geo.fpg;
            // The boot area (and the primary superblock) only in cg 0.
            let from = if c == 0 { 0 } else { SBLKNO };
            let to = geo.dblkno + if c == 0 { geo.csfrags } else { 0 };
            a.mark(base + from, to - from);
        }
        let start = geo.dblkno + geo.csfrags;
        a.next = roundup(start, FRAG);
        if start % FRAG != 0 {
            a.partial = Some((start - start % FRAG, start % FRAG));
        }
        a
    }

    fn mark(&mut self, at: u64, n: u64) {
        for f in at..at + n {
            self.used[(f / 64) as usize] |= 1 << (f % 64);
        }
    }

    fn is_used(&self, f: u64) -> bool {
        self.used[(f / 64) as usize] & (1 << (f % 64)) != 0
    }

    fn block(&mut self) -> Result<u64, LayerError> {
        loop {
            if self.next + FRAG <= (self.cg + 1) * self.geo.fpg {
                let at = self.next;
                self.next += FRAG;
                self.mark(at, FRAG);
                return Ok(at);
            }
            self.cg += 1;
            if self.cg >= self.geo.ncg {
                return Err(LayerError::BadImage {
                    path: "ufs2".into(),
                    reason: "the planned UFS2 size is too small for the tree".into(),
                });
            }
            self.next = self.cg * self.geo.fpg + self.geo.dblkno;
        }
    }

    fn frags(&mut self, n: u64) -> Result<u64, LayerError> {
        if let Some((blk, used)) = self.partial {
            if used + n <= FRAG {
                self.mark(blk + used, n);
                self.partial = if used + n == FRAG {
                    None
                } else {
                    Some((blk, used + n))
                };
                return Ok(blk + used);
            }
        }
        let blk = self.block()?;
        // block() marked the whole block; only the tail is in use.
        for f in blk + n..blk + FRAG {
            self.used[(f / 64) as usize] &= !(1 << (f % 64));
        }
        self.partial = Some((blk, n));
        Ok(blk)
    }
}

struct Writer<'a> {
    img: &'a File,
    path: &'a Path,
    alloc: Allocator,
    buf: Vec<u8>,
}

impl Writer<'_> {
    fn write_at(&self, bytes: &[u8], frag: u64) -> Result<(), LayerError> {
        self.img
            .write_all_at(bytes, frag * FSIZE)
            .map_err(|e| LayerError::io("writing", self.path, e))
    }

    /// Allocates the blocks of one inode, writes its contents and returns
    /// its block pointers and the number of 512-byte sectors it holds.
    fn place(
        &mut self,
        size: u64,
        data: Data<'_>,
        name: &str,
    ) -> Result<([u64; NDADDR], [u64; NIADDR], u64), LayerError> {
        let (full, tail, _) = footprint(size, name)?;
        let nblocks = full + u64::from(tail > 0);
        let mut addrs = Vec::with_capacity(nblocks as usize);
        let mut ib = [0u64; NIADDR];
        let mut sectors = 0u64;
        let mut indirect: Vec<(u64, Vec<u64>)> = Vec::new();
        for lbn in 0..nblocks {
            if lbn == NDADDR as u64 {
                ib[0] = self.alloc.block()?;
                sectors += BSIZE / DEV_BSIZE;
                indirect.push((ib[0], Vec::with_capacity(NINDIR as usize)));
            } else if lbn == NDADDR as u64 + NINDIR {
                ib[1] = self.alloc.block()?;
                sectors += BSIZE / DEV_BSIZE;
                indirect.push((ib[1], Vec::new()));
            }
            if lbn >= NDADDR as u64 + NINDIR && (lbn - NDADDR as u64 - NINDIR) % NINDIR == 0 {
                let l1 = self.alloc.block()?;
                sectors += BSIZE / DEV_BSIZE;
                indirect[1].1.push(l1);
                indirect.push((l1, Vec::with_capacity(NINDIR as usize)));
            }
            let at = if lbn == full {
                sectors += tail * FSIZE / DEV_BSIZE;
                self.alloc.frags(tail)?
            } else {
                sectors += BSIZE / DEV_BSIZE;
                self.alloc.block()?
            };
            if lbn >= NDADDR as u64 {
                if let Some(last) = indirect.last_mut() {
                    last.1.push(at);
                }
            }
            addrs.push(at);
        }
        for (at, ptrs) in &indirect {
            let mut block = vec![0u8; BSIZE as usize];
            for (i, p) in ptrs.iter().enumerate() {
                put64(&mut block, i * 8, *p);
            }
            self.write_at(&block, *at)?;
        }
        self.write_contents(&addrs, size, data)?;
        let mut db = [0u64; NDADDR];
        for (slot, at) in db.iter_mut().zip(&addrs) {
            *slot = *at;
        }
        Ok((db, ib, sectors))
    }

    fn write_contents(
        &mut self,
        addrs: &[u64],
        size: u64,
        data: Data<'_>,
    ) -> Result<(), LayerError> {
        match data {
            Data::None => Ok(()),
            Data::Bytes(bytes) => {
                for (lbn, at) in addrs.iter().enumerate() {
                    let from = lbn * BSIZE as usize;
                    let to = (from + BSIZE as usize).min(bytes.len());
                    self.write_at(&bytes[from..to], *at)?;
                }
                Ok(())
            }
            Data::Source(source) => {
                let mut file =
                    File::open(source).map_err(|e| LayerError::io("opening", source, e))?;
                let changed = |actual: u64| LayerError::FileChanged {
                    path: source.to_path_buf(),
                    expected: size,
                    actual,
                };
                let mut lbn = 0usize;
                let mut done = 0u64;
                while lbn < addrs.len() {
                    let start = addrs[lbn];
                    let mut run = 1usize;
                    while lbn + run < addrs.len()
                        && (run as u64) < RUN_BLOCKS
                        && addrs[lbn + run] == start + run as u64 * FRAG
                    {
                        run += 1;
                    }
                    let bytes = (run as u64 * BSIZE).min(size - done) as usize;
                    let buf = &mut self.buf[..bytes];
                    read_full(&mut file, buf, source).map_err(|e| match e {
                        ReadShort::Short(n) => changed(done + n),
                        ReadShort::Io(e) => e,
                    })?;
                    self.img
                        .write_all_at(buf, start * FSIZE)
                        .map_err(|e| LayerError::io("writing", self.path, e))?;
                    done += bytes as u64;
                    lbn += run;
                }
                let mut probe = [0u8; 1];
                match file.read(&mut probe) {
                    Ok(0) => Ok(()),
                    Ok(_) => {
                        let actual = file.metadata().map(|m| m.len()).unwrap_or(size + 1);
                        Err(changed(actual))
                    }
                    Err(e) => Err(LayerError::io("reading", source, e)),
                }
            }
        }
    }
}

enum ReadShort {
    Short(u64),
    Io(LayerError),
}

fn read_full(file: &mut File, buf: &mut [u8], path: &Path) -> Result<(), ReadShort> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => return Err(ReadShort::Short(got as u64)),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadShort::Io(LayerError::io("reading", path, e))),
        }
    }
    Ok(())
}

fn dinode(
    node: &Node,
    mtime: i64,
    db: &[u64; NDADDR],
    ib: &[u64; NIADDR],
    sectors: u64,
) -> [u8; 256] {
    let mut d = [0u8; DINODE_SIZE as usize];
    put16(&mut d, di::MODE, node.mode);
    put16(&mut d, di::NLINK, node.nlink);
    put64(&mut d, di::SIZE, node.size);
    put64(&mut d, di::BLOCKS, sectors);
    for off in [di::ATIME, di::MTIME, di::CTIME, di::BIRTHTIME] {
        puti64(&mut d, off, mtime);
    }
    for (i, p) in db.iter().enumerate() {
        put64(&mut d, di::DB + 8 * i, *p);
    }
    for (i, p) in ib.iter().enumerate() {
        put64(&mut d, di::IB + 8 * i, *p);
    }
    d
}

/// Writes `tree` as a UFS2 image at `image` (created or truncated).
pub(crate) fn build(tree: &Tree, image: &Path, opts: &BlockOptions) -> Result<(), LayerError> {
    write(tree, image, opts, MAX_FPG, 0)
}

/// [`build`] for a volume the guest writes to: the filesystem is at least
/// `min_bytes` large, with an inode per 16 KiB of it (newfs' density), so
/// the room is not only bytes.
pub fn build_volume(
    tree: &Tree,
    image: &Path,
    opts: &BlockOptions,
    min_bytes: u64,
) -> Result<(), LayerError> {
    super::block::check_label(crate::platform::BlockFs::Ufs2, opts.label.as_deref())?;
    write(tree, image, opts, MAX_FPG, min_bytes)
}

/// [`build`] with cylinder groups of at most `max_fpg` fragments (at least
/// 256), so tests can cover images of many groups with small trees.
#[doc(hidden)]
pub fn build_with_group_limit(
    tree: &Tree,
    image: &Path,
    opts: &BlockOptions,
    max_fpg: u64,
) -> Result<(), LayerError> {
    write(tree, image, opts, max_fpg.clamp(256, MAX_FPG), 0)
}

fn write(
    tree: &Tree,
    image: &Path,
    opts: &BlockOptions,
    max_fpg: u64,
    min_bytes: u64,
) -> Result<(), LayerError> {
    let mtime = i64::try_from(opts.mtime).map_err(|_| LayerError::MtimeOutOfRange {
        mtime: opts.mtime,
        format: "UFS2",
        max: i64::MAX as u64,
    })?;

    // Inode numbers: the root is 2, the entries follow in tree order, so
    // every directory's children are known before anything is written.
    let mut nodes: Vec<Node> = vec![Node {
        path: "",
        mode: S_IFDIR | 0o755,
        nlink: 2,
        size: 0,
        children: Vec::new(),
    }];
    let mut index: HashMap<&str, usize> = HashMap::new();
    index.insert("", 0);
    for (path, entry) in tree.iter() {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        if name.len() > 255 {
            return Err(LayerError::UnsupportedName {
                path: path.to_string(),
                fs: "ufs2",
                reason: "UFS2 names hold at most 255 bytes",
            });
        }
        let Some(&p) = index.get(parent) else {
            return Err(LayerError::InvalidDestination {
                path: path.to_string(),
                reason: "its parent directory is not in the tree",
            });
        };
        let perm = (entry.mode & 0o7777) as u16;
        let (mode, size) = match &entry.kind {
            EntryKind::Dir => (S_IFDIR | perm, 0),
            EntryKind::File { size, .. } => (S_IFREG | perm, *size),
            EntryKind::Symlink { target } => (S_IFLNK | 0o777, target.len() as u64),
        };
        let i = nodes.len();
        if matches!(entry.kind, EntryKind::Dir) {
            nodes[p].nlink += 1;
            index.insert(path, i);
        }
        nodes[p].children.push(i);
        nodes.push(Node {
            path,
            mode,
            nlink: if matches!(entry.kind, EntryKind::Dir) {
                2
            } else {
                1
            },
            size,
            children: Vec::new(),
        });
    }
    let ino_of = |i: usize| ROOTINO + i as u64;
    let name_of = |path: &str| -> Vec<u8> {
        path.rsplit_once('/')
            .map_or(path, |(_, n)| n)
            .as_bytes()
            .to_vec()
    };
    let parent_of: Vec<usize> = {
        let mut v = vec![0usize; nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            for c in &n.children {
                v[*c] = i;
            }
        }
        v
    };
    let dir_size = |i: usize| -> u64 {
        let n = &nodes[i];
        let mut used = 0usize;
        let mut chunks = 1u64;
        let sizes = [1usize, 2]
            .into_iter()
            .chain(n.children.iter().map(|c| name_of(nodes[*c].path).len()));
        for len in sizes {
            let s = dirent_size(len);
            if used + s > DIRBLKSIZ {
                chunks += 1;
                used = 0;
            }
            used += s;
        }
        chunks * DIRBLKSIZ as u64
    };
    let sizes: Vec<Option<u64>> = (0..nodes.len())
        .map(|i| nodes[i].is_dir().then(|| dir_size(i)))
        .collect();
    for (node, size) in nodes.iter_mut().zip(sizes) {
        if let Some(size) = size {
            node.size = size;
        }
    }

    let dir_bytes = |i: usize| -> Vec<u8> {
        let n = &nodes[i];
        let names: Vec<Vec<u8>> = n.children.iter().map(|c| name_of(nodes[*c].path)).collect();
        let mut entries: Vec<(u32, u8, &[u8])> = vec![
            (ino_of(i) as u32, DT_DIR, b"."),
            (ino_of(parent_of[i]) as u32, DT_DIR, b".."),
        ];
        for (c, name) in n.children.iter().zip(&names) {
            let kind = match nodes[*c].mode & 0o170000 {
                S_IFDIR => DT_DIR,
                S_IFLNK => DT_LNK,
                _ => DT_REG,
            };
            entries.push((ino_of(*c) as u32, kind, name.as_slice()));
        }
        directory(&entries)
    };
    // Size: what the tree takes (tails counted twice for packing slack),
    // plus a fifth for the guest to write into, in at least MIN_IMAGE.
    let mut data = 0u64;
    for n in &nodes {
        let stored = !(n.mode & 0o170000 == S_IFLNK && n.size < MAXSYMLINKLEN);
        if stored {
            let (full, tail, indirect) = footprint(n.size, n.path)?;
            data += (full + indirect) * FRAG + 2 * tail;
        }
    }
    let data = (data + data / 5 + 16 * FRAG)
        .max(MIN_IMAGE / FSIZE)
        .max(min_bytes / FSIZE);
    let inodes = ROOTINO + nodes.len() as u64;
    let inodes = (inodes + inodes / 5 + INOPB).max(min_bytes / 16384);
    let geo = geometry(data, inodes, max_fpg);

    let img = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(image)
        .map_err(|e| LayerError::io("creating", image, e))?;
    img.set_len(geo.size() * FSIZE)
        .map_err(|e| LayerError::io("sizing", image, e))?;

    let mut w = Writer {
        img: &img,
        path: image,
        alloc: Allocator::new(geo),
        buf: vec![0u8; (RUN_BLOCKS * BSIZE) as usize],
    };
    let mut inode_table = vec![0u8; ((ROOTINO + nodes.len() as u64) * DINODE_SIZE) as usize];
    let mut ndir = vec![0u64; geo.ncg as usize];
    let mut iused = vec![0u64; geo.ncg as usize];
    iused[0] += ROOTINO;
    for (i, node) in nodes.iter().enumerate() {
        let ino = ino_of(i);
        let (db, ib, sectors) = match tree.get(node.path).map(|e| &e.kind) {
            _ if node.is_dir() => w.place(node.size, Data::Bytes(dir_bytes(i)), node.path)?,
            Some(EntryKind::File { source, .. }) => {
                w.place(node.size, Data::Source(source), node.path)?
            }
            Some(EntryKind::Symlink { target }) if node.size >= MAXSYMLINKLEN => w.place(
                node.size,
                Data::Bytes(target.as_bytes().to_vec()),
                node.path,
            )?,
            Some(EntryKind::Symlink { target }) => {
                // Short targets are kept in the block pointers themselves.
                let mut d = dinode(node, mtime, &[0; NDADDR], &[0; NIADDR], 0);
                d[di::DB..di::DB + target.len()].copy_from_slice(target.as_bytes());
                let at = (ino * DINODE_SIZE) as usize;
                inode_table[at..at + DINODE_SIZE as usize].copy_from_slice(&d);
                iused[(ino / geo.ipg) as usize] += 1;
                continue;
            }
            _ => w.place(0, Data::None, node.path)?,
        };
        let d = dinode(node, mtime, &db, &ib, sectors);
        let at = (ino * DINODE_SIZE) as usize;
        inode_table[at..at + DINODE_SIZE as usize].copy_from_slice(&d);
        let c = (ino / geo.ipg) as usize;
        iused[c] += 1;
        if node.is_dir() {
            ndir[c] += 1;
        }
    }
    let alloc = w.alloc;

    // Inode tables, cylinder groups and their summary.
    let total_inodes = ROOTINO + nodes.len() as u64;
    let mut csum = vec![0u8; (geo.csfrags * FSIZE) as usize];
    let mut total = [0i64; 4];
    for c in 0..geo.ncg {
        let base = c * geo.fpg;
        let first = c * geo.ipg;
        if first < total_inodes {
            let last = ((c + 1) * geo.ipg).min(total_inodes);
            let bytes = &inode_table[(first * DINODE_SIZE) as usize..(last * DINODE_SIZE) as usize];
            img.write_all_at(bytes, (base + IBLKNO) * FSIZE)
                .map_err(|e| LayerError::io("writing", image, e))?;
        }
        let (block, cs) =
            cylinder_group(&geo, &alloc, c, iused[c as usize], ndir[c as usize], mtime);
        img.write_all_at(&block, (base + CBLKNO) * FSIZE)
            .map_err(|e| LayerError::io("writing", image, e))?;
        for (k, v) in cs.iter().enumerate() {
            puti32(&mut csum, c as usize * 16 + k * 4, *v as i32);
            total[k] += *v;
        }
    }
    img.write_all_at(&csum, (geo.dblkno) * FSIZE)
        .map_err(|e| LayerError::io("writing", image, e))?;

    let sblock = superblock(&geo, total, mtime, opts, tree);
    img.write_all_at(&sblock, SBLOCK_UFS2)
        .map_err(|e| LayerError::io("writing", image, e))?;
    for c in 0..geo.ncg {
        img.write_all_at(&sblock, (c * geo.fpg + SBLKNO) * FSIZE)
            .map_err(|e| LayerError::io("writing", image, e))?;
    }
    img.sync_all()
        .map_err(|e| LayerError::io("writing", image, e))
}

/// One cylinder group block and its summary (ndir, nbfree, nifree, nffree).
fn cylinder_group(
    geo: &Geometry,
    alloc: &Allocator,
    c: u64,
    iused: u64,
    ndir: u64,
    mtime: i64,
) -> (Vec<u8>, [i64; 4]) {
    let cgsize = roundup(geo.cgsize(), FSIZE) as usize;
    let mut b = vec![0u8; cgsize];
    let iusedoff = SIZEOF_CG as usize;
    let freeoff = iusedoff + howmany(geo.ipg, 8) as usize;
    let clustersumoff = roundup(freeoff as u64 + howmany(geo.fpg, 8) - 4, 4) as usize;
    let clusteroff = clustersumoff + (CONTIGSUMSIZE as usize + 1) * 4;
    let nextfreeoff = clusteroff + howmany(geo.fpg >> FRAGSHIFT, 8) as usize;
    let ndblk = geo.fpg;
    let nclusterblks = ndblk >> FRAGSHIFT;

    puti32(&mut b, cg::MAGIC, CG_MAGIC);
    put32(&mut b, cg::CGX, c as u32);
    put32(&mut b, cg::NDBLK, ndblk as u32);
    put32(&mut b, cg::IUSEDOFF, iusedoff as u32);
    put32(&mut b, cg::FREEOFF, freeoff as u32);
    put32(&mut b, cg::NEXTFREEOFF, nextfreeoff as u32);
    put32(&mut b, cg::CLUSTERSUMOFF, clustersumoff as u32);
    put32(&mut b, cg::CLUSTEROFF, clusteroff as u32);
    put32(&mut b, cg::NCLUSTERBLKS, nclusterblks as u32);
    put32(&mut b, cg::NIBLK, geo.ipg as u32);
    put32(&mut b, cg::INITEDIBLK, geo.ipg as u32);
    puti64(&mut b, cg::TIME, mtime);

    // Inodes are used from the start of the group on.
    for i in 0..iused {
        b[iusedoff + (i / 8) as usize] |= 1 << (i % 8);
    }

    let base = c * geo.fpg;
    let mut nbfree = 0i64;
    let mut nffree = 0i64;
    let mut frsum = [0u32; FRAG as usize];
    let mut run = 0u64;
    let mut clustersum = [0u32; CONTIGSUMSIZE as usize + 1];
    for blk in 0..nclusterblks {
        let mut free_bits = 0u8;
        for f in 0..FRAG {
            let d = blk * FRAG + f;
            if !alloc.is_used(base + d) {
                free_bits |= 1 << f;
                b[freeoff + (d / 8) as usize] |= 1 << (d % 8);
            }
        }
        if free_bits == 0xff {
            nbfree += 1;
            b[clusteroff + (blk / 8) as usize] |= 1 << (blk % 8);
            run += 1;
            continue;
        }
        if run > 0 {
            clustersum[run.min(CONTIGSUMSIZE) as usize] += 1;
            run = 0;
        }
        // Maximal runs of free fragments inside a partly used block.
        let mut len = 0usize;
        for f in 0..=FRAG {
            if f < FRAG && free_bits & (1 << f) != 0 {
                len += 1;
            } else if len > 0 {
                frsum[len] += 1;
                nffree += len as i64;
                len = 0;
            }
        }
    }
    if run > 0 {
        clustersum[run.min(CONTIGSUMSIZE) as usize] += 1;
    }
    for (k, v) in frsum.iter().enumerate() {
        put32(&mut b, cg::FRSUM + 4 * k, *v);
    }
    // Entry 0 (runs of no blocks) is never used: newfs lays the array out
    // so that it overlaps the end of the free map.
    for (k, v) in clustersum.iter().enumerate().skip(1) {
        put32(&mut b, clustersumoff + 4 * k, *v);
    }
    let cs = [ndir as i64, nbfree, (geo.ipg - iused) as i64, nffree];
    for (k, v) in cs.iter().enumerate() {
        puti32(&mut b, cg::CS + 4 * k, *v as i32);
    }
    (b, cs)
}

fn superblock(
    geo: &Geometry,
    total: [i64; 4],
    mtime: i64,
    opts: &BlockOptions,
    tree: &Tree,
) -> Vec<u8> {
    let sbsize = roundup(SIZEOF_FS, FSIZE).min(SBLOCKSIZE);
    let mut s = vec![0u8; sbsize as usize];
    let size = geo.size();
    puti32(&mut s, sb::SBLKNO, SBLKNO as i32);
    puti32(&mut s, sb::CBLKNO, CBLKNO as i32);
    puti32(&mut s, sb::IBLKNO, IBLKNO as i32);
    puti32(&mut s, sb::DBLKNO, geo.dblkno as i32);
    put32(&mut s, sb::NCG, geo.ncg as u32);
    puti32(&mut s, sb::BSIZE, BSIZE as i32);
    puti32(&mut s, sb::FSIZE, FSIZE as i32);
    puti32(&mut s, sb::FRAG, FRAG as i32);
    puti32(&mut s, sb::MINFREE, MINFREE);
    puti32(&mut s, sb::BMASK, !(BSIZE as i32 - 1));
    puti32(&mut s, sb::FMASK, !(FSIZE as i32 - 1));
    puti32(&mut s, sb::BSHIFT, BSIZE.trailing_zeros() as i32);
    puti32(&mut s, sb::FSHIFT, FSIZE.trailing_zeros() as i32);
    puti32(&mut s, sb::MAXCONTIG, MAXCONTIG as i32);
    puti32(&mut s, sb::MAXBPG, NINDIR as i32);
    puti32(&mut s, sb::FRAGSHIFT, FRAGSHIFT as i32);
    puti32(
        &mut s,
        sb::FSBTODB,
        (FSIZE / DEV_BSIZE).trailing_zeros() as i32,
    );
    puti32(&mut s, sb::SBSIZE, sbsize as i32);
    puti32(&mut s, sb::NINDIR, NINDIR as i32);
    put32(&mut s, sb::INOPB, INOPB as u32);
    puti32(&mut s, sb::OPTIM, 0);
    // A stable identity derived from the inputs, like the ext UUIDs.
    let mut h = Sha256::new();
    h.update(b"ufs2 fs_id");
    h.update(super::block::tree_digest(
        tree,
        crate::platform::BlockFs::Ufs2,
        opts,
        "fs_id",
    ));
    let id: [u8; 32] = h.finalize().into();
    s[sb::ID..sb::ID + 8].copy_from_slice(&id[..8]);
    puti32(&mut s, sb::CSSIZE, (geo.csfrags * FSIZE) as i32);
    puti32(&mut s, sb::CGSIZE, roundup(geo.cgsize(), FSIZE) as i32);
    put32(&mut s, sb::IPG, geo.ipg as u32);
    puti32(&mut s, sb::FPG, geo.fpg as i32);
    s[sb::CLEAN] = 1;
    s[sb::OLD_FLAGS] = FS_FLAGS_UPDATED as u8;
    if let Some(label) = &opts.label {
        let n = label.len().min(MAX_LABEL);
        s[sb::VOLNAME..sb::VOLNAME + n].copy_from_slice(&label.as_bytes()[..n]);
    }
    puti32(&mut s, sb::MAXBSIZE, BSIZE as i32);
    puti64(&mut s, sb::PROVIDERSIZE, size as i64);
    puti64(&mut s, sb::SBLOCKLOC, SBLOCK_UFS2 as i64);
    for (k, v) in total.iter().enumerate() {
        puti64(&mut s, sb::CSTOTAL + 8 * k, *v);
    }
    puti64(&mut s, sb::TIME, mtime);
    puti64(&mut s, sb::SIZE, size as i64);
    let dsize = size - SBLKNO - geo.ncg * (geo.dblkno - SBLKNO) - geo.csfrags;
    puti64(&mut s, sb::DSIZE, dsize as i64);
    puti64(&mut s, sb::CSADDR, geo.dblkno as i64);
    puti32(&mut s, sb::AVGFILESIZE, AVGFILESIZE);
    puti32(&mut s, sb::AVGFPDIR, AVGFPDIR);
    puti32(&mut s, sb::CONTIGSUMSIZE, CONTIGSUMSIZE as i32);
    puti32(&mut s, sb::MAXSYMLINKLEN, MAXSYMLINKLEN as i32);
    puti32(&mut s, sb::OLD_INODEFMT, FS_44INODEFMT);
    let mut maxfilesize = BSIZE * NDADDR as u64 - 1;
    let mut sizepb = BSIZE;
    for _ in 0..NIADDR {
        sizepb *= NINDIR;
        maxfilesize += sizepb;
    }
    put64(&mut s, sb::MAXFILESIZE, maxfilesize);
    puti64(&mut s, sb::QBMASK, BSIZE as i64 - 1);
    puti64(&mut s, sb::QFMASK, FSIZE as i64 - 1);
    put32(&mut s, sb::MAGIC, FS_UFS2_MAGIC);
    s
}

/// The parts of a UFS2 superblock callers and tests need.
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

/// Reads and decodes the primary UFS2 superblock of a little-endian image,
/// where FreeBSD looks for it.
pub fn read_superblock(path: &Path) -> Result<Superblock, LayerError> {
    let file = File::open(path).map_err(|e| LayerError::io("opening", path, e))?;
    let bad = |reason: String| LayerError::BadImage {
        path: path.to_path_buf(),
        reason,
    };
    let len = file
        .metadata()
        .map_err(|e| LayerError::io("reading", path, e))?
        .len();
    if SBLOCK_UFS2 + SBLOCKSIZE > len {
        return Err(bad("too short for a UFS2 superblock".into()));
    }
    let mut buf = [0u8; SBLOCKSIZE as usize];
    file.read_exact_at(&mut buf, SBLOCK_UFS2)
        .map_err(|e| LayerError::io("reading", path, e))?;
    if i32_at(&buf, sb::MAGIC) as u32 != FS_UFS2_MAGIC {
        return Err(bad(format!(
            "no UFS2 superblock (magic {FS_UFS2_MAGIC:#x}) at offset {SBLOCK_UFS2}"
        )));
    }
    if i64_at(&buf, sb::SBLOCKLOC) != SBLOCK_UFS2 as i64 {
        return Err(bad("fs_sblockloc does not point at the superblock".into()));
    }
    let field = |off: usize, name: &str| -> Result<u64, LayerError> {
        let v = i32_at(&buf, off);
        if v <= 0 {
            return Err(bad(format!("superblock field {name} is {v}")));
        }
        Ok(v as u64)
    };
    let sb = Superblock {
        location: SBLOCK_UFS2,
        ncg: field(sb::NCG, "fs_ncg")?,
        fpg: field(sb::FPG, "fs_fpg")?,
        fsize: field(sb::FSIZE, "fs_fsize")?,
        bsize: field(sb::BSIZE, "fs_bsize")?,
        sblkno: field(sb::SBLKNO, "fs_sblkno")?,
        iblkno: field(sb::IBLKNO, "fs_iblkno")?,
        ipg: field(sb::IPG, "fs_ipg")?,
    };
    let end = sb
        .ncg
        .checked_mul(sb.fpg)
        .and_then(|f| f.checked_mul(sb.fsize));
    if !sb.fsize.is_power_of_two() || end.is_none_or(|e| e > len) {
        return Err(bad("superblock geometry does not fit the image".into()));
    }
    Ok(sb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_constants_match_freebsd_newfs() {
        // 65536 + 8192 bytes rounded to whole 32 KiB blocks of 4 KiB frags.
        assert_eq!(SBLKNO, 24);
        assert_eq!(CBLKNO, 32);
        assert_eq!(IBLKNO, 40);
        assert_eq!(MAXSYMLINKLEN, 120);
    }

    #[test]
    fn directory_entries_never_cross_a_chunk() {
        let names: Vec<Vec<u8>> = (0..40)
            .map(|i| format!("entry-{i:03}").into_bytes())
            .collect();
        let mut entries: Vec<(u32, u8, &[u8])> = vec![(2, DT_DIR, b"."), (2, DT_DIR, b"..")];
        for (i, n) in names.iter().enumerate() {
            entries.push((3 + i as u32, DT_REG, n));
        }
        let d = directory(&entries);
        assert_eq!(d.len() % DIRBLKSIZ, 0);
        let mut at = 0;
        let mut seen = 0;
        while at < d.len() {
            let reclen = u16::from_le_bytes([d[at + 4], d[at + 5]]) as usize;
            assert!(reclen >= dirent_size(d[at + 7] as usize));
            assert_eq!(at / DIRBLKSIZ, (at + reclen - 1) / DIRBLKSIZ);
            at += reclen;
            seen += 1;
        }
        assert_eq!(seen, 42);
    }

    #[test]
    fn footprints_use_fragments_only_for_short_files() {
        assert_eq!(footprint(0, "x").unwrap(), (0, 0, 0));
        assert_eq!(footprint(1, "x").unwrap(), (0, 1, 0));
        assert_eq!(footprint(BSIZE + 1, "x").unwrap(), (1, 1, 0));
        assert_eq!(footprint(2 * BSIZE, "x").unwrap(), (2, 0, 0));
        assert_eq!(footprint(13 * BSIZE, "x").unwrap(), (13, 0, 1));
        let n = NDADDR as u64 + NINDIR + 1;
        assert_eq!(footprint(n * BSIZE, "x").unwrap(), (n, 0, 3));
    }

    #[test]
    fn geometry_keeps_the_group_map_inside_a_block() {
        for (data, inodes) in [(1024, 100), (1 << 20, 50_000), (1 << 22, 2_000_000)] {
            let g = geometry(data, inodes, MAX_FPG);
            assert!(g.cgsize() <= BSIZE - CGSIZEFUDGE, "{g:?}");
            assert!(g.ncg * (g.fpg - g.dblkno) >= data, "{g:?}");
            assert!(g.ncg * g.ipg >= inodes, "{g:?}");
            assert_eq!(g.ipg % INOPB, 0);
        }
    }
}
