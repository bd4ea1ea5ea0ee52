//! `bunny-runtime` under real engines: containerd (driven by `ctr`) and
//! dockerd each call it with runc's command line. The hello-linux example
//! boots under qemu as the container, with the guest on the container's
//! network; a plain busybox image falls through to runc.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{require_tool, Dockerd, DockerdOptions};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// bunny-runtime lives in another package, so Cargo gives no
/// CARGO_BIN_EXE for it: build it once, next to the bunny binary.
fn runtime_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "-q",
                    "-p",
                    "bunny-runtime",
                    "--bin",
                    "bunny-runtime",
                ])
                .current_dir(repo())
                .output()
                .expect("run cargo build");
            assert!(
                out.status.success(),
                "cannot build bunny-runtime: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let bin = Path::new(env!("CARGO_BIN_EXE_bunny")).with_file_name("bunny-runtime");
            assert!(
                bin.is_file(),
                "bunny-runtime was not built at {}",
                bin.display()
            );
            bin
        })
        .clone()
}

/// Builds examples/hello-linux with bunny into an archive of `kind`
/// (`oci-archive` or `docker`).
fn hello_archive(dir: &Path, kind: &str) -> PathBuf {
    let ctx = repo().join("examples/hello-linux");
    assert!(
        ctx.join("vmlinuz").exists(),
        "examples/hello-linux/vmlinuz is missing: run `bash scripts/setup.sh` first"
    );
    let dest = dir.join(format!("hello-{kind}.tar"));
    let out = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .arg("--root")
        .arg(dir.join("store"))
        .args(["build", "--progress=quiet", "-t", "hello:test", "-o"])
        .arg(format!("type={kind},dest={}", dest.display()))
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bunny build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dest
}

/// Runs `cmd`, failing the test if it takes longer than `limit` (a hung
/// guest must not stall the suite).
fn timed(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {limit:?}; stdout so far:\n{}",
                String::from_utf8_lossy(&out.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn ok(cmd: &mut Command, limit: Duration) -> String {
    let o = timed(cmd, limit);
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A private containerd: root, state and sockets under a temp dir, CRI off;
/// stopped by PID on drop.
struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Containerd {
        let bin = require_tool("containerd");
        require_tool("ctr");
        require_tool("containerd-shim-runc-v2");
        // Short path: socket paths must fit in sun_path.
        let dir = tempfile::Builder::new()
            .prefix("ctd")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{0}/c.sock\"\n[ttrpc]\n  address = \"{0}/c.ttrpc\"\n\
             [debug]\n  address = \"{0}/d.sock\"\n",
            d.display()
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new(bin)
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let mut c = Containerd { child, dir };
        let t = Instant::now();
        loop {
            if let Ok(Some(s)) = c.child.try_wait() {
                panic!("containerd exited ({s}); its log:\n{}", c.log());
            }
            if c.dir.path().join("c.sock").exists()
                && c.ctr()
                    .arg("version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            {
                return c;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "containerd did not come up; its log:\n{}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a")
            .arg(self.dir.path().join("c.sock"))
            .args(["-n", "bunnytest"]);
        c
    }

    /// `ctr run` with bunny-runtime as the runc binary.
    fn run(&self, runc_root: &Path) -> Command {
        let mut c = self.ctr();
        c.arg("run")
            .arg("--runc-binary")
            .arg(runtime_binary())
            .arg("--runc-root")
            .arg(runc_root);
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // SIGTERM, so containerd shuts down cleanly; SIGKILL only if it hangs.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .output();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A network namespace wired as a CNI plugin would: a veth pair, the
/// container side `eth0` with .2/30 and a default route via the host's .1.
struct Netns {
    name: String,
    host_if: String,
}

impl Netns {
    fn new(tag: &str, subnet: u8) -> Netns {
        require_tool("ip");
        require_tool("tc");
        let pid = std::process::id() % 100_000;
        let n = Netns {
            name: format!("bunny-{tag}-{pid}"),
            host_if: format!("vb{tag}{pid}"),
        };
        let host_ip = format!("10.213.{subnet}.1/30");
        let guest_ip = format!("10.213.{subnet}.2/30");
        let gw = format!("10.213.{subnet}.1");
        for args in [
            vec!["netns", "add", &n.name],
            vec![
                "link", "add", &n.host_if, "type", "veth", "peer", "name", "eth0", "netns", &n.name,
            ],
            vec!["addr", "add", &host_ip, "dev", &n.host_if],
            vec!["link", "set", &n.host_if, "up"],
            vec!["-n", &n.name, "addr", "add", &guest_ip, "dev", "eth0"],
            vec!["-n", &n.name, "link", "set", "eth0", "up"],
            vec!["-n", &n.name, "link", "set", "lo", "up"],
            vec!["-n", &n.name, "route", "add", "default", "via", &gw],
        ] {
            ok(Command::new("ip").args(&args), Duration::from_secs(10));
        }
        n
    }

    fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

fn http_get(addr: &str) -> Option<String> {
    use std::io::Write;
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(500))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.starts_with("HTTP/1.").then_some(body)
}

const BOOT: Duration = Duration::from_secs(90);

#[test]
fn containerd_boots_hello_linux_and_its_guest_serves_on_the_container_network() {
    let runtime = runtime_binary();
    let tmp = tempfile::tempdir().unwrap();
    let archive = hello_archive(tmp.path(), "oci-archive");
    let ctd = Containerd::start();
    ok(
        ctd.ctr().args(["images", "import"]).arg(&archive),
        Duration::from_secs(60),
    );
    let image = "docker.io/library/hello:test";
    let runc_root = tmp.path().join("runc-root");

    // The process args reach the guest's init; `once` powers it off.
    let out = ok(
        ctd.run(&runc_root)
            .args(["--rm", image, "once1", "/init", "once"]),
        BOOT,
    );
    assert!(out.contains("hello-linux: init up"), "console:\n{out}");
    assert!(
        out.contains("hello-linux: args [once] GREETING=hello"),
        "console:\n{out}"
    );
    assert!(out.contains("hello-linux: done"), "console:\n{out}");

    // A namespace prepared as CNI would: the guest takes over eth0's
    // address and answers HTTP on it.
    let ns = Netns::new("c", 1);
    let with_ns = format!("network:{}", ns.path());
    ok(
        ctd.run(&runc_root).args([
            "-d",
            "--with-ns",
            &with_ns,
            "--memory-limit",
            "536870912",
            image,
            "web1",
        ]),
        Duration::from_secs(30),
    );
    let t = Instant::now();
    let body = loop {
        if let Some(b) = http_get("10.213.1.2:80") {
            break b;
        }
        assert!(
            t.elapsed() < BOOT,
            "the guest never answered HTTP on 10.213.1.2; state: {}",
            String::from_utf8_lossy(
                &Command::new(&runtime)
                    .arg("--root")
                    .arg(runc_root.join("bunnytest"))
                    .args(["state", "web1"])
                    .output()
                    .unwrap()
                    .stdout
            )
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(body.contains("hello from bunny"), "{body}");

    // The monitor runs in the cgroup containerd named (`/NAMESPACE/ID`),
    // limited to the guest's RAM (the limit asked) plus the monitor's
    // allowance (256 MiB), and in a uts namespace of its own.
    let state: serde_json::Value = serde_json::from_slice(
        &Command::new(&runtime)
            .arg("--root")
            .arg(runc_root.join("bunnytest"))
            .args(["state", "web1"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let pid = state["pid"].as_i64().unwrap();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let memory_line = cgroups
        .lines()
        .find(|l| l.split(':').nth(1) == Some("memory") || l.starts_with("0::"))
        .unwrap_or_default()
        .to_string();
    assert!(
        memory_line.ends_with("/bunnytest/web1"),
        "the monitor is not in the container's cgroup:\n{cgroups}"
    );
    let limit_file = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "/sys/fs/cgroup/bunnytest/web1/memory.max"
    } else {
        "/sys/fs/cgroup/memory/bunnytest/web1/memory.limit_in_bytes"
    };
    assert_eq!(
        std::fs::read_to_string(limit_file).unwrap().trim(),
        (536870912u64 + (256 << 20)).to_string()
    );
    let ps = ok(
        Command::new(&runtime)
            .arg("--root")
            .arg(runc_root.join("bunnytest"))
            .args(["ps", "--format", "json", "web1"]),
        Duration::from_secs(5),
    );
    assert!(ps.contains(&pid.to_string()), "ps: {ps}");
    let uts = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/uts")).unwrap();
    assert_ne!(uts(&pid.to_string()), uts("self"), "no uts namespace");
    // qemu runs under its own seccomp filter (`-sandbox`): mode 2.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Seccomp:", "2"]),
        "the monitor has no seccomp filter:\n{status}"
    );

    let addrs = ok(
        Command::new("ip").args(["-n", &ns.name, "-br", "addr"]),
        Duration::from_secs(5),
    );
    assert!(addrs.contains("tap0_bunny"), "{addrs}");
    assert!(
        !addrs.contains("10.213.1.2"),
        "eth0 kept its address: {addrs}"
    );

    ok(
        ctd.ctr().args(["task", "kill", "-s", "SIGKILL", "web1"]),
        Duration::from_secs(10),
    );
    let t = Instant::now();
    while !ok(ctd.ctr().args(["task", "ls"]), Duration::from_secs(10)).contains("STOPPED") {
        assert!(t.elapsed() < Duration::from_secs(10), "web1 did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(
        ctd.ctr().args(["task", "delete", "web1"]),
        Duration::from_secs(10),
    );
    ok(
        ctd.ctr().args(["containers", "rm", "web1"]),
        Duration::from_secs(10),
    );
    // delete undid the rewiring in the namespace that outlives the container.
    let addrs = ok(
        Command::new("ip").args(["-n", &ns.name, "-br", "addr"]),
        Duration::from_secs(5),
    );
    assert!(!addrs.contains("tap0_bunny"), "{addrs}");
    assert!(addrs.contains("10.213.1.2/30"), "{addrs}");
    assert!(
        !Path::new(limit_file).exists(),
        "delete left the cgroup behind"
    );
    let left: Vec<_> = std::fs::read_dir(runc_root.join("bunnytest"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "state left behind: {left:?}");
}

#[test]
fn dockerd_runs_unikernels_and_hands_other_images_to_runc() {
    let runtime = runtime_binary();
    require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let archive = hello_archive(tmp.path(), "docker");
    let dockerd = Dockerd::start_with(DockerdOptions {
        runtimes: vec![("bunny".into(), runtime)],
        ..Default::default()
    });
    ok(
        dockerd.docker().arg("load").arg("-i").arg(&archive),
        Duration::from_secs(60),
    );
    // The entrypoint is /init, so `once` is its first argument.
    let out = ok(
        dockerd.docker().args([
            "run",
            "--rm",
            "--runtime",
            "bunny",
            "--network",
            "none",
            "hello:test",
            "once",
        ]),
        BOOT,
    );
    assert!(out.contains("hello-linux: init up"), "console:\n{out}");
    assert!(out.contains("hello-linux: args [once]"), "console:\n{out}");

    // A user-defined bridge network: docker's prestart hook (libnetwork)
    // wires the namespace, then the guest takes over the container's address.
    let octet = 100 + std::process::id() % 100;
    let subnet = format!("10.214.{octet}.0/24");
    let ip = format!("10.214.{octet}.2");
    let net = format!("bunnynet{octet}");
    ok(
        dockerd
            .docker()
            .args(["network", "create", "--subnet", &subnet, &net]),
        Duration::from_secs(30),
    );
    ok(
        dockerd.docker().args([
            "run",
            "-d",
            "--runtime",
            "bunny",
            "--network",
            &net,
            "--ip",
            &ip,
            "--name",
            "web",
            "hello:test",
        ]),
        Duration::from_secs(30),
    );
    let t = Instant::now();
    let body = loop {
        if let Some(b) = http_get(&format!("{ip}:80")) {
            break b;
        }
        if t.elapsed() > BOOT {
            let logs = timed(
                dockerd.docker().args(["logs", "web"]),
                Duration::from_secs(10),
            );
            panic!(
                "the guest never answered HTTP on {ip}; console:\n{}",
                String::from_utf8_lossy(&logs.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(body.contains("hello from bunny"), "{body}");
    // SIGTERM reaches the monitor, which stops at once.
    let t = Instant::now();
    // A 60 s grace before docker's SIGKILL: stopping well within it means
    // the monitor acted on SIGTERM, with room for a loaded machine.
    ok(
        dockerd.docker().args(["stop", "-t", "60", "web"]),
        Duration::from_secs(90),
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "docker stop took {:?}: the monitor ignored SIGTERM",
        t.elapsed()
    );
    ok(
        dockerd.docker().args(["rm", "web"]),
        Duration::from_secs(30),
    );
    ok(
        dockerd.docker().args(["network", "rm", &net]),
        Duration::from_secs(30),
    );

    // An ordinary image: FROM scratch plus busybox, run by runc.
    let rootfs = tmp.path().join("bb");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("/bin/busybox is missing: apt-get install busybox-static");
    let tar = tmp.path().join("bb.tar");
    ok(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
        Duration::from_secs(30),
    );
    ok(
        dockerd.docker().arg("import").arg(&tar).arg("plain:test"),
        Duration::from_secs(30),
    );
    let out = ok(
        dockerd.docker().args([
            "run",
            "--rm",
            "--runtime",
            "bunny",
            "--network",
            "none",
            "plain:test",
            "/bin/busybox",
            "echo",
            "runc-fallback-ok",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(out.trim(), "runc-fallback-ok");
}
