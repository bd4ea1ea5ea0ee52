//! `bunny logs`: the console of a detached run, as `docker logs`.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::runs::{Liveness, Runs, CONSOLE_LOG};

#[derive(Debug, Args)]
#[command(
    about = "Print a detached run's console",
    after_help = "Examples:\n  bunny logs web\n  bunny logs -f web"
)]
pub struct LogsArgs {
    /// Keep printing what the guest writes until the run stops.
    #[arg(short = 'f', long)]
    follow: bool,
    /// The run: its name or (a prefix of) its id.
    run: String,
}

const POLL: Duration = Duration::from_millis(100);

pub fn run(args: LogsArgs, globals: &super::Globals) -> anyhow::Result<ExitCode> {
    let runs = Runs::open(&globals.root)?;
    let state = runs.find(&args.run)?;
    let path = runs.dir_of(&state.id).join(CONSOLE_LOG);
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !state.detached => {
            anyhow::bail!(
                "run {} ran in the foreground: its console went to the terminal that started it (`bunny run -d` keeps it for `bunny logs`)",
                state.name
            )
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = vec![0u8; 64 * 1024];
    let mut copy = |file: &mut std::fs::File, out: &mut dyn Write| -> anyhow::Result<()> {
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                return Ok(());
            }
            // A closed pipe (`| head`) ends us quietly, as it does cat.
            if out.write_all(&buf[..n]).is_err() {
                std::process::exit(0);
            }
        }
    };
    copy(&mut file, &mut out)?;
    let liveness = state.liveness();
    if liveness == Liveness::Stale {
        eprintln!(
            "bunny: run {} is stale: the bunny process that ran it is gone without recording an exit (killed, or the host restarted); `bunny rm {}` removes it",
            state.name, state.name
        );
    }
    if !args.follow || liveness != Liveness::Running {
        let _ = out.flush();
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        let _ = out.flush();
        std::thread::sleep(POLL);
        copy(&mut file, &mut out)?;
        let now = runs.reload(&state.id)?;
        let going = now
            .as_ref()
            .is_some_and(|s| s.liveness() == Liveness::Running);
        if !going {
            // What it wrote between our last read and its end.
            copy(&mut file, &mut out)?;
            let _ = out.flush();
            return Ok(ExitCode::SUCCESS);
        }
    }
}
