//! What FreeBSD checks before it mounts a UFS2 filesystem, restated from its
//! sources for images bunny writes: the superblock rules of
//! `validate_sblock()` (sys/ufs/ffs/ffs_subr.c, FreeBSD 13.2 and later),
//! the cylinder group headers the kernel reads (`ffs_getcg`), and the
//! accounting fsck_ffs would compare (summaries, free maps against the
//! blocks the inodes reference).

use std::collections::BTreeMap;
use std::path::Path;

const SBLOCK_UFS2: i64 = 65536;
const SBLOCKSIZE: i64 = 8192;
const DEV_BSIZE: i64 = 512;
const MINBSIZE: i64 = 4096;
const MAXBSIZE: i64 = 65536;
const MAXFRAG: i64 = 8;
const FS_MAXCONTIG: i64 = 16;
const SIZEOF_FS: i64 = 1376;
const SIZEOF_CG: i64 = 168;
const SIZEOF_CSUM: i64 = 16;
const UFS_NDADDR: i64 = 12;
const UFS_NIADDR: i64 = 3;
const FS_UFS2_MAGIC: u32 = 0x1954_0119;
const CG_MAGIC: u32 = 0x09_0255;
/// maxphys of a FreeBSD 14 amd64 kernel.
const MAXPHYS: i64 = 1 << 20;

fn i32_(b: &[u8], o: usize) -> i64 {
    i64::from(i32::from_le_bytes(b[o..o + 4].try_into().unwrap()))
}
fn u32_(b: &[u8], o: usize) -> i64 {
    i64::from(u32::from_le_bytes(b[o..o + 4].try_into().unwrap()))
}
fn i64_(b: &[u8], o: usize) -> i64 {
    i64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}
fn ilog2(n: i64) -> i64 {
    if n <= 0 {
        -1
    } else {
        63 - i64::from(n.leading_zeros())
    }
}
fn powerof2(n: i64) -> bool {
    n > 0 && n & (n - 1) == 0
}
fn howmany(x: i64, y: i64) -> i64 {
    (x + y - 1) / y
}
fn roundup(x: i64, y: i64) -> i64 {
    howmany(x, y) * y
}

/// The superblock fields validate_sblock reads.
#[derive(Debug, Clone)]
pub struct Fs {
    pub sblkno: i64,
    pub cblkno: i64,
    pub iblkno: i64,
    pub dblkno: i64,
    pub old_cgoffset: i64,
    pub old_cgmask: i64,
    pub ncg: i64,
    pub bsize: i64,
    pub fsize: i64,
    pub frag: i64,
    pub minfree: i64,
    pub bmask: i64,
    pub fmask: i64,
    pub bshift: i64,
    pub fshift: i64,
    pub maxcontig: i64,
    pub fragshift: i64,
    pub fsbtodb: i64,
    pub sbsize: i64,
    pub nindir: i64,
    pub inopb: i64,
    pub cssize: i64,
    pub cgsize: i64,
    pub old_cpg: i64,
    pub ipg: i64,
    pub fpg: i64,
    pub clean: u8,
    pub maxbsize: i64,
    pub metaspace: i64,
    pub sblockactualloc: i64,
    pub sblockloc: i64,
    pub cs_ndir: i64,
    pub cs_nbfree: i64,
    pub cs_nifree: i64,
    pub cs_nffree: i64,
    pub size: i64,
    pub dsize: i64,
    pub csaddr: i64,
    pub metackhash: i64,
    pub flags: i64,
    pub contigsumsize: i64,
    pub maxsymlinklen: i64,
    pub maxfilesize: u64,
    pub qbmask: i64,
    pub qfmask: i64,
    pub magic: u32,
}

impl Fs {
    pub fn parse(b: &[u8]) -> Fs {
        Fs {
            sblkno: i32_(b, 8),
            cblkno: i32_(b, 12),
            iblkno: i32_(b, 16),
            dblkno: i32_(b, 20),
            old_cgoffset: i32_(b, 24),
            old_cgmask: i32_(b, 28),
            ncg: u32_(b, 44),
            bsize: i32_(b, 48),
            fsize: i32_(b, 52),
            frag: i32_(b, 56),
            minfree: i32_(b, 60),
            bmask: i32_(b, 72),
            fmask: i32_(b, 76),
            bshift: i32_(b, 80),
            fshift: i32_(b, 84),
            maxcontig: i32_(b, 88),
            fragshift: i32_(b, 96),
            fsbtodb: i32_(b, 100),
            sbsize: i32_(b, 104),
            nindir: i32_(b, 116),
            inopb: u32_(b, 120),
            cssize: i32_(b, 156),
            cgsize: i32_(b, 160),
            old_cpg: i32_(b, 180),
            ipg: u32_(b, 184),
            fpg: i32_(b, 188),
            clean: b[209],
            maxbsize: i32_(b, 860),
            metaspace: i64_(b, 880),
            sblockactualloc: i64_(b, 992),
            sblockloc: i64_(b, 1000),
            cs_ndir: i64_(b, 1008),
            cs_nbfree: i64_(b, 1016),
            cs_nifree: i64_(b, 1024),
            cs_nffree: i64_(b, 1032),
            size: i64_(b, 1080),
            dsize: i64_(b, 1088),
            csaddr: i64_(b, 1096),
            metackhash: u32_(b, 1308),
            flags: i32_(b, 1312),
            contigsumsize: i32_(b, 1316),
            maxsymlinklen: i32_(b, 1320),
            maxfilesize: i64_(b, 1328) as u64,
            qbmask: i64_(b, 1336),
            qfmask: i64_(b, 1344),
            magic: u32_(b, 1372) as u32,
        }
    }

    fn cgsize_macro(&self) -> i64 {
        SIZEOF_CG
            + self.old_cpg * 4
            + self.old_cpg * 2
            + howmany(self.ipg, 8)
            + howmany(self.fpg, 8)
            + 4
            + if self.contigsumsize <= 0 {
                0
            } else {
                self.contigsumsize * 4 + howmany(self.fpg >> self.fragshift, 8)
            }
    }
    fn cgbase(&self, c: i64) -> i64 {
        self.fpg * c
    }
    fn cgdmin(&self, c: i64) -> i64 {
        self.cgbase(c) + self.dblkno
    }
    fn dtog(&self, d: i64) -> i64 {
        d / self.fpg
    }
    fn fragroundup(&self, size: i64) -> i64 {
        (size + self.qfmask) & self.fmask
    }
}

/// The rules of validate_sblock() for a UFS2 superblock read from the
/// standard location (no UFS_ALTSBLK, csum data wanted); every failed check
/// is reported, the fatal (FCHK) and the warning (WCHK) ones alike, since
/// the kernel refuses both by default.
pub fn validate_sblock(fs: &Fs) -> Vec<String> {
    let mut bad = Vec::new();
    macro_rules! chk {
        ($cond:expr) => {
            if $cond {
                bad.push(stringify!($cond).to_string());
            }
        };
    }
    let sectorsize = DEV_BSIZE;
    if fs.magic != FS_UFS2_MAGIC {
        return vec![format!("fs_magic {:#x} is not UFS2", fs.magic)];
    }
    chk!(fs.sblockactualloc != SBLOCK_UFS2 && fs.sblockactualloc != 0);
    chk!(fs.sblockloc != SBLOCK_UFS2);
    chk!(fs.maxsymlinklen != (UFS_NDADDR + UFS_NIADDR) * 8);
    chk!(fs.nindir != fs.bsize / 8);
    chk!(fs.inopb != fs.bsize / 256);
    chk!(fs.bsize < MINBSIZE);
    chk!(fs.bsize > MAXBSIZE);
    chk!(fs.bsize < roundup(SIZEOF_FS, DEV_BSIZE));
    chk!(!powerof2(fs.bsize));
    chk!(fs.frag < 1);
    chk!(fs.frag > MAXFRAG);
    chk!(fs.fshift < 0 || fs.fshift > 62 || fs.frag != fs.bsize >> fs.fshift);
    chk!(fs.fsize < sectorsize);
    chk!(fs.fsize * fs.frag != fs.bsize);
    chk!(!powerof2(fs.fsize));
    chk!(fs.fpg < 3 * fs.frag);
    chk!(fs.ncg < 1);
    chk!(fs.ipg < fs.inopb);
    chk!(fs.ipg * fs.ncg > (1i64 << 32) - fs.inopb);
    chk!(fs.cs_nifree < 0);
    chk!(fs.cs_nifree > fs.ipg * fs.ncg);
    chk!(fs.cs_ndir < 0);
    chk!(fs.cs_ndir > fs.ipg * fs.ncg - fs.cs_nifree);
    chk!(fs.sbsize > SBLOCKSIZE);
    chk!(fs.sbsize < SIZEOF_FS);
    let maxbsize = if fs.maxbsize == 0 {
        fs.bsize
    } else {
        fs.maxbsize
    };
    chk!(maxbsize < fs.bsize);
    chk!(!powerof2(maxbsize));
    chk!(maxbsize > FS_MAXCONTIG * fs.bsize);
    chk!(fs.bmask != !(fs.bsize - 1));
    chk!(fs.fmask != !(fs.fsize - 1));
    chk!(fs.qbmask != !fs.bmask);
    chk!(fs.qfmask != !fs.fmask);
    chk!(fs.bshift != ilog2(fs.bsize));
    chk!(fs.fshift != ilog2(fs.fsize));
    chk!(fs.fragshift != ilog2(fs.frag));
    chk!(fs.fsize < sectorsize || fs.fsbtodb != ilog2(fs.fsize / sectorsize));
    chk!(fs.old_cgoffset < 0);
    chk!(fs.old_cgoffset > 0 && !fs.old_cgmask < 0);
    chk!(fs.old_cgoffset * !fs.old_cgmask > fs.fpg);
    chk!(fs.cgsize_macro() > fs.bsize);
    if !bad.is_empty() {
        return bad;
    }
    chk!(fs.sbsize % sectorsize != 0);
    chk!(fs.ipg % fs.inopb != 0);
    chk!(fs.sblkno != roundup(howmany(fs.sblockloc + SBLOCKSIZE, fs.fsize), fs.frag));
    chk!(fs.cblkno != fs.sblkno + roundup(howmany(SBLOCKSIZE, fs.fsize), fs.frag));
    chk!(fs.iblkno != fs.cblkno + fs.frag);
    chk!(fs.dblkno != fs.iblkno + fs.ipg / (fs.inopb >> fs.fragshift));
    chk!(fs.cgsize > fs.bsize);
    chk!(fs.cgsize < fs.fsize);
    chk!(fs.cgsize % fs.fsize != 0);
    chk!(fs.metaspace < 0);
    chk!(fs.metaspace > fs.fpg / 2);
    chk!(fs.minfree > 99);
    let mut maxfilesize = (fs.bsize * UFS_NDADDR - 1) as u64;
    let mut sizepb = fs.bsize as u64;
    for _ in 0..UFS_NIADDR {
        sizepb = sizepb.saturating_mul(fs.nindir as u64);
        maxfilesize = maxfilesize.saturating_add(sizepb);
    }
    chk!(fs.maxfilesize != maxfilesize);
    chk!(fs.size < 8 * fs.frag);
    chk!(fs.size <= (fs.ncg - 1) * fs.fpg);
    chk!(fs.size > fs.ncg * fs.fpg);
    chk!(fs.csaddr < 0);
    chk!(fs.cssize != fs.fragroundup(fs.ncg * SIZEOF_CSUM));
    chk!(fs.csaddr + howmany(fs.cssize, fs.fsize) > fs.size);
    chk!(fs.csaddr < fs.cgdmin(fs.dtog(fs.csaddr)));
    chk!(fs.dtog(fs.csaddr + howmany(fs.cssize, fs.fsize)) > fs.dtog(fs.csaddr));
    chk!(fs.maxcontig < 0);
    chk!(fs.maxcontig > 256.max(MAXPHYS / fs.bsize));
    chk!(fs.maxcontig == 0 && fs.contigsumsize != 0);
    chk!(fs.maxcontig > 1 && fs.contigsumsize != fs.maxcontig.min(FS_MAXCONTIG));
    bad
}

/// Checks a whole image: the superblock rules above, the backup copies,
/// the cylinder groups and their summaries, and that the free maps mark
/// exactly the fragments no inode references. Panics with every problem.
pub fn check_image(path: &Path) {
    let data = std::fs::read(path).unwrap();
    let problems = image_problems(&data);
    assert!(
        problems.is_empty(),
        "{} is not a UFS2 FreeBSD mounts:\n{}",
        path.display(),
        problems.join("\n")
    );
}

pub fn image_problems(data: &[u8]) -> Vec<String> {
    let at = SBLOCK_UFS2 as usize;
    if data.len() < at + SBLOCKSIZE as usize {
        return vec!["image shorter than 64 KiB + a superblock".into()];
    }
    let raw = &data[at..at + SIZEOF_FS as usize];
    let fs = Fs::parse(raw);
    let mut bad: Vec<String> = validate_sblock(&fs)
        .into_iter()
        .map(|c| format!("superblock check failed: {c}"))
        .collect();
    if !bad.is_empty() {
        return bad;
    }
    if (data.len() as i64) < fs.size * fs.fsize {
        bad.push(format!(
            "fs_size {} fragments is beyond the image ({} bytes)",
            fs.size,
            data.len()
        ));
        return bad;
    }
    if fs.clean != 1 {
        bad.push(format!("fs_clean is {}", fs.clean));
    }
    if fs.metackhash != 0 || fs.flags != 0 {
        bad.push(format!(
            "unexpected fs_metackhash {:#x} / fs_flags {:#x}",
            fs.metackhash, fs.flags
        ));
    }
    let frag = |f: i64| (f * fs.fsize) as usize;
    for c in 0..fs.ncg {
        let copy = frag(fs.cgbase(c) + fs.sblkno);
        if data[copy..copy + fs.sbsize as usize] != data[at..at + fs.sbsize as usize] {
            bad.push(format!(
                "superblock copy of cg {c} differs from the primary"
            ));
        }
    }

    // Cylinder groups: headers, summaries, free fragments.
    let mut free = vec![false; fs.size as usize];
    let mut used_inodes = vec![false; (fs.ipg * fs.ncg) as usize];
    let mut totals = [0i64; 4];
    for c in 0..fs.ncg {
        let cgp = &data[frag(fs.cgbase(c) + fs.cblkno)..][..fs.cgsize as usize];
        if u32_(cgp, 4) != i64::from(CG_MAGIC) || u32_(cgp, 12) != c {
            bad.push(format!("cg {c}: bad magic or cg_cgx"));
            continue;
        }
        let ndblk = u32_(cgp, 20).min(fs.size - fs.cgbase(c));
        let iusedoff = u32_(cgp, 92) as usize;
        let freeoff = u32_(cgp, 96) as usize;
        let nextfreeoff = u32_(cgp, 100);
        if nextfreeoff > fs.cgsize || iusedoff < SIZEOF_CG as usize {
            bad.push(format!("cg {c}: maps outside the group block"));
            continue;
        }
        let cs: Vec<i64> = (0..4).map(|k| i32_(cgp, 24 + 4 * k)).collect();
        let csum_at = frag(fs.csaddr) + (c * SIZEOF_CSUM) as usize;
        let csum: Vec<i64> = (0..4).map(|k| i32_(data, csum_at + 4 * k)).collect();
        if cs != csum {
            bad.push(format!("cg {c}: cg_cs {cs:?} differs from fs_cs {csum:?}"));
        }
        for k in 0..4 {
            totals[k] += cs[k];
        }
        let mut nifree = 0;
        for i in 0..fs.ipg {
            let used = cgp[iusedoff + (i / 8) as usize] & (1 << (i % 8)) != 0;
            used_inodes[(c * fs.ipg + i) as usize] = used;
            nifree += i64::from(!used);
        }
        if nifree != cs[2] {
            bad.push(format!(
                "cg {c}: {nifree} free inodes in the map, cs_nifree {}",
                cs[2]
            ));
        }
        let (mut nbfree, mut nffree) = (0, 0);
        for blk in 0..ndblk / fs.frag {
            let mut n = 0;
            for f in 0..fs.frag {
                let d = blk * fs.frag + f;
                if cgp[freeoff + (d / 8) as usize] & (1 << (d % 8)) != 0 {
                    free[(fs.cgbase(c) + d) as usize] = true;
                    n += 1;
                }
            }
            if n == fs.frag {
                nbfree += 1;
            } else {
                nffree += n;
            }
        }
        if (nbfree, nffree) != (cs[1], cs[3]) {
            bad.push(format!(
                "cg {c}: maps hold {nbfree} free blocks / {nffree} free frags, cg_cs says {} / {}",
                cs[1], cs[3]
            ));
        }
        // Metadata is never free.
        let meta_from = if c == 0 { 0 } else { fs.sblkno };
        let meta_to = fs.dblkno
            + if c == 0 {
                howmany(fs.cssize, fs.fsize)
            } else {
                0
            };
        if (meta_from..meta_to).any(|d| free[(fs.cgbase(c) + d) as usize]) {
            bad.push(format!("cg {c}: metadata fragments marked free"));
        }
    }
    if totals != [fs.cs_ndir, fs.cs_nbfree, fs.cs_nifree, fs.cs_nffree] {
        bad.push(format!(
            "fs_cstotal {:?} is not the sum of the groups {totals:?}",
            [fs.cs_ndir, fs.cs_nbfree, fs.cs_nifree, fs.cs_nffree]
        ));
    }

    // Every fragment referenced by a used inode: exactly once, never free.
    let mut owner: BTreeMap<i64, u64> = BTreeMap::new();
    let mut ndir = 0;
    for ino in 2..used_inodes.len() as u64 {
        if !used_inodes[ino as usize] {
            continue;
        }
        let c = ino as i64 / fs.ipg;
        let off = frag(fs.cgbase(c) + fs.iblkno) + ((ino as i64 % fs.ipg) * 256) as usize;
        let d = &data[off..off + 256];
        let mode = u16::from_le_bytes([d[0], d[1]]);
        if mode == 0 {
            bad.push(format!("inode {ino} is marked used but has mode 0"));
            continue;
        }
        if mode & 0o170000 == 0o040000 {
            ndir += 1;
        }
        let size = i64_(d, 16);
        let blocks = i64_(d, 24);
        if mode & 0o170000 == 0o120000 && size < fs.maxsymlinklen && blocks == 0 {
            continue;
        }
        let nblocks = howmany(size, fs.bsize);
        let mut claim = |start: i64, n: i64, what: &str, bad: &mut Vec<String>| {
            for f in start..start + n {
                if f <= 0 || f >= fs.size {
                    bad.push(format!(
                        "inode {ino}: {what} fragment {f} outside the filesystem"
                    ));
                    return;
                }
                if free[f as usize] {
                    bad.push(format!("inode {ino}: {what} fragment {f} is marked free"));
                }
                if let Some(other) = owner.insert(f, ino) {
                    bad.push(format!("fragment {f} claimed by inodes {other} and {ino}"));
                }
            }
        };
        let mut sectors = 0;
        let lbn_addr = |lbn: i64, bad: &mut Vec<String>| -> Option<i64> {
            if lbn < UFS_NDADDR {
                return Some(i64_(d, 112 + 8 * lbn as usize));
            }
            let l = lbn - UFS_NDADDR;
            if l < fs.nindir {
                let ib = i64_(d, 208);
                return Some(i64_(data, frag(ib) + 8 * l as usize));
            }
            let l = l - fs.nindir;
            if l < fs.nindir * fs.nindir {
                let dib = i64_(d, 216);
                let l1 = i64_(data, frag(dib) + 8 * (l / fs.nindir) as usize);
                return Some(i64_(data, frag(l1) + 8 * (l % fs.nindir) as usize));
            }
            bad.push(format!(
                "inode {ino}: triple indirect blocks are not checked"
            ));
            None
        };
        for lbn in 0..nblocks {
            let Some(addr) = lbn_addr(lbn, &mut bad) else {
                break;
            };
            let n = if lbn < UFS_NDADDR && lbn == nblocks - 1 {
                howmany(size - lbn * fs.bsize, fs.fsize)
            } else {
                fs.frag
            };
            if n < fs.frag && addr / fs.frag != (addr + n - 1) / fs.frag {
                bad.push(format!("inode {ino}: fragment run crosses a block"));
            }
            if n == fs.frag && addr % fs.frag != 0 {
                bad.push(format!("inode {ino}: block {addr} is not block aligned"));
            }
            claim(addr, n, "data", &mut bad);
            sectors += n * fs.fsize / DEV_BSIZE;
        }
        if nblocks > UFS_NDADDR {
            claim(i64_(d, 208), fs.frag, "indirect", &mut bad);
            sectors += fs.bsize / DEV_BSIZE;
        }
        if nblocks > UFS_NDADDR + fs.nindir {
            let dib = i64_(d, 216);
            claim(dib, fs.frag, "double indirect", &mut bad);
            sectors += fs.bsize / DEV_BSIZE;
            let l1s = howmany(nblocks - UFS_NDADDR - fs.nindir, fs.nindir);
            for k in 0..l1s {
                claim(
                    i64_(data, frag(dib) + 8 * k as usize),
                    fs.frag,
                    "indirect",
                    &mut bad,
                );
                sectors += fs.bsize / DEV_BSIZE;
            }
        }
        if sectors != blocks {
            bad.push(format!(
                "inode {ino}: di_blocks {blocks}, its blocks hold {sectors} sectors"
            ));
        }
    }
    if ndir != fs.cs_ndir {
        bad.push(format!(
            "{ndir} directories, fs_cstotal.cs_ndir {}",
            fs.cs_ndir
        ));
    }
    // Data fragments neither free nor referenced are lost space to fsck.
    for c in 0..fs.ncg {
        let from = fs.cgdmin(c)
            + if c == 0 {
                howmany(fs.cssize, fs.fsize)
            } else {
                0
            };
        let to = (fs.cgbase(c) + fs.fpg).min(fs.size);
        let lost = (from..to)
            .filter(|f| !free[*f as usize] && !owner.contains_key(f))
            .count();
        if lost > 0 {
            bad.push(format!(
                "cg {c}: {lost} fragments neither free nor referenced"
            ));
        }
    }
    bad
}

/// The root directory's entries (name → mode) of a UFS2 image, read
/// through its direct blocks.
pub fn root_entries(path: &Path) -> BTreeMap<String, u16> {
    let data = std::fs::read(path).unwrap();
    let fs = Fs::parse(&data[SBLOCK_UFS2 as usize..]);
    let inode = |ino: i64| -> &[u8] {
        let c = ino / fs.ipg;
        let off = ((fs.cgbase(c) + fs.iblkno) * fs.fsize + (ino % fs.ipg) * 256) as usize;
        &data[off..off + 256]
    };
    let root = inode(2);
    let size = i64_(root, 16);
    let mut dir = Vec::new();
    for lbn in 0..howmany(size, fs.bsize) {
        let at = (i64_(root, 112 + 8 * lbn as usize) * fs.fsize) as usize;
        let n = (size - lbn * fs.bsize).min(fs.bsize) as usize;
        dir.extend_from_slice(&data[at..at + n]);
    }
    let mut out = BTreeMap::new();
    let mut at = 0;
    while at + 8 <= dir.len() {
        let ino = u32_(&dir, at);
        let reclen = u16::from_le_bytes([dir[at + 4], dir[at + 5]]) as usize;
        let namlen = dir[at + 7] as usize;
        if reclen == 0 {
            break;
        }
        let name = String::from_utf8_lossy(&dir[at + 8..at + 8 + namlen]).into_owned();
        if ino != 0 && name != "." && name != ".." {
            out.insert(name, u16::from_le_bytes([inode(ino)[0], inode(ino)[1]]));
        }
        at += reclen;
    }
    out
}
