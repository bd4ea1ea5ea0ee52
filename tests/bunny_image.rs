//! bunny's own job image (images/bunny): built by images/bunny/build.sh with
//! the bunny under test, loaded into a real dockerd and used as a CI job
//! uses it: `bunny build` of examples/hello-linux (initrd) and of the same
//! app as an ext4 block image (mke2fs) inside the container, the output read
//! back on the host with skopeo and umoci, and the same digest as the host's
//! bunny gives; then `bunny run` boots it under the image's own qemu.
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
    let job = |ctx: &Path, script: &str| {
        ok(
            dockerd
                .docker()
                .args(["run", "--rm", "--network", "none"])
                .args(["-e", &format!("SOURCE_DATE_EPOCH={EPOCH}")])
                .arg("-v")
                .arg(format!("{}:/src:ro", ctx.display()))
                .arg("-v")
                .arg(format!("{}:/out", out_dir.display()))
                .args(["bunny:under-test", "bash", "-ec", script]),
            Duration::from_secs(240),
        )
    };

    let mut initrd_ctx = None;
    for rootfs_type in ["initrd", "block"] {
        let ctx = hello_context(tmp.path(), rootfs_type);
        // The CI job: build into an OCI layout the next step picks up.
        let log = job(
            &ctx,
            &format!(
                "bunny build --progress=plain -t hello:{rootfs_type} \
                   --output type=oci,dest=/out/{rootfs_type} /src"
            ),
        );
        let inside = log.trim().lines().last().unwrap_or("").to_string();
        assert!(inside.starts_with("sha256:"), "{log}");

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
        assert_eq!(host.trim().lines().last(), Some(inside.as_str()));

        let oci = format!("oci:{}:{rootfs_type}", out_dir.join(rootfs_type).display());
        let manifest = skopeo_json(&["inspect", "--raw", &oci]);
        let ann = &manifest["annotations"];
        assert_eq!(ann["com.urunc.unikernel.unikernelType"], "linux");
        assert_eq!(ann["com.urunc.unikernel.binary"], "/.boot/kernel");
        let bundle = tmp.path().join(format!("bundle-{rootfs_type}"));
        ok(
            Command::new("umoci")
                .args(["unpack", "--rootless", "--image"])
                .arg(format!(
                    "{}:{rootfs_type}",
                    out_dir.join(rootfs_type).display()
                ))
                .arg(&bundle),
            Duration::from_secs(120),
        );
        let rootfs = bundle.join("rootfs");
        assert_eq!(
            fs::read(rootfs.join(".boot/kernel")).unwrap(),
            fs::read(ctx.join("vmlinuz")).unwrap()
        );
        let fs_image = fs::read(rootfs.join(".boot/rootfs")).unwrap();
        if rootfs_type == "block" {
            // mke2fs (the image's own) wrote it: the ext superblock magic.
            assert_eq!(&fs_image[1024 + 0x38..1024 + 0x3a], &[0x53, 0xef]);
        } else {
            initrd_ctx = Some(ctx);
        }
    }

    // A smoke test as a job would run it: boot the image with the job
    // image's own qemu (TCG: no /dev/kvm in a CI container).
    let console = job(
        &initrd_ctx.unwrap(),
        "bunny build -t hello /src >/dev/null
         timeout 120 bunny run --rm --accel tcg hello once 2>&1",
    );
    assert!(console.contains("hello-linux: done"), "{console}");
}
