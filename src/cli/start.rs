//! `bunny start`: boots a stopped run again, as `docker start` does: the
//! same image, arguments, ports and volumes (`bunny run`'s command line,
//! recorded with the run), detached, its console appended to the run's log.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use crate::runs::{process_start, Liveness, RunState, Runs, Status, CONSOLE_LOG};

#[derive(Debug, Args)]
#[command(
    about = "Boot stopped runs again (detached)",
    after_help = "Examples:\n  bunny stop web && bunny start web\n  bunny start $(bunny ps -aq --filter status=exited)"
)]
pub struct StartArgs {
    /// Runs: names or (prefixes of) ids.
    #[arg(required = true)]
    runs: Vec<String>,
}

pub fn run(args: StartArgs, globals: &super::Globals) -> anyhow::Result<ExitCode> {
    super::each_run(globals, &args.runs, |runs, key| {
        start_run(runs, &runs.find(key)?, globals)
    })
}

fn start_run(runs: &Runs, found: &RunState, globals: &super::Globals) -> anyhow::Result<()> {
    let before = {
        // Under the runs' lock, so two `bunny start`s cannot both boot it:
        // the second sees this process as the run's supervisor.
        let _lock = runs.lock()?;
        let Some(s) = runs.reload(&found.id)? else {
            bail!("run {} was removed meanwhile", found.name);
        };
        match s.liveness() {
            // docker's rule: starting a running container is no error.
            Liveness::Running => return Ok(()),
            Liveness::Stale => return Err(super::stop::stale(&s)),
            Liveness::Exited(_) => {}
        }
        if s.argv.is_empty() {
            bail!(
                "run {} cannot be started again: its command line was not recorded (an older bunny made it, or it was not text); `bunny rm {}` and `bunny run` it anew",
                s.name,
                s.name
            );
        }
        let mut next = s.clone();
        next.status = Status::Created;
        next.detached = true;
        next.exit_code = None;
        next.finished = None;
        next.monitor_pid = None;
        next.supervisor_pid = Some(std::process::id());
        next.supervisor_start = process_start(std::process::id());
        next.restarts += 1;
        runs.save(&next)?;
        s
    };
    let argv: Vec<OsString> = before.argv.iter().map(OsString::from).collect();
    let started = super::run::spawn_supervisor(
        &before.id,
        &argv,
        before.cwd.as_deref(),
        Some(&globals.root),
        &runs.dir_of(&before.id).join(CONSOLE_LOG),
    );
    if let Err(e) = started {
        // It did not boot: it is the stopped run it was.
        if let Some(mut now) = runs.reload(&before.id)? {
            if now.monitor_pid.is_none() {
                now.status = before.status;
                now.exit_code = before.exit_code;
                now.finished = before.finished;
                now.supervisor_pid = before.supervisor_pid;
                now.supervisor_start = before.supervisor_start;
                now.detached = before.detached;
                runs.save(&now)?;
            }
        }
        return Err(e.context(format!("starting run {}", before.name)));
    }
    Ok(())
}
