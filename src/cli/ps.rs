//! `bunny ps`: the runs under this root, as `docker ps` lists containers.

use std::process::ExitCode;

use clap::Args;

use crate::runs::{Liveness, RunState, Runs};

#[derive(Debug, Args)]
#[command(
    about = "List runs (running ones; -a: all)",
    after_help = "Examples:\n  bunny ps\n  bunny ps -a\n  bunny rm $(bunny ps -aq --filter status=exited)"
)]
pub struct PsArgs {
    /// Show every run, not only running ones.
    #[arg(short = 'a', long)]
    all: bool,
    /// Only the ids.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Only runs whose status is running, exited or stale (`status=VALUE`).
    #[arg(long, value_name = "status=VALUE")]
    filter: Option<String>,
}

pub fn run(args: PsArgs, globals: &super::Globals) -> anyhow::Result<ExitCode> {
    let runs = Runs::open(&globals.root)?;
    let (list, damaged) = runs.scan()?;
    for e in &damaged {
        eprintln!("bunny: skipped: {}", crate::error_chain(e));
    }
    let want = match args.filter.as_deref() {
        None => None,
        Some(f) => match f.strip_prefix("status=") {
            Some(v @ ("running" | "exited" | "stale")) => Some(v.to_string()),
            _ => {
                anyhow::bail!("--filter `{f}`: write status=running, status=exited or status=stale")
            }
        },
    };
    let now = crate::runs::now();
    let shown: Vec<(&RunState, Liveness)> = list
        .iter()
        .map(|s| (s, s.liveness()))
        .filter(|(_, l)| match &want {
            Some(w) => status_word(*l) == w,
            None => args.all || *l == Liveness::Running,
        })
        .collect();
    if args.quiet {
        for (s, _) in shown {
            outln!("{}", s.short_id())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 7]> = shown
        .iter()
        .map(|(s, l)| {
            [
                s.short_id().to_string(),
                s.name.clone(),
                s.image.clone(),
                command(s),
                format!("{} ago", ago(now.saturating_sub(s.created))),
                status_text(s, *l, now),
                s.ports.join(", "),
            ]
        })
        .collect();
    let head = [
        "RUN ID", "NAME", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS",
    ];
    let mut widths = head.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        outln!("{}", out.trim_end())
    };
    line(head.to_vec())?;
    for r in &rows {
        line(r.iter().map(String::as_str).collect())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn status_word(l: Liveness) -> &'static str {
    match l {
        Liveness::Running => "running",
        Liveness::Exited(_) => "exited",
        Liveness::Stale => "stale",
    }
}

fn command(s: &RunState) -> String {
    let c = s.command.join(" ");
    let c = if c.is_empty() { "(image's)".into() } else { c };
    if c.chars().count() > 24 {
        format!("{}…", c.chars().take(23).collect::<String>())
    } else {
        c
    }
}

fn status_text(s: &RunState, l: Liveness, now: u64) -> String {
    match l {
        Liveness::Running => format!("Up {}", ago(now.saturating_sub(s.created))),
        Liveness::Exited(code) => format!(
            "Exited ({}) {} ago",
            code.map_or("?".into(), |c| c.to_string()),
            ago(now.saturating_sub(s.finished.unwrap_or(s.created)))
        ),
        Liveness::Stale => "Stale (its bunny process is gone)".into(),
    }
}

/// "5 seconds", "3 minutes", "2 hours", "4 days".
pub(crate) fn ago(secs: u64) -> String {
    let (n, unit) = match secs {
        0..=59 => (secs, "second"),
        60..=3599 => (secs / 60, "minute"),
        3600..=86_399 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    #[test]
    fn ages_read_like_dockers() {
        assert_eq!(super::ago(1), "1 second");
        assert_eq!(super::ago(59), "59 seconds");
        assert_eq!(super::ago(120), "2 minutes");
        assert_eq!(super::ago(7200), "2 hours");
        assert_eq!(super::ago(86_400 * 3), "3 days");
    }
}
