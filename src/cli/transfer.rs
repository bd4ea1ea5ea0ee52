//! Transfer progress for push and pull: one indicatif bar per blob on a
//! terminal, one line per event with `--progress=plain`, nothing with
//! `quiet`. Also the registry flags push, pull and login share.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::oci::registry::{BlobOutcome, RegistryOptions, TransferProgress};

use super::ProgressMode;

/// Flags every registry verb takes.
#[derive(Debug, Clone, Args)]
pub struct RegistryFlags {
    /// A registry reached over plain HTTP (repeatable); loopback hosts always may.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Per-registry CA certificates in Docker's layout (DIR/HOST[:PORT]/ca.crt).
    #[arg(
        long,
        value_name = "DIR",
        env = "BUNNY_CERTS_DIR",
        default_value = crate::oci::registry::DEFAULT_CERTS_DIR
    )]
    pub certs_dir: PathBuf,
    /// Give up on a registry request that is silent this long (connect, or
    /// between reads); a manifest must arrive whole in this time, and after
    /// it a blob must keep arriving at 64 KiB/s, whatever size it claims.
    #[arg(
        long = "registry-timeout",
        value_name = "SECONDS",
        env = "BUNNY_REGISTRY_TIMEOUT",
        default_value_t = 60
    )]
    pub timeout_secs: u64,
}

impl RegistryFlags {
    pub fn options(&self, progress: Arc<dyn TransferProgress>) -> RegistryOptions {
        RegistryOptions {
            insecure_registries: self.insecure_registry.clone(),
            certs_dir: Some(self.certs_dir.clone()),
            docker_config: None,
            progress,
            timeout: std::time::Duration::from_secs(self.timeout_secs.max(1)),
        }
    }
}

pub fn renderer(mode: ProgressMode) -> Arc<dyn TransferProgress> {
    let mode = match mode {
        ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Tty,
        ProgressMode::Auto => ProgressMode::Plain,
        m => m,
    };
    match mode {
        ProgressMode::Tty => Arc::new(Bars::default()),
        ProgressMode::Quiet => Arc::new(crate::oci::registry::NoProgress),
        _ => Arc::new(Plain {
            t0: Instant::now(),
            sizes: Mutex::new(HashMap::new()),
        }),
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

struct Plain {
    t0: Instant,
    sizes: Mutex<HashMap<String, (u64, String)>>,
}

impl Plain {
    fn stamp(&self) -> String {
        format!("{:>7.3}s", self.t0.elapsed().as_secs_f64())
    }
}

impl TransferProgress for Plain {
    fn blob_started(&self, digest: &str, size: u64, what: &str) {
        if let Ok(mut s) = self.sizes.lock() {
            s.insert(digest.to_string(), (size, what.to_string()));
        }
    }

    fn blob_progress(&self, _digest: &str, _bytes: u64) {}

    fn blob_done(&self, digest: &str, outcome: BlobOutcome) {
        let (size, what) = self
            .sizes
            .lock()
            .ok()
            .and_then(|s| s.get(digest).cloned())
            .unwrap_or((0, "blob".into()));
        eprintln!(
            "#{} {what} {} ({}): {outcome}",
            self.stamp(),
            short(digest),
            human(size)
        );
    }

    fn message(&self, msg: &str) {
        eprintln!("#{} {msg}", self.stamp());
    }
}

#[derive(Default)]
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl TransferProgress for Bars {
    fn blob_started(&self, digest: &str, size: u64, what: &str) {
        let bar = self.multi.add(ProgressBar::new(size));
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:.bold} {msg:<8} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(short(digest).to_string());
        bar.set_message(what.to_string());
        if let Ok(mut b) = self.bars.lock() {
            b.insert(digest.to_string(), bar);
        }
    }

    fn blob_progress(&self, digest: &str, bytes: u64) {
        if let Some(bar) = self.bars.lock().ok().and_then(|b| b.get(digest).cloned()) {
            bar.set_position(bytes);
        }
    }

    fn blob_done(&self, digest: &str, outcome: BlobOutcome) {
        if let Some(bar) = self.bars.lock().ok().and_then(|mut b| b.remove(digest)) {
            if let Ok(style) = ProgressStyle::with_template("{prefix:.bold} {msg}") {
                bar.set_style(style);
            }
            bar.finish_with_message(format!(
                "✔ {outcome} ({})",
                human(bar.length().unwrap_or(0))
            ));
        }
    }

    fn message(&self, msg: &str) {
        let _ = self.multi.println(msg);
    }
}
