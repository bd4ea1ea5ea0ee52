//! `bunny pack`: a plain container image (no kernel, no urunc keys) from
//! root filesystem directories, one layer each. bunny's own job image is
//! made with it (images/bunny/build.sh).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;

use crate::layers::store::Store;
use crate::oci::dir_image::pack_dirs;
use crate::oci::image::ImageConfig;
use crate::oci::layer::{Compression, CompressionChoice, LayerOptions};
use crate::oci::output::export;

use super::build::{normalize_tag, parse_output, OutputSpec};

#[derive(Debug, Args)]
#[command(
    about = "Pack root filesystem directories into a plain container image, one layer each",
    after_help = "Every entry is root's, its mtime SOURCE_DATE_EPOCH (0 when unset); symlinks are kept as they are.\n\nExample:\n  bunny pack -t bunny:dev --cmd /bin/bash --env PATH=/usr/bin:/bin base/ bin/"
)]
pub struct PackArgs {
    /// Directories, bottom layer first.
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Name the image in the store (repeatable).
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    tags: Vec<String>,
    /// Also write it out: type=oci|oci-archive|docker,dest=PATH (repeatable).
    #[arg(short = 'o', long = "output", value_name = "type=TYPE,dest=PATH")]
    outputs: Vec<String>,
    /// An `Env` entry of the image config (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// A config label and manifest annotation (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// One word of the image's `Entrypoint` (repeatable, in order).
    #[arg(long = "entrypoint", value_name = "WORD")]
    entrypoint: Vec<String>,
    /// One word of the image's `Cmd` (repeatable, in order).
    #[arg(long = "cmd", value_name = "WORD")]
    cmd: Vec<String>,
    /// The image's `WorkingDir`.
    #[arg(long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
}

pub fn run(args: PackArgs, globals: &super::Globals) -> anyhow::Result<ExitCode> {
    let mut outputs = Vec::new();
    for o in &args.outputs {
        match parse_output(o)? {
            OutputSpec::Image(out) => outputs.push(out),
            OutputSpec::Local(_) => bail!("--output `{o}`: pack writes images, not directories"),
        }
    }
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let Some((k, v)) = l.split_once('=') else {
            bail!("--label `{l}`: write KEY=VALUE");
        };
        labels.insert(k.to_string(), v.to_string());
    }
    if let Some(e) = args.env.iter().find(|e| !e.contains('=')) {
        bail!("--env `{e}`: write KEY=VALUE");
    }
    let epoch = super::build::source_date_epoch()?;
    let config = ImageConfig {
        os: "linux".into(),
        architecture: crate::platform::Arch::host(),
        cmd: args.cmd.clone(),
        entrypoint: args.entrypoint.clone(),
        env: args.env.clone(),
        labels: labels.clone(),
        working_dir: args.workdir.clone(),
        user: None,
        created_epoch: epoch,
    };
    let opts = LayerOptions {
        mtime: epoch,
        // A rootfs is mostly programs and text: gzip always, which every
        // engine (Docker 20.10 too) reads.
        compression: CompressionChoice::Fixed(Compression::Gzip),
    };
    let store = Store::open(&globals.root)
        .with_context(|| format!("opening the store at {}", globals.root.display()))?;
    let manifest = pack_dirs(&args.dirs, config, labels, &opts, &store)?;
    let tags: Vec<String> = args.tags.iter().map(|t| normalize_tag(t)).collect();
    for tag in &tags {
        store.tag(tag, &manifest)?;
    }
    for out in &outputs {
        export(&store, &manifest, &tags, out).with_context(|| format!("writing {out:?}"))?;
    }
    outln!("{}", manifest.digest())?;
    Ok(ExitCode::SUCCESS)
}
