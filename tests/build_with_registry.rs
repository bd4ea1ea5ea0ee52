//! The pipeline with a real registry: `bunny build --push`, BunnyFiles that
//! take their kernel and files `from:` an image, and `bunny run REF`.

mod common;

use std::process::Command;

use common::registry::Registry;
use common::{bunny_output, ok};

#[test]
fn push_then_build_from_the_pushed_image_then_run_it_by_reference() {
    common::require_tool("skopeo");
    let reg = Registry::start_http();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = common::hello_linux();
    let reference = format!("{}/demo/hello-linux:1", reg.host());
    let meta = tmp.path().join("meta.json");

    // build --push, with buildx's metadata file.
    let first = tmp.path().join("s1");
    let printed = ok(
        bunny_output(
            &first,
            &[
                "build",
                "--progress=plain",
                "-t",
                &reference,
                "--push",
                "--metadata-file",
                meta.to_str().unwrap(),
                ctx.to_str().unwrap(),
            ],
        ),
        "bunny build --push",
    );
    let digest = printed.trim().lines().last().unwrap().to_string();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(m["image.name"], reference.as_str());
    let raw = ok(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--raw"])
            .arg(format!("docker://{reference}"))
            .output()
            .unwrap(),
        "skopeo inspect of the pushed image",
    );
    let sha = format!(
        "sha256:{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(raw.as_bytes())
    );
    // The tag names the index carrying the default provenance (as buildx
    // pushes it, and as the metadata says); the image inside is the one
    // bunny printed.
    assert_eq!(
        m["containerimage.digest"],
        sha.as_str(),
        "the registry holds exactly what bunny built"
    );
    let index: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());

    // A new BunnyFile takes its kernel and web root from that image.
    let ctx2 = tmp.path().join("ctx2");
    std::fs::create_dir_all(ctx2.join("extra")).unwrap();
    std::fs::write(ctx2.join("extra/note.txt"), b"from the context\n").unwrap();
    std::fs::write(
        ctx2.join("BunnyFile"),
        format!(
            "version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\n\
             kernel:\n  from: {reference}\n  path: /.boot/kernel\n\
             rootfs:\n  type: raw\n  include:\n    - extra:/extra\n    - from: {reference}\n      source: /urunc.json\n      destination: /copied/urunc.json\n"
        ),
    )
    .unwrap();
    let second = tmp.path().join("s2");
    let local = tmp.path().join("fs2");
    ok(
        bunny_output(
            &second,
            &[
                "build",
                "--progress=plain",
                "-t",
                "derived",
                "-o",
                &format!("type=local,dest={}", local.display()),
                ctx2.to_str().unwrap(),
            ],
        ),
        "bunny build from the pushed image",
    );
    assert_eq!(
        std::fs::read(local.join(".boot/kernel")).unwrap(),
        std::fs::read(ctx.join("vmlinuz")).unwrap(),
        "the kernel came from the registry image"
    );
    assert!(
        local.join("copied/urunc.json").is_file(),
        "include from an image"
    );
    assert_eq!(
        std::fs::read(local.join("extra/note.txt")).unwrap(),
        b"from the context\n"
    );

    // Hostile paths inside an image are refused like those in a context.
    std::fs::write(
        ctx2.join("BunnyFile"),
        format!(
            "version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\n\
             kernel:\n  from: {reference}\n  path: ../../etc/passwd\n"
        ),
    )
    .unwrap();
    let out = bunny_output(
        &second,
        &[
            "build",
            "--progress=plain",
            "-t",
            "bad",
            ctx2.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("../../etc/passwd"),
        "{err}"
    );

    // `bunny run REF` on an empty store pulls, then boots.
    let third = tmp.path().join("s3");
    let out = bunny_output(
        &third,
        &["run", "--rm", "--accel", "tcg", &reference, "once"],
    );
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{console}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(console.contains("hello-linux: done"), "{console}");
}

#[test]
fn a_refused_push_reports_the_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bunny_output(
        tmp.path(),
        &[
            "build",
            "--progress=plain",
            "-t",
            "127.0.0.1:1/nothing/here:1",
            "--push",
            common::hello_linux().to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("127.0.0.1:1"),
        "the error names the registry: {err}"
    );
}
