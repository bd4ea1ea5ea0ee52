//! Builds the static bunny-init the way scripts/setup.sh does, for the tests
//! that put it in images (`#[path = "init_helper.rs"] mod init_helper;`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/bunny-init/x86_64-unknown-linux-gnu/release/bunny-init`, built
/// with `+crt-static` (glibc) so it runs in a guest without a loader.
pub fn static_init() -> PathBuf {
    let target_dir = repo().join("target/bunny-init");
    let out = Command::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "-p",
            "bunny-init",
            "--release",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(repo())
        .output()
        .expect("running cargo to build bunny-init");
    assert!(
        out.status.success(),
        "building the static bunny-init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target_dir.join("x86_64-unknown-linux-gnu/release/bunny-init");
    bunny::containerfile::check_static(&bin).expect("bunny-init must be static");
    bin
}

/// The linux kernel image scripts/toolchain-image.sh makes.
pub fn kernel_image() -> String {
    let layout = repo().join("target/toolchains/layout");
    assert!(
        layout.join("index.json").is_file(),
        "{} is missing: run `bash scripts/toolchain-image.sh` (the linux kernel image)",
        layout.display()
    );
    format!("oci:{}:kernel-bookworm", layout.display())
}

/// An OCI layout holding a one-layer "existing Linux image": busybox-static
/// at /bin/busybox plus `files` (path, content), made with umoci.
pub fn busybox_image(dir: &Path, tag: &str, files: &[(&str, &str)]) -> String {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: apt-get install busybox-static"
    );
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    let run = |args: &[&str]| {
        let out = Command::new("umoci")
            .args(args)
            .output()
            .expect("umoci is missing: apt-get install umoci");
        assert!(
            out.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let l = layout.to_str().unwrap();
    let image = format!("{l}:{tag}");
    if !layout.exists() {
        run(&["init", "--layout", l]);
    }
    run(&["new", "--image", &image]);
    let _ = std::fs::remove_dir_all(&bundle);
    run(&[
        "unpack",
        "--rootless",
        "--image",
        &image,
        bundle.to_str().unwrap(),
    ]);
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for (path, content) in files {
        let p = rootfs.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    run(&["repack", "--image", &image, bundle.to_str().unwrap()]);
    format!("oci:{image}")
}
