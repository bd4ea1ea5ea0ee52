//! `FROM image` in a Containerfile inherits the image's Env, Cmd,
//! Entrypoint and Labels as docker does.

use std::path::Path;
use std::process::Command;

fn bunny(root: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
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
