//! `bunny pull`: fetches an image into the local store (issue 4).

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
#[command(
    about = "Pull an image from a registry into the local store",
    after_help = "Example:\n  bunny pull harbor.nbfc.io/nubificus/urunc/nginx-rumprun:latest"
)]
pub struct PullArgs {
    /// A reference: NAME[:TAG] or NAME@sha256:DIGEST.
    reference: String,
}

pub fn run(_args: PullArgs, _globals: &super::Globals) -> anyhow::Result<ExitCode> {
    super::not_implemented("pull", 4)
}
