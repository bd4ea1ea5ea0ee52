//! `bunny inspect`: an image's urunc keys, config and layers.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::layers::store::Store;

#[derive(Debug, Args)]
#[command(
    about = "Show an image's urunc settings, config and layers",
    after_help = "Example:\n  bunny inspect hello:latest\n  bunny inspect --json hello:latest | jq .urunc"
)]
pub struct InspectArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// An image name or manifest digest in the local store.
    image: String,
}

pub fn run(args: InspectArgs, globals: &super::Globals) -> anyhow::Result<ExitCode> {
    let store = Store::open(&globals.root)
        .with_context(|| format!("opening the store at {}", globals.root.display()))?;
    let name = if args.image.contains('@') || args.image.starts_with("sha256:") {
        args.image.clone()
    } else {
        super::build::normalize_tag(&args.image)
    };
    let report = crate::oci::inspect::inspect(&store, &name)
        .with_context(|| format!("inspecting `{}`", args.image))?;
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&report)?)
    } else {
        report.to_string()
    };
    // A reader that stops early (`| head`) closes the pipe: that ends the
    // output, it is not an error (println! would panic on it).
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
