//! Helpers shared by the integration tests: finding the real tools, running
//! them with useful failure messages, and a Docker daemon per test.
//!
//! Each test binary uses a different subset, so unused items are expected.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The `bunny` binary with its own store at `root`, its own docker config
/// (`root/docker-config`, so no test reads the user's credentials) and no
/// inherited SOURCE_DATE_EPOCH.
pub fn bunny(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bunny"));
    c.env("BUNNY_ROOT", root)
        .env("DOCKER_CONFIG", root.join("docker-config"))
        .env_remove("SOURCE_DATE_EPOCH")
        .stdin(Stdio::null());
    c
}

/// `bunny ARGS` with its store at `root` (see [`bunny`]): whatever happened,
/// for [`ok`] or for a test that expects a failure.
pub fn bunny_output(root: &Path, args: &[&str]) -> Output {
    output(bunny(root).args(args))
}

/// The stdout of `out`; fails the test naming `what`, with the status and
/// both streams, when it did not succeed.
pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The toolchain images' OCI layout (target/toolchains/layout), made by
/// scripts/toolchain-image.sh once per test binary (the script only checks
/// its stamps when they are there).
pub fn toolchains() -> PathBuf {
    static LAYOUT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    LAYOUT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            run(Command::new(root.join("scripts/toolchain-image.sh"))
                .env("BUNNY_KERNEL", root.join("target/linux-kernel/vmlinuz")));
            root.join("target/toolchains/layout")
        })
        .clone()
}

/// The kernel cache setup filled (scripts/minimal-kernel.sh):
/// `$BUNNY_KERNEL_CACHE`, else target/kernel-cache.
pub fn kernel_cache() -> PathBuf {
    let dir = std::env::var_os("BUNNY_KERNEL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kernel-cache"));
    assert!(
        dir.is_dir(),
        "no kernel cache at {}: run `bash scripts/setup.sh` (scripts/minimal-kernel.sh builds bunny's minimal kernel into it)",
        dir.display()
    );
    dir
}

/// A copy of examples/NAME at `dest`, without a bunny.lock: a build of it
/// resolves its layers as a new user's first build does.
pub fn example_copy(name: &str, dest: &Path) {
    run(Command::new("cp")
        .arg("-a")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples")
                .join(name),
        )
        .arg(dest));
    let _ = fs::remove_file(dest.join("bunny.lock"));
}

/// examples/hello-linux, once setup has put its kernel there.
pub fn hello_linux() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/hello-linux");
    assert!(
        dir.join("vmlinuz").exists(),
        "examples/hello-linux/vmlinuz is missing: run `bash scripts/setup.sh` first"
    );
    dir
}

/// Finds `name` in PATH (plus the sbin directories, where dockerd lives), or
/// fails the test saying what to install.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "this test needs `{name}`, which is not installed (see /work/shared/test-environment.md; \
         e.g. apt-get install -y --no-install-recommends skopeo umoci docker.io)"
    );
}

/// Runs the command and returns its stdout; fails the test with the command
/// line, status and stderr when it does not succeed.
pub fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    if !out.status.success() {
        panic!(
            "command failed ({}): {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            cmd,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the command and returns whatever happened, for tests that expect
/// a failure.
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// Extra daemon.json settings for [`Dockerd::start_with`].
#[derive(Debug, Default, Clone)]
pub struct DockerdOptions {
    /// `host:port` registries reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Runtime name and absolute path of the binary (`docker run --runtime NAME`).
    pub runtimes: Vec<(String, PathBuf)>,
    /// Any other daemon.json keys, merged last.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A private dockerd: data-root, exec-root, pidfile, socket and log all live
/// under one temp dir; it never touches /var/lib/docker or
/// /var/run/docker.sock, and it is stopped by PID when dropped.
pub struct Dockerd {
    child: Child,
    dir: TempDir,
    socket: PathBuf,
}

impl Dockerd {
    pub fn start() -> Dockerd {
        Dockerd::start_with(DockerdOptions::default())
    }

    pub fn start_with(opts: DockerdOptions) -> Dockerd {
        let dockerd = require_tool("dockerd");
        require_tool("containerd");
        assert!(
            Path::new("/usr/bin/docker").is_file(),
            "this test needs /usr/bin/docker (package docker.io); another `docker` earlier in PATH lacks buildx support"
        );
        // Short path: the socket path must fit in sun_path (108 bytes).
        let dir = tempfile::Builder::new()
            .prefix("dkd")
            .tempdir_in("/tmp")
            .expect("create dockerd temp dir");
        let root = dir.path();
        let socket = root.join("docker.sock");
        let mut config = serde_json::json!({
            "data-root": root.join("data"),
            "exec-root": root.join("exec"),
            "pidfile": root.join("docker.pid"),
            "hosts": [format!("unix://{}", socket.display())],
            "iptables": false,
            "ip6tables": false,
            "bridge": "none",
            "insecure-registries": opts.insecure_registries,
        });
        let map = config.as_object_mut().expect("daemon.json is an object");
        if !opts.runtimes.is_empty() {
            let runtimes: serde_json::Map<String, serde_json::Value> = opts
                .runtimes
                .iter()
                .map(|(name, path)| (name.clone(), serde_json::json!({ "path": path })))
                .collect();
            map.insert("runtimes".into(), runtimes.into());
        }
        for (k, v) in opts.extra {
            map.insert(k, v);
        }
        let config_path = root.join("daemon.json");
        fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let log = fs::File::create(root.join("dockerd.log")).unwrap();
        let child = Command::new(dockerd)
            .arg("--config-file")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dockerd: {e}"));
        let mut d = Dockerd { child, dir, socket };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "dockerd exited ({status}) before it was ready; its log:\n{}",
                    self.log()
                );
            }
            if self.socket.exists() {
                let out = self
                    .docker()
                    .args(["version", "--format", "{{.Server.Version}}"])
                    .stdin(Stdio::null())
                    .output();
                if matches!(&out, Ok(o) if o.status.success()) {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "dockerd did not answer on {} within 30 s; its log:\n{}",
                    self.socket.display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `/usr/bin/docker -H unix://SOCKET` with a private client config dir.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new("/usr/bin/docker");
        cmd.env("DOCKER_CONFIG", self.dir.path().join("client"))
            .arg("-H")
            .arg(self.host());
        cmd
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's log so far (stderr of dockerd, which also carries
    /// BuildKit frontend output).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM, so dockerd also stops the containerd it started and
        // unmounts its data-root; SIGKILL only if it hangs.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
pub mod buildkitd;
pub mod engines;
pub mod frontend;
pub mod guest;
pub mod http;
pub mod image;
pub mod registry;
pub mod spdx;
pub mod ufs;
