//! What a build step can and cannot do, run under the real runc in the real
//! toolchain image: the context is read-only, only `/out` (and the throwaway
//! overlay) is writable, there is no network unless the step asks, and a
//! failing step reports its command, exit status and last 20 lines and leaves
//! nothing in the cache.

mod common;

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use assert_cmd::cargo::CommandCargoExt;
use bunny::build::rootfs::unpacked_rootfs;
use bunny::build::runner::{Runtime, Step};
use bunny::build::{resolve_image, BuildError, ResolvedImage};
use bunny::layers::store::Store;
use bunny::pipeline::Progress;
use common::{output, require_tool, toolchains};

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Progress for Lines {
    fn start(&self, _: &str) {}
    fn finish(&self, _: &str, _: &str) {}
    fn warn(&self, _: &str) {}
    fn log(&self, step: &str, line: &str) {
        self.0.lock().unwrap().push(format!("[{step}] {line}"));
    }
}

/// One store with the toolchain unpacked, shared by the tests in this file
/// and kept under target/ between runs: a temporary directory held by a
/// static is never dropped, and leaked a 270 MB rootfs on every run.
fn toolchain_rootfs() -> &'static (PathBuf, PathBuf) {
    static ROOTFS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        require_tool("runc");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/isolation-toolchain");
        let store = Store::open(&dir).unwrap();
        let reference = format!("oci:{}:gcc-bookworm", toolchains().display());
        let (image_store, manifest) = resolve_image(&store, &reference, None, false).unwrap();
        let image = ResolvedImage {
            reference,
            store: image_store,
            manifest,
        };
        // Unpacked once per digest; a later run finds it in place.
        let (rootfs, _) = unpacked_rootfs(&dir, &image).unwrap();
        (dir, rootfs)
    })
}

fn step(script: &str, source: &Path, network: bool) -> Step {
    Step {
        name: "probe".into(),
        rootfs: toolchain_rootfs().1.clone(),
        command: vec!["bash".into(), "-c".into(), script.into()],
        env: vec![],
        workdir: "/src".into(),
        source: source.to_path_buf(),
        network,
        mounts: Vec::new(),
    }
}

fn runtime() -> Runtime {
    Runtime {
        program: "runc".into(),
        work_dir: toolchain_rootfs().0.join("tmp"),
    }
}

#[test]
fn steps_write_only_to_out() {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("input"), "from the context").unwrap();
    let out = tempfile::tempdir().unwrap();
    let progress = Lines::default();
    let script = "cat /src/input > /out/copied
        if touch /src/new 2>/dev/null; then echo CONTEXT-WRITABLE; fi
        echo scribble > /etc/scribble && echo ROOT-WRITE-OK
        echo done";
    runtime()
        .run(&step(script, ctx.path(), false), out.path(), &progress)
        .unwrap();
    let lines = progress.0.lock().unwrap().clone();
    assert_eq!(
        fs::read_to_string(out.path().join("copied")).unwrap(),
        "from the context"
    );
    assert!(
        !lines.iter().any(|l| l.contains("CONTEXT-WRITABLE")),
        "{lines:?}"
    );
    assert!(!ctx.path().join("new").exists());
    assert!(lines.contains(&"[probe] done".to_string()), "{lines:?}");
    // Writes to the rootfs land in the step's overlay, never in the cached
    // toolchain that the next step starts from.
    assert!(
        lines.iter().any(|l| l.contains("ROOT-WRITE-OK")),
        "{lines:?}"
    );
    assert!(!toolchain_rootfs().1.join("etc/scribble").exists());
}

#[test]
fn steps_have_no_network_unless_they_ask() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ctx = tempfile::tempdir().unwrap();
    let script = format!(
        "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sed 's/^/IFACE /'
         if echo hi > /dev/tcp/127.0.0.1/{port}; then echo CONNECTED; else echo NO-CONNECT; fi"
    );

    let out = tempfile::tempdir().unwrap();
    let progress = Lines::default();
    runtime()
        .run(&step(&script, ctx.path(), false), out.path(), &progress)
        .unwrap();
    let lines = progress.0.lock().unwrap().clone();
    let ifaces: Vec<&String> = lines.iter().filter(|l| l.contains("IFACE ")).collect();
    assert_eq!(ifaces, ["[probe] IFACE lo"], "{lines:?}");
    assert!(
        lines.contains(&"[probe] NO-CONNECT".to_string()),
        "{lines:?}"
    );

    // The same probe with the network: it reaches the host's listener, so
    // the probe above could have seen it.
    listener.set_nonblocking(false).unwrap();
    let accept = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        buf
    });
    let progress = Lines::default();
    runtime()
        .run(&step(&script, ctx.path(), true), out.path(), &progress)
        .unwrap();
    let lines = progress.0.lock().unwrap().clone();
    assert!(
        lines.contains(&"[probe] CONNECTED".to_string()),
        "{lines:?}"
    );
    assert_eq!(accept.join().unwrap(), "hi\n");
}

#[test]
fn failing_steps_report_and_leave_nothing() {
    let ctx = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = runtime()
        .run(
            &step(
                "for i in $(seq 1 30); do echo line $i; done; exit 3",
                ctx.path(),
                false,
            ),
            out.path(),
            &Lines::default(),
        )
        .unwrap_err();
    match &err {
        BuildError::StepFailed {
            step,
            command,
            status,
            last_lines,
        } => {
            assert_eq!(step, "probe");
            assert!(command.starts_with("bash -c 'for i in"), "{command}");
            assert!(status.contains('3'), "{status}");
            let want: Vec<String> = (11..=30).map(|i| format!("line {i}")).collect();
            assert_eq!(last_lines, &want);
        }
        other => panic!("expected a step failure, got {other}"),
    }

    // Through `bunny build`: a Makefile that fails. The error names the
    // step, its status and make's last lines; no output is cached and no
    // image is tagged.
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("ctx");
    fs::create_dir_all(&context).unwrap();
    fs::write(
        context.join("BunnyFile"),
        "version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\napp:\n  name: broken\n  from: local\n",
    )
    .unwrap();
    fs::write(
        context.join("Makefile"),
        "broken:\n\techo compiling broken\n\techo 'broken.c:1: error: expected ;' >&2; false\n",
    )
    .unwrap();
    let root = dir.path().join("store");
    let layout = toolchains();
    let mut cmd = Command::cargo_bin("bunny").unwrap();
    cmd.env("XDG_CONFIG_HOME", dir.path().join("no-config"))
        .arg("--root")
        .arg(&root)
        .args(["build", "--progress", "plain", "-t", "broken"])
        .arg("--toolchain")
        .arg(format!("linux=oci:{}:gcc-bookworm", layout.display()))
        .arg("--toolchain")
        .arg(format!(
            "linux.kernel=oci:{}:kernel-bookworm",
            layout.display()
        ))
        .arg(&context);
    let out = output(&mut cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("step `make broken` failed (exit status: 2)"),
        "{stderr}"
    );
    assert!(stderr.contains("broken.c:1: error: expected ;"), "{stderr}");
    assert!(stderr.contains("--- last"), "{stderr}");
    let cache: Vec<_> = fs::read_dir(root.join("build-cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(cache.is_empty(), "a failed step left {cache:?}");
    assert!(Store::open(&root).unwrap().list().unwrap().is_empty());
}
