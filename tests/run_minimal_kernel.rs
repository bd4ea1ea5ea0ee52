//! The minimal kernel scripts/setup.sh builds from tinyconfig and
//! kernels/linux-minimal.config boots hello-linux's busybox initrd under
//! qemu, brings eth0 up and serves HTTP through `bunny run -p`, with its
//! virtio drivers built in: the initrd carries no module and the kernel
//! could not load one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::guest::{free_port, http_get, Guest};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn minimal_kernel() -> PathBuf {
    let dir = std::env::var_os("BUNNY_MINIMAL_KERNEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/minimal-kernel"));
    assert!(
        dir.join("bzImage").is_file() && dir.join("config").is_file(),
        "no minimal kernel at {}: run `bash scripts/setup.sh` (scripts/minimal-kernel.sh) first",
        dir.display()
    );
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// hello-linux's context with the minimal kernel in place of Debian's and
/// an empty /lib (no modules).
fn context(dir: &Path, kernel: &Path) {
    let ex = repo().join("examples/hello-linux");
    assert!(
        ex.join("rootfs/bin/busybox").is_file(),
        "examples/hello-linux/rootfs/bin/busybox is missing: run `bash scripts/setup.sh` first"
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(ex.join("BunnyFile"), dir.join("BunnyFile")).unwrap();
    std::fs::copy(kernel.join("bzImage"), dir.join("vmlinuz")).unwrap();
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("lib")).unwrap();
    std::fs::copy(ex.join("rootfs/init"), rootfs.join("init")).unwrap();
    std::fs::copy(ex.join("rootfs/bin/busybox"), rootfs.join("bin/busybox")).unwrap();
    copy_tree(&ex.join("rootfs/www"), &rootfs.join("www"));
}

#[test]
fn the_resolved_config_has_the_fragment_and_no_modules() {
    let kernel = minimal_kernel();
    let config = std::fs::read_to_string(kernel.join("config")).unwrap();
    let fragment = std::fs::read_to_string(repo().join("kernels/linux-minimal.config")).unwrap();
    for line in fragment.lines() {
        if line.starts_with("CONFIG_") {
            assert!(
                config.lines().any(|l| l == line),
                "{line} is not in the built kernel's config"
            );
        }
    }
    assert!(config.lines().any(|l| l == "# CONFIG_MODULES is not set"));
    // The point of the exercise: a fraction of Debian's 8.2 MB kernel.
    let size = std::fs::metadata(kernel.join("bzImage")).unwrap().len();
    assert!(size < 3_000_000, "bzImage is {size} bytes");
}

#[test]
fn boots_hello_linux_and_serves_http_with_built_in_virtio() {
    let kernel = minimal_kernel();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    context(&ctx, &kernel);
    let root = tmp.path().join("store");
    let out = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .args([
            "--root",
            root.to_str().unwrap(),
            "build",
            "--progress=quiet",
        ])
        .args(["-t", "hello-minimal:test"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let port = free_port();
    let log = tmp.path().join("console.log");
    let mut guest = Guest::run(
        &root,
        &[
            "--accel",
            "tcg",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "hello-minimal:test",
        ],
        &log,
    );
    let (page, _) = guest.wait_http(port, Duration::from_secs(90));
    assert!(page.contains("hello-linux"), "{page}");

    let _ = http_get(port, "/cgi-bin/stop");
    let (status, err) = guest.wait_exit(Duration::from_secs(30));
    let console = guest.console();
    assert!(status.success(), "exit {status}; stderr: {err}\n{console}");
    // The kernel's own `ip=` autoconfiguration ran (the init sets the same
    // address again with ifconfig, which would hide a kernel without it).
    assert!(console.contains("IP-Config: Complete"), "{console}");
    assert!(
        console.contains("eth0 10.0.2.15/255.255.255.0 gw 10.0.2.2"),
        "{console}"
    );
}
