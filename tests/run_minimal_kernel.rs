//! The minimal kernel scripts/setup.sh builds from tinyconfig and
//! kernels/linux-minimal.config boots hello-linux's busybox initrd under
//! qemu, brings eth0 up and serves HTTP through `bunny run -p`, with its
//! virtio drivers built in: the initrd carries no module and the kernel
//! could not load one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn http_get(port: u16, path: &str) -> Option<String> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.starts_with("HTTP/1.").then_some(body)
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

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = tmp.path().join("console.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .args([
            "--root",
            root.to_str().unwrap(),
            "run",
            "--rm",
            "--accel",
            "tcg",
        ])
        .args(["-p", &format!("127.0.0.1:{port}:80"), "hello-minimal:test"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let page = loop {
        if let Some(p) = http_get(port, "/") {
            if p.contains("200 OK") {
                break p;
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "bunny run exited early ({st}): {}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        if t0.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no HTTP answer in 90 s; console:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(page.contains("hello-linux"), "{page}");

    let _ = http_get(port, "/cgi-bin/stop");
    let t1 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t1.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the guest did not power off: {}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let console = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "exit {status}; stderr: {err}\n{console}");
    // The kernel's own `ip=` autoconfiguration ran (the init sets the same
    // address again with ifconfig, which would hide a kernel without it).
    assert!(console.contains("IP-Config: Complete"), "{console}");
    assert!(
        console.contains("eth0 10.0.2.15/255.255.255.0 gw 10.0.2.2"),
        "{console}"
    );
}
