//! Boots a Debian kernel under qemu (TCG) with an initrd written by bunny,
//! followed by a second cpio archive made by GNU cpio — the way urunc
//! appends its urunit config. Both must be visible to /init.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bunny::layers::{write_initrd, InitrdOptions, Tree};

/// Only a hang guard: two TCG boots run at once here, and on a loaded
/// 2-core machine each can take minutes.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

fn need(tool: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("`{tool}` is missing: install the Debian package `{package}` (scripts/setup.sh)");
}

fn kernel() -> PathBuf {
    let path = match std::env::var_os("BUNNY_TEST_KERNEL") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/linux-kernel/vmlinuz"),
    };
    assert!(
        path.is_file(),
        "no kernel at {}: run scripts/setup.sh (or set BUNNY_TEST_KERNEL)",
        path.display()
    );
    path
}

/// A busybox rootfs whose /init prints `marker` and the contents of
/// /second.txt, which only the appended archive provides.
fn busybox_tree(dir: &Path, marker: &str) -> Tree {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: install the Debian package `busybox-static` (scripts/setup.sh)"
    );
    let init = dir.join("init");
    fs::write(
        &init,
        format!(
            "#!/bin/sh\n\
             echo \"{marker}-INIT-RAN\"\n\
             if [ -f /second.txt ]; then echo \"SECOND=$(cat /second.txt)\"; else echo SECOND-MISSING; fi\n\
             poweroff -f\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755)).unwrap();

    let mut tree = Tree::new();
    tree.insert_file("/bin/busybox", busybox, 0o755).unwrap();
    for applet in ["sh", "echo", "cat", "poweroff", "["] {
        tree.insert_symlink(&format!("/bin/{applet}"), "busybox")
            .unwrap();
    }
    tree.insert_file("/init", &init, 0o755).unwrap();
    tree.insert_dir("/dev", 0o755).unwrap();
    tree.insert_dir("/proc", 0o555).unwrap();
    tree
}

fn second_archive(dir: &Path, token: &str) -> Vec<u8> {
    let src = dir.join("second");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("second.txt"), token).unwrap();
    let mut child = Command::new(need("cpio", "cpio"))
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(&src)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"second.txt\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// Boots and returns the console output; qemu is killed after the timeout.
fn boot(initrd: &Path) -> String {
    let mut child = Command::new(need("qemu-system-x86_64", "qemu-system-x86"))
        .args([
            "-accel",
            "tcg",
            "-m",
            "256",
            "-nographic",
            "-no-reboot",
            "-kernel",
        ])
        .arg(kernel())
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 rdinit=/init"])
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
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > BOOT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    String::from_utf8_lossy(&out).into_owned()
}

fn boot_with_appended_archive(gzip: bool) {
    let dir = tempfile::tempdir().unwrap();
    let marker = format!(
        "BUNNY-{}-{}",
        std::process::id(),
        if gzip { "GZ" } else { "PLAIN" }
    );
    let token = format!("urunit-config-{}", std::process::id());
    let tree = busybox_tree(dir.path(), &marker);

    let initrd = dir.path().join("initrd");
    let mut file = fs::File::create(&initrd).unwrap();
    let n = write_initrd(&tree, &mut file, &InitrdOptions { mtime: 0, gzip }).unwrap();
    assert_eq!(n % 512, 0);
    file.write_all(&second_archive(dir.path(), &token)).unwrap();
    drop(file);

    let console = boot(&initrd);
    assert!(
        console.contains(&format!("{marker}-INIT-RAN")),
        "/init did not run; console:\n{console}"
    );
    assert!(
        console.contains(&format!("SECOND={token}")),
        "the appended cpio archive was not unpacked; console:\n{console}"
    );
}

#[test]
fn boots_plain_initrd_with_appended_cpio() {
    boot_with_appended_archive(false);
}

#[test]
fn boots_gzip_initrd_with_appended_cpio() {
    boot_with_appended_archive(true);
}
