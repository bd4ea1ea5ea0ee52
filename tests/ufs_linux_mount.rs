//! Linux's own UFS driver (Debian's ufs.ko, `ufstype=ufs2`, which like
//! FreeBSD reads the UFS2 superblock at 64 KiB) mounts the images bunny
//! writes, inside a qemu (TCG) guest booted from a bunny initrd, and lists
//! every file, symlink and directory with its mode, owner and sha256: the
//! listing must equal the tree bunny was given. The same for a FreeBSD
//! `-v` volume made from a host directory.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bunny::layers::{build_block, write_initrd, BlockOptions, EntryKind, InitrdOptions, Tree};
use bunny::platform::BlockFs;
use sha2::{Digest, Sha256};

/// Only a hang guard for a TCG boot on a loaded machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

fn kernel_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/linux-kernel");
    for f in ["vmlinuz", "modules/ufs.ko", "modules/virtio_blk.ko"] {
        assert!(
            dir.join(f).is_file(),
            "no {} in {}: run scripts/setup.sh (it extracts Debian's kernel and modules)",
            f,
            dir.display()
        );
    }
    dir
}

/// The tree under test: permissions, nested and large directories, a file
/// needing an indirect block, empty files, short and long symlinks.
fn content_tree(dir: &Path) -> Tree {
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    let mut tree = Tree::new();
    let mut n = 0;
    let mut file = |tree: &mut Tree, dst: &str, data: Vec<u8>, mode: u32| {
        n += 1;
        let p = src.join(format!("f{n}"));
        fs::write(&p, data).unwrap();
        tree.insert_file(dst, &p, mode).unwrap();
    };
    file(
        &mut tree,
        "/etc/motd",
        b"hello from a bunny UFS2\n".to_vec(),
        0o644,
    );
    file(&mut tree, "/etc/secret", b"s\n".to_vec(), 0o600);
    file(
        &mut tree,
        "/bin/tool",
        b"#!/bin/sh\necho tool\n".to_vec(),
        0o4755,
    );
    file(&mut tree, "/empty", Vec::new(), 0o644);
    file(&mut tree, "/data/exact-block", vec![7u8; 32768], 0o644);
    file(
        &mut tree,
        "/data/big.bin",
        (0..2_700_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
        0o640,
    );
    for i in 0..600 {
        file(
            &mut tree,
            &format!("/many/entry-with-a-longer-name-{i:04}"),
            format!("{i}\n").into_bytes(),
            0o644,
        );
    }
    tree.insert_dir("/tmp", 0o1777).unwrap();
    tree.insert_dir("/a/b/c/d", 0o750).unwrap();
    tree.insert_symlink("/bin/sh", "tool").unwrap();
    tree.insert_symlink("/a/far", &"../".repeat(50)).unwrap();
    tree
}

/// What the guest should print for `tree`: one line per entry.
fn expected_listing(tree: &Tree) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("/".to_string(), "d 755 0 0".to_string());
    for (path, e) in tree.iter() {
        let line = match &e.kind {
            EntryKind::Dir => format!("d {:o} 0 0", e.mode),
            EntryKind::File { source, .. } => {
                let sum = hex::encode(Sha256::digest(fs::read(source).unwrap()));
                format!("f {:o} 0 0 {sum}", e.mode)
            }
            EntryKind::Symlink { target } => format!("l 777 0 0 {target}"),
        };
        out.insert(format!("/{path}"), line);
    }
    out
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /mnt/a /mnt/b /mnt/c
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk ufs; do
  insmod /lib/modules/$m.ko || echo "INSMOD-FAILED $m"
done
list() {
  cd "$1" || return
  find . | sort | while read -r p; do
    q="${p#.}"; [ -z "$q" ] && q=/
    set -- $(stat -c '%f %a %u %g' "$p")
    t=$(( 0x$1 & 0xf000 ))
    case $t in
      16384) echo "ENTRY $q d $2 $3 $4" ;;
      32768) echo "ENTRY $q f $2 $3 $4 $(sha256sum "$p" | cut -d' ' -f1)" ;;
      40960) echo "ENTRY $q l $2 $3 $4 $(readlink "$p")" ;;
      *) echo "ENTRY $q ? $t" ;;
    esac
  done
  cd /
}
for d in a b c; do
  dev=/dev/vd$d
  if mount -t ufs -o ro,ufstype=ufs2 $dev /mnt/$d; then
    echo "MOUNTED $d"
    echo "BEGIN $d"; list /mnt/$d; echo "END $d"
    umount /mnt/$d
  else
    echo "MOUNT-FAILED $d"
  fi
done
dmesg | grep -i ufs | sed 's/^/DMESG /'
poweroff -f
"#;

fn initrd(dir: &Path, kdir: &Path) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: install the Debian package `busybox-static` (scripts/setup.sh)"
    );
    let init = dir.join("init");
    fs::write(&init, INIT).unwrap();
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755)).unwrap();
    let mut tree = Tree::new();
    tree.insert_file("/bin/busybox", busybox, 0o755).unwrap();
    tree.insert_file("/init", &init, 0o755).unwrap();
    for m in fs::read_dir(kdir.join("modules")).unwrap() {
        let m = m.unwrap();
        let name = m.file_name().into_string().unwrap();
        tree.insert_file(&format!("/lib/modules/{name}"), &m.path(), 0o644)
            .unwrap();
    }
    let out = dir.join("initrd");
    let mut f = fs::File::create(&out).unwrap();
    write_initrd(
        &tree,
        &mut f,
        &InitrdOptions {
            mtime: 0,
            gzip: false,
        },
    )
    .unwrap();
    out
}

fn boot(kdir: &Path, initrd: &Path, disks: &[&Path]) -> String {
    let mut cmd = Command::new(common::require_tool("qemu-system-x86_64"));
    cmd.args([
        "-accel",
        "tcg",
        "-m",
        "256",
        "-nographic",
        "-no-reboot",
        "-kernel",
    ])
    .arg(kdir.join("vmlinuz"))
    .arg("-initrd")
    .arg(initrd)
    .args(["-append", "console=ttyS0 panic=-1 rdinit=/init quiet"]);
    for d in disks {
        cmd.arg("-drive").arg(format!(
            "file={},format=raw,if=virtio,readonly=on",
            d.display()
        ));
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > BOOT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    String::from_utf8_lossy(&out).replace('\r', "")
}

fn listing(console: &str, disk: &str) -> BTreeMap<String, String> {
    let begin = format!("BEGIN {disk}");
    let end = format!("END {disk}");
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in console.lines() {
        if line == begin {
            inside = true;
        } else if line == end {
            break;
        } else if inside {
            if let Some(rest) = line.strip_prefix("ENTRY ") {
                let (path, what) = rest.split_once(' ').unwrap();
                out.insert(path.to_string(), what.to_string());
            }
        }
    }
    out
}

#[test]
fn linux_mounts_bunny_ufs2_images_and_reads_every_file() {
    let kdir = kernel_dir();
    let dir = tempfile::tempdir().unwrap();
    let tree = content_tree(dir.path());
    let opts = BlockOptions {
        mtime: 1_700_000_000,
        label: Some("bunny".into()),
    };
    // One image as bunny builds it, one with many small cylinder groups.
    let a = dir.path().join("a.ufs");
    build_block(&tree, BlockFs::Ufs2, &a, &opts).unwrap();
    let b = dir.path().join("b.ufs");
    bunny::layers::ufs::build_with_group_limit(&tree, &b, &opts, 256).unwrap();
    for img in [&a, &b] {
        common::ufs::check_image(img);
    }
    assert!(bunny::layers::ufs::read_superblock(&b).unwrap().ncg > 4);

    // A FreeBSD volume: a host directory as `bunny run -v` makes it.
    let (vol_dir, want_vol) = volume_dir(dir.path());
    let c = dir.path().join("c.ufs");
    bunny::volumes::make_image(
        &vol_dir,
        &c,
        bunny::volumes::VolumeFs::Ufs2,
        Some(16 << 20),
        "bunnyvol2",
    )
    .unwrap();
    common::ufs::check_image(&c);
    assert!(fs::metadata(&c).unwrap().len() >= 16 << 20);
    // FreeBSD's GEOM shows it as /dev/ufs/bunnyvol2: the label is fs_volname.
    let sb = fs::read(&c).unwrap();
    assert_eq!(&sb[65536 + 680..65536 + 690], b"bunnyvol2\0");

    let console = boot(&kdir, &initrd(dir.path(), &kdir), &[&a, &b, &c]);
    assert!(
        !console.contains("INSMOD-FAILED"),
        "modules did not load:\n{console}"
    );
    let want = expected_listing(&tree);
    for disk in ["a", "b"] {
        assert!(
            console.contains(&format!("MOUNTED {disk}")),
            "Linux did not mount image {disk}:\n{console}"
        );
        let got = listing(&console, disk);
        assert_eq!(got, want, "image {disk} as Linux reads it\n{console}");
    }
    assert!(console.contains("MOUNTED c"), "{console}");
    assert_eq!(listing(&console, "c"), want_vol, "the volume\n{console}");
}

/// A host directory for a volume, and what the guest should list of it:
/// the host's modes, root's ownership (the writer's), the contents.
fn volume_dir(dir: &Path) -> (PathBuf, BTreeMap<String, String>) {
    let v = dir.join("volume");
    fs::create_dir_all(v.join("db/empty")).unwrap();
    fs::write(v.join("notes.txt"), b"kept by the host\n").unwrap();
    // Past the 12 direct blocks: an indirect block too.
    let big: Vec<u8> = (0..500_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(v.join("db/table"), &big).unwrap();
    fs::set_permissions(v.join("db/table"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(v.join("db"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(v.join("db/empty"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(v.join("notes.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink("../notes.txt", v.join("db/notes")).unwrap();
    let sum = |d: &[u8]| hex::encode(Sha256::digest(d));
    let mut want = BTreeMap::new();
    for (p, line) in [
        ("/", "d 755 0 0".to_string()),
        ("/db", "d 750 0 0".to_string()),
        ("/db/empty", "d 755 0 0".to_string()),
        ("/db/notes", "l 777 0 0 ../notes.txt".to_string()),
        ("/db/table", format!("f 600 0 0 {}", sum(&big))),
        (
            "/notes.txt",
            format!("f 644 0 0 {}", sum(b"kept by the host\n")),
        ),
    ] {
        want.insert(p.to_string(), line);
    }
    (v, want)
}
