//! Kernels built from sources and a configuration (`kernel: {from: source}`).
//!
//! The Linux kernel is not built in the suite: scripts/setup.sh has bunny
//! build its minimal kernel once in the kbuild-bookworm build container
//! (scripts/minimal-kernel.sh, 5-12 min on 2 cores) into the kernel cache,
//! and these tests check that a BunnyFile naming the same sources, config
//! and build image finds it, that the image boots and serves HTTP, and that
//! any changed input (a host build included) is a different key.
//! FreeBSD's cross-build runs for real in a build container, with a stand-in
//! for FreeBSD's tools/build/make.py (no FreeBSD source tree can be had
//! here).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::guest::{free_port, http_get, Guest};
use common::http::FileServer;

use bunny::build::kernel::{self, ConfigBase, Fragment, KernelConfig, KernelSource, SourceRef};
use bunny::bunnyfile::{Pos, Spanned};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Linux kernel build image setup made (scripts/toolchain-image.sh),
/// as `--toolchain linux.kernel-toolchain=` takes it.
fn kbuild() -> String {
    let layout = repo().join("target/toolchains/layout");
    assert!(
        layout.join("index.json").is_file(),
        "no toolchain images at {}: run `bash scripts/setup.sh`",
        layout.display()
    );
    format!("oci:{}:kbuild-bookworm", layout.display())
}

fn spanned<T>(value: T) -> Spanned<T> {
    Spanned {
        value,
        pos: Pos::default(),
    }
}

fn minimal_source() -> KernelSource {
    KernelSource {
        source: spanned(SourceRef::Debian("linux-source-6.1".into())),
        config: KernelConfig::minimal(Pos::default()),
        toolchain: None,
        pos: Pos::default(),
    }
}

struct Quiet;
impl bunny::pipeline::Progress for Quiet {
    fn start(&self, _: &str) {}
    fn finish(&self, _: &str, _: &str) {}
    fn warn(&self, _: &str) {}
    fn log(&self, _: &str, _: &str) {}
}

/// The recipe bunny computes for `ks` built in setup's kbuild image.
fn recipe(ks: &KernelSource, context: &Path, store: &Path) -> kernel::Recipe {
    let store = bunny::layers::store::Store::open(store).unwrap();
    let opts = bunny::build::AppOptions {
        lock_file: context.join("bunny.lock"),
        layer_overrides: [("linux.kernel-toolchain".to_string(), kbuild())]
            .into_iter()
            .collect(),
        config_file: Some(context.join("no-config.json")),
        ..Default::default()
    };
    kernel::prepare(
        ks,
        "linux",
        bunny::platform::Arch::Amd64,
        context,
        &store,
        &opts,
        &Quiet,
    )
    .map(|p| p.recipe)
    .unwrap()
}

const MINIMAL_BUNNYFILE: &str = "version: v0.1
platforms:
  framework: linux
  monitor: qemu
  architecture: x86_64
kernel:
  from: source
  source: debian:linux-source-6.1
  config: minimal
rootfs:
  from: scratch
  type: initrd
  include:
    - rootfs/init:/init
    - rootfs/bin:/bin
    - rootfs/www:/www
entrypoint: [\"/init\"]
";

/// hello-linux's busybox initrd without its modules, and a BunnyFile that
/// builds its kernel from Debian's sources with bunny's minimal config.
fn context(dir: &Path) {
    let ex = repo().join("examples/hello-linux");
    assert!(
        ex.join("rootfs/bin/busybox").is_file(),
        "examples/hello-linux/rootfs/bin/busybox is missing: run `bash scripts/setup.sh` first"
    );
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("www")).unwrap();
    std::fs::write(dir.join("BunnyFile"), MINIMAL_BUNNYFILE).unwrap();
    std::fs::copy(ex.join("rootfs/init"), rootfs.join("init")).unwrap();
    std::fs::copy(ex.join("rootfs/bin/busybox"), rootfs.join("bin/busybox")).unwrap();
    for e in std::fs::read_dir(ex.join("rootfs/www")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), rootfs.join("www").join(e.file_name())).unwrap();
        }
    }
}

fn sha256_file(p: &Path) -> String {
    let out = common::run(Command::new("sha256sum").arg(p));
    format!("sha256:{}", out.split_whitespace().next().unwrap())
}

#[test]
fn the_minimal_kernel_comes_from_the_cache_boots_and_serves_http() {
    let cache = common::kernel_cache();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    context(&ctx);
    let root = tmp.path().join("store");
    let key = recipe(&minimal_source(), &ctx, &root).key();
    assert!(
        cache.join(&key).join("bzImage").is_file(),
        "the minimal kernel (key {key}) is not in {}: run `bash scripts/setup.sh`",
        cache.display()
    );

    let t0 = Instant::now();
    let out = common::bunny(&root)
        .env("BUNNY_KERNEL_CACHE", &cache)
        .args([
            "build",
            "--progress=plain",
            "--sbom",
            "-t",
            "hello-src-kernel:test",
        ])
        .arg("--toolchain")
        .arg(format!("linux.kernel-toolchain={}", kbuild()))
        .arg(&ctx)
        .output()
        .unwrap();
    let took = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "build: {err}");
    assert!(err.contains("CACHED bzImage"), "{err}");
    assert!(err.contains(&key[..16]), "{err}");
    // A cache hit hashes the tarball once per store at most (remembered by
    // path, size and mtime) and never runs make.
    assert!(took < Duration::from_secs(60), "build took {took:?}");
    eprintln!("cache-hit build: {:.2} s", took.as_secs_f64());

    // bunny.lock pins the sources and records the config and kernel.
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ctx.join("bunny.lock")).unwrap()).unwrap();
    let layers = &lock["layers"];
    assert_eq!(
        layers["linux.kernel-source"]["reference"],
        "debian:linux-source-6.1"
    );
    assert_eq!(
        layers["linux.kernel-source"]["digest"],
        sha256_file(Path::new("/usr/src/linux-source-6.1.tar.xz")).as_str()
    );
    assert_eq!(
        layers["linux.kernel-build"]["digest"],
        sha256_file(&cache.join(&key).join("bzImage")).as_str()
    );
    assert_eq!(
        layers["linux.kernel-config"]["digest"],
        sha256_file(&cache.join(&key).join("config")).as_str()
    );

    // The SBOM names the kernel's sources, config and build as the lock pins
    // them, and the kernel it carries is that build.
    let sbom = common::bunny(&root)
        .args(["inspect", "--format", "sbom", "hello-src-kernel:test"])
        .output()
        .unwrap();
    assert!(
        sbom.status.success(),
        "{}",
        String::from_utf8_lossy(&sbom.stderr)
    );
    let sbom: serde_json::Value = serde_json::from_slice(&sbom.stdout).unwrap();
    let sbom = sbom.get("predicate").unwrap_or(&sbom);
    let packages = sbom["packages"].as_array().expect("SPDX packages");
    for key in [
        "linux.kernel-source",
        "linux.kernel-config",
        "linux.kernel-build",
    ] {
        let p = packages
            .iter()
            .find(|p| p["name"] == key)
            .unwrap_or_else(|| panic!("{key} is not in the SBOM: {sbom}"));
        assert_eq!(p["versionInfo"], layers[key]["digest"], "{key}");
    }
    let kernel = packages
        .iter()
        .find(|p| p["SPDXID"] == "SPDXRef-Kernel")
        .expect("the kernel package");
    assert!(
        kernel["checksums"].to_string().contains(
            layers["linux.kernel-build"]["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
        ),
        "{kernel}"
    );

    let port = free_port();
    let log = tmp.path().join("console.log");
    let mut guest = Guest::run(
        &root,
        &[
            "--accel",
            "tcg",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "hello-src-kernel:test",
        ],
        &log,
    );
    let (page, took) = guest.wait_http(port, Duration::from_secs(90));
    eprintln!("run -> first HTTP 200: {:.2} s", took.as_secs_f64());
    assert!(page.contains("hello-linux"), "{page}");
    let _ = http_get(port, "/cgi-bin/stop");
    let _ = guest.stop_within(Duration::from_secs(30));
    let console = guest.console();
    // The kernel that booted is the one built from the minimal config.
    assert!(console.contains("IP-Config: Complete"), "{console}");
}

#[test]
fn the_script_and_bunny_share_the_recipe_and_any_change_is_a_new_key() {
    let cache = common::kernel_cache();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let store = tmp.path().join("store");
    let base = recipe(&minimal_source(), &ctx, &store);
    // Whoever built it (setup's script or bunny) wrote the same recipe.
    let entry = cache.join(base.key());
    assert_eq!(
        std::fs::read_to_string(entry.join("recipe")).unwrap(),
        base.text(),
        "scripts/minimal-kernel.sh and src/build/kernel.rs disagree on the recipe"
    );

    // The same options as bunny's fragment plus one more, in a file.
    std::fs::write(ctx.join("extra.config"), "CONFIG_HZ_100=y\n").unwrap();
    let mut extra = minimal_source();
    extra
        .config
        .fragments
        .push(spanned(Fragment::File("extra.config".into())));
    let with_extra = recipe(&extra, &ctx, &store);
    assert_ne!(with_extra.key(), base.key());
    assert!(!cache.join(with_extra.key()).exists());
    // Editing that fragment changes the key again.
    std::fs::write(ctx.join("extra.config"), "CONFIG_HZ_250=y\n").unwrap();
    assert_ne!(recipe(&extra, &ctx, &store).key(), with_extra.key());

    // The bunny fragment written out as a file is the same recipe.
    std::fs::copy(
        repo().join("kernels/linux-minimal.config"),
        ctx.join("minimal.config"),
    )
    .unwrap();
    let mut as_file = minimal_source();
    as_file.config.fragments = vec![spanned(Fragment::File("minimal.config".into()))];
    assert_eq!(recipe(&as_file, &ctx, &store).key(), base.key());

    // set/unset and the base are inputs too.
    let mut set = minimal_source();
    set.config
        .set
        .push(spanned(("CONFIG_HZ_100".to_string(), "y".to_string())));
    assert_ne!(recipe(&set, &ctx, &store).key(), base.key());
    let mut other_base = minimal_source();
    other_base.config.base = spanned(ConfigBase::Named("allnoconfig".into()));
    assert_ne!(recipe(&other_base, &ctx, &store).key(), base.key());
}

fn prepare_error(ks: &KernelSource, framework: &str, context: &Path, store: &Path) -> String {
    let store = bunny::layers::store::Store::open(store).unwrap();
    let opts = bunny::build::AppOptions {
        lock_file: context.join("bunny.lock"),
        config_file: Some(context.join("no-config.json")),
        ..Default::default()
    };
    match kernel::prepare(
        ks,
        framework,
        bunny::platform::Arch::Amd64,
        context,
        &store,
        &opts,
        &Quiet,
    ) {
        Ok(p) => panic!("prepared {:?}", p.recipe),
        Err(e) => e.to_string(),
    }
}

/// A Linux kernel is built in a build container by default: the recipe
/// names the build image's digest. `toolchain: host` builds with the host's
/// gcc and make instead, keyed by their versions, the recipe otherwise the
/// same. (The builds take minutes, so they are not run here; setup's build
/// of the minimal kernel is the container one.)
#[test]
fn a_linux_kernel_is_built_in_its_build_image_unless_it_says_host() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let store = tmp.path().join("store");
    let layout = tmp.path().join("layout");
    kbuild_image(&layout, "kbuild-bookworm");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "kbuild")
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .unwrap();

    // Nothing named and nothing configured: bunny's default build image,
    // which an offline store does not have; the error says what to do.
    let err = prepare_error(&minimal_source(), "linux", &ctx, &store);
    assert!(
        err.contains(kernel::LINUX_TOOLCHAIN)
            && err.contains("linux's default")
            && err.contains("scripts/toolchain-image.sh builds it as oci:target/toolchains/layout:kbuild-bookworm")
            && err.contains("--toolchain linux.kernel-toolchain=")
            && err.contains("`kernel.toolchain: host`"),
        "{err}"
    );

    let mut host_ks = minimal_source();
    host_ks.toolchain = Some(spanned(kernel::HOST_TOOLCHAIN.to_string()));
    let host = recipe(&host_ks, &ctx, &store);
    assert!(
        host.toolchain.iter().all(|t| !t.starts_with("image ")),
        "{host:?}"
    );
    assert!(
        host.toolchain.iter().any(|t| t.starts_with("gcc")),
        "{host:?}"
    );
    // `host` pins no image.
    let lock = std::fs::read_to_string(ctx.join("bunny.lock")).unwrap_or_default();
    assert!(!lock.contains("kernel-toolchain"), "{lock}");

    let opts = bunny::build::AppOptions {
        lock_file: ctx.join("bunny.lock"),
        layer_overrides: [(
            "linux.kernel-toolchain".to_string(),
            format!("oci:{}:kbuild", layout.display()),
        )]
        .into_iter()
        .collect(),
        config_file: Some(ctx.join("no-config.json")),
        ..Default::default()
    };
    let open = bunny::layers::store::Store::open(&store).unwrap();
    let in_image = kernel::prepare(
        &minimal_source(),
        "linux",
        bunny::platform::Arch::Amd64,
        &ctx,
        &open,
        &opts,
        &Quiet,
    )
    .map(|p| p.recipe)
    .unwrap();
    assert_eq!(in_image.toolchain, vec![format!("image {digest}")]);
    assert_eq!(
        kernel::Recipe {
            toolchain: host.toolchain.clone(),
            ..in_image.clone()
        },
        host
    );
    assert_ne!(in_image.key(), host.key());

    // The BunnyFile may name the image too, as a layout in its context.
    let in_ctx = ctx.join("kbuild");
    common::run(Command::new("cp").arg("-al").arg(&layout).arg(&in_ctx));
    let mut named = minimal_source();
    named.toolchain = Some(spanned("oci:kbuild:kbuild".to_string()));
    assert_eq!(recipe(&named, &ctx, &store).key(), in_image.key());

    // A FreeBSD kernel is only cross-built in its image.
    let fbsd = tmp.path().join("fbsd");
    std::fs::create_dir_all(&fbsd).unwrap();
    freebsd_context(&fbsd, "nodevice sound\n");
    let file = std::fs::read_to_string(fbsd.join("BunnyFile")).unwrap();
    std::fs::write(
        fbsd.join("BunnyFile"),
        file.replace("toolchain: oci:kbuild:kbuild", "toolchain: host"),
    )
    .unwrap();
    let out = common::bunny(&store)
        .env("BUNNY_KERNEL_CACHE", tmp.path().join("kernels"))
        .args(["build", "--progress=plain"])
        .arg(&fbsd)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("`toolchain: host` is for Linux kernels"),
        "{err}"
    );
}

fn parse_error(text: &str) -> String {
    match bunny::bunnyfile::parse("BunnyFile", text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn kernel_source_mistakes_are_reported_with_positions() {
    let head = "version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\n";
    let err = parse_error(&format!(
        "{head}kernel:\n  from: source\n  source: debian:linux-source-6.1\n  config:\n    bse: tinyconfig\n"
    ));
    assert!(
        err.contains(
            "BunnyFile:9:5: error: unknown key `bse` in `kernel.config`; did you mean `base`?"
        ),
        "{err}"
    );
    let err = parse_error(&format!(
        "{head}kernel:\n  from: source\n  source: debian:linux-source-6.1\n  config:\n    base: tinyconfg\n"
    ));
    assert!(err.contains("BunnyFile:9:11:"), "{err}");
    assert!(err.contains("did you mean `tinyconfig`?"), "{err}");
    let err = parse_error(&format!(
        "{head}kernel:\n  from: source\n  source: /usr/src/linux-source-6.1.tar.xz\n  config: minimal\n"
    ));
    assert!(err.contains("BunnyFile:7:11:"), "{err}");
    assert!(err.contains("outside the build context"), "{err}");
    let err = parse_error(&format!(
        "{head}kernel:\n  from: source\n  path: vmlinuz\n  source: debian:linux-source-6.1\n  config: minimal\n"
    ));
    assert!(
        err.contains("`kernel.path` names a prebuilt kernel"),
        "{err}"
    );
    let err = parse_error(&format!(
        "{head}kernel:\n  from: source\n  source: debian:linux-source-6.1\n  config:\n    base: tinyconfig\n    set: {{HZ: 100}}\n"
    ));
    assert!(err.contains("BunnyFile:10:11:"), "{err}");
    assert!(err.contains("CONFIG_NAME: VALUE"), "{err}");
    let err = parse_error(
        "version: v0.1\nplatforms:\n  framework: freebsd\n  monitor: qemu\nkernel:\n  from: source\n  source: src\n  config: minimal\n",
    );
    assert!(err.contains("a freebsd kernel names its KERNCONF"), "{err}");
    // A kernel from source may go with an app (it replaces the framework's).
    bunny::bunnyfile::parse(
        "BunnyFile",
        &format!("{head}kernel:\n  from: source\n  source: debian:linux-source-6.1\n  config: minimal\napp:\n  name: hello\n  from: local\n"),
    )
    .unwrap();
}

/// One of setup's toolchain images (scripts/toolchain-image.sh) as the
/// layout `layout`, tagged `kbuild`: hard links to setup's blobs, and an
/// index of its own (written as a new file, never through a link).
fn kbuild_image(layout: &Path, tag: &str) {
    let setup = repo().join("target/toolchains/layout");
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(setup.join("index.json"))
            .expect("no toolchain images: run `bash scripts/setup.sh`"),
    )
    .unwrap();
    let mut manifest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| {
            panic!(
                "no {tag} in {}: run `bash scripts/setup.sh`",
                setup.display()
            )
        })
        .clone();
    manifest["annotations"]["org.opencontainers.image.ref.name"] = "kbuild".into();
    common::run(Command::new("cp").arg("-al").arg(&setup).arg(layout));
    let index_path = layout.join("index.json");
    std::fs::remove_file(&index_path).unwrap();
    std::fs::write(
        &index_path,
        serde_json::json!({"schemaVersion": 2, "manifests": [manifest]}).to_string(),
    )
    .unwrap();
}

fn freebsd_context(dir: &Path, fragment: &str) {
    common::run(
        Command::new("cp")
            .arg("-r")
            .arg(repo().join("tests/fixtures/freebsd-src"))
            .arg(dir.join("src")),
    );
    std::fs::write(dir.join("drop.conf"), fragment).unwrap();
    std::fs::write(
        dir.join("BunnyFile"),
        "version: v0.1
platforms:
  framework: freebsd
  monitor: qemu
  architecture: x86_64
kernel:
  from: source
  source: src
  toolchain: oci:kbuild:kbuild
  config:
    base: FIRECRACKER
    fragments: [drop.conf]
",
    )
    .unwrap();
}

#[test]
fn freebsd_kernconf_is_cross_built_in_a_build_container_and_cached() {
    common::require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    freebsd_context(&ctx, "nodevice sound\noptions TCP_BLACKBOX\n");
    kbuild_image(&ctx.join("kbuild"), "clang-bookworm");
    let root = tmp.path().join("store");
    let cache = tmp.path().join("kernels");
    let build = |tag: &str| {
        let out = common::bunny(&root)
            .env("BUNNY_KERNEL_CACHE", &cache)
            .args(["build", "--progress=plain", "-t", tag])
            .arg(&ctx)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "build: {err}");
        err
    };
    let first = build("fbsd-kernel:1");
    assert!(first.contains("built kernel"), "{first}");
    assert!(
        first.contains("Kernel build for BUNNY completed"),
        "{first}"
    );
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("kernel").is_file())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let kernel = std::fs::read_to_string(entries[0].join("kernel")).unwrap();
    // FIRECRACKER's devices, less the fragment's `nodevice`, plus its option.
    assert!(kernel.contains("ident BUNNY"), "{kernel}");
    assert!(kernel.contains("device virtio_mmio"), "{kernel}");
    assert!(!kernel.contains("device sound"), "{kernel}");
    assert!(kernel.contains("options TCP_BLACKBOX"), "{kernel}");
    let config = std::fs::read_to_string(entries[0].join("config")).unwrap();
    assert!(config.contains("include \"FIRECRACKER\""), "{config}");
    // The sources are read-only in the container: nothing was written there.
    assert!(!ctx.join("src/obj").exists());

    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ctx.join("bunny.lock")).unwrap()).unwrap();
    assert!(lock["layers"]["freebsd.kernel-toolchain"]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(lock["layers"]["freebsd.kernel-source"]["reference"], "src");

    // Unchanged: from the cache.
    let again = build("fbsd-kernel:2");
    assert!(again.contains("CACHED kernel"), "{again}");
    // A changed fragment is a new kernel.
    std::fs::write(ctx.join("drop.conf"), "nodevice sound\n").unwrap();
    let changed = build("fbsd-kernel:3");
    assert!(changed.contains("built kernel"), "{changed}");
    let n = std::fs::read_dir(&cache)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("kernel").is_file())
        .count();
    assert_eq!(n, 2);

    // The image carries it at /.boot/kernel.
    let out = common::run(common::bunny(&root).args(["inspect", "--json", "fbsd-kernel:3"]));
    assert!(out.contains("/.boot/kernel"), "{out}");

    // The build image named on the command line instead: the same digest,
    // so the same kernel.
    let text = std::fs::read_to_string(ctx.join("BunnyFile")).unwrap();
    let without = text.replace("  toolchain: oci:kbuild:kbuild\n", "");
    assert!(!without.contains("toolchain"), "{without}");
    std::fs::write(ctx.join("BunnyFile"), without).unwrap();
    let out = common::bunny(&root)
        .env("BUNNY_KERNEL_CACHE", &cache)
        .args(["build", "--progress=plain", "-t", "fbsd-kernel:4"])
        .arg(format!(
            "--toolchain=freebsd.kernel-toolchain=oci:{}:kbuild",
            ctx.join("kbuild").display()
        ))
        .arg(&ctx)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("CACHED kernel"), "{err}");
}

/// FreeBSD's src.txz layout (the tree under usr/src), xz-compressed.
fn src_txz(dest: &Path, extra: Option<&str>) {
    let t = tempfile::tempdir().unwrap();
    let usr = t.path().join("usr");
    std::fs::create_dir_all(&usr).unwrap();
    common::run(
        Command::new("cp")
            .arg("-r")
            .arg(repo().join("tests/fixtures/freebsd-src"))
            .arg(usr.join("src")),
    );
    if let Some(text) = extra {
        std::fs::write(usr.join("src/README"), text).unwrap();
    }
    common::run(
        Command::new("tar")
            .arg("-cJf")
            .arg(dest)
            .arg("-C")
            .arg(t.path())
            .arg("usr"),
    );
}

#[test]
fn freebsd_sources_by_url_and_as_tarballs_are_pinned() {
    common::require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    kbuild_image(&ctx.join("kbuild"), "clang-bookworm");
    std::fs::write(ctx.join("drop.conf"), "nodevice sound\n").unwrap();
    let bunnyfile = |source: &str| {
        std::fs::write(
            ctx.join("BunnyFile"),
            format!(
                "version: v0.1
platforms:
  framework: freebsd
  monitor: qemu
  architecture: x86_64
kernel:
  from: source
  source: {source}
  toolchain: oci:kbuild:kbuild
  config:
    base: GENERIC
    fragments: [drop.conf]
"
            ),
        )
        .unwrap();
    };
    let root = tmp.path().join("store");
    let cache = tmp.path().join("kernels");
    let build = |extra: &[&str]| {
        let out = common::bunny(&root)
            .env("BUNNY_KERNEL_CACHE", &cache)
            .args(["build", "--progress=plain", "-t", "fbsd-src:1"])
            .args(extra)
            .arg(&ctx)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // A tarball in the context, laid out like FreeBSD's src.txz.
    src_txz(&ctx.join("src.txz"), None);
    bunnyfile("src.txz");
    let (ok, err) = build(&[]);
    assert!(ok, "{err}");
    assert!(err.contains("built kernel"), "{err}");
    // Another tarball under the same name is refused: the lock pins it.
    src_txz(&ctx.join("src.txz"), Some("changed"));
    let (ok, err) = build(&[]);
    assert!(!ok, "a changed tarball was accepted: {err}");
    assert!(err.contains("--update-lock"), "{err}");
    assert!(err.contains("src.txz"), "{err}");
    let (ok, err) = build(&["--update-lock"]);
    assert!(ok, "{err}");
    assert!(err.contains("built kernel"), "{err}");

    // By URL, checked against its sha256.
    let served = tmp.path().join("www");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::copy(ctx.join("src.txz"), served.join("src.txz")).unwrap();
    let sum = sha256_file(&served.join("src.txz"));
    let port = FileServer::start(served).port;
    bunnyfile(&format!(
        "http://127.0.0.1:{port}/src.txz#sha256={}",
        sum.trim_start_matches("sha256:")
    ));
    let (ok, err) = build(&[]);
    assert!(ok, "{err}");
    // The same bytes as the context's tarball: the same kernel, cached.
    assert!(err.contains("CACHED kernel"), "{err}");
    bunnyfile(&format!(
        "http://127.0.0.1:{port}/src.txz#sha256={}",
        "0".repeat(64)
    ));
    let (ok, err) = build(&["--update-lock"]);
    assert!(!ok, "{err}");
    assert!(err.contains("refusing it"), "{err}");
}

/// The example as a user runs it (`bunny build -f BunnyFile.minimal-kernel`):
/// the kernel from the cache, the app built in the toolchain image, the cut
/// rootfs, and the whole image about 3 MB.
#[test]
fn the_hello_linux_src_example_builds_with_the_minimal_kernel() {
    let cache = common::kernel_cache();
    let layout = repo().join("target/toolchains/layout");
    common::run(&mut Command::new(repo().join("scripts/toolchain-image.sh")));
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("hello-linux-src");
    common::example_copy("hello-linux-src", &ctx);
    let root = tmp.path().join("store");
    let build = |tag: &str, extra: &[&str]| -> serde_json::Value {
        let out = common::bunny(&root)
            .env("BUNNY_KERNEL_CACHE", &cache)
            .args(["build", "--progress=plain", "-t", tag])
            .args(extra)
            .arg("-f")
            .arg(ctx.join("BunnyFile.minimal-kernel"))
            .arg("--toolchain")
            .arg(format!(
                "linux.toolchain=oci:{}:gcc-bookworm",
                layout.display()
            ))
            // No `linux.kernel`: a kernel built from sources replaces the
            // framework's kernel layer, which is then not needed at all.
            .arg("--toolchain")
            .arg(format!("linux.kernel-toolchain={}", kbuild()))
            .arg(&ctx)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("CACHED bzImage"), "{err}");
        let inspect = common::bunny(&root)
            .args(["inspect", "--json", tag])
            .output()
            .unwrap();
        assert!(inspect.status.success());
        serde_json::from_slice(&inspect.stdout).unwrap()
    };
    let total = |v: &serde_json::Value| -> u64 {
        v["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum()
    };
    let v = build("hs:minimal", &[]);
    // The minimal kernel (1.95 MB) and the cut initrd (about 1.1 MB
    // gzipped): far from the generic kernel's 10 MB image.
    assert!(
        total(&v) < 3_300_000,
        "the image is {} bytes: {v}",
        total(&v)
    );
    // zstd layers (containerd and urunc read them) bring it under 3 MB.
    let z = build("hs:zstd", &["--compression", "zstd"]);
    assert!(
        total(&z) < 3_000_000,
        "the image is {} bytes: {z}",
        total(&z)
    );
    assert_eq!(
        v["config"]["entrypoint"],
        serde_json::json!(["/urunit", "/bin/hello-server"]),
        "the cut rootfs runs the app under bunny-init: {v}"
    );
    let lock = std::fs::read_to_string(ctx.join("bunny.lock")).unwrap();
    assert!(
        lock.contains("\"linux.kernel-toolchain\"") && !lock.contains("\"linux.kernel\""),
        "the lock pins the build image and no kernel layer: {lock}"
    );
}

/// For Firecracker the image carries the build's ELF vmlinux, which boots
/// by its PVH entry: qemu loads an ELF kernel only through that entry, so
/// booting it on qemu's microvm machine (Firecracker's device model:
/// virtio-mmio, no PCI) proves it. The bzImage stays what qemu images get.
#[test]
fn a_firecracker_image_carries_the_vmlinux_and_it_boots_by_its_pvh_entry() {
    let cache = common::kernel_cache();
    let layout = repo().join("target/toolchains/layout");
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("hello-linux-src");
    common::example_copy("hello-linux-src", &ctx);
    let file = ctx.join("BunnyFile.minimal-kernel");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("monitor: qemu"), "{text}");
    std::fs::write(&file, text.replace("monitor: qemu", "monitor: firecracker")).unwrap();
    let files = tmp.path().join("files");
    let out = common::bunny(&tmp.path().join("store"))
        .env("BUNNY_KERNEL_CACHE", &cache)
        .args(["build", "--progress=plain", "-t", "hs:fc"])
        .arg("--toolchain")
        .arg(format!(
            "linux.toolchain=oci:{}:gcc-bookworm",
            layout.display()
        ))
        .arg("--toolchain")
        .arg(format!("linux.kernel-toolchain={}", kbuild()))
        .arg("-o")
        .arg(format!("type=local,dest={}", files.display()))
        .arg("-f")
        .arg(&file)
        .arg(&ctx)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("CACHED vmlinux"), "{err}");
    let kernel = files.join(".boot/kernel");
    let bytes = std::fs::read(&kernel).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF", "not the ELF vmlinux");
    let key = recipe(&minimal_source(), &ctx, &tmp.path().join("s2")).key();
    assert_eq!(
        bytes,
        std::fs::read(cache.join(&key).join("vmlinux")).unwrap(),
        "not the cache's vmlinux"
    );

    let console = tmp.path().join("console.log");
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "256",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args(["-M", "microvm,acpi=off,pic=on,pit=on,rtc=on"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(files.join(".boot/rootfs"))
        .args([
            "-append",
            "console=ttyS0 panic=-1 rdinit=/urunit -- /bin/hello-server 80",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut log = String::new();
    while started.elapsed() < Duration::from_secs(90) {
        log = std::fs::read_to_string(&console).unwrap_or_default();
        if log.contains("Run /urunit as init process") {
            break;
        }
        if let Ok(Some(status)) = qemu.try_wait() {
            let mut e = String::new();
            if let Some(mut s) = qemu.stderr.take() {
                use std::io::Read;
                let _ = s.read_to_string(&mut e);
            }
            panic!("qemu exited ({status}): {e}\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    assert!(log.contains("Run /urunit as init process"), "{log}");
    eprintln!(
        "vmlinux {} bytes: PVH boot to init in {:.2} s",
        bytes.len(),
        started.elapsed().as_secs_f64()
    );
}
