//! A guest booted by `bunny run` in the foreground, the way the boot tests
//! watch one: its console in a file, HTTP probes on a published port, and a
//! wait for it to power off. A guest still running when its test ends (a
//! failed assertion) is killed, so no qemu outlives the test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port; the whole answer when it is HTTP.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    http_at(([127, 0, 0, 1], port).into(), path)
}

pub fn http_at(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.starts_with("HTTP/1.").then_some(body)
}

pub struct Guest {
    child: Child,
    log: PathBuf,
}

impl Guest {
    /// `bunny --root ROOT run --rm ARGS`, the console (bunny's stdout) in
    /// `log`, bunny's own messages kept for [`Guest::wait_exit`].
    pub fn run(root: &Path, args: &[&str], log: &Path) -> Guest {
        Self::spawn(root, args, log, Stdio::piped())
    }

    /// As [`Guest::run`], with bunny's messages on the test's stderr.
    pub fn run_loud(root: &Path, args: &[&str], log: &Path) -> Guest {
        Self::spawn(root, args, log, Stdio::inherit())
    }

    fn spawn(root: &Path, args: &[&str], log: &Path, stderr: Stdio) -> Guest {
        let child = Command::new(env!("CARGO_BIN_EXE_bunny"))
            .arg("--root")
            .arg(root)
            .args(["run", "--rm"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Guest {
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `GET /` on 127.0.0.1:port to answer 200 while the guest
    /// boots; fails with the console if bunny exits first or `limit`
    /// passes. Returns the page and how long it took.
    pub fn wait_http(&mut self, port: u16, limit: Duration) -> (String, Duration) {
        let t = Instant::now();
        loop {
            if let Some(p) = http_get(port, "/").filter(|p| p.contains("200 OK")) {
                return (p, t.elapsed());
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("bunny run exited early ({st}): {}", self.console());
            }
            if t.elapsed() > limit {
                panic!("no HTTP answer in {limit:?}; console:\n{}", self.console());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for bunny to exit (the guest powered off); fails with the
    /// console after `limit`. Returns the status and bunny's own messages
    /// (empty for [`Guest::run_loud`]).
    pub fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, String) {
        let t = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if t.elapsed() > limit {
                panic!(
                    "the guest did not power off in {limit:?}: {}",
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    }

    /// Gives the guest `limit` to power off, then ends the run; the exit
    /// status when it powered off by itself.
    pub fn stop_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
        None
    }

    /// Ends the run at once (SIGKILL to bunny; its monitor dies with it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}
