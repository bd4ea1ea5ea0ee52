//! `bunny push`: uploads an image from the local store to a registry.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::layers::store::Store;
use crate::oci::registry;

use super::transfer::{renderer, RegistryFlags};
use super::ProgressMode;

#[derive(Debug, Args)]
#[command(
    about = "Push an image from the local store to a registry",
    after_help = "Examples:\n  bunny push registry.example.com/team/hello:1.0\n  bunny push hello:latest 127.0.0.1:5000/hello:1.0 --metadata-file meta.json"
)]
pub struct PushArgs {
    /// The image name in the local store.
    image: String,
    /// Where to push it, HOST[:PORT]/REPO[:TAG] (default: the image name).
    destination: Option<String>,
    #[command(flatten)]
    registry: RegistryFlags,
    /// How to show progress.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// Write the pushed name, digest and descriptor as JSON (like buildx).
    #[arg(long, value_name = "FILE")]
    metadata_file: Option<PathBuf>,
}

pub fn run(args: PushArgs, globals: &super::Globals) -> anyhow::Result<ExitCode> {
    let store = Store::open(&globals.root)
        .with_context(|| format!("cannot open the store at {}", globals.root.display()))?;
    let destination = args.destination.as_deref().unwrap_or(&args.image);
    let opts = args.registry.options(renderer(args.progress));
    let result = registry::push(&store, &args.image, destination, &opts)?;
    if let Some(path) = &args.metadata_file {
        registry::write_metadata(path, &result)?;
    }
    outln!("{}@{}", result.name, result.digest)?;
    Ok(ExitCode::SUCCESS)
}
