//! examples/hello-linux end to end: `bunny build` with the real Debian kernel
//! and busybox, read back with skopeo and umoci, booted under qemu (TCG).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::ok;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example() -> PathBuf {
    let dir = repo().join("examples/hello-linux");
    for need in [
        "vmlinuz",
        "rootfs/bin/busybox",
        "rootfs/lib/modules/virtio_net.ko",
    ] {
        assert!(
            dir.join(need).exists(),
            "examples/hello-linux/{need} is missing: run `bash scripts/setup.sh` first"
        );
    }
    dir
}

fn need_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed: apt-get install {package} (scripts/setup.sh does)"
    );
}

fn bunny(root: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = common::bunny(root);
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("running bunny")
}

fn build(root: &Path, context: &Path, extra: &[&str], envs: &[(&str, &str)]) -> String {
    let file = context.join("BunnyFile");
    let mut args = vec![
        "build",
        "--progress=plain",
        "-f",
        file.to_str().unwrap(),
        "-t",
        "hello-linux:test",
    ];
    args.extend_from_slice(extra);
    args.push(context.to_str().unwrap());
    let stdout = ok(bunny(root, &args, envs), "bunny build");
    let digest = stdout.trim().lines().last().unwrap_or("").to_string();
    assert!(
        digest.starts_with("sha256:"),
        "bunny build printed `{stdout}`"
    );
    digest
}

fn json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().expect("running a tool");
    let text = ok(out, &format!("{cmd:?}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{cmd:?} gave no JSON ({e}): {text}"))
}

#[test]
fn hello_linux_builds_reads_back_and_boots() {
    need_tool("skopeo", "skopeo");
    need_tool("umoci", "umoci");
    need_tool("qemu-system-x86_64", "qemu-system-x86");
    let ctx = example();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let layout = tmp.path().join("oci");
    let dest = format!("type=oci,dest={}", layout.display());
    let digest = build(&root, &ctx, &["--output", &dest], &[]);

    // The manifest, as skopeo reads it.
    let oci_ref = format!("oci:{}:test", layout.display());
    let manifest = json(Command::new("skopeo").args(["inspect", "--raw", &oci_ref]));
    let ann = &manifest["annotations"];
    assert_eq!(ann["com.urunc.unikernel.unikernelType"], "linux");
    assert_eq!(ann["com.urunc.unikernel.hypervisor"], "qemu");
    assert_eq!(ann["com.urunc.unikernel.binary"], "/.boot/kernel");
    assert_eq!(ann["com.urunc.unikernel.initrd"], "/.boot/rootfs");
    // Go bunny's rule: cmdline is `cmd` joined; this file has only an
    // entrypoint, which urunc passes as the process's arguments.
    assert!(ann.get("com.urunc.unikernel.cmdline").is_none());
    assert_eq!(ann["com.urunc.unikernel.mountRootfs"], "false");
    assert!(ann.get("com.urunc.unikernel.useDMBlock").is_none());
    assert!(ann.get("com.urunc.unikernel.block").is_none());

    // The config: labels, Cmd and Env.
    let config = json(Command::new("skopeo").args(["inspect", "--config", "--raw", &oci_ref]));
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    let cfg = &config["config"];
    assert_eq!(cfg["Labels"]["com.urunc.unikernel.unikernelType"], "linux");
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/init"]));
    assert!(cfg["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "GREETING=hello"));

    // The store holds the same image under the tag.
    let store_ref = format!("oci:{}:hello-linux:test", root.display());
    let via_store = Command::new("skopeo")
        .args(["inspect", "--raw", &store_ref])
        .output()
        .unwrap();
    let via_store = ok(via_store, "skopeo inspect of the store");
    let sha = format!(
        "sha256:{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(via_store.as_bytes())
    );
    assert_eq!(sha, digest, "the store's manifest is the one bunny printed");

    // Unpacked by umoci: the files urunc reads.
    let bundle = tmp.path().join("bundle");
    ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:test", layout.display()))
            .arg(&bundle)
            .output()
            .unwrap(),
        "umoci unpack",
    );
    let rootfs = bundle.join("rootfs");
    let kernel = rootfs.join(".boot/kernel");
    assert_eq!(
        std::fs::read(&kernel).unwrap(),
        std::fs::read(ctx.join("vmlinuz")).unwrap(),
        "the kernel is carried unchanged"
    );
    let initrd = rootfs.join(".boot/rootfs");
    let initrd_len = std::fs::metadata(&initrd).unwrap().len();
    assert_eq!(
        initrd_len % 512,
        0,
        "the initrd is padded for urunc's appended cpio"
    );
    let uj: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(rootfs.join("urunc.json")).unwrap()).unwrap();
    let decode = |k: &str| {
        let v = uj
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("{k} missing in urunc.json"));
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v).unwrap()).unwrap()
    };
    assert_eq!(decode("com.urunc.unikernel.unikernelType"), "linux");
    assert_eq!(decode("com.urunc.unikernel.binary"), "/.boot/kernel");
    assert_eq!(decode("com.urunc.unikernel.initrd"), "/.boot/rootfs");

    // Boot what urunc would boot: the kernel and initrd from the image.
    let console = boot(
        &kernel,
        &initrd,
        "console=ttyS0 panic=-1 quiet rdinit=/init GREETING=hey -- once",
    );
    assert!(
        console.contains("hello-linux: init up"),
        "console:\n{console}"
    );
    assert!(
        console.contains("hello-linux: args [once] GREETING=hey"),
        "console:\n{console}"
    );
    assert!(console.contains("hello-linux: done"), "console:\n{console}");
}

/// Boots under qemu TCG until the guest powers off (or 90 s pass).
fn boot(kernel: &Path, initrd: &Path, append: &str) -> String {
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "256",
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
        ])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting qemu");
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {from:?} {to:?}");
}

#[test]
fn same_inputs_give_the_same_digest_on_any_day() {
    let ctx = example();
    let tmp = tempfile::tempdir().unwrap();
    let c1 = tmp.path().join("ctx");
    copy_tree(&ctx, &c1);
    let d1 = build(&tmp.path().join("s1"), &c1, &[], &[]);

    // Same bytes, new mtimes, a new store, a later clock.
    std::thread::sleep(Duration::from_millis(1100));
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("find {} -exec touch -h {{}} +", c1.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let d2 = build(&tmp.path().join("s2"), &c1, &[], &[]);
    assert_eq!(d1, d2, "touching the inputs must not change the image");

    // SOURCE_DATE_EPOCH is the only clock the image sees.
    let d3 = build(
        &tmp.path().join("s3"),
        &c1,
        &[],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    assert_ne!(
        d1, d3,
        "SOURCE_DATE_EPOCH must reach the image's timestamps"
    );
    let d4 = build(
        &tmp.path().join("s4"),
        &c1,
        &[],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    assert_eq!(d3, d4);
}

fn write_bunnyfile(dir: &Path, include: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("vmlinuz"), b"not really a kernel").unwrap();
    let text = format!(
        "version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\nkernel:\n  from: local\n  path: vmlinuz\nrootfs:\n  type: initrd\n  include:\n    - \"{include}\"\n"
    );
    let f = dir.join("BunnyFile");
    std::fs::write(&f, text).unwrap();
    f
}

#[test]
fn hostile_include_paths_are_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("secret"), b"outside the context").unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::os::unix::fs::symlink("/etc", ctx.join("etc-link")).unwrap();
    std::os::unix::fs::symlink("../secret", ctx.join("secret-link")).unwrap();
    for (include, needle) in [
        ("../secret:/secret", "../secret"),
        ("/etc/passwd:/passwd", "/etc/passwd"),
        ("etc-link:/etc", "etc-link"),
        ("secret-link:/s", "secret-link"),
    ] {
        let f = write_bunnyfile(&ctx, include);
        let root = tmp
            .path()
            .join(format!("store-{}", needle.replace('/', "_")));
        let out = bunny(
            &root,
            &[
                "build",
                "--progress=plain",
                "-f",
                f.to_str().unwrap(),
                "-t",
                "x",
                ctx.to_str().unwrap(),
            ],
            &[],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "include `{include}` was accepted:\n{err}"
        );
        assert!(
            err.contains(needle),
            "the error for `{include}` must name it:\n{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        let tagged = root.join("index.json");
        if tagged.exists() {
            let idx = std::fs::read_to_string(&tagged).unwrap();
            assert!(
                !idx.contains("x:latest"),
                "a refused build must not tag an image: {idx}"
            );
        }
    }
}

#[test]
fn check_accepts_the_example_and_rejects_a_typo_with_its_position() {
    let ctx = repo().join("examples/hello-linux");
    let tmp = tempfile::tempdir().unwrap();
    let out = bunny(
        tmp.path(),
        &[
            "build",
            "--check",
            "-f",
            ctx.join("BunnyFile").to_str().unwrap(),
        ],
        &[],
    );
    ok(out, "bunny build --check on the example");

    let bad = tmp.path().join("BunnyFile");
    std::fs::write(
        &bad,
        "version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\nkernel:\n  from: local\n  path: vmlinuz\nrootfs:\n  inclde:\n    - a:/a\n",
    )
    .unwrap();
    let out = bunny(
        tmp.path(),
        &["build", "--check", "-f", bad.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:9:3", bad.display())), "{err}");
    assert!(err.contains("include"), "the fix must be suggested: {err}");
}
