//! bunny's own job image (images/bunny): built by images/bunny/build.sh with
//! the bunny under test, loaded into a real dockerd and used as a CI job
//! uses it: inside the container, `bunny build` of examples/hello-linux-src
//! (make under the image's runc, in the toolchain image), of
//! examples/hello-linux as an initrd and as an ext4 block image (the image's
//! mke2fs), each read back on the host with skopeo and umoci (the last two
//! with the same digest as the host's bunny gives), and `bunny run` of the
//! initrd one under the image's qemu.
//!
//! scripts/setup.sh builds the image once (downloading the pinned debs and
//! compressing the Debian layer into target/bunny-image/store) and checks
//! that two builds give one digest; here only the bunny layer is new.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::engines::{ok, runtime_binary};
use common::{require_tool, Dockerd};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const EPOCH: &str = "1700000000";

/// The bunny binaries under test, copied so that nothing rebuilding them
/// meanwhile changes the image between its two uses.
fn bins(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy(env!("CARGO_BIN_EXE_bunny"), bin.join("bunny")).unwrap();
    fs::copy(runtime_binary(), bin.join("bunny-runtime")).unwrap();
    // A block root on Debian's modular kernel boots through bunny-init's
    // mount stage, so the host's bunny needs it beside itself, as the image
    // has it: stripped the way images/bunny/build.sh strips it, so both put
    // the same bytes in the guest.
    let init = repo().join("target/bunny-init/x86_64-unknown-linux-gnu/release/bunny-init");
    assert!(
        init.is_file(),
        "{} missing: run scripts/setup.sh",
        init.display()
    );
    ok(
        Command::new("strip")
            .args(["--strip-debug", "-o"])
            .arg(bin.join("bunny-init"))
            .arg(&init),
        Duration::from_secs(30),
    );
    bin
}

fn example() -> PathBuf {
    let example = repo().join("examples/hello-linux");
    assert!(
        example.join("vmlinuz").exists() && example.join("rootfs/bin/busybox").exists(),
        "examples/hello-linux is not prepared: run `bash scripts/setup.sh` first"
    );
    example
}

/// examples/hello-linux with its rootfs as `rootfs_type`.
fn hello_context(dir: &Path, rootfs_type: &str) -> PathBuf {
    let example = example();
    let ctx = dir.join(format!("hello-{rootfs_type}"));
    ok(
        Command::new("cp").arg("-a").arg(&example).arg(&ctx),
        Duration::from_secs(30),
    );
    let file = fs::read_to_string(ctx.join("BunnyFile")).unwrap();
    let file = file.replace("  type: initrd\n", &format!("  type: {rootfs_type}\n"));
    assert!(file.contains(&format!("type: {rootfs_type}")));
    fs::write(ctx.join("BunnyFile"), file).unwrap();
    ctx
}

fn skopeo_json(args: &[&str]) -> serde_json::Value {
    let text = ok(
        Command::new(require_tool("skopeo")).args(args),
        Duration::from_secs(60),
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("skopeo gave no JSON ({e}): {text}"))
}

#[test]
fn the_job_image_builds_and_boots_unikernels_inside_docker() {
    require_tool("umoci");
    require_tool("apt-get");
    example();
    let toolchains = repo().join("target/toolchains/layout");
    assert!(
        toolchains.join("index.json").is_file(),
        "no toolchain images at {}: run `bash scripts/setup.sh` first",
        toolchains.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let bin = bins(tmp.path());
    let archive = tmp.path().join("bunny-image.tar");

    // The image, as the project builds it.
    let started = Instant::now();
    let out = ok(
        Command::new(repo().join("images/bunny/build.sh"))
            .args(["-t", "bunny:under-test", "-o"])
            .arg(format!("type=docker,dest={}", archive.display()))
            .env("BUNNY_BIN_DIR", &bin)
            // The frontend is only for `--llb`; leaving it out keeps the
            // layer small and this test quick.
            .env("BUNNY_FRONTEND", "")
            // setup.sh's epoch: its compressed Debian layer is reused.
            .env("SOURCE_DATE_EPOCH", "0")
            .env_remove("BUNNY_ROOT"),
        Duration::from_secs(600),
    );
    let image_digest = out.trim().lines().last().unwrap_or("").to_string();
    assert!(
        image_digest.starts_with("sha256:"),
        "build.sh printed {out}"
    );
    eprintln!(
        "bunny image {image_digest} built in {:?}",
        started.elapsed()
    );

    // Read back independently: a plain container image, two layers, bunny
    // on PATH, a shell to run CI steps in.
    let layout = repo().join("target/bunny-image/layout");
    let oci = format!("oci:{}:0.1.0", layout.display());
    let config = skopeo_json(&["inspect", "--config", "--raw", &oci]);
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/bin/bash"]));
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.title"],
        "bunny"
    );
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");
    let manifest = skopeo_json(&["inspect", "--raw", &oci]);
    assert!(manifest
        .get("annotations")
        .and_then(|a| a.get("com.urunc.unikernel.unikernelType"))
        .is_none());

    let dockerd = Dockerd::start();
    let load = ok(
        dockerd.docker().arg("load").arg("-i").arg(&archive),
        Duration::from_secs(300),
    );
    assert!(load.contains("bunny:under-test"), "{load}");
    let id = ok(
        dockerd
            .docker()
            .args(["image", "inspect", "-f", "{{.Id}}", "bunny:under-test"]),
        Duration::from_secs(30),
    );
    // Docker's image id is the config digest the manifest names.
    assert_eq!(id.trim(), manifest["config"]["digest"].as_str().unwrap());

    let out_dir = tmp.path().join("out");
    fs::create_dir_all(&out_dir).unwrap();
    let job = |ctx: &Path, extra: &[&str], script: &str| {
        ok(
            dockerd
                .docker()
                .args(["run", "--rm", "--network", "none"])
                .args(["-e", &format!("SOURCE_DATE_EPOCH={EPOCH}")])
                .args(extra)
                .arg("-v")
                .arg(format!("{}:/src", ctx.display()))
                .arg("-v")
                .arg(format!("{}:/out", out_dir.display()))
                .args(["bunny:under-test", "bash", "-ec", script]),
            Duration::from_secs(240),
        )
    };
    let unpack = |name: &str| {
        let bundle = tmp.path().join(format!("bundle-{name}"));
        ok(
            Command::new("umoci")
                .args(["unpack", "--rootless", "--image"])
                .arg(format!("{}:{name}", out_dir.join(name).display()))
                .arg(&bundle),
            Duration::from_secs(120),
        );
        bundle.join("rootfs")
    };

    // A BunnyFile `app`: make runs in the toolchain image under the job
    // image's runc. A CI job gets there with `--privileged`; this machine's
    // capability set lacks CAP_SYS_RESOURCE, which --privileged asks for, so
    // the test grants what runc needs one by one.
    let app = tmp.path().join("app");
    ok(
        Command::new("cp")
            .arg("-a")
            .arg(repo().join("examples/hello-linux-src"))
            .arg(&app),
        Duration::from_secs(30),
    );
    let layout = format!("{}:/layout:ro", toolchains.display());
    let log = job(
        &app,
        &[
            "--cap-add=ALL",
            "--cap-drop=SYS_RESOURCE",
            "--security-opt=seccomp=unconfined",
            "--security-opt=apparmor=unconfined",
            "--cgroupns=host",
            "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "-v",
            &layout,
        ],
        "bunny build --progress=plain --allow-layout /layout \
           --toolchain linux=oci:/layout:gcc-bookworm \
           --toolchain linux.kernel=oci:/layout:kernel-bookworm \
           -t app:app --output type=oci,dest=/out/app /src 2>&1",
    );
    assert!(log.contains("make hello-server done"), "{log}");
    let oci = format!("oci:{}:app", out_dir.join("app").display());
    let manifest = skopeo_json(&["inspect", "--raw", &oci]);
    assert_eq!(
        manifest["annotations"]["com.urunc.unikernel.initrd"],
        "/.boot/rootfs"
    );
    assert!(unpack("app").join(".boot/rootfs").is_file());

    for rootfs_type in ["initrd", "block"] {
        let ctx = hello_context(tmp.path(), rootfs_type);
        // The CI job: build into an OCI layout the next step picks up; the
        // initrd one then boots it with the job image's own qemu (TCG: no
        // /dev/kvm in a CI container), as a smoke test would.
        let smoke = if rootfs_type == "initrd" {
            "timeout 120 bunny run --rm --accel tcg hello:initrd once 2>&1"
        } else {
            "true"
        };
        let log = job(
            &ctx,
            &[],
            &format!(
                "bunny build --progress=plain -t hello:{rootfs_type} \
                   --output type=oci,dest=/out/{rootfs_type} /src | tail -n1 >/out/{rootfs_type}.digest
                 {smoke}"
            ),
        );
        if rootfs_type == "initrd" {
            assert!(log.contains("hello-linux: done"), "{log}");
        }
        let inside = fs::read_to_string(out_dir.join(format!("{rootfs_type}.digest"))).unwrap();
        assert!(inside.starts_with("sha256:"), "{inside}");

        // The same build on the host, with the same bunny: the same image.
        let host_store = tmp.path().join(format!("host-{rootfs_type}"));
        let host = ok(
            Command::new(bin.join("bunny"))
                .args(["--root"])
                .arg(&host_store)
                .args(["build", "-t", "hello:host"])
                .arg(&ctx)
                .env("SOURCE_DATE_EPOCH", EPOCH),
            Duration::from_secs(240),
        );
        assert_eq!(host.trim().lines().last(), Some(inside.trim()));

        let oci = format!("oci:{}:{rootfs_type}", out_dir.join(rootfs_type).display());
        let manifest = skopeo_json(&["inspect", "--raw", &oci]);
        let ann = &manifest["annotations"];
        assert_eq!(ann["com.urunc.unikernel.unikernelType"], "linux");
        assert_eq!(ann["com.urunc.unikernel.binary"], "/.boot/kernel");
        let rootfs = unpack(rootfs_type);
        assert_eq!(
            fs::read(rootfs.join(".boot/kernel")).unwrap(),
            fs::read(ctx.join("vmlinuz")).unwrap()
        );
        if rootfs_type == "block" {
            // mke2fs (the image's own) wrote it: the ext superblock magic.
            let fs_image = fs::read(rootfs.join(".boot/rootfs")).unwrap();
            assert_eq!(&fs_image[1024 + 0x38..1024 + 0x3a], &[0x53, 0xef]);
        }
    }
}
