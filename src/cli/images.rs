//! `bunny images`: what the local store holds; and the `local` output, which
//! unpacks an image's layers into a directory.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use oci_spec::image::{Descriptor, ImageManifest};

use crate::layers::store::Store;

#[derive(Debug, Args)]
#[command(
    about = "List the images in the local store",
    after_help = "Example:\n  bunny images\n  bunny images --quiet"
)]
pub struct ImagesArgs {
    /// Only print names.
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(args: ImagesArgs, globals: &super::Globals) -> anyhow::Result<ExitCode> {
    let store = Store::open(&globals.root)
        .with_context(|| format!("opening the store at {}", globals.root.display()))?;
    let images = store.list()?;
    if args.quiet {
        for (name, _) in images {
            outln!("{name}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    outln!("{:<48} {:<19} {:>12}", "NAME", "DIGEST", "SIZE")?;
    for (name, desc) in images {
        let size = image_size(&store, &desc).unwrap_or(desc.size());
        let digest = desc.digest().to_string();
        let short = digest.get(..19).unwrap_or(&digest);
        outln!("{name:<48} {short:<19} {:>12}", human(size))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn image_size(store: &Store, manifest: &Descriptor) -> anyhow::Result<u64> {
    let m = read_manifest(store, manifest)?;
    Ok(manifest.size() + m.config().size() + m.layers().iter().map(|l| l.size()).sum::<u64>())
}

pub(crate) fn read_manifest(store: &Store, manifest: &Descriptor) -> anyhow::Result<ImageManifest> {
    Ok(crate::layers::image_fs::read_manifest(store, manifest)?)
}

fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Unpacks every layer of the image into `dir`, as `--output type=local` does.
pub(crate) fn export_local(store: &Store, manifest: &Descriptor, dir: &Path) -> anyhow::Result<()> {
    crate::layers::image_fs::unpack_image(store, manifest, dir)
        .with_context(|| format!("unpacking into {}", dir.display()))
}
