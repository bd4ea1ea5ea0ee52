//! `bunny-runtime`: a runc-compatible OCI runtime for unikernel images, as
//! urunc is.
//!
//! Containers whose spec annotations or `/urunc.json` carry urunc's settings
//! run as a monitor (qemu, ...) that is the container's init process; every
//! other container is handed to runc with the identical command line.
//!
//! `create` spawns the init (this binary again, as the hidden `__init`
//! command) in the container's network namespace; it rewires the network
//! for the guest, prepares the monitor and then blocks on the exec FIFO
//! until `start`. Then it stays the container's process (the pid engines
//! know): it enters the spec's mount and pid namespaces, starts the monitor
//! as its child under the spec's seccomp profile, forwards SIGTERM and
//! SIGINT to it, reaps it, and exits with the guest's status (qemu's exit
//! device decoded; a guest that panicked or reset is
//! [`crate::GUEST_CRASHED`]).
//!
//! The monitor runs in the container's network, uts, ipc, mount and pid
//! namespaces (joined or new, as the spec says) and in its cgroup, with the
//! spec's memory and pids limits ([`cgroup`]), under the spec's seccomp
//! profile and then qemu's own (`-sandbox`). Not done (documented in
//! docs/runtime.md): a root of the container's own (the monitor needs the
//! host's files) and the createContainer/startContainer hooks.

pub mod cgroup;
pub mod cli;
pub mod console;
pub mod error;
mod init;
pub mod net;
pub mod pod;
pub mod spec;
pub mod state;
pub mod volumes;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cli::{Global, Invocation, LogFormat};
pub use error::OciError;
use spec::{Hook, NetNs, Spec};
use state::{Record, Status};

use crate::config::{ANNOT_TYPE, URUNC_JSON};
use crate::paths::resolve_in_rootfs;

/// Env var naming the runc to fall back to for ordinary containers.
pub const FALLBACK_ENV: &str = "BUNNY_RUNTIME_FALLBACK";
/// Env var choosing the accelerator: `auto` (default), `kvm` or `tcg`.
pub const ACCEL_ENV: &str = "BUNNY_RUNTIME_ACCEL";
/// The hidden command the init runs as.
const INIT_COMMAND: &str = "__init";

const NOT_FOR_UNIKERNELS: &[&str] = &["exec", "pause", "resume", "checkpoint", "restore", "update"];

/// Runs the runtime with `args` (without argv[0]) and returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let text: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if text.first().map(String::as_str) == Some(INIT_COMMAND) {
        return init::main(&text[1..]);
    }
    let inv = match cli::parse(&text) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("bunny-runtime: {e}");
            return 1;
        }
    };
    match dispatch(&inv, &args) {
        Ok(code) => code,
        Err(e) => {
            report(&inv.global, "error", &e.to_string());
            1
        }
    }
}

/// Writes a message to stderr and, runc-style, to `--log`; containerd's
/// shim shows the last error line of the JSON log to the user.
fn report(g: &Global, level: &str, msg: &str) {
    eprintln!("bunny-runtime: {msg}");
    log_line(g, level, msg);
}

fn log_line(g: &Global, level: &str, msg: &str) {
    let Some(path) = &g.log else { return };
    let time = state::now_rfc3339();
    let line = match g.log_format {
        LogFormat::Json => {
            serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
        }
        LogFormat::Text => format!("time={time:?} level={level} msg={msg:?}"),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        // Logging must never turn a result into a failure.
        let _ = writeln!(f, "{line}");
    }
}

fn dispatch(inv: &Invocation, raw: &[OsString]) -> Result<i32, OciError> {
    let g = &inv.global;
    match inv.command.as_str() {
        "version" => {
            println!(
                "bunny-runtime version {}\nspec: {}",
                env!("CARGO_PKG_VERSION"),
                state::OCI_VERSION
            );
            Ok(0)
        }
        "help" => {
            println!("{}", USAGE.trim());
            Ok(0)
        }
        "features" => {
            println!("{}", features());
            Ok(0)
        }
        "create" | "run" => create_or_run(inv, raw),
        "list" => fallback(raw),
        cmd if NOT_FOR_UNIKERNELS.contains(&cmd) => {
            // Any positional may be the id (unknown flags may take values).
            if inv.positionals.iter().any(|p| state::is_ours(&g.root, p)) {
                return Err(OciError::NotSupported {
                    command: cmd.to_string(),
                });
            }
            fallback(raw)
        }
        "start" | "state" | "kill" | "delete" | "ps" => {
            let id = inv.id()?;
            if !state::is_ours(&g.root, id) {
                return fallback(raw);
            }
            match inv.command.as_str() {
                "start" => start(g, id).map(|_| 0),
                "state" => {
                    let rec = Record::load(&g.root, id)?;
                    let st = rec.oci_state(rec.status(&g.root));
                    let text = serde_json::to_string_pretty(&st)
                        .map_err(|e| OciError::Usage(format!("cannot render the state: {e}")))?;
                    println!("{text}");
                    Ok(0)
                }
                "kill" => {
                    let sig = parse_signal(inv.positionals.get(1).map_or("TERM", String::as_str))?;
                    kill(g, id, sig, inv.has("all")).map(|_| 0)
                }
                "delete" => delete(g, id, inv.has("force")).map(|_| 0),
                _ => {
                    let rec = Record::load(&g.root, id)?;
                    let pids: Vec<i32> = match cgroup::pids(&rec.cgroups) {
                        _ if !rec.alive() => vec![],
                        Some(p) => p,
                        None => vec![rec.pid],
                    };
                    if inv.flag("format") == Some("json") {
                        println!("{}", serde_json::json!(pids));
                    } else {
                        println!("PID");
                        for p in pids {
                            println!("{p}");
                        }
                    }
                    Ok(0)
                }
            }
        }
        other => Err(OciError::Usage(format!(
            "unknown command {other:?}; see bunny-runtime --help"
        ))),
    }
}

const USAGE: &str = r#"
bunny-runtime: a runc-compatible OCI runtime that boots unikernel images (urunc's contract)

usage: bunny-runtime [--root DIR] [--log FILE] [--log-format text|json] COMMAND [OPTIONS] ID

commands:
  create --bundle DIR [--pid-file FILE] [--console-socket SOCK] ID
  start ID | state ID | kill [--all] ID [SIGNAL] | delete [--force] ID
  ps [--format json] ID | run [--detach] --bundle DIR ID | features
  exec, pause, resume, checkpoint, restore, update: not supported for unikernels

Containers without urunc settings are run by runc (or $BUNNY_RUNTIME_FALLBACK).
$BUNNY_RUNTIME_ACCEL picks the accelerator: auto (default), kvm or tcg.
"#;

fn features() -> String {
    let v = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "poststart", "poststop"],
        "mountOptions": [],
        "linux": {
            "namespaces": ["network", "uts", "ipc", "mount", "pid"],
            "capabilities": [],
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": true},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {
            "org.bunny.runtime.fallback": "runc",
            "org.bunny.runtime.unikernel-keys": "com.urunc.unikernel.*"
        }
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// Finds runc for ordinary containers: `$BUNNY_RUNTIME_FALLBACK`, else
/// `runc` on PATH (never ourselves, should we be installed as runc).
fn find_fallback() -> Result<PathBuf, OciError> {
    if let Some(p) = std::env::var_os(FALLBACK_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().and_then(|p| p.canonicalize()).ok();
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("runc"))
        .find(|c| c.is_file() && c.canonicalize().ok() != me)
        .ok_or_else(|| OciError::NoFallback {
            detail: format!("runc is not on PATH; install it or set {FALLBACK_ENV}"),
        })
}

/// Replaces this process with runc, given our exact arguments.
fn fallback(raw: &[OsString]) -> Result<i32, OciError> {
    let runc = find_fallback()?;
    let err = Command::new(&runc).args(raw).exec();
    Err(OciError::NoFallback {
        detail: format!("cannot exec {}: {err}", runc.display()),
    })
}

/// Whether the bundle holds a unikernel: urunc's type key in the spec
/// annotations, or a /urunc.json in the rootfs.
fn is_unikernel(spec: &Spec, rootfs: &Path) -> bool {
    spec.annotations
        .get(ANNOT_TYPE)
        .is_some_and(|v| !v.is_empty())
        || resolve_in_rootfs(rootfs, URUNC_JSON, "urunc.json").is_ok()
}

fn create_or_run(inv: &Invocation, raw: &[OsString]) -> Result<i32, OciError> {
    let g = &inv.global;
    let id = inv.id()?.to_string();
    state::check_id(&id)?;
    let bundle = match inv.flag("bundle") {
        Some(b) => PathBuf::from(b),
        None => std::env::current_dir()
            .map_err(|e| OciError::io("cannot find the bundle (the current directory)", ".", e))?,
    };
    let bundle = std::path::absolute(&bundle)
        .map_err(|e| OciError::io("cannot resolve the bundle path", &bundle, e))?;
    let spec = Spec::load(&bundle)?;
    let rootfs = spec.rootfs(&bundle);
    if pod::is_sandbox(&spec.annotations) {
        return fallback(raw);
    }
    pod::check_urunc_keys(&spec.annotations)?;
    if !is_unikernel(&spec, &rootfs) {
        if let NetNs::Path(ns) = spec.netns() {
            net::check_not_taken(&ns, "an ordinary container (run by runc)")?;
        }
        return fallback(raw);
    }
    // Settings errors are reported before anything is started.
    crate::read_config(&spec.annotations, &rootfs)?;
    if let NetNs::Path(ns) = spec.netns() {
        // A guest's own processes use the namespace too: name that case first.
        net::check_not_taken(&ns, "a second unikernel")?;
        pod::check_no_sidecar(&spec.annotations, &g.root, &ns)?;
    }

    let opts = CreateOpts {
        id: id.clone(),
        bundle,
        rootfs,
        pid_file: inv.flag("pid-file").map(PathBuf::from),
        console_socket: inv.flag("console-socket").map(PathBuf::from),
    };
    let mut child = create(g, &spec, &opts)?;
    if inv.command == "create" {
        return Ok(0);
    }
    start(g, &id)?;
    if inv.has("detach") {
        return Ok(0);
    }
    let status = child.wait().map_err(|source| OciError::Sys {
        what: "cannot wait for the monitor".into(),
        source,
    })?;
    delete(g, &id, true)?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

struct CreateOpts {
    id: String,
    bundle: PathBuf,
    rootfs: PathBuf,
    pid_file: Option<PathBuf>,
    console_socket: Option<PathBuf>,
}

/// Removes a half-created container when creation fails.
struct Undo<'a> {
    dir: &'a Path,
    child: Option<Child>,
    cgroups: Vec<PathBuf>,
    /// A rewired namespace that outlives the container.
    net: Option<(PathBuf, net::NetSetup)>,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = cgroup::remove(&self.cgroups);
        if let Some((ns, setup)) = &self.net {
            let _ = net::teardown(Some(ns), setup);
        }
        let _ = std::fs::remove_dir_all(self.dir);
    }
}

fn create(g: &Global, spec: &Spec, o: &CreateOpts) -> Result<Child, OciError> {
    std::fs::create_dir_all(&g.root)
        .map_err(|e| OciError::io("cannot create the state root", &g.root, e))?;
    let dir = state::container_dir(&g.root, &o.id);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(OciError::Exists {
                id: o.id.clone(),
                dir,
            })
        }
        Err(e) => return Err(OciError::io("cannot create the container state", &dir, e)),
    }
    let mut undo = Undo {
        dir: &dir,
        child: None,
        cgroups: Vec::new(),
        net: None,
        armed: true,
    };
    let _lock = state::lock(&dir)?;
    let fifo = dir.join(state::EXEC_FIFO);
    let cpath = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())
        .map_err(|_| OciError::Usage("the state path holds a NUL byte".into()))?;
    // SAFETY: cpath is a valid C string.
    if unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) } != 0 {
        return Err(OciError::sys(format!("cannot create {}", fifo.display())));
    }

    let netns = spec.netns();
    let netns_file = match &netns {
        NetNs::Path(p) => Some(
            std::fs::File::open(p)
                .map_err(|e| OciError::io("cannot open the network namespace", p, e))?,
        ),
        _ => None,
    };
    let pty = if spec.terminal() {
        let sock = o.console_socket.as_deref().ok_or_else(|| {
            OciError::Usage("process.terminal is true but no --console-socket was given".into())
        })?;
        let pty = console::open_pty()?;
        console::send_fd(sock, &pty.master, &pty.name)?;
        Some(pty)
    } else {
        None
    };

    let (ours, theirs) = UnixStream::pair().map_err(|source| OciError::Sys {
        what: "cannot create the init's sync socket".into(),
        source,
    })?;
    let exe = std::env::current_exe().map_err(|source| OciError::Sys {
        what: "cannot find this program's path".into(),
        source,
    })?;
    let mut cmd = Command::new(exe);
    cmd.arg(INIT_COMMAND)
        .arg(&o.bundle)
        .arg(&dir)
        .arg(theirs.as_raw_fd().to_string())
        .arg(match g.log_format {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        })
        .arg(g.log.as_deref().unwrap_or(Path::new("")))
        .arg(if netns == NetNs::Host { "host" } else { "ns" });
    if let Some(pty) = &pty {
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map(Stdio::from)
                .map_err(|source| OciError::Sys {
                    what: "cannot duplicate the console".into(),
                    source,
                })
        };
        cmd.stdin(dup(&pty.slave)?)
            .stdout(dup(&pty.slave)?)
            .stderr(dup(&pty.slave)?);
    }
    // uts and ipc: joined by path (opened now, before the fork) or new.
    let mut other_ns: Vec<(libc::c_int, Option<std::fs::File>)> = Vec::new();
    for (kind, path) in spec.other_namespaces() {
        let flag = if kind == "uts" {
            libc::CLONE_NEWUTS
        } else {
            libc::CLONE_NEWIPC
        };
        let file = match path {
            Some(p) => Some(
                std::fs::File::open(p)
                    .map_err(|e| OciError::io("cannot open the namespace", p, e))?,
            ),
            None => None,
        };
        other_ns.push((flag, file));
    }
    let other_ns_fds: Vec<(libc::c_int, Option<i32>)> = other_ns
        .iter()
        .map(|(flag, f)| (*flag, f.as_ref().map(|f| f.as_raw_fd())))
        .collect();
    let hostname = spec
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .and_then(|h| std::ffi::CString::new(h).ok());
    let new_uts = other_ns_fds
        .iter()
        .any(|(flag, fd)| *flag == libc::CLONE_NEWUTS && fd.is_none());
    let sync_fd = theirs.as_raw_fd();
    let ns_fd = netns_file.as_ref().map(|f| f.as_raw_fd());
    let new_ns = netns == NetNs::New;
    let terminal = pty.is_some();
    // SAFETY: only async-signal-safe syscalls run between fork and exec;
    // the fds they use stay open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            // Its own session: the engine's signals to its group must not
            // reach the guest, and a terminal needs a session leader.
            libc::setsid();
            if terminal && libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(fd) = ns_fd {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if new_ns && libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for (flag, fd) in &other_ns_fds {
                let failed = match fd {
                    Some(fd) => libc::setns(*fd, *flag) != 0,
                    None => libc::unshare(*flag) != 0,
                };
                if failed {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let (true, Some(h)) = (new_uts, &hostname) {
                if libc::sethostname(h.as_ptr(), h.as_bytes().len()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::fcntl(sync_fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| OciError::Sys {
        what: "cannot start the container's init".into(),
        source,
    })?;
    drop(theirs);
    drop(pty);
    drop(other_ns);
    let pid = child.id() as i32;
    undo.child = Some(child);
    let pid_start = state::pid_start_time(pid).unwrap_or(0);
    // Before the init execs the monitor: everything it starts is counted.
    undo.cgroups = match cgroup::join(spec, &o.id, pid) {
        Ok(dirs) => dirs,
        // As runc rootless: without delegated cgroups, run unconfined.
        // SAFETY: geteuid has no preconditions.
        Err(e) if unsafe { libc::geteuid() } != 0 => {
            log_line(
                g,
                "warning",
                &format!("{e}; running without a cgroup (not root)"),
            );
            Vec::new()
        }
        Err(e) => return Err(e),
    };

    let mut rec = Record {
        id: o.id.clone(),
        bundle: o.bundle.clone(),
        rootfs: o.rootfs.clone(),
        pid,
        pid_start,
        created: state::now_rfc3339(),
        annotations: spec.annotations.clone(),
        netns: match &netns {
            NetNs::Path(p) => Some(p.clone()),
            _ => None,
        },
        net: None,
        hooks: spec.hooks.clone(),
        cgroups: undo.cgroups.clone(),
    };

    ours.set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|source| OciError::Sys {
            what: "cannot set up the init's sync socket".into(),
            source,
        })?;
    let mut reader = BufReader::new(ours.try_clone().map_err(|source| OciError::Sys {
        what: "cannot set up the init's sync socket".into(),
        source,
    })?);
    let mut writer = ours;
    expect_line(&mut reader, "ns")?;
    // The namespaces exist now: engines (docker's libnetwork) wire the
    // network from these hooks, before the init looks at it.
    let st = rec.oci_state(Status::Created);
    let hook_state = serde_json::json!({
        "ociVersion": st.oci_version, "id": st.id, "status": "creating",
        "pid": pid, "bundle": st.bundle, "annotations": st.annotations,
    })
    .to_string();
    run_hooks("prestart", &spec.hooks.prestart, &hook_state)?;
    run_hooks("createRuntime", &spec.hooks.create_runtime, &hook_state)?;
    writer.write_all(b"go\n").map_err(|source| OciError::Sys {
        what: "the container's init went away".into(),
        source,
    })?;
    let ready = expect_line(&mut reader, "ready")?;
    rec.net = serde_json::from_str(&ready)
        .map_err(|e| OciError::Init(format!("unexpected answer {ready:?}: {e}")))?;
    if let (Some(ns), Some(setup)) = (&rec.netns, &rec.net) {
        undo.net = Some((ns.clone(), setup.clone()));
    }
    rec.save(&g.root)?;
    if let Some(pf) = &o.pid_file {
        write_pid_file(pf, pid)?;
    }
    undo.armed = false;
    undo.child
        .take()
        .ok_or_else(|| OciError::Init("the init vanished".into()))
}

/// Reads the init's next line: `WORD payload`, or `error MESSAGE`.
fn expect_line(reader: &mut impl BufRead, word: &str) -> Result<String, OciError> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => {
            return Err(OciError::Init(
                "it exited before it was ready (see its stderr)".into(),
            ))
        }
        Ok(_) => {}
        Err(e) => return Err(OciError::Init(format!("no answer from it: {e}"))),
    }
    let line = line.trim_end_matches('\n');
    let (w, rest) = line.split_once(' ').unwrap_or((line, ""));
    if w == word {
        Ok(rest.to_string())
    } else if w == "error" {
        Err(OciError::Init(rest.to_string()))
    } else {
        Err(OciError::Init(format!("unexpected answer {line:?}")))
    }
}

fn write_pid_file(path: &Path, pid: i32) -> Result<(), OciError> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, pid.to_string())
        .map_err(|e| OciError::io("cannot write the pid file", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| OciError::io("cannot write the pid file", path, e))
}

/// Runs OCI hooks in order with the state on stdin; the first failure stops.
fn run_hooks(kind: &'static str, hooks: &[Hook], state: &str) -> Result<(), OciError> {
    for h in hooks {
        let fail = |detail: String| OciError::Hook {
            hook: kind,
            path: h.path.clone(),
            detail,
        };
        let mut cmd = Command::new(&h.path);
        if let Some((arg0, rest)) = h.args.split_first() {
            cmd.arg0(arg0).args(rest);
        }
        cmd.env_clear();
        for kv in &h.env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A hook may exit without reading its stdin.
            let _ = stdin.write_all(state.as_bytes());
        }
        let deadline = h
            .timeout
            .filter(|t| *t > 0)
            .map(|t| Instant::now() + Duration::from_secs(t as u64));
        let status = loop {
            match child.try_wait().map_err(|e| fail(e.to_string()))? {
                Some(s) => break s,
                None if deadline.is_some_and(|d| Instant::now() > d) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail("timed out".into()));
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        if !status.success() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(fail(format!("{status}: {}", err.trim())));
        }
    }
    Ok(())
}

fn start(g: &Global, id: &str) -> Result<(), OciError> {
    let dir = state::container_dir(&g.root, id);
    let _lock = state::lock(&dir)?;
    let rec = Record::load(&g.root, id)?;
    let status = rec.status(&g.root);
    if status != Status::Created {
        return Err(OciError::NotCreated {
            id: id.to_string(),
            status: status.as_str(),
        });
    }
    let fifo_path = dir.join(state::EXEC_FIFO);
    // Non-blocking open, so a dead init cannot hang us; then blocking
    // reads, which return 0 until the init has opened its end.
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo_path)
        .map_err(|e| OciError::io("cannot open", &fifo_path, e))?;
    // SAFETY: the fd is owned by `fifo`, open for the call.
    unsafe { libc::fcntl(fifo.as_raw_fd(), libc::F_SETFL, 0) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut byte = [0u8; 1];
    loop {
        match (&fifo).read(&mut byte) {
            Ok(1) => break,
            Ok(_) if rec.alive() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Ok(_) => {
                return Err(OciError::Init(
                    "it exited (or hung) before the container was started".into(),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(OciError::io("cannot read", &fifo_path, e)),
        }
    }
    std::fs::remove_file(&fifo_path).map_err(|e| OciError::io("cannot remove", &fifo_path, e))?;
    let st = serde_json::to_string(&rec.oci_state(Status::Running)).unwrap_or_default();
    if let Err(e) = run_hooks("poststart", &rec.hooks.poststart, &st) {
        // The spec: a failing poststart hook is logged, the container runs.
        log_line(g, "warning", &e.to_string());
    }
    Ok(())
}

use std::os::unix::fs::OpenOptionsExt;

pub fn parse_signal(s: &str) -> Result<i32, OciError> {
    let t = s.trim_start_matches('-');
    if let Ok(n) = t.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(OciError::BadSignal(s.to_string()))
        };
    }
    let name = t.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "PWR" => libc::SIGPWR,
        "WINCH" => libc::SIGWINCH,
        "ALRM" => libc::SIGALRM,
        _ => return Err(OciError::BadSignal(s.to_string())),
    };
    Ok(n)
}

/// Signals the container's process; with `all`, every process in its
/// cgroup, and (as runc) an already stopped container is not an error.
fn kill(g: &Global, id: &str, sig: i32, all: bool) -> Result<(), OciError> {
    let rec = Record::load(&g.root, id)?;
    if !rec.alive() {
        return if all {
            Ok(())
        } else {
            Err(OciError::NotRunning)
        };
    }
    let mut pids = vec![rec.pid];
    if all {
        pids.extend(cgroup::pids(&rec.cgroups).unwrap_or_default());
        pids.sort_unstable();
        pids.dedup();
    }
    for pid in pids {
        // SAFETY: kill has no memory-safety preconditions; the init's
        // liveness was just checked against its recorded start time, and
        // the others are in the container's cgroup.
        if unsafe { libc::kill(pid, sig) } != 0 && pid == rec.pid {
            return Err(OciError::sys(format!("cannot signal pid {}", rec.pid)));
        }
    }
    Ok(())
}

fn delete(g: &Global, id: &str, force: bool) -> Result<(), OciError> {
    let dir = state::container_dir(&g.root, id);
    let lock = state::lock(&dir)?;
    let rec = Record::load(&g.root, id)?;
    let status = rec.status(&g.root);
    if status != Status::Stopped {
        if !force && status == Status::Running {
            return Err(OciError::NotStopped {
                id: id.to_string(),
                status: status.as_str(),
            });
        }
        // SAFETY: as in kill.
        unsafe { libc::kill(rec.pid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while rec.alive() {
            if Instant::now() > deadline {
                return Err(OciError::Init(format!(
                    "pid {} did not die after SIGKILL",
                    rec.pid
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mut first_err = None;
    if let (Some(ns), Some(setup)) = (&rec.netns, &rec.net) {
        if let Err(e) = net::teardown(Some(ns), setup) {
            first_err.get_or_insert(e);
        }
    }
    if let Err(e) = cgroup::remove(&rec.cgroups) {
        first_err.get_or_insert(e);
    }
    let st = serde_json::to_string(&rec.oci_state(Status::Stopped)).unwrap_or_default();
    if let Err(e) = run_hooks("poststop", &rec.hooks.poststop, &st) {
        log_line(g, "warning", &e.to_string());
    }
    drop(lock);
    std::fs::remove_dir_all(&dir)
        .map_err(|e| OciError::io("cannot remove the container state", &dir, e))?;
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
