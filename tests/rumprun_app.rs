//! Rumprun `app` builds end to end: a C program built with `make` and the
//! real rumprun toolchain (cloudkernels/rumprun, Solo5 0.4.1; the image
//! scripts/toolchain-image.sh makes) in a build container under runc, baked
//! with `rumprun-bake` for the BunnyFile's monitor, and packed with the
//! included files as an ext2 block image the guest mounts at /data. The
//! build runs under an OCI runtime wrapper that keeps each step's
//! config.json, so the exact commands, environment and order are read from
//! what runc was given; the spt unikernel is run under the real tender.
//!
//! The rumprun branch's `hw` platform (monitor qemu) does not bake, so the
//! one test of the qemu path uses a stand-in toolchain with the same
//! contract (tests/fixtures/toolchains/rumprun) for that platform.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use assert_cmd::cargo::CommandCargoExt;
use base64::Engine;
use common::{output, require_tool, run};
use sha2::{Digest, Sha256};

const HELLO: &str = "hello from a rumprun app";
const INDEX: &str = "<h1>served from /data</h1>\n";
const FIXTURE_FILES: &[&str] = &["Containerfile", "x86_64-rumprun-netbsd-gcc", "rumprun-bake"];
const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `oci:DIR:standin`: the stand-in toolchain image, built once per version
/// of the fixture files.
fn standin() -> String {
    static REF: OnceLock<String> = OnceLock::new();
    REF.get_or_init(|| {
        let root = manifest_dir();
        run(Command::new(root.join("scripts/toolchain-image.sh"))
            .env("BUNNY_KERNEL", root.join("target/linux-kernel/vmlinuz")));
        let base = root.join("target/toolchains/layout");
        let fixture = root.join("tests/fixtures/toolchains/rumprun");
        let mut h = Sha256::new();
        for f in FIXTURE_FILES {
            h.update(f.as_bytes());
            h.update(fs::read(fixture.join(f)).unwrap());
        }
        let hex = format!("{:x}", h.finalize());
        let cache = root.join("target/rumprun-toolchain");
        let layout = cache.join(&hex[..16]);
        if !layout.join("oci-layout").is_file() {
            let buildah = require_tool("buildah");
            fs::create_dir_all(&cache).unwrap();
            let work = tempfile::tempdir_in(&cache).unwrap();
            let b = |args: &[&str]| {
                let mut cmd = Command::new(&buildah);
                cmd.env("BUILDAH_ISOLATION", "chroot")
                    .arg("--root")
                    .arg(work.path().join("root"))
                    .arg("--runroot")
                    .arg(work.path().join("run"))
                    .args(["--storage-driver", "vfs"])
                    .args(args);
                run(&mut cmd)
            };
            b(&[
                "build",
                "-q",
                "--timestamp",
                "0",
                "--build-arg",
                &format!("BASE=oci:{}:gcc-bookworm", base.display()),
                "-f",
                &fixture.join("Containerfile").to_string_lossy(),
                "-t",
                "standin",
                &fixture.to_string_lossy(),
            ]);
            let tmp_layout = work.path().join("layout");
            b(&[
                "push",
                "-q",
                "standin",
                &format!("oci:{}:standin", tmp_layout.display()),
            ]);
            // Another test binary may have won the race; either copy is good.
            let _ = fs::rename(&tmp_layout, &layout);
        }
        format!("oci:{}:standin", layout.display())
    })
    .clone()
}

/// `oci:DIR:rumprun-solo5`: the real toolchain image from setup.
fn real() -> String {
    static REF: OnceLock<String> = OnceLock::new();
    REF.get_or_init(|| {
        let root = manifest_dir();
        run(Command::new(root.join("scripts/toolchain-image.sh"))
            .env("BUNNY_KERNEL", root.join("target/linux-kernel/vmlinuz")));
        format!(
            "oci:{}:rumprun-solo5",
            root.join("target/toolchains/layout").display()
        )
    })
    .clone()
}

struct Env {
    toolchain: String,
    dir: tempfile::TempDir,
    store: PathBuf,
    context: PathBuf,
    runtime: PathBuf,
    steps: PathBuf,
}

/// Written into every app's sources so that no step output is taken from
/// the cache of an earlier run or another test.
fn nonce() -> &'static str {
    static NONCE: OnceLock<String> = OnceLock::new();
    NONCE.get_or_init(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        format!("{}-{}", std::process::id(), t.as_nanos())
    })
}

/// One store for every test (under target/, kept between runs): unpacking
/// the toolchain image takes a debug build about 20 s, so it is done once,
/// by a first build here, before the tests build side by side.
fn shared_store() -> PathBuf {
    static STORE: OnceLock<PathBuf> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let store = manifest_dir().join("target/rumprun-toolchain/store");
            let e = env_in(store.clone());
            hello_app(&e, "", "warm-up");
            e.write("BunnyFile", &bunnyfile("spt", ""));
            e.build_ok(&[]);
            store
        })
        .clone()
}

/// A context, the shared store, and an OCI runtime that keeps every step's
/// config.json (numbered in run order) and then execs runc.
fn env() -> Env {
    env_in(shared_store())
}

fn env_in(store: PathBuf) -> Env {
    require_tool("runc");
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("ctx");
    let steps = dir.path().join("steps");
    fs::create_dir_all(&context).unwrap();
    fs::create_dir_all(&steps).unwrap();
    let runtime = dir.path().join("recording-runc");
    fs::write(
        &runtime,
        format!(
            r#"#!/bin/sh
prev=
for a in "$@"; do
  if [ "$prev" = "--bundle" ]; then
    n=$(ls '{steps}' | wc -l)
    cp "$a/config.json" "{steps}/$(printf %03d "$n").json"
  fi
  prev=$a
done
exec runc "$@"
"#,
            steps = steps.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o755)).unwrap();
    Env {
        toolchain: real(),
        dir,
        store,
        context,
        runtime,
        steps,
    }
}

/// What runc was asked to run, in order.
struct StepRun {
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
    own_network: bool,
}

impl Env {
    fn write(&self, path: &str, content: &str) {
        let p = self.context.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn bunny(&self) -> Command {
        let mut cmd = Command::cargo_bin("bunny").unwrap();
        cmd.env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .arg("--root")
            .arg(&self.store);
        cmd
    }

    fn build(&self, extra: &[&str]) -> (bool, String) {
        let mut cmd = self.bunny();
        cmd.args(["build", "--progress", "plain"])
            .arg("--oci-runtime")
            .arg(&self.runtime)
            .arg("--toolchain")
            .arg(format!("rumprun={}", self.toolchain))
            .args(extra)
            .arg(&self.context);
        let out = output(&mut cmd);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn build_ok(&self, extra: &[&str]) -> String {
        let (ok, stderr) = self.build(extra);
        assert!(ok, "bunny build failed:\n{stderr}");
        stderr
    }

    fn runs(&self) -> Vec<StepRun> {
        let mut names: Vec<_> = fs::read_dir(&self.steps)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                let v: serde_json::Value = serde_json::from_slice(&fs::read(p).unwrap()).unwrap();
                let strings = |v: &serde_json::Value| -> Vec<String> {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s.as_str().unwrap().to_string())
                        .collect()
                };
                StepRun {
                    args: strings(&v["process"]["args"]),
                    env: strings(&v["process"]["env"]),
                    cwd: v["process"]["cwd"].as_str().unwrap().to_string(),
                    own_network: v["linux"]["namespaces"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|n| n["type"] == "network"),
                }
            })
            .collect()
    }
}

fn bunnyfile(monitor: &str, rootfs: &str) -> String {
    format!(
        "version: v0.1\nplatforms:\n  framework: rumprun\n  monitor: {monitor}\n  architecture: x86_64\n\
         app:\n  name: hello\n  from: local\n{rootfs}cmd: [\"hello\", \"/data/www/index.html\"]\n"
    )
}

const BLOCK_ROOTFS: &str = "rootfs:\n  from: scratch\n  include:\n    - www:/www\n";

fn hello_app(e: &Env, dir: &str, test: &str) {
    e.write(
        &format!("{dir}hello.c"),
        &format!(
            // In the program, not a comment: the bake step's input is the
            // compiled program, and equal programs share a cached bake.
            "#include <stdio.h>\n\
             static const char tag[] __attribute__((used)) = \"{test} {}\";\n\
             int main(void) {{ puts(\"{HELLO}\"); return 0; }}\n",
            nonce()
        ),
    );
    // rumprun-packages' layout: the program ends up in bin/, compiled with
    // the toolchain tuple's gcc.
    e.write(
        &format!("{dir}Makefile"),
        "bin/hello: hello.c\n\tmkdir -p bin\n\t$(RUMPRUN_TOOLCHAIN_TUPLE)-gcc -O2 -o $@ hello.c\n",
    );
    e.write("www/index.html", INDEX);
}

/// A real baked rumprun unikernel: a 64-bit ELF with rumprun's build note,
/// holding the program of the test named `test` (its tag string is linked in).
fn unikernel(kernel: &Path, test: &str) {
    let bytes = fs::read(kernel).unwrap();
    assert_eq!(
        &bytes[..5],
        b"\x7fELF\x02",
        "{} is no ELF64",
        kernel.display()
    );
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(
        has(b"rumprun_tuple: x86_64-rumprun-netbsd"),
        "no .note.rumprun"
    );
    assert!(
        has(format!("{test} {}", nonce()).as_bytes()),
        "the program of test {test} is not in the unikernel"
    );
}

/// The stand-in's baked file: its header lines, and the program after them.
fn baked(kernel: &Path) -> (Vec<String>, Vec<u8>) {
    let bytes = fs::read(kernel).unwrap();
    let marker = b"--- input program follows ---\n";
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap_or_else(|| panic!("{} is not a baked file", kernel.display()));
    let header = String::from_utf8(bytes[..at].to_vec()).unwrap();
    assert!(
        header.starts_with("RUMPRUN-BAKE STAND-IN: baked unikernel\n"),
        "{header}"
    );
    (
        header.lines().map(str::to_string).collect(),
        bytes[at + marker.len()..].to_vec(),
    )
}

fn export_local(e: &Env, extra: &[&str]) -> PathBuf {
    let out = tempfile::tempdir_in(e.dir.path()).unwrap().keep();
    e.build_ok(
        &[
            &["--output", &format!("type=local,dest={}", out.display())],
            extra,
        ]
        .concat(),
    );
    out
}

fn debugfs(img: &Path, request: &str) -> String {
    run(Command::new(require_tool("debugfs"))
        .args(["-R", request])
        .arg(img))
}

#[test]
fn hvt_app_is_made_baked_and_packed_with_an_ext2_data_image() {
    let e = env();
    hello_app(&e, "", "hvt");
    e.write("BunnyFile", &bunnyfile("hvt", BLOCK_ROOTFS));
    let oci = e.dir.path().join("oci");
    let stderr = e.build_ok(&[
        "-t",
        "hello-rumprun:hvt",
        "--output",
        &format!("type=oci,dest={}", oci.display()),
    ]);

    // Exactly two steps, in order: make, then rumprun-bake for solo5 hvt.
    let runs = e.runs();
    assert_eq!(runs.len(), 2, "{stderr}");
    let (make, bake) = (&runs[0], &runs[1]);
    assert_eq!(make.args[..2], ["sh", "-c"]);
    assert!(make.args[2].contains("\n  make\n"), "{}", make.args[2]);
    assert_eq!(make.cwd, "/src");
    for var in [
        format!("PATH={BASE_PATH}:/rumprun/rumprun-solo5/bin"),
        "RUMPRUN_TOOLCHAIN_TUPLE=x86_64-rumprun-netbsd".into(),
        "APP=hello".into(),
    ] {
        assert!(make.env.contains(&var), "{var} not in {:?}", make.env);
    }
    assert!(
        !make.own_network,
        "make may download sources (rumprun-packages)"
    );
    assert_eq!(
        bake.args,
        ["rumprun-bake", "solo5_hvt", "/out/kernel", "/src/hello"]
    );
    assert_eq!(bake.cwd, "/tmp");
    assert!(bake.own_network, "baking needs no network");
    assert!(bake
        .env
        .contains(&format!("PATH={BASE_PATH}:/rumprun/rumprun-solo5/bin")));
    // The app's Makefile ran the toolchain's compiler; output is streamed
    // under each step's name.
    assert!(
        stderr.contains("[make hello] + make")
            && stderr.contains("[make hello] x86_64-rumprun-netbsd-gcc -O2 -o bin/hello hello.c")
            && stderr.contains("[make hello] + install -m 0755 bin/hello /out/hello")
            && stderr.contains("[bake hello] !!! NOTE: rumprun-bake is experimental"),
        "{stderr}"
    );

    // The image's files: the baked kernel and the ext2 data image.
    let out = export_local(&e, &[]);
    assert_eq!(
        e.runs().len(),
        2,
        "the rebuild is taken from the step cache"
    );
    unikernel(&out.join(".boot/kernel"), "hvt");

    let img = out.join(".boot/rootfs");
    run(Command::new(require_tool("e2fsck")).args(["-fn"]).arg(&img));
    assert_eq!(debugfs(&img, "cat /www/index.html"), INDEX);
    let features = run(Command::new(require_tool("dumpe2fs")).arg("-h").arg(&img));
    let features = features
        .lines()
        .find(|l| l.starts_with("Filesystem features:"))
        .unwrap();
    for ext4_only in ["has_journal", "extent", "64bit", "flex_bg"] {
        assert!(
            !features.split_whitespace().any(|f| f == ext4_only),
            "rumprun mounts ext2; got {features}"
        );
    }

    // urunc's settings, three times: manifest annotations, config labels
    // and /urunc.json (base64).
    let want = [
        ("com.urunc.unikernel.unikernelType", "rumprun"),
        ("com.urunc.unikernel.hypervisor", "hvt"),
        ("com.urunc.unikernel.binary", "/.boot/kernel"),
        ("com.urunc.unikernel.block", "/.boot/rootfs"),
        ("com.urunc.unikernel.blkMntPoint", "/data"),
        ("com.urunc.unikernel.cmdline", "hello /data/www/index.html"),
    ];
    let skopeo = |what: &str| -> serde_json::Value {
        serde_json::from_str(&run(Command::new(require_tool("skopeo"))
            .args(["inspect", what])
            .arg(format!("oci:{}:hvt", oci.display()))))
        .unwrap()
    };
    let manifest = skopeo("--raw");
    let config = skopeo("--config");
    let urunc: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("urunc.json")).unwrap()).unwrap();
    for (k, v) in want {
        assert_eq!(manifest["annotations"][k], v, "manifest annotation {k}");
        assert_eq!(config["config"]["Labels"][k], v, "config label {k}");
        let b64 = urunc[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k} in urunc.json"));
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
            v.as_bytes(),
            "urunc.json {k}"
        );
    }
    assert_ne!(
        manifest["annotations"]["com.urunc.unikernel.mountRootfs"], "true",
        "a block rootfs is not the container rootfs"
    );

    // bunny.lock pins the toolchain the override named, by digest.
    let lock: serde_json::Value =
        serde_json::from_slice(&fs::read(e.context.join("bunny.lock")).unwrap()).unwrap();
    let entry = &lock["layers"]["rumprun.toolchain"];
    assert_eq!(entry["reference"], real());
    let real_manifest = run(Command::new(require_tool("skopeo"))
        .args(["inspect", "--raw"])
        .arg(real()));
    assert_eq!(
        entry["digest"],
        format!("sha256:{:x}", Sha256::digest(real_manifest.as_bytes()))
    );
}

#[test]
fn each_monitor_bakes_its_own_config_with_its_platform_toolchain() {
    // The stand-in: the real branch has no working hw platform for qemu.
    let mut e = env();
    e.toolchain = standin();
    // The Go bunny's package-repository layout: the app in the directory
    // named after it, next to shared make fragments.
    hello_app(&e, "hello/", "monitors");
    e.write("Makefile.inc", "# shared by the packages\n");
    let mk = e.context.join("hello/Makefile");
    let body = fs::read_to_string(&mk).unwrap();
    fs::write(&mk, format!("include ../Makefile.inc\n{body}")).unwrap();

    for (monitor, platform, config) in [("spt", "solo5", "solo5_spt"), ("qemu", "hw", "hw_virtio")]
    {
        e.write("BunnyFile", &bunnyfile(monitor, BLOCK_ROOTFS));
        let before = e.runs().len();
        let out = export_local(&e, &[]);
        let runs = e.runs();
        assert_eq!(runs.len(), before + 2, "make and bake for {monitor}");
        let path = format!("PATH={BASE_PATH}:/rumprun/rumprun-{platform}/bin");
        assert!(runs[before].env.contains(&path), "{:?}", runs[before].env);
        assert_eq!(
            runs[before + 1].args,
            ["rumprun-bake", config, "/out/kernel", "/src/hello"]
        );
        assert!(runs[before + 1].env.contains(&path));
        let (header, _) = baked(&out.join(".boot/kernel"));
        assert_eq!(header[1], format!("argv: {config} /out/kernel /src/hello"));
        assert_eq!(header[2], format!("platform: {platform}"));
        let urunc: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join("urunc.json")).unwrap()).unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(urunc["com.urunc.unikernel.hypervisor"].as_str().unwrap())
                .unwrap(),
            monitor.as_bytes()
        );
    }
}

#[test]
fn raw_rootfs_keeps_the_files_in_the_image_for_devmapper() {
    let e = env();
    hello_app(&e, "", "raw");
    e.write(
        "BunnyFile",
        &bunnyfile(
            "hvt",
            "rootfs:\n  from: scratch\n  type: raw\n  include:\n    - www:/www\n",
        ),
    );
    let out = export_local(&e, &[]);
    assert_eq!(
        fs::read_to_string(out.join("www/index.html")).unwrap(),
        INDEX
    );
    assert!(!out.join(".boot/rootfs").exists(), "no block image for raw");
    unikernel(&out.join(".boot/kernel"), "raw");
    let urunc: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("urunc.json")).unwrap()).unwrap();
    let get = |k: &str| {
        urunc[k].as_str().map(|b| {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
        })
    };
    assert_eq!(
        get("com.urunc.unikernel.mountRootfs").as_deref(),
        Some("true")
    );
    assert_eq!(get("com.urunc.unikernel.block"), None);
    assert_eq!(get("com.urunc.unikernel.blkMntPoint"), None);
}

#[test]
fn no_includes_means_no_block_image() {
    let e = env();
    hello_app(&e, "", "no-includes");
    e.write("BunnyFile", &bunnyfile("spt", ""));
    let out = export_local(&e, &[]);
    let kernel = out.join(".boot/kernel");
    unikernel(&kernel, "no-includes");
    assert!(!out.join(".boot/rootfs").exists());
    // The real spt unikernel runs under the real Solo5 0.4.1 tender: no
    // manifest, so no devices; the program prints and the guest halts.
    let tender = require_tool("solo5-spt-0.4");
    let console = run(Command::new(tender)
        .arg("--mem=32")
        .arg(&kernel)
        .arg(r#"{"cmdline":"hello /data/www/index.html"}"#));
    assert!(console.contains(HELLO), "{console}");
    let urunc: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("urunc.json")).unwrap()).unwrap();
    assert!(urunc.get("com.urunc.unikernel.block").is_none(), "{urunc}");
}

#[test]
fn firecracker_is_refused_before_anything_runs() {
    let e = env();
    hello_app(&e, "", "firecracker");
    e.write("BunnyFile", &bunnyfile("firecracker", BLOCK_ROOTFS));
    let (ok, stderr) = e.build(&[]);
    assert!(!ok);
    assert!(
        stderr.contains("framework `rumprun` does not run on monitor `firecracker`")
            && stderr.contains("use one of `hvt`, `spt` or `qemu`"),
        "{stderr}"
    );
    assert!(e.runs().is_empty(), "validation refuses before any step");
}

#[test]
fn a_build_that_leaves_no_program_says_what_it_looked_for() {
    let e = env();
    e.write(
        "Makefile",
        &format!("# {}\nall:\n\t@echo nothing to build\n", nonce()),
    );
    e.write("BunnyFile", &bunnyfile("hvt", ""));
    let (ok, stderr) = e.build(&[]);
    assert!(!ok);
    assert!(
        stderr.contains("looked for bin/hello, hello (app.name) and a single executable in bin/"),
        "{stderr}"
    );
}

#[test]
fn the_nginx_example_is_valid() {
    let dir = manifest_dir().join("examples/nginx-rumprun");
    let mut cmd = Command::cargo_bin("bunny").unwrap();
    cmd.args(["build", "--check", "-f"])
        .arg(dir.join("BunnyFile"))
        .arg(&dir);
    run(&mut cmd);
}

#[test]
fn the_lock_alone_repeats_a_build_and_says_how_to_name_a_toolchain() {
    let e = env();
    hello_app(&e, "", "lock");
    e.write("BunnyFile", &bunnyfile("spt", BLOCK_ROOTFS));
    // The image digest, from the progress line of the manifest.
    let digest = |stderr: &str| {
        stderr
            .lines()
            .filter(|l| l.contains("manifest done"))
            .filter_map(|l| l.split_whitespace().last())
            .next_back()
            .unwrap_or_default()
            .to_string()
    };
    let first = digest(&e.build_ok(&["-t", "lock:1"]));
    assert!(first.starts_with("sha256:"), "{first}");
    // No --toolchain: bunny.lock names the layout and its digest, and the
    // build is the same image, without asking for the default.
    let mut cmd = e.bunny();
    cmd.args(["build", "--progress", "plain", "-t", "lock:2"])
        .arg("--oci-runtime")
        .arg(&e.runtime)
        .arg(&e.context);
    let again = output(&mut cmd);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert_eq!(digest(&stderr), first, "{stderr}");
    assert!(!stderr.contains("harbor.nbfc.io"), "{stderr}");

    // Without the lock, the default is asked for; when it cannot be had,
    // the error names it, where it came from, the flag and the lock.
    fs::remove_file(e.context.join("bunny.lock")).unwrap();
    let mut cmd = e.bunny();
    cmd.args(["build", "--registry-timeout", "10", "-t", "lock:3"])
        .arg(&e.context);
    let out = output(&mut cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("rumprun.toolchain: cannot get `harbor.nbfc.io/nubificus/bunny/rumprun/tools:latest` (named by rumprun's default)")
            && stderr.contains("--toolchain rumprun.toolchain=REF")
            && stderr.contains("bunny.lock"),
        "{stderr}"
    );
}

#[test]
fn the_sbom_names_exactly_the_toolchain_sources_kernel_and_block_files() {
    // A store of its own: the SBOM must name what this build resolved, and
    // the shared store's path may run through a symlink runc refuses.
    let store = tempfile::tempdir().unwrap();
    let e = env_in(store.path().join("store"));
    hello_app(&e, "", "sbom");
    e.write("BunnyFile", &bunnyfile("hvt", BLOCK_ROOTFS));
    let out = export_local(&e, &["-t", "rr-sbom", "--sbom"]);
    let printed = output(e.bunny().args(["inspect", "--format", "sbom", "rr-sbom"]));
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let statement: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
    let sbom = &statement["predicate"];
    let sha = |bytes: &[u8]| format!("{:x}", Sha256::digest(bytes));
    let packages = common::spdx::package_rows(sbom);
    // The image, the baked unikernel, the rumprun toolchain as bunny.lock
    // pins it (with the reference it was named by), and the sources.
    let mut expected = vec![
        (
            "rr-sbom:latest".to_string(),
            format!(
                "sha256:{}",
                statement["subject"][0]["digest"]["sha256"]
                    .as_str()
                    .unwrap()
            ),
            "NOASSERTION".to_string(),
        ),
        (
            "kernel".to_string(),
            format!(
                "sha256:{}",
                sha(&fs::read(out.join(".boot/kernel")).unwrap())
            ),
            "NOASSERTION".to_string(),
        ),
    ];
    let lock: serde_json::Value =
        serde_json::from_slice(&fs::read(e.context.join("bunny.lock")).unwrap()).unwrap();
    let layers = lock["layers"].as_object().unwrap();
    assert!(layers.contains_key("rumprun.toolchain"), "{lock}");
    for (key, l) in layers {
        expected.push((
            key.clone(),
            l["digest"].as_str().unwrap().to_string(),
            l["reference"].as_str().unwrap().to_string(),
        ));
    }
    expected.push((
        ".".to_string(),
        bunny::oci::attest::tree_digest(&e.context).unwrap(),
        "NOASSERTION".to_string(),
    ));
    assert_eq!(packages, expected);
    assert_eq!(expected[2].2, e.toolchain, "named as --toolchain gave it");
    // The block image's files: what `include` put there.
    let files: Vec<(String, String)> = sbom["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["fileName"].as_str().unwrap().to_string(),
                f["checksums"][1]["checksumValue"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [("./www/index.html".to_string(), sha(INDEX.as_bytes()))]
    );
    assert!(
        debugfs(&out.join(".boot/rootfs"), "cat /www/index.html").contains(INDEX.trim()),
        "the block image holds the file the SBOM names"
    );
}
