//! Block rootfs images checked with independent readers: e2fsck/debugfs for
//! ext2/ext4; for UFS2 a minimal reader here and the checks FreeBSD makes
//! before mounting (tests/common/ufs.rs). Linux's own UFS driver reads the
//! images in tests/ufs_linux_mount.rs.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use bunny::layers::{build_block, BlockOptions, LayerError, Tree};
use bunny::platform::BlockFs;

const MTIME: u64 = 1_000_000_000;
const LONG_TARGET: &str =
    "../very/long/symlink/target/that/does/not/fit/into/the/inode/itself/at/all/x";

fn need(tool: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("`{tool}` is missing: install the Debian package `{package}` (scripts/setup.sh)");
}

struct Fixture {
    dir: tempfile::TempDir,
    tree: Tree,
    sources: Vec<PathBuf>,
}

fn fixture(many: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(ctx.join("bin")).unwrap();
    fs::create_dir_all(ctx.join("etc/deep/er")).unwrap();
    fs::create_dir_all(ctx.join("many")).unwrap();
    let mut sources = Vec::new();
    let mut put = |rel: &str, data: &[u8], mode: u32| {
        let p = ctx.join(rel);
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        sources.push(p);
    };
    put("bin/app", b"\x7fELF pretend binary\n", 0o4755);
    put("etc/motd", b"hello from bunny\n", 0o640);
    put("etc/we\"ird name.txt", b"quoted\n", 0o600);
    put("etc/deep/er/big.bin", &vec![0xa5u8; 300_000], 0o644);
    for i in 0..many {
        put(&format!("many/f{i:04}"), format!("{i}\n").as_bytes(), 0o644);
    }
    let mut tree = Tree::new();
    tree.add_from_context(&ctx, ".", "/").unwrap();
    tree.insert_symlink("/bin/sh", "app").unwrap();
    tree.insert_symlink("/etc/long", LONG_TARGET).unwrap();
    tree.insert_dir("/tmp", 0o1777).unwrap();
    Fixture { dir, tree, sources }
}

fn touch_sources(f: &Fixture, secs: u64) {
    for p in &f.sources {
        File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    }
}

fn opts(label: Option<&str>) -> BlockOptions {
    BlockOptions {
        mtime: MTIME,
        label: label.map(str::to_string),
    }
}

fn debugfs_bytes(img: &Path, request: &str) -> Vec<u8> {
    let out = Command::new(need("debugfs", "e2fsprogs"))
        .arg("-R")
        .arg(request)
        .arg(img)
        .output()
        .unwrap();
    assert!(out.status.success(), "debugfs -R {request}");
    out.stdout
}

fn debugfs(img: &Path, request: &str) -> String {
    String::from_utf8_lossy(&debugfs_bytes(img, request)).into_owned()
}

fn check_ext(fs_kind: BlockFs) {
    let f = fixture(40);
    let img = f.dir.path().join(format!("rootfs.{fs_kind}"));
    build_block(&f.tree, fs_kind, &img, &opts(Some("bunnyroot"))).unwrap();

    let fsck = Command::new(need("e2fsck", "e2fsprogs"))
        .arg("-fn")
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck -fn: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );

    assert_eq!(debugfs(&img, "cat /etc/motd"), "hello from bunny\n");
    assert_eq!(debugfs(&img, "cat \"/etc/we\"\"ird name.txt\""), "quoted\n");
    assert_eq!(debugfs(&img, "cat /many/f0039"), "39\n");
    let big = debugfs_bytes(&img, "cat /etc/deep/er/big.bin");
    assert!(big == vec![0xa5u8; 300_000], "big.bin content differs");

    let stat = debugfs(&img, "stat /bin/app");
    assert!(stat.contains("Mode:  04755"), "{stat}");
    assert!(stat.contains("User:     0   Group:     0"), "{stat}");
    for field in ["ctime", "atime", "mtime"] {
        assert!(
            stat.contains(&format!("{field}: 0x3b9aca00")),
            "{field}: {stat}"
        );
    }
    let stat = debugfs(&img, "stat /etc/motd");
    assert!(stat.contains("Mode:  0640"), "{stat}");
    assert!(debugfs(&img, "stat /tmp").contains("Mode:  01777"));
    let stat = debugfs(&img, "stat /bin/sh");
    assert!(stat.contains("Type: symlink"), "{stat}");
    assert!(stat.contains("Fast link dest: \"app\""), "{stat}");
    let long = debugfs(&img, "stat /etc/long");
    assert!(long.contains("Type: symlink"), "{long}");
    assert!(debugfs(&img, "cat /etc/long").contains(LONG_TARGET) || long.contains(LONG_TARGET));
    let ls = debugfs(&img, "ls -l /etc");
    for name in ["motd", "deep", "long"] {
        assert!(ls.contains(name), "{ls}");
    }

    let super_ = Command::new(need("dumpe2fs", "e2fsprogs"))
        .arg("-h")
        .arg(&img)
        .output()
        .unwrap();
    let super_ = String::from_utf8_lossy(&super_.stdout);
    assert!(
        super_.contains("Filesystem volume name:   bunnyroot"),
        "{super_}"
    );
    let has_journal = super_.contains("has_journal");
    assert_eq!(has_journal, fs_kind == BlockFs::Ext4, "{super_}");

    // Same inputs, another second, other mtimes on disk: same bytes.
    std::thread::sleep(Duration::from_millis(1100));
    touch_sources(&f, 424242);
    let again = f.dir.path().join("again.img");
    build_block(&f.tree, fs_kind, &again, &opts(Some("bunnyroot"))).unwrap();
    assert!(
        fs::read(&img).unwrap() == fs::read(&again).unwrap(),
        "{fs_kind} image differs between runs"
    );
    // No temporary files are left beside the output.
    let leftovers: Vec<_> = fs::read_dir(f.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".bunny"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn ext2_image_checks_out_and_is_reproducible() {
    check_ext(BlockFs::Ext2);
}

#[test]
fn ext4_image_checks_out_and_is_reproducible() {
    check_ext(BlockFs::Ext4);
}

#[test]
fn ext_mtime_zero_is_reproducible() {
    // e2fsprogs treats a fake time of 0 as "unset"; the default
    // SOURCE_DATE_EPOCH is 0, so this is the common case.
    let f = fixture(0);
    let a = f.dir.path().join("a.img");
    let b = f.dir.path().join("b.img");
    let o = BlockOptions::default();
    build_block(&f.tree, BlockFs::Ext4, &a, &o).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    build_block(&f.tree, BlockFs::Ext4, &b, &o).unwrap();
    assert!(fs::read(&a).unwrap() == fs::read(&b).unwrap());
    assert!(debugfs(&a, "stat /etc/motd").contains("mtime: 0x00000000"));
}

#[test]
fn overlong_label_is_rejected() {
    let f = fixture(0);
    let err = build_block(
        &f.tree,
        BlockFs::Ext4,
        &f.dir.path().join("x.img"),
        &opts(Some("a-label-longer-than-16")),
    )
    .unwrap_err();
    assert!(matches!(err, LayerError::InvalidLabel { .. }), "{err}");
    assert!(!f.dir.path().join("x.img").exists());
}

// --- a minimal UFS2 reader, enough to list directories and read small files.

struct Ufs {
    data: Vec<u8>,
    fsize: u64,
    fpg: u64,
    ipg: u64,
    iblkno: u64,
}

struct Inode {
    mode: u16,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: i64,
    ctime: i64,
    db: Vec<u64>,
    raw: Vec<u8>,
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

impl Ufs {
    fn open(path: &Path) -> Ufs {
        let data = fs::read(path).unwrap();
        // FreeBSD reads the UFS2 superblock at 65536 only, and fs_sblockloc
        // (offset 1000) must say so.
        let loc = 65536usize;
        assert!(
            le32(&data, loc + 1372) == 0x1954_0119 && le64(&data, loc + 1000) == loc as u64,
            "no UFS2 superblock (magic 0x19540119) at 65536"
        );
        let sb = &data[loc..];
        Ufs {
            fsize: le32(sb, 52) as u64,
            fpg: le32(sb, 188) as u64,
            ipg: le32(sb, 184) as u64,
            iblkno: le32(sb, 16) as u64,
            data,
        }
    }

    fn inode(&self, ino: u64) -> Inode {
        let cg = ino / self.ipg;
        let off = ((cg * self.fpg + self.iblkno) * self.fsize + (ino % self.ipg) * 256) as usize;
        let raw = self.data[off..off + 256].to_vec();
        Inode {
            mode: u16::from_le_bytes([raw[0], raw[1]]),
            uid: le32(&raw, 4),
            gid: le32(&raw, 8),
            size: le64(&raw, 16),
            mtime: le64(&raw, 40) as i64,
            ctime: le64(&raw, 48) as i64,
            db: (0..12).map(|i| le64(&raw, 112 + 8 * i)).collect(),
            raw,
        }
    }

    fn contents(&self, ino: &Inode) -> Vec<u8> {
        let bsize = self.fsize * 8;
        assert!(ino.size <= 12 * bsize, "only direct blocks are read here");
        let mut out = Vec::new();
        let mut left = ino.size;
        for &blk in &ino.db {
            if left == 0 {
                break;
            }
            let n = left.min(bsize);
            let at = (blk * self.fsize) as usize;
            out.extend_from_slice(&self.data[at..at + n as usize]);
            left -= n;
        }
        out
    }

    fn list(&self, dir: &Inode) -> Vec<(String, u64)> {
        let buf = self.contents(dir);
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= buf.len() {
            let ino = le32(&buf, at) as u64;
            let reclen = u16::from_le_bytes([buf[at + 4], buf[at + 5]]) as usize;
            let namlen = buf[at + 7] as usize;
            if reclen == 0 {
                break;
            }
            if ino != 0 {
                let name = String::from_utf8_lossy(&buf[at + 8..at + 8 + namlen]).into_owned();
                if name != "." && name != ".." {
                    out.push((name, ino));
                }
            }
            at += reclen;
        }
        out.sort();
        out
    }

    fn lookup(&self, path: &str) -> Inode {
        let mut ino = self.inode(2);
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let (_, n) = self
                .list(&ino)
                .into_iter()
                .find(|(name, _)| name == part)
                .unwrap_or_else(|| panic!("{path}: no `{part}`"));
            ino = self.inode(n);
        }
        ino
    }
}

#[test]
fn ufs2_image_checks_out_and_is_reproducible() {
    // Enough files for several directory chunks and inode blocks.
    let f = fixture(300);
    let img = f.dir.path().join("rootfs.ufs");
    build_block(&f.tree, BlockFs::Ufs2, &img, &opts(Some("bunnyufs"))).unwrap();
    common::ufs::check_image(&img);

    let ufs = Ufs::open(&img);
    let root = ufs.inode(2);
    assert_eq!(root.mode & 0o170000, 0o040000);
    let names: Vec<String> = ufs.list(&root).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["bin", "etc", "many", "tmp"]);
    let etc: Vec<String> = ufs
        .list(&ufs.lookup("etc"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(etc, ["deep", "long", "motd", "we\"ird name.txt"]);
    assert_eq!(ufs.list(&ufs.lookup("many")).len(), 300);

    let motd = ufs.lookup("etc/motd");
    assert_eq!(ufs.contents(&motd), b"hello from bunny\n");
    assert_eq!(motd.mode, 0o100640);
    assert_eq!((motd.uid, motd.gid), (0, 0));
    assert_eq!((motd.mtime, motd.ctime), (MTIME as i64, MTIME as i64));
    assert_eq!(ufs.lookup("bin/app").mode, 0o104755);
    assert_eq!(ufs.lookup("tmp").mode, 0o041777);
    assert_eq!(ufs.contents(&ufs.lookup("many/f0299")), b"299\n");
    let sh = ufs.lookup("bin/sh");
    assert_eq!(sh.mode & 0o170000, 0o120000);
    // Short symlink targets live in the inode's block pointers.
    assert_eq!(&sh.raw[112..112 + sh.size as usize], b"app");

    let sb = 65536;
    let data = fs::read(&img).unwrap();
    assert_eq!(&data[sb + 680..sb + 688], b"bunnyufs");

    std::thread::sleep(Duration::from_millis(1100));
    touch_sources(&f, 77);
    let again = f.dir.path().join("again.ufs");
    build_block(&f.tree, BlockFs::Ufs2, &again, &opts(Some("bunnyufs"))).unwrap();
    assert!(
        data == fs::read(&again).unwrap(),
        "UFS2 image differs between runs"
    );
}

#[test]
fn ufs2_with_many_groups_and_indirect_blocks_checks_out() {
    // Cylinder groups of 256 fragments (1 MiB) turn a few MiB into many
    // groups: inodes, directories and files then cross group boundaries,
    // and a 2.5 MiB file needs its single indirect block.
    let f = fixture(700);
    let big: Vec<u8> = (0..2_600_000u32).map(|i| (i % 251) as u8).collect();
    let big_path = f.dir.path().join("big");
    fs::write(&big_path, &big).unwrap();
    let mut tree = f.tree.clone();
    tree.insert_file("/data/big", &big_path, 0o644).unwrap();
    // 120 bytes and more no longer fit the inode: the target gets a block.
    let very_long = "t/".repeat(80);
    tree.insert_symlink("/data/link", &very_long).unwrap();
    let img = f.dir.path().join("groups.ufs");
    bunny::layers::ufs::build_with_group_limit(&tree, &img, &opts(None), 256).unwrap();
    common::ufs::check_image(&img);
    let sb = bunny::layers::ufs::read_superblock(&img).unwrap();
    assert!(sb.ncg >= 8, "{sb:?}");

    let ufs = Ufs::open(&img);
    assert_eq!(ufs.list(&ufs.lookup("many")).len(), 700);
    assert_eq!(ufs.lookup("data/big").size, big.len() as u64);
    assert_eq!(ufs.contents(&ufs.lookup("many/f0699")), b"699\n");
    let long = ufs.lookup("etc/long");
    assert_eq!(
        &long.raw[112..112 + long.size as usize],
        LONG_TARGET.as_bytes()
    );
    let link = ufs.lookup("data/link");
    assert_eq!(ufs.contents(&link), very_long.as_bytes());
}

#[test]
fn the_ufs2_checker_catches_what_freebsd_refuses() {
    let f = fixture(3);
    let img = f.dir.path().join("ok.ufs");
    build_block(&f.tree, BlockFs::Ufs2, &img, &opts(None)).unwrap();
    let good = fs::read(&img).unwrap();
    assert!(common::ufs::image_problems(&good).is_empty());

    let sb = 65536;
    // makefs' location: fs_sblockloc 8192.
    let mut bad = good.clone();
    bad[sb + 1000..sb + 1008].copy_from_slice(&8192i64.to_le_bytes());
    let p = common::ufs::image_problems(&bad);
    assert!(p.iter().any(|m| m.contains("fs.sblockloc")), "{p:?}");
    // A wrong cgsize.
    let mut bad = good.clone();
    bad[sb + 160..sb + 164].copy_from_slice(&100i32.to_le_bytes());
    assert!(!common::ufs::image_problems(&bad).is_empty());
    // A free-block count that disagrees with the maps.
    let mut bad = good.clone();
    let nbfree = i64::from_le_bytes(bad[sb + 1016..sb + 1024].try_into().unwrap());
    bad[sb + 1016..sb + 1024].copy_from_slice(&(nbfree + 1).to_le_bytes());
    let p = common::ufs::image_problems(&bad);
    assert!(p.iter().any(|m| m.contains("fs_cstotal")), "{p:?}");
}
