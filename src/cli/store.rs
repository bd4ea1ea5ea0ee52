//! `bunny store`: look after the local store.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::layers::store::Store;

#[derive(Debug, Args)]
#[command(
    about = "Check the local store",
    after_help = "Example:\n  bunny store verify"
)]
pub struct StoreArgs {
    #[command(subcommand)]
    action: StoreAction,
}

#[derive(Debug, Subcommand)]
enum StoreAction {
    /// Rehash every blob, check every named image is complete and every
    /// unpacked image still matches its blobs (exit 1 on damage).
    Verify,
}

pub fn run(args: StoreArgs, globals: &super::Globals) -> anyhow::Result<ExitCode> {
    let store = Store::open(&globals.root)
        .with_context(|| format!("opening the store at {}", globals.root.display()))?;
    match args.action {
        StoreAction::Verify => {
            let mut problems = store.verify()?;
            // The unpacked images later builds and runs use in place of
            // the blobs: `rootfs/` (runs, `from:`) and `toolchains/` (steps).
            let root = &globals.root;
            problems.extend(crate::layers::image_fs::verify_cache(
                &store,
                &root.join("rootfs"),
                None,
            )?);
            problems.extend(crate::layers::image_fs::verify_cache(
                &store,
                &crate::build::rootfs::cache_dir(root),
                Some("rootfs"),
            )?);
            if problems.is_empty() {
                outln!("{}: ok", globals.root.display())?;
                Ok(ExitCode::SUCCESS)
            } else {
                for p in &problems {
                    outln!("{p}")?;
                }
                eprintln!(
                    "{}: {} problem(s); rebuild or pull the images named above",
                    globals.root.display(),
                    problems.len()
                );
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
