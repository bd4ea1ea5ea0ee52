//! `bunny images`: what the local store holds; and the `local` output, which
//! unpacks an image's layers into a directory.

use std::io::BufReader;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use oci_spec::image::{Descriptor, ImageManifest};

use crate::layers::store::Store;
use crate::layers::unpack::unpack_tar;

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
            println!("{name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<48} {:<19} {:>12}", "NAME", "DIGEST", "SIZE");
    for (name, desc) in images {
        let size = image_size(&store, &desc).unwrap_or(desc.size());
        let digest = desc.digest().to_string();
        let short = digest.get(..19).unwrap_or(&digest);
        println!("{name:<48} {short:<19} {:>12}", human(size));
    }
    Ok(ExitCode::SUCCESS)
}

fn image_size(store: &Store, manifest: &Descriptor) -> anyhow::Result<u64> {
    let m = read_manifest(store, manifest)?;
    Ok(manifest.size() + m.config().size() + m.layers().iter().map(|l| l.size()).sum::<u64>())
}

pub(crate) fn read_manifest(store: &Store, manifest: &Descriptor) -> anyhow::Result<ImageManifest> {
    let f = store.open_blob(manifest.digest().as_ref())?;
    ImageManifest::from_reader(BufReader::new(f))
        .with_context(|| format!("reading manifest {}", manifest.digest()))
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
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let m = read_manifest(store, manifest)?;
    for layer in m.layers() {
        let digest = layer.digest().to_string();
        let blob = BufReader::new(store.open_blob(&digest)?);
        let media = layer.media_type().to_string();
        let stats = if media.ends_with("+gzip") || media.ends_with(".gzip") {
            unpack_tar(flate2::read::GzDecoder::new(blob), dir)
        } else if media.ends_with("+zstd") || media.ends_with(".zstd") {
            bail!("layer {digest} is zstd-compressed; the local output reads gzip and plain layers")
        } else {
            unpack_tar(blob, dir)
        };
        stats.with_context(|| format!("unpacking layer {digest}"))?;
    }
    Ok(())
}
