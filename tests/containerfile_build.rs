//! The Go bunny's examples written as Containerfiles build into images that
//! carry the urunc keys its docs promise, in all three places: manifest
//! annotations and config labels (read back with skopeo) and /urunc.json
//! (read back with umoci).

#[path = "init_helper.rs"]
mod init_helper;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;

type Keys = BTreeMap<String, String>;

fn bunny() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bunny"))
}

/// Builds `fixture` into an OCI layout and returns (annotations, labels,
/// urunc.json decoded, config).
fn build(fixture: &str, extra: &[&str]) -> (Keys, Keys, Keys, serde_json::Value) {
    let ctx = init_helper::repo()
        .join("tests/fixtures/containerfiles")
        .join(fixture);
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let out = bunny()
        .args([
            "--root",
            tmp.path().join("store").to_str().unwrap(),
            "build",
            "--progress=quiet",
        ])
        .args(["-t", "cf:test"])
        .args(["-o", &format!("type=oci,dest={}", out_dir.display())])
        .args(extra)
        .arg(&ctx)
        .env("BUNNY_INIT", init_helper::static_init())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{fixture}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layout = format!("oci:{}:test", out_dir.display());
    let skopeo = |args: &[&str]| -> serde_json::Value {
        let o = Command::new("skopeo")
            .args(args)
            .arg(&layout)
            .output()
            .expect("skopeo is missing: apt-get install skopeo");
        assert!(
            o.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let manifest = skopeo(&["inspect", "--raw"]);
    let config = skopeo(&["inspect", "--config"]);
    let map = |v: &serde_json::Value| -> BTreeMap<String, String> {
        serde_json::from_value(v.clone()).unwrap_or_default()
    };
    let annotations = map(&manifest["annotations"]);
    let labels = map(&config["config"]["Labels"]);
    let bundle = tmp.path().join("bundle");
    let o = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:test", out_dir.display()))
        .arg(&bundle)
        .output()
        .expect("umoci is missing: apt-get install umoci");
    assert!(
        o.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let raw: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(bundle.join("rootfs/urunc.json")).unwrap()).unwrap();
    let urunc = raw
        .into_iter()
        .map(|(k, v)| {
            let d = base64::engine::general_purpose::STANDARD.decode(v).unwrap();
            (k, String::from_utf8(d).unwrap())
        })
        .collect();
    (annotations, labels, urunc, config)
}

fn assert_key(maps: &[&BTreeMap<String, String>], key: &str, value: &str) {
    for (i, m) in maps.iter().enumerate() {
        assert_eq!(
            m.get(key).map(String::as_str),
            Some(value),
            "{key} in copy {i} (annotations, labels, urunc.json): {m:?}"
        );
    }
}

#[test]
fn unikraft_example_keeps_its_keys_and_files() {
    let (a, l, u, _) = build("unikraft-nginx", &[]);
    let all = [&a, &l, &u];
    assert_key(&all, "com.urunc.unikernel.binary", "/unikernel/kernel");
    assert_key(&all, "com.urunc.unikernel.unikernelType", "unikraft");
    assert_key(&all, "com.urunc.unikernel.hypervisor", "qemu");
    assert_key(&all, "com.urunc.unikernel.initrd", "/unikernel/initrd");
    assert_key(
        &all,
        "com.urunc.unikernel.cmdline",
        "nginx -c /nginx/conf/nginx.conf",
    );
    assert_key(&all, "com.urunc.unikernel.unikernelVersion", "0.17.0");
    // Not linux: no init, no kernel layer of bunny's.
    assert!(!a.values().any(|v| v.contains("/urunit")), "{a:?}");
}

#[test]
fn rumprun_example_substitutes_args_and_follows_the_go_defaults() {
    let (a, l, u, _) = build("rumprun-redis", &[]);
    let all = [&a, &l, &u];
    assert_key(&all, "com.urunc.unikernel.binary", "/unikernel/redis7.hvt");
    assert_key(&all, "com.urunc.unikernel.hypervisor", "hvt");
    assert_key(&all, "com.urunc.unikernel.block", "/unikernel/rootfs.ext2");
    assert_key(&all, "com.urunc.unikernel.blkMntPoint", "/data");
    // The Go bunny: no initrd and no block root -> the container rootfs.
    assert_key(&all, "com.urunc.unikernel.mountRootfs", "true");
}

#[test]
fn linux_from_scratch_gets_kernel_and_init_and_keeps_its_files_as_go_bunny_does() {
    let kernel = format!("linux.kernel={}", init_helper::kernel_image());
    let (a, l, u, config) = build("linux-scratch", &["--toolchain", &kernel]);
    let all = [&a, &l, &u];
    // Missing keys default to linux + qemu; the kernel comes from the
    // framework's kernel image; the files stay in the image's layers and
    // urunc hands them over (Go bunny's mountRootfs=true); no cmdline.
    assert_key(&all, "com.urunc.unikernel.unikernelType", "linux");
    assert_key(&all, "com.urunc.unikernel.hypervisor", "qemu");
    assert_key(&all, "com.urunc.unikernel.binary", "/.boot/kernel");
    assert_key(&all, "com.urunc.unikernel.mountRootfs", "true");
    for m in all {
        for k in ["initrd", "block", "cmdline", "useDMBlock"] {
            assert!(
                !m.contains_key(&format!("com.urunc.unikernel.{k}")),
                "{k}: {m:?}"
            );
        }
    }
    assert_key(
        &[&a, &l],
        "org.opencontainers.image.title",
        "linux from scratch",
    );
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/urunit", "/bin/busybox", "sh"])
    );
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/app/run.sh"]));
}

#[test]
fn the_same_containerfile_builds_the_same_image() {
    let digest = || {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = init_helper::repo().join("tests/fixtures/containerfiles/rumprun-redis");
        let out = bunny()
            .args([
                "--root",
                tmp.path().to_str().unwrap(),
                "build",
                "--progress=quiet",
            ])
            .arg(&ctx)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let (first, second) = (digest(), digest());
    // Two empty outputs would be equal too: each must be a digest.
    let hex = first.trim().strip_prefix("sha256:").unwrap_or_default();
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "bunny build printed no digest: {first:?}"
    );
    assert_eq!(first, second);
}

#[test]
fn check_mode_reads_containerfiles_by_content() {
    let tmp = tempfile::tempdir().unwrap();
    // Named like a BunnyFile, but a Containerfile inside.
    let f = tmp.path().join("BunnyFile");
    std::fs::write(&f, "# comment\n\nARG X=1\nFROM scratch\nLABEL a=$X\n").unwrap();
    let out = bunny()
        .args(["build", "--check", "-f"])
        .arg(&f)
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(Path::new(&f).exists());
}

/// The framework's kernel layer of a Containerfile comes, like an app's
/// layers, from `--toolchain`, else the config file's `layers`, else the
/// default (which nothing here publishes).
#[test]
fn the_kernel_layer_comes_from_the_config_file_when_no_flag_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), "hi\n").unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nLABEL bunny.rootfs=initrd\nCOPY hello.txt /hello.txt\nCMD [\"/hello.txt\"]\n",
    )
    .unwrap();
    let config_home = tmp.path().join("config");
    let build = |tag: &str| {
        bunny()
            .args(["--root", tmp.path().join("store").to_str().unwrap()])
            .args(["build", "--progress=plain", "-t", tag])
            .arg(&ctx)
            .env("XDG_CONFIG_HOME", &config_home)
            .env("BUNNY_INIT", init_helper::static_init())
            .output()
            .unwrap()
    };
    let without = build("cf:none");
    let err = String::from_utf8_lossy(&without.stderr);
    assert!(!without.status.success(), "{err}");
    assert!(err.contains("bunny/linux-kernel:bookworm"), "{err}");

    std::fs::create_dir_all(config_home.join("bunny")).unwrap();
    std::fs::write(
        config_home.join("bunny/config.json"),
        serde_json::json!({"layers": {"linux.kernel": init_helper::kernel_image()}}).to_string(),
    )
    .unwrap();
    let with = build("cf:config");
    let err = String::from_utf8_lossy(&with.stderr);
    assert!(with.status.success(), "{err}");
}
