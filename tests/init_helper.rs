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
    build_static_init(&repo().join("target/bunny-init"))
}

/// The same, built in this checkout's own scratch target dir: a git
/// worktree may share `target/bunny-init` with other checkouts, and cargo
/// does not re-copy a binary another checkout has overwritten there. For
/// tests whose guests need this tree's bunny-init (its boot stage).
pub fn static_init_private() -> PathBuf {
    build_static_init(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bunny-init"))
}

fn build_static_init(target_dir: &Path) -> PathBuf {
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
        .arg(target_dir)
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

/// A linux kernel image like scripts/toolchain-image.sh's: Debian's kernel
/// at /.boot/kernel and its modules (virtio, ext4 and helpers) in
/// /lib/modules, made here so the test does not depend on the cached
/// image's vintage.
pub fn kernel_image_with_modules(dir: &Path) -> String {
    let kdir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/linux-kernel");
    assert!(
        kdir.join("modules/ext4.ko").is_file(),
        "{} has no ext4.ko: run `bash scripts/setup.sh`",
        kdir.display()
    );
    let layout = dir.join("kernel-layout");
    let bundle = dir.join("kernel-bundle");
    let (l, b) = (layout.to_str().unwrap(), bundle.to_str().unwrap());
    let image = format!("{l}:kernel");
    let umoci = |args: &[&str]| {
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
    umoci(&["init", "--layout", l]);
    umoci(&["new", "--image", &image]);
    umoci(&["unpack", "--rootless", "--image", &image, b]);
    let root = bundle.join("rootfs");
    std::fs::create_dir_all(root.join(".boot")).unwrap();
    std::fs::create_dir_all(root.join("lib/modules")).unwrap();
    std::fs::copy(kdir.join("vmlinuz"), root.join(".boot/kernel")).unwrap();
    for m in std::fs::read_dir(kdir.join("modules")).unwrap() {
        let m = m.unwrap().path();
        std::fs::copy(&m, root.join("lib/modules").join(m.file_name().unwrap())).unwrap();
    }
    umoci(&["repack", "--image", &image, b]);
    format!("oci:{image}")
}
