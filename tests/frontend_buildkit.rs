//! Issue 10: bunny's BuildKit frontend under a real BuildKit (the one inside
//! dockerd 20.10). The frontend binary is built static, packed into a
//! FROM-scratch image by `bunny-frontend image`, pushed with `bunny push` to a
//! local registry, and named by a `#syntax=` line; `docker build` must give
//! the same kernel, initrd and /urunc.json as `bunny build`, the urunc keys as
//! image labels, and a broken BunnyFile's line:column in its output. With the
//! linux toolchain, kernel and tools images (scripts/toolchain-image.sh)
//! pushed too, an `app` built from source by exec ops, a block rootfs and a
//! Containerfile must also come out byte for byte as `bunny build` makes them.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::registry::Registry;
use common::{output, run, Dockerd, DockerdOptions};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Builds `bunny-frontend` statically (glibc, crt-static; no musl target
/// here) in its own target dir, so it never waits on the test run's lock.
fn static_frontend() -> PathBuf {
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
fn init_binary() -> PathBuf {
    let p = Path::new(ROOT).join("target/bunny-init/x86_64-unknown-linux-gnu/release/bunny-init");
    assert!(p.is_file(), "{} missing: run scripts/setup.sh", p.display());
    p
}

/// The frontend image, built and pushed by bunny.
fn push_frontend(bin: &Path, store: &Path, frontend: &str, tools: Option<&str>) {
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

fn bunny(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bunny"));
    c.env("BUNNY_ROOT", root)
        .env("DOCKER_CONFIG", root.join("docker-config"));
    c
}

const BUNNYFILE: &str = "version: v0.1
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

fn context(dir: &Path) {
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

fn unpack_tar(tar_path: &Path, dest: &Path) {
    let mut a = tar::Archive::new(fs::File::open(tar_path).unwrap());
    a.unpack(dest).unwrap();
}

fn docker_build(d: &Dockerd, ctx: &Path, file: &str, extra: &[&str]) -> std::process::Output {
    let mut c = d.docker();
    c.current_dir(ctx)
        .env("DOCKER_BUILDKIT", "1")
        .args(["build", "--progress", "plain", "-f", file])
        .args(extra)
        .arg(".");
    output(&mut c)
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn docker_build_through_the_bunny_frontend_matches_bunny_build() {
    common::require_tool("cpio");
    let bin = static_frontend();
    let reg = Registry::start_http();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let frontend = format!("{}/bunny-frontend:test", reg.host());

    push_frontend(&bin, &store, &frontend, None);

    let ctx = work.path().join("ctx");
    context(&ctx);
    fs::write(
        ctx.join("BunnyFile.docker"),
        format!("#syntax={frontend}\n{BUNNYFILE}"),
    )
    .unwrap();

    let d = Dockerd::start_with(DockerdOptions {
        insecure_registries: vec![reg.host()],
        ..Default::default()
    });

    // 1. --output type=tar: the files.
    let out_tar = work.path().join("out.tar");
    let o = docker_build(
        &d,
        &ctx,
        "BunnyFile.docker",
        &["--output", &format!("type=tar,dest={}", out_tar.display())],
    );
    assert!(
        o.status.success(),
        "docker build failed:\n{}\ndockerd log:\n{}",
        text(&o),
        d.log()
    );
    let via_docker = work.path().join("via-docker");
    unpack_tar(&out_tar, &via_docker);

    // The same BunnyFile through `bunny build`.
    let via_bunny = work.path().join("via-bunny");
    run(bunny(&store)
        .args(["build", "--progress", "plain", "-f"])
        .arg(ctx.join("BunnyFile"))
        .arg("-o")
        .arg(format!("type=local,dest={}", via_bunny.display()))
        .arg(&ctx));
    for f in [".boot/kernel", ".boot/rootfs", "urunc.json"] {
        let a = fs::read(via_docker.join(f))
            .unwrap_or_else(|e| panic!("{f} missing from docker's output: {e}"));
        let b = fs::read(via_bunny.join(f))
            .unwrap_or_else(|e| panic!("{f} missing from bunny's output: {e}"));
        assert_eq!(a.len(), b.len(), "{f}: sizes differ");
        assert!(
            a == b,
            "{f}: contents differ between docker build and bunny build"
        );
    }
    assert_eq!(
        fs::read(via_docker.join(".boot/kernel")).unwrap(),
        fs::read(ctx.join("kernel")).unwrap()
    );
    let urunc: serde_json::Value =
        serde_json::from_slice(&fs::read(via_docker.join("urunc.json")).unwrap()).unwrap();
    use base64::Engine as _;
    let decode = |k: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(
                    urunc[k]
                        .as_str()
                        .unwrap_or_else(|| panic!("{k} missing: {urunc}")),
                )
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(decode("com.urunc.unikernel.cmdline"), "console=ttyS0 quiet");
    assert_eq!(decode("com.urunc.unikernel.initrd"), "/.boot/rootfs");
    assert_eq!(decode("com.urunc.unikernel.binary"), "/.boot/kernel");
    assert_eq!(decode("com.urunc.unikernel.hypervisor"), "qemu");
    // The initrd holds the included files.
    let cpio = run(Command::new("sh").arg("-c").arg(format!(
        "cpio -it < {}",
        via_docker.join(".boot/rootfs").display()
    )));
    for name in ["init", "etc/motd", "etc/sub/deep"] {
        assert!(
            cpio.lines().any(|l| l.trim_start_matches("./") == name),
            "{name} not in the initrd:\n{cpio}"
        );
    }

    // 2. -t: an image whose config carries the urunc keys as labels.
    let o = docker_build(&d, &ctx, "BunnyFile.docker", &["-t", "bunny-fe-test:1"]);
    assert!(
        o.status.success(),
        "docker build -t failed:\n{}\ndockerd log:\n{}",
        text(&o),
        d.log()
    );
    let inspect = run(d.docker().args(["image", "inspect", "bunny-fe-test:1"]));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let config = &inspect[0]["Config"];
    let bunny_inspect = run(bunny(&store).args(["inspect"]).arg(
        run(bunny(&store)
            .args([
                "build",
                "--progress",
                "plain",
                "-t",
                "bunny-fe-test:bunny",
                "-f",
            ])
            .arg(ctx.join("BunnyFile"))
            .arg(&ctx))
        .trim(),
    ));
    for (k, v) in urunc.as_object().unwrap() {
        let plain = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            config["Labels"][k].as_str(),
            Some(plain.as_str()),
            "label {k}: {config}"
        );
        assert!(
            bunny_inspect.contains(k),
            "bunny's image lacks {k}: {bunny_inspect}"
        );
    }
    assert_eq!(config["Entrypoint"], serde_json::json!(["/init"]));
    assert!(
        config["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hello"),
        "{config}"
    );

    // 3. A broken BunnyFile: bunny's own line:column reaches docker's output.
    let broken = BUNNYFILE.replace("monitor: qemu", "monitor: qemuu");
    fs::write(ctx.join("Broken"), &broken).unwrap();
    fs::write(
        ctx.join("Broken.docker"),
        format!("#syntax={frontend}\n{broken}"),
    )
    .unwrap();
    let check = output(
        bunny(&store)
            .args(["build", "--check", "-f", "Broken"])
            .current_dir(&ctx),
    );
    assert!(!check.status.success());
    let diag = String::from_utf8_lossy(&check.stderr)
        .lines()
        .next()
        .unwrap()
        .to_string();
    // "Broken:L:C: error: MESSAGE": the docker copy has one more line on top.
    let mut parts = diag.splitn(4, ':');
    let (_, line, col, rest) = (
        parts.next(),
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let line: usize = line.parse().unwrap();
    let o = docker_build(
        &d,
        &ctx,
        "Broken.docker",
        &[
            "--output",
            &format!("type=tar,dest={}", work.path().join("bad.tar").display()),
        ],
    );
    assert!(
        !o.status.success(),
        "a broken BunnyFile built:\n{}",
        text(&o)
    );
    let expected = format!("Broken.docker:{}:{col}:{rest}", line + 1);
    assert!(
        text(&o).contains(&expected),
        "docker's output lacks `{expected}`:\n{}",
        text(&o)
    );
}

#[test]
fn llb_output_is_a_reproducible_definition() {
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    context(&ctx);
    // Always through cargo: a stale binary would test old code (cargo's
    // lock makes a parallel test's build wait, not race).
    let bin = static_frontend();
    let llb_with = |c: &Path, image: Option<&str>| {
        let mut cmd = bunny(&work.path().join("store"));
        cmd.env("BUNNY_FRONTEND", &bin)
            .env_remove("BUNNY_FRONTEND_IMAGE")
            .args(["build", "--llb", "-f"])
            .arg(c.join("BunnyFile"))
            .arg(c);
        if let Some(i) = image {
            cmd.env("BUNNY_FRONTEND_IMAGE", i);
        }
        output(&mut cmd)
    };
    let llb = |c: &Path| {
        let o = llb_with(c, Some("registry.example/bunny-frontend:1"));
        assert!(o.status.success(), "{}", text(&o));
        o.stdout
    };
    // The build runs from the frontend image: without one, a clear error.
    let o = llb_with(&ctx, None);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--frontend-image") && text(&o).contains("BUNNY_FRONTEND_IMAGE"),
        "{}",
        text(&o)
    );
    let a = llb(&ctx);
    let other = work.path().join("other");
    context(&other);
    assert!(
        a == llb(&other),
        "the same BunnyFile and files gave different LLB"
    );
    let has = |needle: &[u8]| a.windows(needle.len()).any(|w| w == needle);
    for s in [
        "local://context",
        "docker-image://registry.example/bunny-frontend:1",
        "/.bunny/bin/bunny-frontend",
        "pack.json",
        "rootfs/etc",
        "llb.customname",
    ] {
        assert!(has(s.as_bytes()), "LLB lacks {s}");
    }
    // The files travel as files, not inside the definition.
    assert!(!has(b"hello from the frontend"));
    // A different BunnyFile changes the definition.
    fs::write(other.join("BunnyFile"), BUNNYFILE.replace("quiet", "loud")).unwrap();
    assert!(a != llb(&other));
}
