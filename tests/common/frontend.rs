//! What the frontend tests share: the static frontend binary, its image in a
//! registry, a small BunnyFile context, and comparisons with `bunny build`.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::{bunny, run};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Builds `bunny-frontend` statically (glibc, crt-static; no musl target
/// here) in its own target dir, so it never waits on the test run's lock.
pub fn static_frontend() -> PathBuf {
    let target = Path::new(ROOT).join("target/frontend-static");
    let t = Instant::now();
    run(Command::new(env!("CARGO"))
        .current_dir(ROOT)
        .env("CARGO_TARGET_DIR", &target)
        .env("RUSTFLAGS", "-C target-feature=+crt-static -C debuginfo=0")
        .args([
            "build",
            "-p",
            "bunny-frontend",
            "--target",
            "x86_64-unknown-linux-gnu",
        ]));
    eprintln!("static frontend build: {:?}", t.elapsed());
    let bin = target.join("x86_64-unknown-linux-gnu/debug/bunny-frontend");
    let file = run(Command::new("file").arg(&bin));
    assert!(
        file.contains("statically linked") || file.contains("static-pie"),
        "{file}"
    );
    bin
}

/// The static bunny-init `scripts/setup.sh` builds.
pub fn init_binary() -> PathBuf {
    let p = Path::new(ROOT).join("target/bunny-init/x86_64-unknown-linux-gnu/release/bunny-init");
    assert!(p.is_file(), "{} missing: run scripts/setup.sh", p.display());
    p
}

/// The frontend image, built and pushed by bunny.
pub fn push_frontend(bin: &Path, store: &Path, frontend: &str, tools: Option<&str>) {
    let mut c = Command::new(bin);
    c.env("BUNNY_ROOT", store)
        .args(["image", "-t", frontend, "--binary"])
        .arg(bin)
        .arg("--init")
        .arg(init_binary());
    if let Some(t) = tools {
        c.args(["--tools-image", t]);
    }
    run(&mut c);
    run(bunny(store).args(["push", frontend, "--progress", "plain"]));
}

pub const BUNNYFILE: &str = "version: v0.1
platforms:
  framework: linux
  monitor: qemu
  architecture: x86_64
kernel:
  from: local
  path: kernel
rootfs:
  from: scratch
  type: initrd
  include:
    - rootfs/init:/init
    - rootfs/etc:/etc
cmdline: console=ttyS0 quiet
entrypoint: [\"/init\"]
envs:
  - GREETING=hello
";

/// A context for [`BUNNYFILE`]: a pseudo-random "kernel" and a few files.
pub fn context(dir: &Path) {
    fs::create_dir_all(dir.join("rootfs/etc/sub")).unwrap();
    let kernel: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(dir.join("kernel"), kernel).unwrap();
    fs::write(dir.join("rootfs/init"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(dir.join("rootfs/init"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("rootfs/etc/motd"), "hello from the frontend\n").unwrap();
    fs::write(dir.join("rootfs/etc/sub/deep"), vec![7u8; 5000]).unwrap();
    fs::write(dir.join("BunnyFile"), BUNNYFILE).unwrap();
}

pub fn unpack_tar(tar_path: &Path, dest: &Path) {
    let mut a = tar::Archive::new(fs::File::open(tar_path).unwrap());
    a.unpack(dest).unwrap();
}

pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The linux framework's images (`scripts/toolchain-image.sh`, cached under
/// target/toolchains).
pub fn toolchains() -> PathBuf {
    let layout = Path::new(ROOT).join("target/toolchains/layout");
    run(&mut Command::new(
        Path::new(ROOT).join("scripts/toolchain-image.sh"),
    ));
    layout
}

/// Copies `oci:LAYOUT:TAG` to the registry with skopeo.
pub fn push_layout(layout: &Path, tag: &str, dest: &str) {
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &format!("oci:{}:{tag}", layout.display()),
        &format!("docker://{dest}"),
    ]));
}

/// Writes `dir/dest`: `dir/file` with a `#syntax=frontend` line on top.
pub fn with_syntax(dir: &Path, file: &str, frontend: &str, dest: &str) {
    let text = fs::read_to_string(dir.join(file)).unwrap();
    fs::write(dir.join(dest), format!("#syntax={frontend}\n{text}")).unwrap();
}

/// `files` are byte for byte the same under both directories.
pub fn same_files(via_buildkit: &Path, via_bunny: &Path, files: &[&str]) {
    for f in files {
        let a = fs::read(via_buildkit.join(f))
            .unwrap_or_else(|e| panic!("{f} missing from BuildKit's output: {e}"));
        let b = fs::read(via_bunny.join(f))
            .unwrap_or_else(|e| panic!("{f} missing from bunny's output: {e}"));
        assert_eq!(a.len(), b.len(), "{f}: sizes differ");
        assert!(
            a == b,
            "{f}: contents differ between BuildKit and bunny build"
        );
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// `bunny build` of `file` in `ctx` into `dest` (type=local).
pub fn bunny_build_local(store: &Path, ctx: &Path, file: &str, extra: &[String], dest: &Path) {
    run(bunny(store)
        .args(["build", "--progress", "plain", "-f"])
        .arg(ctx.join(file))
        .args(extra)
        .arg("-o")
        .arg(format!("type=local,dest={}", dest.display()))
        .arg(ctx));
}
