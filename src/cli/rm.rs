//! `bunny rm`: removes runs (their state, console log and side files), as
//! `docker rm` removes containers; a running one only with `-f`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::runs::{Liveness, Runs};

#[derive(Debug, Args)]
#[command(
    about = "Remove stopped runs (-f: stop running ones first)",
    after_help = "Examples:\n  bunny rm web\n  bunny rm -f web\n  bunny rm $(bunny ps -aq --filter status=exited)"
)]
pub struct RmArgs {
    /// Stop the run first if it is running (SIGTERM, SIGKILL after 3 s).
    #[arg(short = 'f', long)]
    force: bool,
    /// Runs: names or (prefixes of) ids.
    #[arg(required = true)]
    runs: Vec<String>,
}

/// `rm -f` gives the guest this long: enough for a directory volume to be
/// written back, short enough for a forced removal.
const FORCE_GRACE: Duration = Duration::from_secs(3);

pub fn run(args: RmArgs, globals: &super::Globals) -> anyhow::Result<ExitCode> {
    super::each_run(globals, &args.runs, |runs, key| {
        remove(runs, key, args.force)
    })
}

fn remove(runs: &Runs, key: &str, force: bool) -> anyhow::Result<()> {
    let s = runs.find(key)?;
    if s.liveness() == Liveness::Running {
        if !force {
            anyhow::bail!(
                "run {} is running: stop it first (`bunny stop {}`) or remove it with `bunny rm -f {}`",
                s.name,
                s.name,
                s.name
            );
        }
        super::stop::stop_run(runs, &s, FORCE_GRACE)?;
    }
    runs.remove(&s.id)?;
    Ok(())
}
