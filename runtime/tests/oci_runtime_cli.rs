//! The runc command line of `bunny-runtime` driven by hand, as containerd's
//! shim drives it, on a hand-made bundle: a Debian kernel and a busybox
//! initrd booted by qemu as the container's init.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bunny-runtime");

fn kernel() -> PathBuf {
    if let Some(k) = std::env::var_os("BUNNY_TEST_KERNEL") {
        return PathBuf::from(k);
    }
    let k = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/linux-kernel/vmlinuz");
    assert!(
        k.is_file(),
        "no kernel to boot at {}: run scripts/setup.sh (or set BUNNY_TEST_KERNEL)",
        k.display()
    );
    k
}

fn need(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(found, "{program} is missing: apt-get install {package}");
}

/// The guest's init: prints its args, then powers off at once for `once`
/// and otherwise idles until killed.
const INIT: &str = "#!/bin/busybox sh\n\
/bin/busybox mount -t devtmpfs dev /dev\n\
/bin/busybox mount -t proc proc /proc\n\
exec >/dev/console 2>&1 </dev/null\n\
echo \"OCI-MARKER args=[$*] greeting=[$GREETING]\"\n\
echo \"OCI-MEMORY $(/bin/busybox grep MemTotal /proc/meminfo)\"\n\
[ \"$1\" = once ] && /bin/busybox poweroff -f\n\
while :; do /bin/busybox sleep 1; done\n";

/// A bundle: config.json plus rootfs/.boot/{kernel,rootfs}.
fn bundle(dir: &Path, args: &[&str], annotations: bool) -> PathBuf {
    need("cpio", "cpio");
    assert!(
        Path::new("/bin/busybox").is_file(),
        "/bin/busybox is missing: apt-get install busybox-static"
    );
    let b = dir.join("bundle");
    let tree = dir.join("tree");
    for d in ["bin", "dev", "proc"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).unwrap();
    std::fs::write(tree.join("init"), INIT).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tree.join("init"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let boot = b.join("rootfs/.boot");
    std::fs::create_dir_all(&boot).unwrap();
    let out = std::fs::File::create(boot.join("rootfs")).unwrap();
    let mut cpio = Command::new("cpio")
        .args(["--quiet", "-o", "-H", "newc", "--reproducible"])
        .current_dir(&tree)
        .stdin(Stdio::piped())
        .stdout(out)
        .spawn()
        .unwrap();
    cpio.stdin
        .take()
        .unwrap()
        .write_all(b".\nbin\nbin/busybox\ndev\nproc\ninit\n")
        .unwrap();
    assert!(cpio.wait().unwrap().success());
    if std::fs::hard_link(kernel(), boot.join("kernel")).is_err() {
        std::fs::copy(kernel(), boot.join("kernel")).unwrap();
    }
    let mut ann = serde_json::Map::new();
    if annotations {
        for (k, v) in [
            ("com.urunc.unikernel.unikernelType", "linux"),
            ("com.urunc.unikernel.hypervisor", "qemu"),
            ("com.urunc.unikernel.binary", "/.boot/kernel"),
            ("com.urunc.unikernel.initrd", "/.boot/rootfs"),
        ] {
            ann.insert(k.into(), v.into());
        }
    }
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"terminal": false, "args": args, "env": ["GREETING=oci-hello"], "cwd": "/"},
        "root": {"path": "rootfs"},
        "annotations": ann,
        "linux": {"namespaces": [{"type": "network"}],
                  "resources": {"memory": {"limit": 134217728}}}
    });
    std::fs::write(b.join("config.json"), config.to_string()).unwrap();
    b
}

struct Rt {
    root: PathBuf,
}

impl Rt {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(&self.root).args(args);
        c.stdin(Stdio::null());
        c
    }
    fn out(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert!(
            o.status.success(),
            "bunny-runtime {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    fn state(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }
    fn create(&self, id: &str, bundle: &Path, pid_file: &Path, console: &Path) {
        let log = std::fs::File::create(console).unwrap();
        let o = self
            .cmd(&["create", "--bundle", bundle.to_str().unwrap()])
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "create failed; output:\n{}",
            std::fs::read_to_string(console).unwrap_or_default()
        );
    }
}

/// A test that fails half-way must not leave its supervisor and qemu running
/// (they would hold the container's cgroup, and the next run's `ps` would see
/// them): whatever is still in the state root is force-deleted.
impl Drop for Rt {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for e in entries.flatten() {
            if let Some(id) = e.file_name().to_str() {
                let _ = self.out(&["delete", "--force", id]);
            }
        }
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool, ctx: impl Fn() -> String) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < limit,
            "timed out waiting for {what}:\n{}",
            ctx()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn setup() -> (tempfile::TempDir, Rt) {
    need("qemu-system-x86_64", "qemu-system-x86");
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let rt = Rt {
        root: tmp.path().join("state"),
    };
    (tmp, rt)
}

#[test]
fn lifecycle_create_start_kill_delete() {
    let (tmp, rt) = setup();
    let b = bundle(tmp.path(), &["/init", "wait"], true);
    let pid_file = tmp.path().join("init.pid");
    let console = tmp.path().join("console.log");
    rt.create("c1", &b, &pid_file, &console);

    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let st = rt.state("c1");
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["pid"], pid);
    assert_eq!(st["id"], "c1");
    assert_eq!(st["bundle"], b.to_str().unwrap());
    assert_eq!(st["annotations"]["com.urunc.unikernel.hypervisor"], "qemu");
    assert!(st["ociVersion"].is_string());

    let o = rt.out(&["exec", "c1", "sh"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not supported for unikernels"),
        "{o:?}"
    );
    for cmd in ["pause", "resume", "update", "checkpoint"] {
        assert_eq!(rt.out(&[cmd, "c1"]).status.code(), Some(1), "{cmd}");
    }
    // A second create with the same id is refused.
    let again = rt.out(&["create", "--bundle", b.to_str().unwrap(), "c1"]);
    assert!(!again.status.success(), "duplicate id accepted");

    rt.ok(&["start", "c1"]);
    assert_eq!(rt.state("c1")["status"], "running");
    // The container's processes, as runc lists them: its init (the
    // supervisor, the pid `state` names) and the monitor it runs.
    let ps: Vec<i32> = serde_json::from_str(rt.ok(&["ps", "--format", "json", "c1"]).trim())
        .expect("ps --format json is a list of pids");
    assert!(ps.contains(&pid), "{ps:?} lacks the init {pid}");
    assert!(ps.len() <= 2, "the supervisor and the monitor only: {ps:?}");
    assert!(!rt.out(&["start", "c1"]).status.success(), "started twice");
    wait_for(
        "the guest's marker",
        Duration::from_secs(60),
        || {
            std::fs::read_to_string(&console)
                .unwrap_or_default()
                .contains("OCI-MARKER args=[wait] greeting=[oci-hello]")
        },
        || std::fs::read_to_string(&console).unwrap_or_default(),
    );
    // Not stopped: delete without --force is refused.
    let o = rt.out(&["delete", "c1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not stopped"),
        "{o:?}"
    );

    // The monitor dies outright; state notices, delete cleans up.
    rt.ok(&["kill", "c1", "9"]);
    wait_for(
        "stopped",
        Duration::from_secs(10),
        || rt.state("c1")["status"] == "stopped",
        || rt.state("c1").to_string(),
    );
    assert_eq!(rt.ok(&["ps", "--format", "json", "c1"]).trim(), "[]");
    let o = rt.out(&["kill", "c1", "TERM"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("container not running"),
        "{o:?}"
    );
    rt.ok(&["delete", "c1"]);
    assert!(!rt.root.join("c1").exists(), "state left behind");
    assert!(!rt.out(&["state", "c1"]).status.success());
}

#[test]
fn guest_poweroff_means_stopped_and_delete_of_unstarted_kills() {
    let (tmp, rt) = setup();
    let b = bundle(tmp.path(), &["/init", "once"], true);
    let console = tmp.path().join("console.log");
    rt.create("c2", &b, &tmp.path().join("p2"), &console);
    rt.ok(&["start", "c2"]);
    wait_for(
        "the guest to power off",
        Duration::from_secs(60),
        || rt.state("c2")["status"] == "stopped",
        || std::fs::read_to_string(&console).unwrap_or_default(),
    );
    let text = std::fs::read_to_string(&console).unwrap();
    assert!(text.contains("OCI-MARKER args=[once]"), "{text}");
    // The spec's 128 MiB limit reached qemu: the guest sees less than
    // that (the kernel keeps some), and far more than half of it; bunny's
    // default of 256 MiB would show as about 240 000 kB.
    let mem_kb: u64 = text
        .lines()
        .find_map(|l| l.split("OCI-MEMORY MemTotal:").nth(1))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("the guest did not report its memory: {text}"));
    assert!(
        (64 * 1024..=128 * 1024).contains(&mem_kb),
        "the guest has {mem_kb} kB, not the spec's 128 MiB"
    );
    rt.ok(&["delete", "c2"]);
    assert!(std::fs::read_dir(&rt.root).unwrap().next().is_none());

    // Created but never started: delete kills the waiting init.
    rt.create("c3", &b, &tmp.path().join("p3"), &tmp.path().join("c3.log"));
    let pid: i32 = std::fs::read_to_string(tmp.path().join("p3"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    rt.ok(&["delete", "--force", "c3"]);
    assert!(!rt.root.join("c3").exists());
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "init still alive: {stat}"
    );
}

#[test]
fn errors_go_to_the_json_log() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let rt = Rt {
        root: tmp.path().join("state"),
    };
    let b = bundle(tmp.path(), &["/init"], true);
    let cfg = b.join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"qemu\"", "\"vmware\"");
    std::fs::write(&cfg, text).unwrap();
    let log = tmp.path().join("log.json");
    let o = Command::new(BIN)
        .arg("--root")
        .arg(&rt.root)
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "create", "--bundle"])
        .arg(&b)
        .arg("bad")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("vmware"), "{stderr}");
    let line = std::fs::read_to_string(&log).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("vmware"), "{v}");
    assert!(v["time"].as_str().unwrap().ends_with('Z'), "{v}");
    assert!(!rt.root.join("bad").exists(), "a failed create left state");

    // An error found by the init (inside the namespace) reaches create's
    // caller, and the init does not outlive it.
    let cfg_text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"vmware\"", "\"qemu\"")
        .replace(
            "\"com.urunc.unikernel.initrd\":\"/.boot/rootfs\"",
            "\"com.urunc.unikernel.mountRootfs\":\"true\"",
        );
    assert!(cfg_text.contains("mountRootfs"), "{cfg_text}");
    std::fs::write(&cfg, cfg_text).unwrap();
    let o = Command::new(BIN)
        .arg("--root")
        .arg(&rt.root)
        .args(["create", "--bundle"])
        .arg(&b)
        .args(["--pid-file"])
        .arg(tmp.path().join("never.pid"))
        .arg("bad2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("init failed") && stderr.contains("mountRootfs"),
        "{stderr}"
    );
    assert!(!rt.root.join("bad2").exists(), "a failed create left state");
    assert!(!tmp.path().join("never.pid").exists());
}

#[test]
fn ordinary_containers_go_to_runc_with_identical_arguments() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let b = bundle(tmp.path(), &["/bin/busybox", "echo", "hi"], false);
    let record = tmp.path().join("argv");
    let fake = tmp.path().join("fake-runc");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\nexit 7\n",
            record.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let args = [
        "--root",
        "/tmp/r",
        "--log",
        "/tmp/l.json",
        "--log-format",
        "json",
        "create",
        "--bundle",
        b.to_str().unwrap(),
        "--pid-file",
        "/tmp/p",
        "plain1",
    ];
    let o = Command::new(BIN)
        .args(args)
        .env("BUNNY_RUNTIME_FALLBACK", &fake)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "runc's exit code is ours");
    let got = std::fs::read_to_string(&record).unwrap();
    assert_eq!(got.lines().collect::<Vec<_>>(), args);
    // Commands on containers we do not own go to runc too.
    for cmd in [
        &["state", "plain1"][..],
        &["exec", "-t", "plain1", "sh"],
        &["delete", "-f", "x"],
    ] {
        let o = Command::new(BIN)
            .args(cmd)
            .env("BUNNY_RUNTIME_FALLBACK", &fake)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(7), "{cmd:?}");
        assert_eq!(
            std::fs::read_to_string(&record)
                .unwrap()
                .lines()
                .collect::<Vec<_>>(),
            cmd
        );
    }
}

#[test]
fn version_and_features() {
    let o = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("bunny-runtime version "));
    let o = Command::new(BIN).arg("features").output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["ociVersionMax"].is_string());
    assert!(v["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h == "prestart"));
}

/// Receives the pty master runc-style from `--console-socket`.
fn receive_console(listener: std::os::unix::net::UnixListener) -> std::fs::File {
    use std::os::fd::{AsRawFd, FromRawFd};
    let (conn, _) = listener.accept().unwrap();
    let mut name = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: name.as_mut_ptr() as *mut libc::c_void,
        iov_len: name.len(),
    };
    let mut control = [0u8; 64];
    // SAFETY: msg points at live buffers of the stated sizes.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = control.len() as _;
        let n = libc::recvmsg(conn.as_raw_fd(), &mut msg, 0);
        assert!(n > 0, "nothing arrived on the console socket");
        assert!(std::str::from_utf8(&name[..n as usize])
            .unwrap()
            .starts_with("/dev/pts/"));
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(!cmsg.is_null(), "no fd arrived on the console socket");
        std::fs::File::from_raw_fd(std::ptr::read_unaligned(
            libc::CMSG_DATA(cmsg) as *const libc::c_int
        ))
    }
}

#[test]
fn run_with_a_terminal_runs_hooks_and_cleans_up() {
    use std::io::Read;
    let (tmp, rt) = setup();
    let b = bundle(tmp.path(), &["/init", "once"], true);
    let cfg_path = b.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["process"]["terminal"] = true.into();
    let hook = |file: &str| {
        serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c",
            format!("cat > {}", tmp.path().join(file).display())]})
    };
    cfg["hooks"] = serde_json::json!({
        "prestart": [hook("prestart.json")],
        "poststart": [hook("poststart.json")],
        "poststop": [hook("poststop.json")],
    });
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();

    let sock = tmp.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let reader = std::thread::spawn(move || {
        let mut master = receive_console(listener);
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the monitor, the last holder of the slave, is gone.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&text).into_owned()
    });
    let mut child = rt
        .cmd(&["run", "--bundle", b.to_str().unwrap()])
        .arg("--console-socket")
        .arg(&sock)
        .arg("c4")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("run did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "run: {status}: {err}");
    let console = reader.join().unwrap();
    assert!(console.contains("OCI-MARKER args=[once]"), "{console}");
    assert!(!rt.root.join("c4").exists(), "run left its state");

    let hook_state = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join(f)).unwrap()).unwrap()
    };
    let pre = hook_state("prestart.json");
    assert_eq!(pre["id"], "c4");
    assert_eq!(pre["status"], "creating");
    assert!(pre["pid"].as_i64().unwrap() > 0, "{pre}");
    assert_eq!(hook_state("poststart.json")["status"], "running");
    assert_eq!(hook_state("poststop.json")["status"], "stopped");
}
