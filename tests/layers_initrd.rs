//! The cpio initrd writer, checked with GNU cpio and gzip.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use bunny::layers::{write_initrd, InitrdOptions, LayerError, Tree};

const MTIME: u64 = 1_000_000_000; // Sun Sep  9 01:46:40 UTC 2001

fn need(tool: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("`{tool}` is missing: install the Debian package `{package}` (scripts/setup.sh)");
}

struct Fixture {
    _dir: tempfile::TempDir,
    files: Vec<PathBuf>,
    tree: Tree,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(ctx.join("bin")).unwrap();
    fs::create_dir_all(ctx.join("etc/sub")).unwrap();
    let files = vec![
        ctx.join("bin/app"),
        ctx.join("etc/motd"),
        ctx.join("etc/sub/empty"),
    ];
    fs::write(&files[0], b"\x7fELF pretend binary\n").unwrap();
    fs::write(&files[1], "hello from bunny\n").unwrap();
    fs::write(&files[2], "").unwrap();
    fs::set_permissions(&files[0], fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(&files[1], fs::Permissions::from_mode(0o640)).unwrap();
    let mut tree = Tree::new();
    tree.add_from_context(&ctx, ".", "/").unwrap();
    tree.insert_symlink("/bin/sh", "app").unwrap();
    tree.insert_dir("/tmp", 0o1777).unwrap();
    Fixture {
        _dir: dir,
        files,
        tree,
    }
}

fn build(tree: &Tree, gzip: bool) -> (Vec<u8>, u64) {
    let mut out = Vec::new();
    let n = write_initrd(tree, &mut out, &InitrdOptions { mtime: MTIME, gzip }).unwrap();
    (out, n)
}

fn cpio_list(archive: &[u8]) -> String {
    let mut child = Command::new(need("cpio", "cpio"))
        .args(["-itvn", "--quiet"])
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(archive).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cpio -it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn gnu_cpio_lists_names_modes_owners_and_mtimes() {
    let f = fixture();
    let (archive, n) = build(&f.tree, false);
    assert_eq!(n, archive.len() as u64);
    assert_eq!(archive.len() % 512, 0, "initrd must be padded to 512 bytes");
    let listing = cpio_list(&archive);
    let rows: Vec<Vec<&str>> = listing
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    // mode, nlink, uid, gid, size, month, day, year, name [-> target]
    let want = [
        ("drwxr-xr-x", "2", "0", "bin"),
        ("-rwsr-xr-x", "1", "20", "bin/app"),
        ("lrwxrwxrwx", "1", "3", "bin/sh"),
        ("drwxr-xr-x", "3", "0", "etc"),
        ("-rw-r-----", "1", "17", "etc/motd"),
        ("drwxr-xr-x", "2", "0", "etc/sub"),
        ("-rw-r--r--", "1", "0", "etc/sub/empty"),
        ("drwxrwxrwt", "2", "0", "tmp"),
    ];
    assert_eq!(rows.len(), want.len(), "{listing}");
    for (row, (mode, nlink, size, name)) in rows.iter().zip(want) {
        assert_eq!(row[0], mode, "{listing}");
        assert_eq!(row[1], nlink, "{listing}");
        assert_eq!((row[2], row[3]), ("0", "0"), "owner of {name}");
        assert_eq!(row[4], size, "{listing}");
        assert_eq!(&row[5..8], ["Sep", "9", "2001"], "mtime of {name}");
        assert_eq!(row[8], name);
    }
    assert_eq!(rows[2][9..], ["->", "app"]);

    // The contents survive extraction.
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(need("cpio", "cpio"))
        .args(["-idm", "--quiet", "--no-absolute-filenames"])
        .current_dir(out.path())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&archive).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        fs::read_to_string(out.path().join("etc/motd")).unwrap(),
        "hello from bunny\n"
    );
}

#[test]
fn byte_identical_across_runs_with_different_disk_mtimes() {
    let f = fixture();
    let (first, _) = build(&f.tree, false);
    let (first_gz, _) = build(&f.tree, true);
    for (i, path) in f.files.iter().enumerate() {
        let file = File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(12345 + i as u64))
            .unwrap();
    }
    let (second, _) = build(&f.tree, false);
    let (second_gz, _) = build(&f.tree, true);
    assert!(first == second, "uncompressed initrd differs between runs");
    assert!(first_gz == second_gz, "gzip initrd differs between runs");
    // And it really carries the fixed mtime, not the files' own.
    let listing = cpio_list(&second);
    let motd = listing.lines().find(|l| l.ends_with(" etc/motd")).unwrap();
    assert!(motd.contains(" Sep  9  2001 "), "{motd}");
}

#[test]
fn gzip_variant_decompresses_to_the_same_archive() {
    let f = fixture();
    let (plain, _) = build(&f.tree, false);
    let (gz, n) = build(&f.tree, true);
    assert_eq!(n, gz.len() as u64);
    assert_eq!(gz.len() % 512, 0);
    assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
    // Header: no name flag, mtime 0.
    assert_eq!(gz[3], 0, "gzip flags");
    assert_eq!(&gz[4..8], &[0, 0, 0, 0], "gzip mtime");

    let mut inner = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut inner)
        .unwrap();
    assert!(plain.starts_with(&inner));
    assert!(plain[inner.len()..].iter().all(|b| *b == 0));
    assert!(cpio_list(&inner).contains("etc/motd"));

    // GNU gzip agrees (the zero padding after the stream is tolerated).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("initrd.gz");
    fs::write(&file, &gz[..]).unwrap();
    let out = Command::new(need("gzip", "gzip"))
        .arg("-dc")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.stdout,
        inner,
        "gzip -dc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn file_of_4_gib_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.img");
    File::create(&big).unwrap().set_len(4 << 30).unwrap(); // sparse
    let mut tree = Tree::new();
    tree.insert_file("/data/big.img", &big, 0o644).unwrap();
    let mut out = Vec::new();
    let err = write_initrd(&tree, &mut out, &InitrdOptions::default()).unwrap_err();
    assert!(matches!(err, LayerError::FileTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("data/big.img"), "{err}");
    assert!(out.is_empty(), "nothing may be written for a rejected tree");
}

#[test]
fn file_changed_since_added_is_an_error() {
    let f = fixture();
    fs::write(&f.files[1], "grown much larger than before\n").unwrap();
    let err = write_initrd(&f.tree, std::io::sink(), &InitrdOptions::default()).unwrap_err();
    assert!(matches!(err, LayerError::FileChanged { .. }), "{err}");
    assert!(err.to_string().contains("motd"), "{err}");
}

#[test]
fn empty_tree_is_a_padded_trailer() {
    let (archive, _) = build(&Tree::new(), false);
    assert_eq!(archive.len(), 512);
    assert!(String::from_utf8_lossy(&archive).contains("TRAILER!!!"));
    assert_eq!(cpio_list(&archive), "");
}
