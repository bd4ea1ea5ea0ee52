//! `bunny pull`: fetches an image into the local store.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::layers::store::Store;
use crate::oci::registry::{self, PlatformWanted};

use super::transfer::{renderer, RegistryFlags};
use super::ProgressMode;

#[derive(Debug, Args)]
#[command(
    about = "Pull an image from a registry into the local store",
    after_help = "Examples:\n  bunny pull harbor.nbfc.io/nubificus/urunc/nginx-rumprun:latest\n  bunny pull --platform qemu/amd64 127.0.0.1:5000/app@sha256:..."
)]
pub struct PullArgs {
    /// A reference: NAME[:TAG] or NAME@sha256:DIGEST.
    reference: String,
    /// The platform to pick from a multi-platform image, OS/ARCH or ARCH
    /// (Unikraft images use the monitor as OS). Default: this host's
    /// architecture, any OS, preferring linux.
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
    #[command(flatten)]
    registry: RegistryFlags,
    /// How to show progress.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
}

pub fn run(args: PullArgs, globals: &super::Globals) -> anyhow::Result<ExitCode> {
    let platform = match &args.platform {
        None => PlatformWanted::host(),
        Some(p) => PlatformWanted::parse(p).with_context(|| {
            format!("invalid --platform `{p}`: expected OS/ARCH or ARCH with ARCH amd64 or arm64")
        })?,
    };
    let store = Store::open(&globals.root)
        .with_context(|| format!("cannot open the store at {}", globals.root.display()))?;
    let opts = args.registry.options(renderer(args.progress));
    let result = registry::pull(&store, &args.reference, &platform, &opts)?;
    outln!("{} {}", result.name, result.manifest.digest())?;
    Ok(ExitCode::SUCCESS)
}
