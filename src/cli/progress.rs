//! Progress display: indicatif spinners on a terminal, one line per event with
//! `--progress=plain` (CI), nothing with `quiet`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};

use crate::pipeline::Progress;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    Auto,
    Plain,
    Tty,
    Quiet,
}

pub fn reporter(mode: ProgressMode) -> Box<dyn Progress> {
    let mode = match mode {
        ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Tty,
        ProgressMode::Auto => ProgressMode::Plain,
        m => m,
    };
    match mode {
        ProgressMode::Tty => Box::new(Bars::default()),
        ProgressMode::Quiet => Box::new(Quiet),
        _ => Box::new(Plain::new()),
    }
}

struct Quiet;

impl Progress for Quiet {
    fn start(&self, _step: &str) {}
    fn finish(&self, _step: &str, _detail: &str) {}
    fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }
}

struct Plain {
    t0: Instant,
    started: Mutex<Vec<(String, Instant)>>,
}

impl Plain {
    fn new() -> Plain {
        Plain {
            t0: Instant::now(),
            started: Mutex::new(Vec::new()),
        }
    }

    fn stamp(&self) -> String {
        format!("{:>7.3}s", self.t0.elapsed().as_secs_f64())
    }
}

impl Progress for Plain {
    fn start(&self, step: &str) {
        if let Ok(mut s) = self.started.lock() {
            s.push((step.to_string(), Instant::now()));
        }
        eprintln!("#{} {step} ...", self.stamp());
    }

    fn finish(&self, step: &str, detail: &str) {
        let took = self
            .started
            .lock()
            .ok()
            .and_then(|s| {
                s.iter()
                    .rev()
                    .find(|(n, _)| n == step)
                    .map(|(_, t)| t.elapsed())
            })
            .unwrap_or(Duration::ZERO);
        eprintln!(
            "#{} {step} done in {:.3}s{}{}",
            self.stamp(),
            took.as_secs_f64(),
            if detail.is_empty() { "" } else { ": " },
            detail
        );
    }

    fn warn(&self, message: &str) {
        eprintln!("#{} warning: {message}", self.stamp());
    }
}

#[derive(Default)]
struct Bars {
    active: Mutex<Vec<(String, ProgressBar)>>,
}

impl Progress for Bars {
    fn start(&self, step: &str) {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner:.cyan} {msg} {elapsed:.dim}") {
            bar.set_style(style);
        }
        bar.set_message(step.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        if let Ok(mut a) = self.active.lock() {
            a.push((step.to_string(), bar));
        }
    }

    fn finish(&self, step: &str, detail: &str) {
        if let Ok(mut a) = self.active.lock() {
            if let Some(i) = a.iter().position(|(n, _)| n == step) {
                let (_, bar) = a.remove(i);
                let msg = if detail.is_empty() {
                    format!("✔ {step}")
                } else {
                    format!("✔ {step}: {detail}")
                };
                bar.finish_with_message(msg);
            }
        }
    }

    fn warn(&self, message: &str) {
        let line = format!("warning: {message}");
        match self
            .active
            .lock()
            .ok()
            .and_then(|a| a.last().map(|(_, b)| b.clone()))
        {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}
