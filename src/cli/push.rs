//! `bunny push`: uploads an image to a registry (issue 4).

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
#[command(
    about = "Push an image from the local store to a registry",
    after_help = "Example:\n  bunny push registry.example.com/team/hello:1.0"
)]
pub struct PushArgs {
    /// The image name in the local store, which is also the destination.
    image: String,
}

pub fn run(_args: PushArgs, _globals: &super::Globals) -> anyhow::Result<ExitCode> {
    super::not_implemented("push", 4)
}
