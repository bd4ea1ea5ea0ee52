//! bunny-init: PID 1 of a single-application Linux guest (bunny's urunit).
//!
//! The kernel starts it as `init=/urunit -- APP ARGS` (or `rdinit=`), with
//! the image's env as `K=V` kernel arguments (which the kernel hands to init
//! as its environment). It mounts /proc, /sys and /dev, loads the kernel
//! modules under /lib/modules, configures `lo` and the `ip=` interface, reads
//! urunit's configuration (`URUNIT_CONFIG`, and the image's own
//! `/.bunny/urunit.conf`), mounts its block volumes, forks the app, reaps
//! every child, and when the app exits unmounts the volumes and powers the
//! guest off, handing a non-zero status to the monitor through qemu's
//! isa-debug-exit port (0xf4). See docs/init.md.

mod config;
mod stage;
mod sys;

use std::ffi::CString;
use std::path::Path;

use config::{join_quoted, Config};

/// The configuration bunny writes into images (WORKDIR, USER).
const IMAGE_CONFIG: &str = "/.bunny/urunit.conf";

fn log(msg: &str) {
    eprintln!("bunny-init: {msg}");
}

fn main() {
    let pid1 = std::process::id() == 1;
    if pid1 && Path::new(stage::MARKER).exists() {
        sys::setup_pid1();
        sys::load_modules(Path::new("/lib/modules"));
        let args: Vec<String> = std::env::args().skip(1).collect();
        stage::switch_root(&args);
    }
    if pid1 {
        sys::setup_pid1();
        sys::load_modules(Path::new("/lib/modules"));
        sys::setup_network();
    } else {
        // Outside a guest (tests on the host), still reap orphans.
        sys::become_subreaper();
    }

    let mut conf = Config::default();
    for path in [
        Some(IMAGE_CONFIG.to_string()),
        std::env::var("URUNIT_CONFIG").ok(),
    ]
    .into_iter()
    .flatten()
    {
        match std::fs::read(&path) {
            Ok(bytes) => {
                let (c, warnings) = Config::parse(&String::from_utf8_lossy(&bytes));
                for w in warnings {
                    log(&format!("{path}: {w}"));
                }
                conf.merge(c);
            }
            Err(e) if path == IMAGE_CONFIG && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log(&format!("cannot read the configuration {path}: {e}")),
        }
    }
    // Volumes need the guest's own devices: only as PID 1.
    let volumes = if pid1 {
        sys::mount_volumes(&conf)
    } else {
        Vec::new()
    };

    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv = join_quoted(&args);
    let status = match argv.first() {
        None => {
            log("no application to run (give it after `--` on the kernel command line)");
            1
        }
        Some(_) => run(&argv, &conf),
    };
    if pid1 {
        sys::unmount_volumes(&volumes);
        sys::power_off(status);
    }
    std::process::exit(status);
}

/// Forks the app and reaps children until the app has exited; returns its
/// status (128 + signal when killed, as a shell reports it).
fn run(argv: &[String], conf: &Config) -> i32 {
    let env = app_env(conf);
    let Some(exec) = prepare_exec(argv, &env, conf.workdir.as_deref()) else {
        log(&format!("`{}`: arguments hold a NUL byte", argv[0]));
        return 127;
    };
    log(&format!("starting {}", argv.join(" ")));
    // SAFETY: fork in a single-threaded process; the child only calls
    // async-signal-safe functions (setgid, setuid, chdir, execve, _exit)
    // with data prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        log(&format!("fork: {}", std::io::Error::last_os_error()));
        return 1;
    }
    if pid == 0 {
        sys::exec_child(&exec, conf);
    }
    loop {
        let mut st = 0;
        // SAFETY: waitpid with a valid status pointer.
        let r = unsafe { libc::waitpid(-1, &mut st, 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            log(&format!("waitpid: {e}"));
            return 1;
        }
        let code = if libc::WIFEXITED(st) {
            libc::WEXITSTATUS(st)
        } else if libc::WIFSIGNALED(st) {
            128 + libc::WTERMSIG(st)
        } else {
            continue;
        };
        if r == pid {
            log(&format!("{} exited with status {code}", argv[0]));
            return code & 0xff;
        }
        log(&format!("reaped pid {r} (status {code})"));
    }
}

/// The app's environment: urunit's env block when there is one, else what
/// the kernel gave the init (the image's Env, passed as `K=V` arguments),
/// without the variables meant for the init itself.
fn app_env(conf: &Config) -> Vec<String> {
    let mut env: Vec<String> = match &conf.env {
        Some(e) => e.clone(),
        None => std::env::vars_os()
            .filter_map(|(k, v)| {
                let k = k.into_string().ok()?;
                let v = v.into_string().ok()?;
                Some(format!("{k}={v}"))
            })
            .filter(|kv| !kv.starts_with("URUNIT_"))
            .collect(),
    };
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    env
}

/// Everything the child needs, allocated before the fork.
pub struct Exec {
    /// Candidate paths, tried in order (PATH search for a bare name).
    pub paths: Vec<CString>,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    pub workdir: Option<CString>,
}

fn prepare_exec(argv: &[String], env: &[String], workdir: Option<&str>) -> Option<Exec> {
    let cs = |s: &str| CString::new(s).ok();
    let prog = &argv[0];
    let paths = if prog.contains('/') {
        vec![cs(prog)?]
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/bin");
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| cs(&format!("{d}/{prog}")))
            .collect::<Option<Vec<_>>>()?
    };
    Some(Exec {
        paths,
        argv: argv.iter().map(|a| cs(a)).collect::<Option<_>>()?,
        env: env.iter().map(|e| cs(e)).collect::<Option<_>>()?,
        workdir: match workdir {
            Some(w) => Some(cs(w)?),
            None => None,
        },
    })
}
