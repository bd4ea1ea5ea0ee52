//! Running the monitor: checks, side files, console and signals.

use std::io::{BufRead, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::accel::{is_root, resolve_accel, ResolvedAccel};
use crate::cmdline::mask_bits;
use crate::config::Hypervisor;
use crate::monitor::{build, GuestFiles, MonitorCommand};
use crate::paths::resolve_in_rootfs;
use crate::spec::{NetSpec, RunSpec};
use crate::RuntimeError;

/// After forwarding SIGTERM, the monitor gets this long before SIGKILL, so
/// the guest is gone well within two seconds of the user's signal.
const GRACE: Duration = Duration::from_millis(1200);
const POLL: Duration = Duration::from_millis(20);

/// Boots `spec` with the guest console on our stdin/stdout; returns the
/// monitor's exit status (128+N when it ended by, or on behalf of, signal N).
pub fn boot(spec: &RunSpec) -> Result<i32, RuntimeError> {
    run(spec, None, &mut |_| {})
}

/// Like [`boot`], and calls `started` with the monitor's pid once it runs
/// (a detached `bunny run` reports the run as started only then).
pub fn boot_notify(spec: &RunSpec, started: &mut dyn FnMut(u32)) -> Result<i32, RuntimeError> {
    run(spec, None, started)
}

/// Like [`boot`], but the console output goes to `console` and the guest
/// gets no input.
pub fn boot_with_console(spec: &RunSpec, console: &mut dyn Write) -> Result<i32, RuntimeError> {
    run(spec, Some(console), &mut |_| {})
}

fn run(
    spec: &RunSpec,
    console: Option<&mut dyn Write>,
    started: &mut dyn FnMut(u32),
) -> Result<i32, RuntimeError> {
    let cmd = prepare(spec)?;
    let exit_device = cmd
        .args
        .iter()
        .any(|a| a == crate::monitor::GUEST_EXIT_DEVICE);
    run_prepared(spec, cmd, console, exit_device, started)
}

fn run_prepared(
    spec: &RunSpec,
    cmd: MonitorCommand,
    console: Option<&mut dyn Write>,
    exit_device: bool,
    started: &mut dyn FnMut(u32),
) -> Result<i32, RuntimeError> {
    for note in &cmd.notes {
        eprintln!("bunny: {note}");
    }
    let program = find_program(&cmd.program).ok_or_else(|| RuntimeError::MonitorMissing {
        program: cmd.program.clone(),
        package: spec.hypervisor().package(),
    })?;
    match &spec.net {
        // A tap in a namespace of the run's own was made with it.
        NetSpec::Tap { .. } if spec.netns.is_some() => {}
        NetSpec::Tap {
            tap, mask, gateway, ..
        } => ensure_tap(tap, *gateway, *mask)?,
        _ => {}
    }
    write_side_files(&cmd)?;

    spawn_and_supervise(
        &program,
        &cmd,
        console,
        Launch {
            netns: spec.netns,
            seccomp: None,
            exit_device,
            own_pid_ns: None,
        },
        started,
    )
}

/// How the monitor is started, beyond its command line.
#[derive(Default)]
pub struct Launch<'a> {
    /// A network namespace to enter first.
    pub netns: Option<std::os::fd::RawFd>,
    /// A seccomp filter (classic BPF) to load just before the exec.
    pub seccomp: Option<&'a [libc::sock_filter]>,
    /// The monitor reports the guest's own status through its exit code
    /// (qemu's isa-debug-exit, see [`crate::monitor::guest_status`]).
    pub exit_device: bool,
    /// Our own pid namespace, entered again once the monitor is born in
    /// the one we unshared or joined: until then the kernel refuses to
    /// create threads in this process.
    pub own_pid_ns: Option<std::os::fd::RawFd>,
}

/// Starts the monitor as our child and supervises it: SIGINT and SIGTERM
/// are forwarded, the child is reaped, and its status becomes the guest's
/// (see [`final_status`]).
pub(crate) fn spawn_and_supervise(
    program: &Path,
    cmd: &MonitorCommand,
    console: Option<&mut dyn Write>,
    launch: Launch<'_>,
    started: &mut dyn FnMut(u32),
) -> Result<i32, RuntimeError> {
    crate::timestamp("monitor-exec");
    let mut command = Command::new(program);
    // qemu tells how it stopped over QMP: a reset (a kernel panic with
    // panic=-1, or a triple fault) is then told apart from a power-off,
    // which qemu's exit code cannot do under -no-reboot.
    let qmp = if is_qemu(&cmd.program) {
        Some(UnixStream::pair().map_err(|e| RuntimeError::Supervise {
            program: cmd.program.clone(),
            detail: format!("cannot create its QMP socket: {e}"),
        })?)
    } else {
        None
    };
    let qmp_fd = qmp.as_ref().map(|(_, theirs)| theirs.as_raw_fd());
    if let Some(fd) = qmp_fd {
        command.args(qmp_args(fd));
    }
    command.args(&cmd.args);
    command.stderr(Stdio::inherit());
    if console.is_some() {
        command.stdin(Stdio::null()).stdout(Stdio::piped());
    }
    let netns = launch.netns;
    let filter = launch.seccomp.map(|f| f.to_vec());
    // SAFETY: prctl, setns and fcntl are async-signal-safe; the closure
    // allocates nothing (the filter was copied before the fork).
    unsafe {
        command.pre_exec(move || {
            // The guest must not outlive us if we are killed outright.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if let Some(fd) = netns {
                crate::hostnet::enter_netns(fd)?;
            }
            if let Some(fd) = qmp_fd {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(f) = &filter {
                crate::seccomp::load(f)?;
            }
            Ok(())
        });
    }

    let _signals = SignalGuard::install();
    let seen = SIGNAL_SEQ.load(Ordering::SeqCst);
    let mut child = command.spawn().map_err(|source| RuntimeError::Spawn {
        program: program.display().to_string(),
        source,
    })?;
    if let Some(fd) = launch.own_pid_ns {
        // SAFETY: setns on an fd the caller keeps open.
        if unsafe { libc::setns(fd, libc::CLONE_NEWPID) } != 0 {
            let e = std::io::Error::last_os_error();
            let _ = child.kill();
            let _ = child.wait();
            return Err(RuntimeError::Supervise {
                program: cmd.program.clone(),
                detail: format!("cannot return to our pid namespace: {e}"),
            });
        }
    }
    let watch = match qmp {
        Some((ours, theirs)) => {
            drop(theirs);
            match QmpWatch::start(ours) {
                Ok(w) => Some(w),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(RuntimeError::Supervise {
                        program: cmd.program.clone(),
                        detail: format!("cannot watch its QMP monitor: {e}"),
                    });
                }
            }
        }
        None => None,
    };
    started(child.id());
    let name = cmd.program.clone();
    let exit_device = launch.exit_device;
    match console {
        None => supervise(&mut child, seen, &name, exit_device, watch),
        Some(out) => {
            let Some(mut pipe) = child.stdout.take() else {
                return Err(RuntimeError::Supervise {
                    program: name,
                    detail: "its console pipe is missing".into(),
                });
            };
            std::thread::scope(|s| {
                let sup = s.spawn(|| supervise(&mut child, seen, &name, exit_device, watch));
                let copied = copy_console(&mut pipe, out);
                if copied.is_err() {
                    // Keep draining so the monitor never blocks on a full pipe.
                    let _ = std::io::copy(&mut pipe, &mut std::io::sink());
                }
                let status = sup.join().map_err(|_| RuntimeError::Supervise {
                    program: name.clone(),
                    detail: "the supervising thread panicked".into(),
                })??;
                copied.map_err(|e| RuntimeError::Supervise {
                    program: name.clone(),
                    detail: format!("cannot pass on its console: {e}"),
                })?;
                Ok(status)
            })
        }
    }
}

fn is_qemu(program: &str) -> bool {
    Path::new(program)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("qemu-system-"))
}

/// qemu starts paused (`-S`) with a QMP monitor on an inherited socket, so
/// no event of the guest's is lost before we listen; [`QmpWatch`] lets it
/// run.
fn qmp_args(fd: std::os::fd::RawFd) -> [String; 5] {
    [
        "-S".into(),
        "-chardev".into(),
        format!("socket,id=bunnyqmp,fd={fd}"),
        "-mon".into(),
        "chardev=bunnyqmp,mode=control".into(),
    ]
}

/// The QMP side of a qemu run: negotiates, resumes the guest and keeps the
/// reason of qemu's SHUTDOWN event.
struct QmpWatch {
    reason: std::thread::JoinHandle<Option<String>>,
    /// Set when the handshake failed: the guest would stay paused forever.
    failed: Arc<AtomicBool>,
}

impl QmpWatch {
    fn start(sock: UnixStream) -> std::io::Result<QmpWatch> {
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        let reason = std::thread::Builder::new()
            .name("qmp".into())
            .spawn(move || {
                let r = qmp_session(sock);
                if r.is_err() {
                    flag.store(true, Ordering::SeqCst);
                }
                r.ok().flatten()
            })?;
        Ok(QmpWatch { reason, failed })
    }
}

fn qmp_session(sock: UnixStream) -> std::io::Result<Option<String>> {
    let mut writer = sock.try_clone()?;
    let mut lines = std::io::BufReader::new(sock).lines();
    let mut next = || -> std::io::Result<serde_json::Value> {
        loop {
            let line = lines.next().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "qemu closed QMP")
            })??;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                return Ok(v);
            }
        }
    };
    next()?; // the greeting
    writer.write_all(b"{\"execute\":\"qmp_capabilities\"}\n")?;
    writer.write_all(b"{\"execute\":\"cont\"}\n")?;
    let mut reason = None;
    loop {
        let v = match next() {
            Ok(v) => v,
            // qemu is gone: its last word, if any, is in `reason`.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(reason),
            Err(e) => return Err(e),
        };
        if v.get("error").is_some() {
            return Err(std::io::Error::other(format!("QMP refused: {v}")));
        }
        if v.get("event").and_then(|e| e.as_str()) == Some("SHUTDOWN") {
            reason = v
                .pointer("/data/reason")
                .and_then(|r| r.as_str())
                .map(String::from);
        }
    }
}

/// Exit status of a guest that crashed or reset instead of powering off or
/// reporting a status: a kernel panic (bunny boots Linux with `panic=-1`
/// and `-no-reboot`), a triple fault, or a reboot. The guest's own statuses
/// through qemu's exit device are 0..=127, so this one is never a guest's.
pub const GUEST_CRASHED: i32 = 255;

/// How the monitor ended, as the container's exit status: 128+N when we
/// forwarded signal N (or the monitor died of N); [`GUEST_CRASHED`] when qemu
/// saw the guest reset or panic; the guest's status when the monitor
/// carries it; otherwise the monitor's own exit code.
pub fn final_status(
    monitor: ExitStatus,
    forwarded: Option<i32>,
    exit_device: bool,
    shutdown_reason: Option<&str>,
) -> i32 {
    if let Some(sig) = forwarded {
        return 128 + sig;
    }
    if monitor.code().is_some() && matches!(shutdown_reason, Some("guest-reset" | "guest-panic")) {
        return GUEST_CRASHED;
    }
    match monitor.code() {
        Some(c) if exit_device => crate::monitor::guest_status(c),
        _ => exit_code(monitor),
    }
}

/// Streams the console as it comes, so a caller sees boot progress live.
fn copy_console(pipe: &mut impl Read, out: &mut dyn Write) -> std::io::Result<()> {
    let mut buf = [0u8; 8192];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => return out.flush(),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}

/// Resolves acceleration and image paths (on disk) and builds the command.
fn prepare(spec: &RunSpec) -> Result<MonitorCommand, RuntimeError> {
    let hv = spec.hypervisor();
    let (accel, notice) = match hv {
        // spt runs the guest as a sandboxed process: no accelerator at all.
        Hypervisor::Spt => (ResolvedAccel::Tcg, None),
        _ => resolve_accel(spec.accel)?,
    };
    let c = &spec.config;
    let kernel = resolve_in_rootfs(
        &spec.rootfs,
        &c.binary,
        "kernel (com.urunc.unikernel.binary)",
    )?;
    // hvt without KVM is refused below, whatever the kernel: say that first.
    let solo5 = match (hv, accel) {
        (Hypervisor::Spt, _) | (Hypervisor::Hvt, ResolvedAccel::Kvm) => {
            Some(crate::solo5::read_abi(&kernel)?)
        }
        _ => None,
    };
    let files = GuestFiles {
        kernel,
        initrd: c
            .initrd
            .as_deref()
            .map(|p| resolve_in_rootfs(&spec.rootfs, p, "initrd (com.urunc.unikernel.initrd)"))
            .transpose()?,
        block: crate::monitor::block_path(spec, resolve_in_rootfs)?,
        solo5,
    };
    let mut cmd = match build(spec, accel, &files) {
        // The fallback notice says "using TCG", which this monitor cannot:
        // say why KVM is out instead, and what runs without it.
        Err(RuntimeError::NeedsKvm { monitor, .. }) if notice.is_some() => {
            let why = match crate::accel::cached_probe() {
                crate::accel::KvmProbe::Unusable(r) => r,
                crate::accel::KvmProbe::Usable => "it was not chosen".into(),
            };
            return Err(RuntimeError::NeedsKvm {
                monitor,
                reason: format!(
                    "KVM is unusable here ({why}), and {monitor} cannot fall back to emulation; {}",
                    crate::monitor::without_kvm(hv)
                ),
            });
        }
        other => other?,
    };
    if let Some(n) = notice {
        cmd.notes.insert(0, n);
    }
    if let Some(abi) = &files.solo5 {
        // A tender runs only guests of its own ABI: pick the one that fits.
        let candidates = crate::solo5::tender_candidates(&cmd.program, abi);
        let tender = crate::solo5::find_tender(&candidates, abi, &files.kernel, find_program)?;
        cmd.program = tender.to_string_lossy().into_owned();
    }
    Ok(cmd)
}

fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_exec(p))
}

/// Makes sure tap device `tap` exists and is up, creating it (with the
/// gateway address) when we are root.
pub fn ensure_tap(tap: &str, gateway: Ipv4Addr, mask: Ipv4Addr) -> Result<(), RuntimeError> {
    crate::hostnet::check_ifname(tap)?;
    if Path::new("/sys/class/net").join(tap).exists() {
        return Ok(());
    }
    if !is_root() {
        let user = std::env::var("USER").unwrap_or_else(|_| {
            // SAFETY: getuid has no preconditions and cannot fail.
            unsafe { libc::getuid() }.to_string()
        });
        return Err(RuntimeError::TapMissing {
            tap: tap.into(),
            user,
        });
    }
    let addr = format!("{gateway}/{}", mask_bits(mask));
    crate::hostnet::ip_batch(
        None,
        &[
            format!("tuntap add dev {tap} mode tap"),
            format!("addr add {addr} dev {tap}"),
            format!("link set {tap} up"),
        ],
    )
    .map_err(|detail| RuntimeError::TapSetup {
        tap: tap.into(),
        detail,
    })
}

fn supervise(
    child: &mut Child,
    seen: u64,
    name: &str,
    exit_device: bool,
    watch: Option<QmpWatch>,
) -> Result<i32, RuntimeError> {
    let err = |e: std::io::Error| RuntimeError::Supervise {
        program: name.to_string(),
        detail: e.to_string(),
    };
    let mut forwarded: Option<(i32, Instant)> = None;
    let mut killed = false;
    loop {
        if let Some(status) = child.try_wait().map_err(err)? {
            let reason = match watch {
                Some(w) => w.reason.join().ok().flatten(),
                None => None,
            };
            return Ok(final_status(
                status,
                forwarded.map(|(s, _)| s),
                exit_device,
                reason.as_deref(),
            ));
        }
        if !killed
            && watch
                .as_ref()
                .is_some_and(|w| w.failed.load(Ordering::SeqCst))
        {
            child.kill().map_err(err)?;
            let _ = child.wait();
            return Err(RuntimeError::Supervise {
                program: name.to_string(),
                detail: "its QMP monitor did not answer, so the guest could not be started".into(),
            });
        }
        match forwarded {
            None if SIGNAL_SEQ.load(Ordering::SeqCst) != seen => {
                let sig = LAST_SIGNAL.load(Ordering::SeqCst);
                // qemu, firecracker and solo5 all stop cleanly on SIGTERM.
                // SAFETY: the child is not yet reaped, so its pid is ours.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                forwarded = Some((sig, Instant::now()));
            }
            Some((_, at)) if !killed && at.elapsed() > GRACE => {
                child.kill().map_err(err)?;
                killed = true;
            }
            _ => {}
        }
        std::thread::sleep(POLL);
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    }
}

static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);
static SIGNAL_SEQ: AtomicU64 = AtomicU64::new(0);
/// Number of running boots, and the handlers to restore after the last.
static INSTALLED: Mutex<(usize, Vec<(libc::c_int, libc::sigaction)>)> = Mutex::new((0, Vec::new()));

extern "C" fn on_signal(sig: libc::c_int) {
    // Only atomics here: that is all a signal handler may touch.
    LAST_SIGNAL.store(sig, Ordering::SeqCst);
    SIGNAL_SEQ.fetch_add(1, Ordering::SeqCst);
}

/// Catches SIGINT and SIGTERM while a monitor runs, and puts the previous
/// handlers back when the last boot in the process ends.
struct SignalGuard;

impl SignalGuard {
    fn install() -> SignalGuard {
        let mut g = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
        if g.0 == 0 {
            g.1.clear();
            for sig in [libc::SIGINT, libc::SIGTERM] {
                // SAFETY: zeroed sigaction is a valid "no flags, empty mask"
                // value; on_signal is async-signal-safe.
                unsafe {
                    let mut new: libc::sigaction = std::mem::zeroed();
                    new.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                    new.sa_flags = libc::SA_RESTART;
                    libc::sigemptyset(&mut new.sa_mask);
                    let mut old: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(sig, &new, &mut old) == 0 {
                        g.1.push((sig, old));
                    }
                }
            }
        }
        g.0 += 1;
        SignalGuard
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        let mut g = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
        g.0 = g.0.saturating_sub(1);
        if g.0 == 0 {
            for (sig, old) in g.1.drain(..) {
                // SAFETY: `old` came from sigaction itself.
                unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
            }
        }
    }
}

/// A monitor ready to exec: its program found on PATH and its side files
/// written. Used by the OCI runtime, which execs the monitor in place of
/// its init instead of supervising it.
#[derive(Debug, Clone)]
pub struct PreparedMonitor {
    pub program: PathBuf,
    pub command: MonitorCommand,
}

/// Does everything [`boot`] does before starting the monitor (acceleration,
/// image paths checked on disk, program lookup, side files), except the
/// tap device, which the caller owns.
pub fn prepare_monitor(spec: &RunSpec) -> Result<PreparedMonitor, RuntimeError> {
    let command = prepare(spec)?;
    let program = find_program(&command.program).ok_or_else(|| RuntimeError::MonitorMissing {
        program: command.program.clone(),
        package: spec.hypervisor().package(),
    })?;
    write_side_files(&command)?;
    Ok(PreparedMonitor { program, command })
}

/// Runs a prepared monitor as our child and supervises it (see
/// [`spawn_and_supervise`]): what the OCI runtime's init does, so the
/// container's exit status is the guest's.
pub fn supervise_monitor(
    pm: &PreparedMonitor,
    seccomp: Option<&[libc::sock_filter]>,
    own_pid_ns: Option<std::os::fd::RawFd>,
) -> Result<i32, RuntimeError> {
    let exit_device = pm
        .command
        .args
        .iter()
        .any(|a| a == crate::monitor::GUEST_EXIT_DEVICE);
    spawn_and_supervise(
        &pm.program,
        &pm.command,
        None,
        Launch {
            netns: None,
            seccomp,
            exit_device,
            own_pid_ns,
        },
        &mut |_| {},
    )
}

/// Writes the command's side files and derived files.
fn write_side_files(cmd: &MonitorCommand) -> Result<(), RuntimeError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RuntimeError::WriteFile { path, source }
    };
    let mkparent = |path: &Path| match path.parent() {
        Some(dir) => std::fs::create_dir_all(dir).map_err(werr(dir)),
        None => Ok(()),
    };
    for (path, bytes) in &cmd.files {
        mkparent(path)?;
        std::fs::write(path, bytes).map_err(werr(path))?;
    }
    for d in &cmd.derived {
        mkparent(&d.path)?;
        let mut out = std::fs::File::create(&d.path).map_err(werr(&d.path))?;
        let mut len = 0u64;
        if let Some(base) = &d.base {
            let mut src = std::fs::File::open(base).map_err(|source| RuntimeError::ReadFile {
                path: base.clone(),
                source,
            })?;
            len = std::io::copy(&mut src, &mut out).map_err(werr(&d.path))?;
        }
        let pad = |len: u64| vec![0u8; (len.div_ceil(512) * 512 - len) as usize];
        out.write_all(&pad(len)).map_err(werr(&d.path))?;
        out.write_all(&d.tail).map_err(werr(&d.path))?;
        out.write_all(&pad(d.tail.len() as u64))
            .map_err(werr(&d.path))?;
    }
    Ok(())
}
