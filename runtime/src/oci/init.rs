//! The container's init (`bunny-runtime __init`), started by `create`
//! already inside the container's network namespace. It answers `create`
//! over the sync socket, waits on the exec FIFO for `start`, then enters the
//! container's mount and pid namespaces and runs the monitor as its child
//! under the spec's seccomp profile, forwarding signals, and exits with the
//! guest's status.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use super::cli::{Global, LogFormat};
use super::error::OciError;
use super::net::{self, NetSetup};
use super::spec::Spec;
use super::state::EXEC_FIFO;
use crate::{Accel, NetSpec, RunSpec};

struct Args {
    bundle: PathBuf,
    dir: PathBuf,
    sync_fd: i32,
    global: Global,
    own_netns: bool,
}

fn parse(args: &[String]) -> Option<Args> {
    let [bundle, dir, fd, format, log, ns] = args else {
        return None;
    };
    Some(Args {
        bundle: bundle.into(),
        dir: dir.into(),
        sync_fd: fd.parse().ok()?,
        global: Global {
            root: PathBuf::new(),
            log: (!log.is_empty()).then(|| PathBuf::from(log)),
            log_format: if format == "json" {
                LogFormat::Json
            } else {
                LogFormat::Text
            },
        },
        own_netns: ns == "ns",
    })
}

pub fn main(args: &[String]) -> i32 {
    let Some(a) = parse(args) else {
        eprintln!("bunny-runtime: __init is internal to bunny-runtime create");
        return 2;
    };
    // SAFETY: create passed this fd to us open, and nothing else owns it.
    let sync = unsafe { UnixStream::from_raw_fd(a.sync_fd) };
    // Keep it out of ip, tc and the monitor.
    // SAFETY: the fd is open (owned by `sync`).
    unsafe { libc::fcntl(a.sync_fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    let mut writer = match sync.try_clone() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("bunny-runtime init: {e}");
            return 1;
        }
    };
    let mut reader = BufReader::new(sync);
    let mut say = |msg: &str| writer.write_all(format!("{msg}\n").as_bytes());
    if say("ns").is_err() {
        return 1;
    }
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.trim() != "go" {
        // create gave up (a hook failed); it kills us anyway.
        return 1;
    }
    let prepared = match prepare(&a) {
        Ok(p) => p,
        Err(e) => {
            let msg = e.to_string().replace('\n', " ");
            let _ = say(&format!("error {msg}"));
            return 1;
        }
    };
    let net_json = serde_json::to_string(&prepared.setup).unwrap_or_else(|_| "null".into());
    if say(&format!("ready {net_json}")).is_err() {
        return 1;
    }
    drop(reader);

    // Blocks until `start` opens the other end.
    let fifo = a.dir.join(EXEC_FIFO);
    match std::fs::OpenOptions::new().write(true).open(&fifo) {
        Ok(mut f) => {
            if f.write_all(b"0").is_err() {
                return 1;
            }
        }
        Err(e) => {
            super::report(
                &a.global,
                "error",
                &format!("init: cannot open {}: {e}", fifo.display()),
            );
            return 1;
        }
    }
    let own_pid_ns = match File::open("/proc/self/ns/pid") {
        Ok(f) => f,
        Err(e) => {
            super::report(
                &a.global,
                "error",
                &format!("cannot open our pid namespace: {e}"),
            );
            return 1;
        }
    };
    // Still single-threaded here, as entering a mount namespace requires.
    if let Err(e) = enter_namespaces(&prepared.namespaces) {
        super::report(&a.global, "error", &e.to_string());
        return 1;
    }
    // This process stays the container's: it reaps the monitor and exits
    // with the guest's status, which the engine reads as the container's.
    let code = match crate::supervise_monitor(
        &prepared.monitor,
        prepared.seccomp.as_deref(),
        Some(own_pid_ns.as_raw_fd()),
    ) {
        Ok(code) => code,
        Err(e) => {
            super::report(&a.global, "error", &e.to_string());
            127
        }
    };
    // The guest's changes are the user's data, however the guest ended.
    for e in super::volumes::write_back(&prepared.volumes) {
        super::report(&a.global, "error", &e);
    }
    code
}

/// What the init needs after `start`, all checked before `create` returns.
struct Prepared {
    monitor: crate::PreparedMonitor,
    setup: Option<NetSetup>,
    seccomp: Option<Vec<libc::sock_filter>>,
    namespaces: Vec<(libc::c_int, Option<File>)>,
    /// Bind-mounted directories whose images go back into them.
    volumes: Vec<super::volumes::WriteBack>,
}

/// Enters the spec's mount namespace (new: a private copy of the host's,
/// whose mounts no longer propagate back) and pid namespace (which the
/// monitor, our child, is born into: it is pid 1 there).
fn enter_namespaces(ns: &[(libc::c_int, Option<File>)]) -> Result<(), OciError> {
    for (flag, file) in ns {
        let what = if *flag == libc::CLONE_NEWNS {
            "mount"
        } else {
            "pid"
        };
        // SAFETY: plain syscalls on an open fd or with constant arguments.
        let rc = match file {
            Some(f) => unsafe { libc::setns(f.as_raw_fd(), *flag) },
            None => unsafe { libc::unshare(*flag) },
        };
        if rc != 0 {
            return Err(OciError::sys(format!("cannot enter a {what} namespace")));
        }
        if *flag == libc::CLONE_NEWNS && file.is_none() {
            // SAFETY: constant C strings; no data argument.
            let rc = unsafe {
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_SLAVE,
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                return Err(OciError::sys("cannot make the mount namespace a slave"));
            }
        }
    }
    Ok(())
}

fn prepare(a: &Args) -> Result<Prepared, OciError> {
    let spec = Spec::load(&a.bundle)?;
    let seccomp = spec.seccomp().map(crate::seccomp::compile).transpose()?;
    let mut namespaces = Vec::new();
    for (kind, path) in spec.monitor_namespaces() {
        let flag = if kind == "mount" {
            libc::CLONE_NEWNS
        } else {
            libc::CLONE_NEWPID
        };
        let file = match path {
            Some(p) => {
                Some(File::open(p).map_err(|e| OciError::io("cannot open the namespace", p, e))?)
            }
            None => None,
        };
        namespaces.push((flag, file));
    }
    let rootfs = spec.rootfs(&a.bundle);
    let config = crate::read_config(&spec.annotations, &rootfs)?;
    let mut run = RunSpec::new(&rootfs, config);
    run.args = spec.args();
    run.env = spec.env();
    if let Some(mb) = spec.memory_mb() {
        run.memory_mb = mb;
    }
    if let Some(n) = spec.vcpus() {
        run.cpus = n;
    }
    run.accel = accel_from_env()?;
    let mounts = super::volumes::candidates(&a.bundle)?;
    let volumes = super::volumes::attach(&mut run, &mounts, &a.dir)?;
    let setup = if a.own_netns {
        net::setup_here()?
    } else {
        None
    };
    run.net = setup.as_ref().map_or(NetSpec::None, NetSetup::net_spec);
    match crate::prepare_monitor(&run) {
        Ok(p) => {
            for note in &p.command.notes {
                super::log_line(&a.global, "info", note);
            }
            Ok(Prepared {
                monitor: p,
                setup,
                seccomp,
                namespaces,
                volumes,
            })
        }
        Err(e) => {
            if let Some(s) = &setup {
                // Leave the namespace as the engine made it.
                let _ = net::teardown(None::<&Path>, s);
            }
            Err(e.into())
        }
    }
}

fn accel_from_env() -> Result<Accel, OciError> {
    match std::env::var(super::ACCEL_ENV).as_deref() {
        Err(_) | Ok("") | Ok("auto") => Ok(Accel::Auto),
        Ok("kvm") => Ok(Accel::Kvm),
        Ok("tcg") => Ok(Accel::Tcg),
        Ok(other) => Err(OciError::Usage(format!(
            "{}={other:?} is not one of auto, kvm, tcg",
            super::ACCEL_ENV
        ))),
    }
}
