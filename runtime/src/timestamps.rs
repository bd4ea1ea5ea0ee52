//! Timestamps at the points that make up start-up latency, like urunc's
//! TS00..TS19: with `BUNNY_TIMESTAMPS=FILE` each point appends
//! `UNIX_NANOS LABEL` to FILE, so benchmarks can place bunny's overhead
//! against a bare monitor command. Without the variable nothing happens.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

pub const ENV: &str = "BUNNY_TIMESTAMPS";

/// Records `label` now, if timestamps are on. Failures are ignored: a
/// benchmark aid must never break a run.
pub fn timestamp(label: &str) {
    let Some(path) = std::env::var_os(ENV) else {
        return;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{nanos} {label}");
    }
}
