//! Engines that drive an OCI runtime the way production does: a private
//! containerd (with `ctr`), network namespaces wired as CNI would, and the
//! bunny-runtime binary they call.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::require_tool;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// bunny-runtime lives in another package, so Cargo gives no
/// CARGO_BIN_EXE for it: build it once, next to the bunny binary.
pub fn runtime_binary() -> PathBuf {
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
pub fn hello_archive(dir: &Path, kind: &str) -> PathBuf {
    let ctx = super::hello_linux();
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
pub fn timed(cmd: &mut Command, limit: Duration) -> Output {
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

pub fn ok(cmd: &mut Command, limit: Duration) -> String {
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

/// A private containerd: root, state and sockets under a temp dir, CRI off
/// unless [`Containerd::start_cri`]; stopped by PID on drop.
pub struct Containerd {
    child: Child,
    pub dir: tempfile::TempDir,
    /// The namespace `ctr` works in: CRI keeps its images and containers
    /// in `k8s.io`.
    namespace: &'static str,
}

impl Containerd {
    pub fn start() -> Containerd {
        Containerd::start_with_env(&[])
    }

    /// As [`Containerd::start`], with extra environment for containerd and
    /// the shims and runtimes it starts (e.g. a PATH with a monitor wrapper).
    pub fn start_with_env(env: &[(&str, String)]) -> Containerd {
        Containerd::launch(Containerd::temp_dir(), env, None)
    }

    /// containerd with its CRI plugin on: `cri` is given the temp dir
    /// before containerd starts and returns the TOML of the plugin's
    /// sections (it may write files there, such as a CNI config). Waits
    /// only for containerd's socket: the CRI service comes up after it.
    pub fn start_cri(env: &[(&str, String)], cri: impl FnOnce(&Path) -> String) -> Containerd {
        let dir = Containerd::temp_dir();
        let sections = cri(dir.path());
        Containerd::launch(dir, env, Some(sections))
    }

    fn temp_dir() -> tempfile::TempDir {
        // Short path: socket paths must fit in sun_path.
        tempfile::Builder::new()
            .prefix("ctd")
            .tempdir_in("/tmp")
            .unwrap()
    }

    /// `cri`: the CRI plugin's sections, or `None` for CRI off.
    fn launch(dir: tempfile::TempDir, env: &[(&str, String)], cri: Option<String>) -> Containerd {
        let bin = require_tool("containerd");
        require_tool("ctr");
        require_tool("containerd-shim-runc-v2");
        let d = dir.path();
        let (plugins, sections, namespace) = match cri {
            None => (
                "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n".to_string(),
                String::new(),
                "bunnytest",
            ),
            Some(sections) => (String::new(), sections, "k8s.io"),
        };
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n{plugins}\
             [grpc]\n  address = \"{0}/c.sock\"\n[ttrpc]\n  address = \"{0}/c.ttrpc\"\n\
             [debug]\n  address = \"{0}/d.sock\"\n{sections}",
            d.display()
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new(bin)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let mut c = Containerd {
            child,
            dir,
            namespace,
        };
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

    /// Whether containerd has exited (a test's own wait loops ask).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, so containerd shuts down cleanly; SIGKILL only if it hangs.
    /// Dropping does the same; a test calls it to clean up after it.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a")
            .arg(self.dir.path().join("c.sock"))
            .args(["-n", self.namespace]);
        c
    }

    /// `ctr run` with bunny-runtime as the runc binary.
    pub fn run(&self, runc_root: &Path) -> Command {
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
        self.stop();
    }
}

/// A network namespace wired as a CNI plugin would: a veth pair, the
/// container side `eth0` with .2/30 and a default route via the host's .1.
pub struct Netns {
    pub name: String,
    pub host_if: String,
}

impl Netns {
    pub fn new(tag: &str, subnet: u8) -> Netns {
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

    pub fn path(&self) -> String {
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

pub fn http_get(addr: &str) -> Option<String> {
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

/// Waits for `addr` to answer HTTP, for a guest that is booting. `gone`
/// is asked between tries with `false`: `Some(why)` (the guest's process
/// ended, ...) fails at once with that text; when `limit` passes it is
/// asked with `true` for what to show (console, logs). Returns the answer
/// and how long it took.
pub fn wait_http(
    addr: &str,
    limit: Duration,
    gone: impl FnMut(bool) -> Option<String>,
) -> (String, Duration) {
    wait_answer(addr, limit, || http_get(addr), gone)
}

/// As [`wait_http`], for `GET path` answered with 200 (any `addr`, such as
/// a port published on 127.0.0.1).
pub fn wait_page(
    addr: &str,
    path: &str,
    limit: Duration,
    gone: impl FnMut(bool) -> Option<String>,
) -> (String, Duration) {
    let sock: std::net::SocketAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("bad address {addr}: {e}"));
    wait_answer(
        addr,
        limit,
        || super::guest::http_at(sock, path).filter(|b| b.starts_with("HTTP/1.0 200")),
        gone,
    )
}

fn wait_answer(
    addr: &str,
    limit: Duration,
    mut probe: impl FnMut() -> Option<String>,
    mut gone: impl FnMut(bool) -> Option<String>,
) -> (String, Duration) {
    let t = Instant::now();
    loop {
        if let Some(body) = probe() {
            return (body, t.elapsed());
        }
        if let Some(why) = gone(false) {
            panic!("no HTTP answer from {addr}: {why}");
        }
        if t.elapsed() > limit {
            panic!(
                "no HTTP answer from {addr} within {limit:?}: {}",
                gone(true).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The argv of the monitor a container runs: under bunny-runtime the
/// container's process is its supervisor (`__init`) and the monitor its
/// child; under urunc the monitor is the container's process itself.
pub fn monitor_argv(pid: u32) -> Vec<String> {
    let cmdline = |pid: &str| -> Vec<String> {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    };
    let pid = pid.to_string();
    let argv = cmdline(&pid);
    if argv.iter().any(|a| a == "__init") {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(child) = children.split_whitespace().next() {
            return cmdline(child);
        }
    }
    argv
}

impl Containerd {
    /// The pid of task `id` (`ctr task ls`).
    pub fn task_pid(&self, id: &str) -> Option<u32> {
        let ls = ok(self.ctr().args(["task", "ls"]), Duration::from_secs(10));
        ls.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
    }

    /// Kills and removes task and container `id`, as a test's cleanup.
    pub fn remove(&self, id: &str) {
        let _ = self
            .ctr()
            .args(["task", "kill", "-s", "SIGKILL", id])
            .output();
        let t = Instant::now();
        while self
            .ctr()
            .args(["task", "delete", id])
            .output()
            .is_ok_and(|o| !o.status.success())
            && t.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.ctr().args(["containers", "rm", id]).output();
    }
}

/// Removes a task when the test ends, passed or not: a guest left running
/// would keep its network namespace and addresses alive.
pub struct Task<'a>(pub &'a Containerd, pub &'a str);

impl Drop for Task<'_> {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}
