//! Containerfile images boot under qemu (TCG) with `bunny run`: an existing
//! busybox image becomes a single-application VM that serves HTTP through a
//! published port, and bunny-init as PID 1 gives the app its env, args and
//! workdir, reaps an orphan, and hands the app's exit status to bunny run.

mod common;
#[path = "init_helper.rs"]
mod init_helper;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::guest::{free_port, Guest};

fn build(root: &Path, ctx: &Path, tag: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .args([
            "--root",
            root.to_str().unwrap(),
            "build",
            "--progress=quiet",
            "-t",
            tag,
        ])
        .args([
            "--toolchain",
            &format!("linux.kernel={}", init_helper::kernel_image()),
        ])
        // The base image's layout sits beside the context, not in it.
        .arg("--allow-layout")
        .arg(ctx.parent().unwrap())
        .arg(ctx)
        .env("BUNNY_INIT", init_helper::static_init())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_busybox_image_becomes_a_vm_serving_http() {
    let tmp = tempfile::tempdir().unwrap();
    let image = init_helper::busybox_image(
        tmp.path(),
        "web",
        &[("/www/index.html", "served by a Containerfile VM\n")],
    );
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        format!(
            // bunny run boots a Linux guest from an initrd; Go bunny's
            // default (the files over mountRootfs) needs urunc's devmapper
            // or shared filesystem.
            "FROM {image}\nLABEL com.urunc.unikernel.hypervisor=qemu\nLABEL bunny.rootfs=initrd\n\
             CMD [\"/bin/busybox\",\"httpd\",\"-f\",\"-p\",\"80\",\"-h\",\"/www\"]\n"
        ),
    )
    .unwrap();
    let root = tmp.path().join("store");
    build(&root, &ctx, "web:test");

    let port = free_port();
    let log = tmp.path().join("console.log");
    let mut guest = Guest::run_loud(
        &root,
        &[
            "--accel",
            "auto",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "web:test",
        ],
        &log,
    );
    // A hang guard, generous for a TCG boot on a loaded machine.
    let (page, _) = guest.wait_http(port, Duration::from_secs(300));
    assert!(
        page.contains("200 OK") && page.contains("served by a Containerfile VM"),
        "{page}"
    );
    guest.kill();
    let console = guest.console();
    assert!(console.contains("Run /urunit as init process"), "{console}");
    assert!(
        console.contains("bunny-init: eth0 10.0.2.15/255.255.255.0 gw 10.0.2.2"),
        "{console}"
    );
}

#[test]
fn init_in_a_guest_gives_env_args_workdir_reaps_and_returns_the_status() {
    let tmp = tempfile::tempdir().unwrap();
    let image = init_helper::busybox_image(tmp.path(), "app", &[("/srv/data/marker", "x")]);
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    // The orphan: the subshell backgrounds `sleep` and exits, so `sleep` is
    // re-parented to PID 1, which must reap it while the app still runs.
    std::fs::write(
        ctx.join("Containerfile"),
        format!(
            "ARG BASE={image}\nFROM $BASE\nLABEL bunny.rootfs=initrd\nENV GREETING=hello\nWORKDIR /srv/data\n\
             ENTRYPOINT [\"/bin/busybox\", \"sh\", \"-c\", \"echo app: args=[$0 $1] pwd=$(/bin/busybox pwd) greeting=$GREETING; echo quote=$QUOTE; (/bin/busybox sleep 0.2 &); /bin/busybox sleep 2; exit 7\"]\n\
             CMD [\"one\", \"two words\"]\n"
        ),
    )
    .unwrap();
    let root = tmp.path().join("store");
    build(&root, &ctx, "app:test");
    let log = tmp.path().join("console.log");
    // A value no kernel command line can carry (a `"`, words the kernel
    // would read as its own parameters) reaches the app through urunit's
    // configuration in the initrd instead.
    let mut guest = Guest::run_loud(
        &root,
        &[
            "--accel",
            "auto",
            "-e",
            "QUOTE=say \"hi\" init=/bin/sh quiet",
            "app:test",
        ],
        &log,
    );
    let (status, _) = guest.wait_exit(Duration::from_secs(60));
    let console = guest.console();
    assert_eq!(
        status.code(),
        Some(7),
        "bunny run's status is the app's:\n{console}"
    );
    assert!(
        console.contains("app: args=[one two words] pwd=/srv/data greeting=hello"),
        "{console}"
    );
    assert!(
        console.contains("quote=say \"hi\" init=/bin/sh quiet"),
        "{console}"
    );
    assert!(console.contains("bunny-init: reaped pid"), "{console}");
    assert!(console.contains("exited with status 7"), "{console}");
    assert!(console.contains("bunny-init: powering off"), "{console}");
}

/// `LABEL bunny.kernel=minimal`: bunny's minimal kernel (from the cache
/// setup's build filled, under the key of the kbuild-bookworm build image)
/// instead of the framework's kernel layer, which is not needed at all. Its
/// ext4 and virtio-blk are built in, so a block root boots with no boot
/// stage and no modules in the image.
#[test]
fn a_containerfile_asks_for_the_minimal_kernel_and_boots_a_block_root_on_it() {
    let repo = init_helper::repo();
    let cache = common::kernel_cache();
    let layout = repo.join("target/toolchains/layout");
    assert!(
        layout.join("index.json").is_file(),
        "no toolchain images: run `bash scripts/setup.sh`"
    );
    let tmp = tempfile::tempdir().unwrap();
    let image = init_helper::busybox_image(
        tmp.path(),
        "web",
        &[("/www/index.html", "served on the minimal kernel\n")],
    );
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        format!(
            "FROM {image}\nLABEL bunny.kernel=minimal\nLABEL bunny.rootfs=block\n\
             CMD [\"/bin/busybox\",\"httpd\",\"-f\",\"-p\",\"80\",\"-h\",\"/www\"]\n"
        ),
    )
    .unwrap();
    let root = tmp.path().join("store");
    let out = common::bunny(&root)
        .args(["build", "--progress=plain", "-t", "mini:test"])
        .arg("--toolchain")
        .arg(format!(
            "linux.kernel-toolchain=oci:{}:kbuild-bookworm",
            layout.display()
        ))
        .arg("--allow-layout")
        .arg(ctx.parent().unwrap())
        .arg(&ctx)
        .env("BUNNY_KERNEL_CACHE", &cache)
        .env("BUNNY_INIT", init_helper::static_init())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "build: {err}");
    assert!(err.contains("CACHED bzImage"), "{err}");
    let inspect = common::bunny(&root)
        .args(["inspect", "--json", "mini:test"])
        .output()
        .unwrap();
    assert!(inspect.status.success());
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let annotations = v["annotations"].to_string();
    assert!(
        annotations.contains("com.urunc.unikernel.block")
            && !annotations.contains("com.urunc.unikernel.initrd"),
        "a block root and no boot stage: {v}"
    );

    let port = free_port();
    let log = tmp.path().join("console.log");
    let mut guest = Guest::run_loud(
        &root,
        &[
            "--accel",
            "tcg",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "mini:test",
        ],
        &log,
    );
    let (page, took) = guest.wait_http(port, Duration::from_secs(120));
    eprintln!("run -> first HTTP 200: {:.2} s", took.as_secs_f64());
    assert!(page.contains("served on the minimal kernel"), "{page}");
    guest.kill();
    let console = guest.console();
    // The kernel that booted is the minimal one: Debian's names itself
    // with its package version, bunny's build with the fixed build user.
    assert!(console.contains("(bunny@bunny)"), "{console}");
    assert!(console.contains("Run /urunit as init process"), "{console}");
}
