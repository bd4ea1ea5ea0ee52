//! `bunny stop`: stops runs, as `docker stop` stops containers: SIGTERM to
//! the bunny process supervising the monitor (which passes it on and
//! records the exit), SIGKILL after a grace period.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use crate::runs::{process_start, Liveness, RunState, Runs, Status};

#[derive(Debug, Args)]
#[command(
    about = "Stop running runs",
    after_help = "Examples:\n  bunny stop web\n  bunny stop -t 2 web db"
)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    /// Runs: names or (prefixes of) ids.
    #[arg(required = true)]
    runs: Vec<String>,
}

pub fn run(args: StopArgs, globals: &super::Globals) -> anyhow::Result<ExitCode> {
    let grace = Duration::from_secs(args.time);
    super::each_run(globals, &args.runs, |runs, key| {
        stop_run(runs, &runs.find(key)?, grace).map(drop)
    })
}

/// The error for a run whose supervisor vanished without a word.
pub(crate) fn stale(s: &RunState) -> anyhow::Error {
    anyhow::anyhow!(
        "run {} is stale: the bunny process that ran it (pid {}) is gone without recording an exit (it was killed, or the host restarted); `bunny rm {}` removes it",
        s.name,
        s.supervisor_pid.map_or("?".into(), |p| p.to_string()),
        s.name
    )
}

/// Stops `s` if it runs, and returns its final state (None: it was removed
/// meanwhile, by its own --rm). A run that exited already is left as it is.
pub(crate) fn stop_run(
    runs: &Runs,
    s: &RunState,
    grace: Duration,
) -> anyhow::Result<Option<RunState>> {
    match s.liveness() {
        Liveness::Exited(_) => return Ok(Some(s.clone())),
        Liveness::Stale => return Err(stale(s)),
        Liveness::Running => {}
    }
    let (Some(pid), Some(start)) = (s.supervisor_pid, s.supervisor_start) else {
        return Err(stale(s));
    };
    let alive = || process_start(pid) == Some(start);
    let signal = |sig| {
        // Only the process recorded, with its start time checked just now,
        // so a pid reused since is not signalled.
        if alive() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid as libc::pid_t, sig) };
        }
    };
    signal(libc::SIGTERM);
    let mut killed = false;
    let t0 = Instant::now();
    while alive() {
        if !killed && t0.elapsed() >= grace {
            // SIGKILL to the monitor, not to bunny: bunny still records the
            // exit and writes the volumes back. A run whose monitor is not
            // up yet has nothing to lose.
            let s_now = runs.reload(&s.id)?;
            match s_now
                .and_then(|n| n.monitor_pid)
                .filter(|m| parent_of(*m) == Some(pid))
            {
                // SAFETY: kill has no memory-safety preconditions; the pid is
                // the supervisor's child, checked just now.
                Some(m) => unsafe {
                    libc::kill(m as libc::pid_t, libc::SIGKILL);
                },
                None => signal(libc::SIGKILL),
            }
            killed = true;
        }
        // Writing a large volume back can take a while; a supervisor
        // still alive this long after its monitor is stuck.
        if t0.elapsed() > grace + Duration::from_secs(600) {
            anyhow::bail!(
                "run {}: its bunny process (pid {pid}) is still there 10 minutes after its monitor was killed",
                s.name
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(mut now) = runs.reload(&s.id)? else {
        return Ok(None);
    };
    if now.status != Status::Exited {
        // Killed before it could record the end (or SIGKILLed): record it.
        now.status = Status::Exited;
        now.exit_code = Some(128 + if killed { libc::SIGKILL } else { libc::SIGTERM });
        now.finished = Some(crate::runs::now());
        runs.save(&now)?;
    }
    Ok(Some(now))
}

/// The parent of process `pid` (field 4 of /proc/PID/stat).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}
