//! Every rootfs type through `bunny build`: the annotations urunc reads, and
//! the rootfs file itself checked with the real tools (e2fsck, debugfs, the
//! UFS2 superblock), plus `bunny build --check` on the Go bunny's files.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{bunny_output, ok};
use serde_json::Value;

/// A context with a stand-in kernel (bytes are packaged, never booted here)
/// and some data files.
fn context(dir: &Path, bunnyfile: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("data/sub")).unwrap();
    std::fs::write(dir.join("kernel.bin"), vec![0x5au8; 100_000]).unwrap();
    std::fs::write(dir.join("data/index.html"), b"<h1>hi</h1>\n").unwrap();
    std::fs::write(dir.join("data/sub/conf"), b"listen 80;\n").unwrap();
    std::fs::write(dir.join("BunnyFile"), bunnyfile).unwrap();
    dir.to_path_buf()
}

struct Built {
    inspect: Value,
    local: PathBuf,
}

fn build(tmp: &Path, name: &str, bunnyfile: &str) -> Built {
    let ctx = context(&tmp.join(name), bunnyfile);
    let root = tmp.join(format!("{name}-store"));
    let local = tmp.join(format!("{name}-fs"));
    let out = bunny_output(
        &root,
        &[
            "build",
            "--progress=plain",
            "-t",
            name,
            "-o",
            &format!("type=local,dest={}", local.display()),
            ctx.to_str().unwrap(),
        ],
    );
    ok(out, &format!("bunny build of {name}"));
    let text = ok(
        bunny_output(&root, &["inspect", "--json", name]),
        "bunny inspect --json",
    );
    Built {
        inspect: serde_json::from_str(&text).unwrap(),
        local,
    }
}

fn key<'a>(b: &'a Built, k: &str) -> Option<&'a str> {
    b.inspect["annotations"][format!("com.urunc.unikernel.{k}")].as_str()
}

fn tool_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run scripts/setup.sh)"));
    ok(out, &format!("{cmd:?}"))
}

const HEAD: &str = "version: v0.1\nkernel:\n  from: local\n  path: kernel.bin\n";

#[test]
fn linux_block_is_ext4_mounted_as_root() {
    let tmp = tempfile::tempdir().unwrap();
    let b = build(
        tmp.path(),
        "lxblock",
        &format!("{HEAD}platforms:\n  framework: linux\n  monitor: qemu\nrootfs:\n  type: block\n  include:\n    - data:/srv\ncmd: [\"/bin/app\", \"--port\", \"80\"]\n"),
    );
    assert_eq!(key(&b, "block"), Some("/.boot/rootfs"));
    assert_eq!(key(&b, "blkMntPoint"), Some("/"));
    assert_eq!(key(&b, "initrd"), None);
    assert_eq!(key(&b, "cmdline"), Some("/bin/app --port 80"));
    assert_eq!(b.inspect["layers"][1]["role"], "rootfs (block)");
    let img = b.local.join(".boot/rootfs");
    tool_ok(Command::new("e2fsck").arg("-fn").arg(&img));
    let fs = tool_ok(Command::new("dumpe2fs").arg("-h").arg(&img));
    assert!(
        fs.contains("has_journal"),
        "linux gets ext4 (journal):\n{fs}"
    );
    let conf = tool_ok(
        Command::new("debugfs")
            .args(["-R", "cat /srv/sub/conf"])
            .arg(&img),
    );
    assert_eq!(conf, "listen 80;\n");
    assert_eq!(
        std::fs::read(b.local.join(".boot/kernel")).unwrap().len(),
        100_000
    );
}

#[test]
fn rumprun_block_is_ext2_mounted_at_data() {
    let tmp = tempfile::tempdir().unwrap();
    let b = build(
        tmp.path(),
        "rrblock",
        &format!("{HEAD}platforms:\n  framework: rumprun\n  monitor: hvt\nrootfs:\n  type: block\n  include:\n    - data:/\ncmdline: nginx -c /data/sub/conf\n"),
    );
    assert_eq!(key(&b, "unikernelType"), Some("rumprun"));
    assert_eq!(key(&b, "hypervisor"), Some("hvt"));
    assert_eq!(key(&b, "block"), Some("/.boot/rootfs"));
    assert_eq!(key(&b, "blkMntPoint"), Some("/data"));
    assert_eq!(key(&b, "cmdline"), Some("nginx -c /data/sub/conf"));
    let img = b.local.join(".boot/rootfs");
    tool_ok(Command::new("e2fsck").arg("-fn").arg(&img));
    let fs = tool_ok(Command::new("dumpe2fs").arg("-h").arg(&img));
    assert!(
        !fs.contains("has_journal"),
        "rumprun gets plain ext2:\n{fs}"
    );
    let html = tool_ok(
        Command::new("debugfs")
            .args(["-R", "cat /index.html"])
            .arg(&img),
    );
    assert_eq!(html, "<h1>hi</h1>\n");
}

#[test]
fn freebsd_block_is_ufs2() {
    let tmp = tempfile::tempdir().unwrap();
    let b = build(
        tmp.path(),
        "fbblock",
        &format!("{HEAD}platforms:\n  framework: freebsd\n  monitor: firecracker\nrootfs:\n  type: block\n  include:\n    - data:/www\n"),
    );
    assert_eq!(key(&b, "unikernelType"), Some("freebsd"));
    assert_eq!(key(&b, "blkMntPoint"), Some("/"));
    let img = b.local.join(".boot/rootfs");
    let sb = bunny::layers::ufs::read_superblock(&img).expect("a UFS2 superblock");
    common::ufs::check_image(&img);
    // What FreeBSD needs in any root, though the BunnyFile only brought /www:
    // /dev for devfs (and so init's console), /tmp and /var.
    let root = common::ufs::root_entries(&img);
    assert_eq!(root.get("dev"), Some(&0o040555), "{root:?}");
    assert_eq!(root.get("tmp"), Some(&0o041777), "{root:?}");
    assert_eq!(root.get("var"), Some(&0o040755), "{root:?}");
    assert!(root.contains_key("www"), "{root:?}");
    // The magic read straight off the disk, independent of bunny's reader.
    let bytes = std::fs::read(&img).unwrap();
    let at = sb.location as usize + 1372;
    let magic = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(
        magic, 0x1954_0119,
        "UFS2 magic at superblock {}",
        sb.location
    );
}

#[test]
fn raw_rootfs_goes_into_the_image_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let b = build(
        tmp.path(),
        "lxraw",
        &format!("{HEAD}platforms:\n  framework: linux\n  monitor: qemu\nrootfs:\n  type: raw\n  include:\n    - data:/srv\n"),
    );
    assert_eq!(key(&b, "mountRootfs"), Some("true"));
    let roles: Vec<&str> = b.inspect["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["kernel", "rootfs files", "urunc.json"]);
    assert_eq!(key(&b, "useDMBlock"), None, "Go bunny never writes it");
    assert_eq!(key(&b, "block"), None);
    assert_eq!(key(&b, "initrd"), None);
    assert!(!b.local.join(".boot/rootfs").exists());
    assert_eq!(
        std::fs::read_to_string(b.local.join("srv/sub/conf")).unwrap(),
        "listen 80;\n"
    );
}

/// `bunny inspect NAME | head` closes the pipe before bunny writes: that is
/// the end of the output, not a panic and not a failure.
#[test]
fn inspect_into_a_closed_pipe_is_quiet_and_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    build(
        tmp.path(),
        "lxpipe",
        &format!("{HEAD}platforms:\n  framework: linux\n  monitor: qemu\nrootfs:\n  type: raw\n  include:\n    - data:/srv\n"),
    );
    // Every verb that prints goes through the same writer: a few of them.
    for args in [&["inspect", "lxpipe"][..], &["images"], &["--version"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = common::bunny(&tmp.path().join("lxpipe-store"))
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {}: {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn prebuilt_local_rootfs_is_carried_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("pre");
    std::fs::create_dir_all(&ctx).unwrap();
    let blob: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(ctx.join("my.img"), &blob).unwrap();
    let b = build(
        tmp.path(),
        "pre",
        &format!("{HEAD}platforms:\n  framework: rumprun\n  monitor: spt\nrootfs:\n  from: local\n  path: my.img\n  type: block\n"),
    );
    assert_eq!(key(&b, "block"), Some("/.boot/rootfs"));
    assert_eq!(std::fs::read(b.local.join(".boot/rootfs")).unwrap(), blob);
}

#[test]
fn check_accepts_every_go_bunny_file() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bunnyfiles/go-bunny");
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("bunnyfile") {
            continue;
        }
        ok(
            bunny_output(tmp.path(), &["build", "--check", "-f", p.to_str().unwrap()]),
            &format!("--check {}", p.display()),
        );
        n += 1;
    }
    assert!(n >= 6, "only {n} Go bunny files found");
}

#[test]
fn check_rejects_every_broken_file_with_a_position() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bunnyfiles/broken");
    let tmp = tempfile::tempdir().unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("bunnyfile") {
            continue;
        }
        let out = bunny_output(tmp.path(), &["build", "--check", "-f", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        // `bunny build` reads this one as a Containerfile (the
        // BunnyFile parser still refuses it, see bunnyfile_broken.rs).
        if p.file_stem().and_then(|s| s.to_str()) == Some("containerfile") {
            assert!(out.status.success(), "{}: {err}", p.display());
            continue;
        }
        assert_eq!(out.status.code(), Some(1), "{}: {err}", p.display());
        let prefix = format!("{}:", p.display());
        let line = err
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no position in: {err}"));
        let rest = &line[prefix.len()..];
        let mut parts = rest.splitn(3, ':');
        let l: usize = parts
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{line}"));
        let c: usize = parts
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{line}"));
        assert!(l >= 1 && c >= 1, "{line}");
        assert!(
            err.contains("help:"),
            "every error says what to write instead: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        n += 1;
    }
    assert!(n >= 15, "only {n} broken files found");
}

#[test]
fn store_verify_finds_a_damaged_blob() {
    let tmp = tempfile::tempdir().unwrap();
    build(
        tmp.path(),
        "vfy",
        &format!("{HEAD}platforms:\n  framework: linux\n  monitor: qemu\nrootfs:\n  include:\n    - data:/srv\n"),
    );
    let root = tmp.path().join("vfy-store");
    ok(
        bunny_output(&root, &["store", "verify"]),
        "store verify on a fresh store",
    );
    let blobs = root.join("blobs/sha256");
    let victim = std::fs::read_dir(&blobs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let out = bunny_output(&root, &["store", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let name = victim.file_name().unwrap().to_string_lossy().to_string();
    assert!(text.contains(&name) && text.contains("corrupt"), "{text}");
}

/// The rows of the `Sizes (bytes):` table in `text`: role, compressed,
/// uncompressed.
fn size_rows(text: &str) -> Vec<(String, u64, u64)> {
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "Sizes (bytes):")
        .skip(2)
        .take_while(|l| l.starts_with("  "))
        .collect();
    table
        .iter()
        .map(|l| {
            // Roles may hold a space (`rootfs (initrd)`): numbers are read
            // from the columns after it.
            let cols: Vec<&str> = l.split_whitespace().collect();
            let (role_end, nums) = if cols[0] == "total" {
                (1, &cols[1..3])
            } else {
                let n = cols.len();
                (n - 3, &cols[n - 3..n - 1])
            };
            (
                cols[..role_end].join(" "),
                nums[0].parse().unwrap(),
                nums[1].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn build_prints_and_inspect_shows_each_layers_size() {
    let tmp = tempfile::tempdir().unwrap();
    let bunnyfile = format!("{HEAD}platforms:\n  framework: linux\n  monitor: qemu\nrootfs:\n  type: initrd\n  include:\n    - data:/srv\ncmd: [\"/bin/app\"]\n");
    let ctx = context(&tmp.path().join("ctx"), &bunnyfile);
    let mut tables = Vec::new();
    for run in ["a", "b"] {
        let root = tmp.path().join(format!("store-{run}"));
        let out = bunny_output(
            &root,
            &[
                "build",
                "--progress=plain",
                "-t",
                "sized",
                ctx.to_str().unwrap(),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        ok(out, "bunny build");
        let printed = size_rows(&stderr);
        let shown = size_rows(&ok(
            bunny_output(&root, &["inspect", "sized"]),
            "bunny inspect",
        ));
        assert_eq!(printed, shown, "build and inspect agree:\n{stderr}");
        let roles: Vec<&str> = printed.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(roles, ["kernel", "rootfs (initrd)", "urunc.json", "total"]);

        // Each number checked against the blob itself: the manifest's size,
        // and the tar the blob decompresses to.
        let json: Value = serde_json::from_str(&ok(
            bunny_output(&root, &["inspect", "--json", "sized"]),
            "bunny inspect --json",
        ))
        .unwrap();
        let layers = json["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 3);
        let (mut packed, mut unpacked) = (0, 0);
        for (layer, row) in layers.iter().zip(&printed) {
            assert_eq!(layer["role"], row.0.as_str());
            let digest = layer["digest"].as_str().unwrap();
            let blob = root.join("blobs/sha256").join(&digest["sha256:".len()..]);
            assert_eq!(std::fs::metadata(&blob).unwrap().len(), row.1);
            let tar = if layer["media_type"].as_str().unwrap().ends_with("+gzip") {
                Command::new("gzip")
                    .arg("-dc")
                    .arg(&blob)
                    .output()
                    .unwrap()
                    .stdout
            } else {
                std::fs::read(&blob).unwrap()
            };
            assert_eq!(tar.len() as u64, row.2, "{}", row.0);
            assert_eq!(layer["uncompressed_size"], row.2);
            packed += row.1;
            unpacked += row.2;
        }
        assert_eq!(printed[3], ("total".to_string(), packed, unpacked));
        // The kernel's tar holds the 100 000-byte stand-in kernel.
        assert!(printed[0].2 > 100_000);
        tables.push(printed);
    }
    assert_eq!(tables[0], tables[1], "the same inputs give the same table");

    // Quiet builds print nothing but the digest.
    let root = tmp.path().join("store-q");
    let out = bunny_output(
        &root,
        &[
            "build",
            "--progress=quiet",
            "-t",
            "sized",
            ctx.to_str().unwrap(),
        ],
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
