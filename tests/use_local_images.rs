//! scripts/use-local-images.sh writes setup's toolchain images into bunny's
//! config file, keeps what the user set there, and an `app` example then
//! builds with no `--toolchain` flag.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_config_names_setups_images_and_an_example_builds_without_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let xdg = tmp.path().join("xdg");
    let config = xdg.join("bunny/config.json");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    // A setting of the user's own, which the script must keep.
    std::fs::write(
        &config,
        r#"{"layers": {"linux.kernel": "registry.example.org/my/kernel:1"}}"#,
    )
    .unwrap();
    let script = |extra: &[&str]| {
        common::run(
            Command::new("bash")
                .arg(repo().join("scripts/use-local-images.sh"))
                .args(extra)
                .env("XDG_CONFIG_HOME", &xdg),
        )
    };
    let out = script(&[]);
    assert!(out.contains("linux.kernel: keeping"), "{out}");
    let layers = |c: &PathBuf| -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(c).unwrap()).unwrap()["layers"]
            .clone()
    };
    let l = layers(&config);
    let layout = repo().join("target/toolchains/layout");
    assert_eq!(l["linux.kernel"], "registry.example.org/my/kernel:1");
    assert_eq!(
        l["linux.toolchain"],
        format!("oci:{}:gcc-bookworm", layout.display())
    );
    assert_eq!(
        l["linux.kernel-toolchain"],
        format!("oci:{}:kbuild-bookworm", layout.display())
    );
    assert_eq!(
        l["freebsd.kernel-toolchain"],
        format!("oci:{}:clang-bookworm", layout.display())
    );
    script(&["--force"]);
    assert_eq!(
        layers(&config)["linux.kernel"],
        format!("oci:{}:kernel-bookworm", layout.display())
    );

    // The example with bunny's minimal kernel (from setup's kernel cache),
    // as a new user builds it after running the script.
    let ctx = tmp.path().join("hello-linux-src");
    common::example_copy("hello-linux-src", &ctx);
    let cache = common::kernel_cache();
    let out = common::bunny(&tmp.path().join("store"))
        .env("XDG_CONFIG_HOME", &xdg)
        .env("BUNNY_KERNEL_CACHE", &cache)
        .args(["build", "--progress=plain", "-t", "hs:local", "-f"])
        .arg(ctx.join("BunnyFile.minimal-kernel"))
        .arg(&ctx)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("CACHED bzImage"), "{err}");
}
