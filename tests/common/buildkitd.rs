//! A private current BuildKit daemon (`buildkitd` + `buildctl`, installed by
//! scripts/setup.sh), shared by every test of one test binary: started on
//! first use, rootful, OCI worker on Debian's runc, root and socket under one
//! temp dir. Registries on 127.0.0.1 are reached over plain HTTP by
//! BuildKit's default (loopback) rule, so each test can bring its own.
//!
//! A static is never dropped, so a small shell watchdog started with the
//! daemon stops it (SIGTERM, which unmounts its snapshots) and removes its
//! directory once the test process is gone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{output, require_tool};

pub struct Buildkitd {
    dir: PathBuf,
    pub addr: String,
    /// The watchdog shell, which outlives the test process by design.
    _watchdog: std::process::Child,
}

static DAEMON: OnceLock<Buildkitd> = OnceLock::new();

impl Buildkitd {
    /// The test binary's daemon, started on first use.
    pub fn shared() -> &'static Buildkitd {
        DAEMON.get_or_init(Buildkitd::start)
    }

    fn start() -> Buildkitd {
        let bin = require_tool("buildkitd");
        require_tool("buildctl");
        require_tool("runc");
        // Short path: the socket must fit in sun_path.
        let dir = tempfile::Builder::new()
            .prefix("bkd")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let sock = dir.join("sock");
        let addr = format!("unix://{}", sock.display());
        let script = r#"
"$BIN" --root "$DIR/root" --addr "$ADDR" >"$DIR/log" 2>&1 &
bk=$!
while kill -0 "$OWNER" 2>/dev/null && kill -0 "$bk" 2>/dev/null; do sleep 0.5; done
kill -TERM "$bk" 2>/dev/null
wait "$bk"
rm -rf "$DIR"
"#;
        let path = format!(
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        let watchdog = Command::new("sh")
            .args(["-c", script])
            .env("BIN", &bin)
            .env("DIR", &dir)
            .env("ADDR", &addr)
            .env("OWNER", std::process::id().to_string())
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start buildkitd");
        let d = Buildkitd {
            dir,
            addr,
            _watchdog: watchdog,
        };
        let start = Instant::now();
        loop {
            if sock.exists() {
                let o = output(d.buildctl().args(["debug", "workers"]));
                if o.status.success() && !o.stdout.is_empty() {
                    break;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "buildkitd did not come up:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    /// `buildctl` talking to this daemon.
    pub fn buildctl(&self) -> Command {
        let mut c = Command::new(require_tool("buildctl"));
        c.arg("--addr").arg(&self.addr);
        c
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// `buildctl --version`'s version field.
    pub fn version(&self) -> String {
        let o = output(Command::new(require_tool("buildctl")).arg("--version"));
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_string()
    }
}
