//! `bunny run` boots examples/hello-linux under qemu (TCG here), forwards a
//! port to its httpd, passes env and args, and cleans up with --rm.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::guest::{free_port, http_at, http_get, Guest};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn build_example(root: &Path, tag: &str) {
    let ctx = repo().join("examples/hello-linux");
    assert!(
        ctx.join("vmlinuz").exists(),
        "examples/hello-linux/vmlinuz is missing: run `bash scripts/setup.sh` first"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .args([
            "--root",
            root.to_str().unwrap(),
            "build",
            "--progress=quiet",
            "-t",
            tag,
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn runs_left(root: &Path) -> usize {
    std::fs::read_dir(root.join("runs"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn serves_http_on_a_published_port_and_exits_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    build_example(&root, "hello:test");
    let port = free_port();
    let port6 = std::net::TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = tmp.path().join("console.log");
    // IPv6, as Docker takes it; qemu's own forwards are IPv4 only.
    let mut guest = Guest::run(
        &root,
        &[
            "--accel",
            "auto",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "-p",
            &format!("[::1]:{port6}:80"),
            "hello:test",
        ],
        &log,
    );
    let (page, _) = guest.wait_http(port, Duration::from_secs(90));
    assert!(
        page.contains("hello-linux: a Debian kernel and busybox"),
        "{page}"
    );
    let page6 = http_at((std::net::Ipv6Addr::LOCALHOST, port6).into(), "/")
        .expect("no answer on the IPv6 publication");
    assert!(
        page6.contains("200 OK") && page6.contains("hello-linux"),
        "{page6}"
    );

    // Stopping httpd makes the init power the guest off.
    let _ = http_get(port, "/cgi-bin/stop");
    let (status, err) = guest.wait_exit(Duration::from_secs(30));
    let console = guest.console();
    assert!(
        status.success(),
        "exit {status}; stderr: {err}\nconsole: {console}"
    );
    assert!(
        console.contains("eth0 10.0.2.15/255.255.255.0 gw 10.0.2.2"),
        "{console}"
    );
    assert!(
        console.contains("GREETING=hello"),
        "the image's Env reaches the guest: {console}"
    );
    assert!(
        err.contains("TCG") || err.contains("KVM"),
        "the accel choice is announced: {err}"
    );
    assert_eq!(runs_left(&root), 0, "--rm leaves nothing behind");
}

#[test]
fn env_and_args_from_the_command_line_reach_the_guest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    build_example(&root, "hello:test");
    let out = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .args(["--root", root.to_str().unwrap(), "run", "--accel", "tcg"])
        .args(["-e", "GREETING=from-cli", "hello:test", "once"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}\n{console}");
    assert!(
        console.contains("args [once] GREETING=from-cli"),
        "{console}"
    );
    assert!(console.contains("hello-linux: done"), "{console}");
    // Without --rm the run's files stay, as docker keeps stopped containers.
    assert_eq!(runs_left(&root), 1);
    assert!(err.contains("kept in"), "{err}");
    // The kernel and initrd are used in place from one unpacked copy of the
    // image, not copied per run.
    let run = std::fs::read_dir(root.join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(
        !run.join("rootfs").exists(),
        "the run made its own copy of the image"
    );
    let cached: Vec<_> = std::fs::read_dir(root.join("rootfs")).unwrap().collect();
    assert_eq!(cached.len(), 1, "one unpacked image");
    let second = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .args([
            "--root",
            root.to_str().unwrap(),
            "run",
            "--rm",
            "--accel",
            "tcg",
            "hello:test",
            "once",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(second.status.success());
    assert_eq!(
        std::fs::read_dir(root.join("rootfs")).unwrap().count(),
        1,
        "unpacked once"
    );
}

#[test]
fn a_missing_image_says_how_to_get_one() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .args(["--root", tmp.path().to_str().unwrap(), "run", "nosuch:1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("nosuch:1") && err.contains("bunny build"),
        "{err}"
    );
}

#[test]
fn the_guest_exit_status_becomes_bunnys() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    build_example(&root, "hello:test");
    for code in [0, 7] {
        let out = Command::new(env!("CARGO_BIN_EXE_bunny"))
            .args([
                "--root",
                root.to_str().unwrap(),
                "run",
                "--rm",
                "--accel",
                "tcg",
            ])
            .args(["hello:test", "once", &code.to_string()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // 64 MiB cannot hold the kernel and the initrd: the guest resets
    // before its init runs, which is a failure, never the 0 qemu returns.
    let out = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .args(["--root", root.to_str().unwrap(), "run", "--rm"])
        .args(["--accel", "tcg", "--memory", "64", "hello:test", "once"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(!console.contains("init up"), "the guest booted:\n{console}");
    assert_eq!(
        out.status.code(),
        Some(bunny_runtime::GUEST_CRASHED),
        "{}\n{console}",
        String::from_utf8_lossy(&out.stderr)
    );
}
