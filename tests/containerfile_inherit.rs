//! `FROM image` in a Containerfile inherits the image's Env, Cmd,
//! Entrypoint and Labels as docker does.

mod common;

use std::path::Path;
use std::process::Command;

fn bunny(root: &Path, args: &[&str]) -> String {
    let out = common::bunny(root).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "bunny {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn from_an_image_inherits_its_config() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let base = tmp.path().join("base");
    std::fs::create_dir_all(base.join("app")).unwrap();
    std::fs::write(base.join("kernel"), vec![7u8; 4096]).unwrap();
    std::fs::write(base.join("app/run"), b"#!/bin/sh\n").unwrap();
    std::fs::write(
        base.join("BunnyFile"),
        "version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\nkernel:\n  from: local\n  path: kernel\n\
         rootfs:\n  type: raw\n  include:\n    - app:/app\n\
         cmd: [\"/app/run\", \"--base\"]\nenvs:\n  - BASE=1\n  - SHARED=base\n",
    )
    .unwrap();
    bunny(
        &root,
        &[
            "build",
            "--progress=quiet",
            "-t",
            "base:1",
            base.to_str().unwrap(),
        ],
    );

    let derived = tmp.path().join("derived");
    std::fs::create_dir_all(&derived).unwrap();
    std::fs::write(
        derived.join("Containerfile"),
        "FROM base:1\nENV SHARED=derived EXTRA=2\nLABEL team=bunny\nLABEL bunny.urunit=false\n",
    )
    .unwrap();
    bunny(
        &root,
        &[
            "build",
            "--progress=quiet",
            "-t",
            "derived:1",
            derived.to_str().unwrap(),
        ],
    );
    let report: serde_json::Value =
        serde_json::from_str(&bunny(&root, &["inspect", "--json", "derived:1"])).unwrap();
    let cfg = &report["config"];
    let env: Vec<String> = serde_json::from_value(cfg["env"].clone()).unwrap();
    assert!(env.contains(&"BASE=1".to_string()), "{env:?}");
    assert!(env.contains(&"SHARED=derived".to_string()), "{env:?}");
    assert!(!env.contains(&"SHARED=base".to_string()), "{env:?}");
    assert!(env.contains(&"EXTRA=2".to_string()), "{env:?}");
    assert_eq!(cfg["cmd"], serde_json::json!(["/app/run", "--base"]));
    assert_eq!(cfg["labels"]["team"], "bunny");
    assert_eq!(cfg["labels"]["com.urunc.unikernel.binary"], "/.boot/kernel");
}

/// WORKDIR and USER reach the image config (docker and ctr hand them to
/// urunc, which passes them to urunit); USER as numbers, looked up in the
/// image's /etc/passwd, because docker resolves names against the
/// container's rootfs. A derived image inherits both. Read back with skopeo.
#[test]
fn workdir_and_user_reach_the_config_as_numbers_and_are_inherited() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("etc")).unwrap();
    std::fs::create_dir_all(ctx.join("kernel")).unwrap();
    std::fs::write(ctx.join("kernel/k"), vec![7u8; 4096]).unwrap();
    std::fs::write(
        ctx.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nweb:x:1234:99::/srv:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY etc/passwd /etc/passwd\nCOPY kernel/k /.boot/kernel\n\
         LABEL com.urunc.unikernel.binary=/.boot/kernel\nLABEL bunny.urunit=false\n\
         WORKDIR /srv\nUSER web\n",
    )
    .unwrap();
    let layout = tmp.path().join("layout");
    bunny(
        &root,
        &[
            "build",
            "--progress=quiet",
            "-t",
            "base:1",
            "-o",
            &format!("type=oci,dest={}", layout.display()),
            ctx.to_str().unwrap(),
        ],
    );
    let skopeo = |tag: &str| -> serde_json::Value {
        let out = Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // The layout names images by tag (`org.opencontainers.image.ref.name`).
    let cfg = skopeo("1");
    assert_eq!(cfg["config"]["WorkingDir"], "/srv", "{cfg}");
    assert_eq!(cfg["config"]["User"], "1234:99", "{cfg}");

    let derived = tmp.path().join("derived");
    std::fs::create_dir_all(&derived).unwrap();
    std::fs::write(derived.join("Containerfile"), "FROM base:1\nENV X=1\n").unwrap();
    let layout2 = tmp.path().join("layout2");
    bunny(
        &root,
        &[
            "build",
            "--progress=quiet",
            "-t",
            "derived:1",
            "-o",
            &format!("type=oci,dest={}", layout2.display()),
            derived.to_str().unwrap(),
        ],
    );
    let out = Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci:{}:1", layout2.display()))
        .output()
        .unwrap();
    let cfg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cfg["config"]["WorkingDir"], "/srv", "{cfg}");
    assert_eq!(cfg["config"]["User"], "1234:99", "{cfg}");

    // A name that is not in /etc/passwd is refused with the line.
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY kernel/k /.boot/kernel\nLABEL com.urunc.unikernel.binary=/.boot/kernel\nUSER ghost\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .arg("--root")
        .arg(&root)
        .args(["build", "--progress=quiet"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":4: USER `ghost`"), "{err}");
}
