//! `app` sections end to end: a C server built from source with `make` in the
//! linux toolchain image under runc, packed with the kernel layer and
//! bunny-init into an initrd cut to what it uses (no shell), booted under
//! qemu (TCG) with urunc's command line, answering HTTP. Also
//! the step cache (counted with a wrapping `--oci-runtime`) and `bunny.lock`.
//!
//! The toolchain and kernel images come from `scripts/toolchain-image.sh`
//! (debootstrap, minutes, once; cached under target/toolchains).

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use bunny::layers::store::Store;
use common::guest::free_port;
use common::{output, require_tool, run, toolchains};

const HELLO: &str = "hello from a C server built by bunny";

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    context: PathBuf,
    config_home: PathBuf,
    counter: PathBuf,
    runtime: PathBuf,
}

/// A store, a copy of the example's context, a config file naming the
/// kernel image, and an OCI runtime that counts its runs and execs runc.
fn env(toolchain_layout: &Path) -> Env {
    require_tool("runc");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let context = dir.path().join("ctx");
    fs::create_dir_all(&context).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-linux-src");
    for f in ["hello.c", "Makefile", "BunnyFile"] {
        fs::copy(example.join(f), context.join(f)).unwrap();
    }
    let config_home = dir.path().join("config");
    fs::create_dir_all(config_home.join("bunny")).unwrap();
    fs::write(
        config_home.join("bunny/config.json"),
        format!(
            r#"{{"layers": {{"linux.kernel": "oci:{}:kernel-bookworm"}}}}"#,
            toolchains().display()
        ),
    )
    .unwrap();
    let counter = dir.path().join("runs");
    let runtime = dir.path().join("counting-runc");
    fs::write(
        &runtime,
        format!(
            "#!/bin/sh\necho run >> '{}'\nexec runc \"$@\"\n",
            counter.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o755)).unwrap();
    let _ = toolchain_layout;
    Env {
        _dir: dir,
        root,
        context,
        config_home,
        counter,
        runtime,
    }
}

impl Env {
    fn build(&self, toolchain: &str, extra: &[&str]) -> (bool, String) {
        let mut cmd = Command::cargo_bin("bunny").unwrap();
        cmd.env("XDG_CONFIG_HOME", &self.config_home)
            .arg("--root")
            .arg(&self.root)
            .args(["build", "--progress", "plain", "-t", "hello-src"])
            .arg("--oci-runtime")
            .arg(&self.runtime)
            .arg("--toolchain")
            .arg(format!("linux={toolchain}"))
            .args(extra)
            .arg(&self.context);
        let out = output(&mut cmd);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), stderr)
    }

    fn build_ok(&self, toolchain: &str, extra: &[&str]) -> String {
        let (ok, stderr) = self.build(toolchain, extra);
        assert!(ok, "bunny build failed:\n{stderr}");
        stderr
    }

    fn runs(&self) -> usize {
        fs::read_to_string(&self.counter)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// The SBOM statement attached to the last build.
    fn sbom(&self) -> serde_json::Value {
        let out = output(
            Command::cargo_bin("bunny")
                .unwrap()
                .arg("--root")
                .arg(&self.root)
                .args(["inspect", "--format", "sbom", "hello-src"]),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn lock(&self) -> serde_json::Value {
        serde_json::from_slice(&fs::read(self.context.join("bunny.lock")).unwrap()).unwrap()
    }
}

fn gcc_ref(layout: &Path) -> String {
    format!("oci:{}:gcc-bookworm", layout.display())
}

#[test]
fn app_from_source_boots_and_serves_http() {
    let layout = toolchains();
    let e = env(&layout);
    let stderr = e.build_ok(&gcc_ref(&layout), &[]);
    assert!(
        stderr.contains("[make hello-server] gcc"),
        "make's output is streamed with the step's name:\n{stderr}"
    );
    assert_eq!(e.runs(), 1);

    // The image's files: the kernel and the initrd urunc would boot.
    let out = e._dir.path().join("local");
    let store = Store::open(&e.root).unwrap();
    assert!(store.resolve("hello-src:latest").is_ok());
    let mut cmd = Command::cargo_bin("bunny").unwrap();
    cmd.env("XDG_CONFIG_HOME", &e.config_home)
        .arg("--root")
        .arg(&e.root)
        .args(["build", "--progress", "plain", "--toolchain"])
        .arg(format!("linux={}", gcc_ref(&layout)))
        .arg("--output")
        .arg(format!("type=local,dest={}", out.display()))
        .arg(&e.context);
    run(&mut cmd);
    let kernel = out.join(".boot/kernel");
    let initrd = out.join(".boot/rootfs");
    assert_eq!(
        fs::read(&kernel).unwrap(),
        fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/linux-kernel/vmlinuz"))
            .unwrap(),
        "the kernel comes from the kernel layer"
    );

    // The initrd holds the app, bunny-init and the kernel's modules, nothing
    // else: no busybox, no shell init.
    let listing = run(Command::new(require_tool("cpio"))
        .args(["-it", "--quiet", "-F"])
        .arg(&initrd));
    let files: Vec<&str> = listing.lines().collect();
    let (modules, others): (Vec<&str>, Vec<&str>) =
        files.iter().partition(|f| f.starts_with("lib/modules/"));
    assert_eq!(
        others,
        ["bin", "bin/hello-server", "lib", "lib/modules", "urunit"],
        "the initrd's files: {files:?}"
    );
    assert!(
        modules.contains(&"lib/modules/virtio_net.ko")
            && modules.iter().all(|m| m.ends_with(".ko")),
        "only the kernel layer's modules: {modules:?}"
    );
    let inspect = run(Command::cargo_bin("bunny")
        .unwrap()
        .arg("--root")
        .arg(&e.root)
        .args(["inspect", "--json", "hello-src"]));
    let report: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let argv: Vec<String> = report["config"]["entrypoint"]
        .as_array()
        .unwrap()
        .iter()
        .chain(report["config"]["cmd"].as_array().unwrap())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(argv, ["/urunit", "/bin/hello-server", "80"]);

    // urunc's command line for a linux initrd: `rdinit=ARGV0 -- ARGS`.
    let append = format!(
        "console=ttyS0 panic=-1 root=/dev/ram0 rw ip=10.0.2.15::10.0.2.2:255.255.255.0:urunc:eth0:off rdinit={} -- {}",
        argv[0],
        argv[1..].join(" ")
    );
    let port = free_port();
    let mut qemu = Command::new(require_tool("qemu-system-x86_64"))
        .args(["-accel", "tcg", "-m", "256", "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            &append,
            "-netdev",
            &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:80"),
            "-device",
            "virtio-net-pci,netdev=n0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let console = qemu.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(console).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut body = String::new();
    let mut listening = false;
    while start.elapsed() < Duration::from_secs(90) {
        while let Ok(line) = rx.try_recv() {
            listening |= line.contains("hello-server: listening on port 80");
            seen.push(line);
        }
        if listening {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
                body.clear();
                let _ = s.read_to_string(&mut body);
                if body.contains(HELLO) {
                    eprintln!(
                        "first HTTP answer {:.2}s after qemu started (TCG)",
                        start.elapsed().as_secs_f64()
                    );
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    while let Ok(line) = rx.try_recv() {
        seen.push(line);
    }
    assert!(
        body.contains(HELLO) && body.starts_with("HTTP/1.0 200"),
        "no answer from the guest's server; got {body:?}; console:\n{}",
        seen.join("\n")
    );
}

#[test]
fn unchanged_rebuilds_are_cached_and_edits_rerun() {
    let layout = toolchains();
    let e = env(&layout);
    let gcc = gcc_ref(&layout);
    e.build_ok(&gcc, &[]);
    assert_eq!(e.runs(), 1);

    let stderr = e.build_ok(&gcc, &[]);
    assert_eq!(e.runs(), 1, "an unchanged rebuild runs no container");
    assert!(
        stderr.contains("make hello-server done in") && stderr.contains("CACHED"),
        "{stderr}"
    );

    // One changed source file reruns the step.
    let c = e.context.join("hello.c");
    let mut src = fs::read_to_string(&c).unwrap();
    src.push_str("/* edited */\n");
    fs::write(&c, src).unwrap();
    let stderr = e.build_ok(&gcc, &[]);
    assert_eq!(e.runs(), 2, "{stderr}");
    assert!(!stderr.contains("CACHED"), "{stderr}");

    e.build_ok(&gcc, &["--no-cache"]);
    assert_eq!(e.runs(), 3, "--no-cache runs the step again");

    // An entrypoint written for a shell init names a file the cut rootfs
    // lacks: refused when building, with the way out.
    let bunnyfile = e.context.join("BunnyFile");
    let original = fs::read_to_string(&bunnyfile).unwrap();
    let with_init = original.replace("cmd: [\"80\"]", "entrypoint: [\"/init\"]\ncmd: [\"80\"]");
    assert_ne!(with_init, original);
    fs::write(&bunnyfile, &with_init).unwrap();
    let (ok, stderr) = e.build(&gcc, &[]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("runs `/init` under bunny-init, but the app's rootfs has no such file")
            && stderr.contains("app.shell: true"),
        "{stderr}"
    );

    // `shell: true` keeps busybox and the shell /init instead of bunny-init.
    fs::write(
        &bunnyfile,
        with_init.replace("  from: local\n", "  from: local\n  shell: true\n"),
    )
    .unwrap();
    let out = e._dir.path().join("shell");
    e.build_ok(
        &gcc,
        &["--output", &format!("type=local,dest={}", out.display())],
    );
    let listing = run(Command::new(require_tool("cpio"))
        .args(["-it", "--quiet", "-F"])
        .arg(out.join(".boot/rootfs")));
    let files: Vec<&str> = listing
        .lines()
        .filter(|f| !f.starts_with("lib/modules/"))
        .collect();
    assert_eq!(
        files,
        [
            "bin",
            "bin/busybox",
            "bin/hello-server",
            "init",
            "lib",
            "lib/modules"
        ]
    );
}

/// Names a copy of the toolchain (another config label, so another manifest
/// digest) `gcc-bookworm` in `layout`.
fn retag_toolchain(layout: &Path) -> String {
    let store = Store::open(layout).unwrap();
    let old = store.resolve("gcc-bookworm").unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&store.read_blob(old.digest().as_ref()).unwrap()).unwrap();
    let cfg_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config: serde_json::Value =
        serde_json::from_slice(&store.read_blob(&cfg_digest).unwrap()).unwrap();
    config["config"]["Labels"]["bunny.test.retagged"] = "yes".into();
    let cfg = store
        .put_bytes(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).unwrap(),
        )
        .unwrap();
    manifest["config"]["digest"] = cfg.digest().to_string().into();
    manifest["config"]["size"] = cfg.size().into();
    let m = store
        .put_bytes(
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
    store.tag("gcc-bookworm", &m).unwrap();
    m.digest().to_string()
}

#[test]
fn the_lock_file_pins_the_toolchain() {
    let shared = toolchains();
    // A layout of our own to retag in: the shared one's blobs, hard-linked.
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    run(Command::new("cp").arg("-al").arg(&shared).arg(&layout));
    let e = env(&layout);
    let gcc = gcc_ref(&layout);

    e.build_ok(&gcc, &[]);
    let first = e.lock()["layers"]["linux.toolchain"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        first,
        Store::open(&layout)
            .unwrap()
            .resolve("gcc-bookworm")
            .unwrap()
            .digest()
            .to_string()
    );
    assert_eq!(
        e.lock()["layers"]["linux.kernel"]["reference"],
        format!("oci:{}:kernel-bookworm", shared.display()),
        "the config file's kernel reference is used and locked"
    );
    let lock_text = fs::read_to_string(e.context.join("bunny.lock")).unwrap();

    let retagged = retag_toolchain(&layout);
    assert_ne!(retagged, first);
    let stderr = e.build_ok(&gcc, &[]);
    assert_eq!(
        fs::read_to_string(e.context.join("bunny.lock")).unwrap(),
        lock_text,
        "a retagged toolchain is not picked up without --update-lock"
    );
    assert!(
        stderr.contains("CACHED"),
        "same toolchain, same step key:\n{stderr}"
    );
    assert_eq!(e.runs(), 1);

    let stderr = e.build_ok(&gcc, &["--update-lock"]);
    assert_eq!(
        e.lock()["layers"]["linux.toolchain"]["digest"]
            .as_str()
            .unwrap(),
        retagged
    );
    assert!(
        !stderr.contains("CACHED"),
        "a new toolchain reruns the step:\n{stderr}"
    );
    assert_eq!(e.runs(), 2);
}

#[test]
fn app_from_a_git_repository() {
    let layout = toolchains();
    let e = env(&layout);
    // The example's sources as a repository on branch `demo`, cloned over
    // file:// (no network needed).
    let repo = e._dir.path().join("repo");
    fs::create_dir_all(&repo).unwrap();
    for f in ["hello.c", "Makefile"] {
        fs::copy(e.context.join(f), repo.join(f)).unwrap();
    }
    let git = |args: &[&str]| {
        run(Command::new(require_tool("git"))
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@localhost"])
            .args(args));
    };
    git(&["init", "-q", "-b", "demo"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "sources"]);
    fs::remove_file(e.context.join("hello.c")).unwrap();
    fs::remove_file(e.context.join("Makefile")).unwrap();
    let bf = fs::read_to_string(e.context.join("BunnyFile"))
        .unwrap()
        .replace(
            "  from: local\n",
            &format!("  from: file://{}\n  branch: demo\n", repo.display()),
        );
    fs::write(e.context.join("BunnyFile"), bf).unwrap();

    let stderr = e.build_ok(&gcc_ref(&layout), &[]);
    assert!(stderr.contains("git clone file://"), "{stderr}");
    assert!(stderr.contains("[make hello-server] gcc"), "{stderr}");
    assert_eq!(e.runs(), 1);
    let sources: Vec<_> = fs::read_dir(e.root.join("sources"))
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(sources.len(), 1, "{sources:?}");
    assert!(e
        .root
        .join("sources")
        .join(&sources[0])
        .join("hello.c")
        .is_file());
    // A rebuild clones again (the branch may have moved) but the same
    // checkout makes the same step key; its SBOM names the repository and
    // the commit.
    let stderr = e.build_ok(&gcc_ref(&layout), &["--sbom"]);
    assert!(stderr.contains("CACHED"), "{stderr}");
    assert_eq!(e.runs(), 1);
    let commit = run(Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["rev-parse", "HEAD"]));
    let sbom = e.sbom();
    let source = sbom["predicate"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["SPDXID"] == "SPDXRef-Source")
        .unwrap()
        .clone();
    assert_eq!(source["name"], format!("file://{}", repo.display()));
    assert_eq!(source["versionInfo"], commit.trim());
    assert_eq!(
        source["downloadLocation"],
        format!("git+file://{}@{}", repo.display(), commit.trim())
    );
}

#[test]
fn the_sbom_names_exactly_the_toolchain_kernel_sources_and_initrd_files() {
    let layout = toolchains();
    let e = env(&layout);
    let out = e._dir.path().join("out");
    e.build_ok(
        &gcc_ref(&layout),
        &[
            "--sbom",
            "-o",
            &format!("type=local,dest={}", out.display()),
        ],
    );
    let statement = e.sbom();
    let sbom = &statement["predicate"];
    let sha = |p: &Path| {
        format!(
            "{:x}",
            <sha2::Sha256 as sha2::Digest>::digest(fs::read(p).unwrap())
        )
    };
    let packages = common::spdx::package_rows(sbom);
    // The image, its kernel (from the kernel layer), each layer bunny.lock
    // pins with the reference it came from, and the context's sources.
    let mut expected = vec![
        (
            "hello-src:latest".to_string(),
            statement["subject"][0]["digest"]["sha256"]
                .as_str()
                .map(|h| format!("sha256:{h}"))
                .unwrap(),
            "NOASSERTION".to_string(),
        ),
        (
            "kernel".to_string(),
            format!("sha256:{}", sha(&out.join(".boot/kernel"))),
            "NOASSERTION".to_string(),
        ),
    ];
    let lock = e.lock();
    for (key, l) in lock["layers"].as_object().unwrap() {
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
    assert_eq!(
        lock["layers"].as_object().unwrap().len(),
        2,
        "the toolchain and the kernel layer: {lock}"
    );
    // The files are the initrd's, each by digest.
    let unpacked = e._dir.path().join("initrd");
    fs::create_dir_all(&unpacked).unwrap();
    let cpio = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && cpio -id --quiet --no-absolute-filenames < '{}'",
            unpacked.display(),
            out.join(".boot/rootfs").display()
        ))
        .status()
        .unwrap();
    assert!(cpio.success());
    let mut want = Vec::new();
    let mut stack = vec![unpacked.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let ty = entry.file_type().unwrap();
            if ty.is_dir() {
                stack.push(entry.path());
            } else if ty.is_file() {
                let rel = entry
                    .path()
                    .strip_prefix(&unpacked)
                    .unwrap()
                    .display()
                    .to_string();
                want.push((format!("./{rel}"), sha(&entry.path())));
            }
        }
    }
    want.sort();
    let got: Vec<(String, String)> = sbom["files"]
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
    assert_eq!(got, want);
    assert!(
        got.iter().any(|(p, _)| p == "./bin/hello-server"),
        "{got:?}"
    );
}
