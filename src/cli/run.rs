//! `bunny run`: boots an image (issue 5).

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
#[command(
    about = "Boot an image under qemu, firecracker or solo5",
    after_help = "Example:\n  bunny run --rm -p 18080:80 hello:latest"
)]
pub struct RunArgs {
    /// Remove what the run extracted when the guest stops.
    #[arg(long)]
    rm: bool,
    /// Forward HOST:GUEST ports.
    #[arg(short = 'p', long = "publish", value_name = "HOST:GUEST")]
    publish: Vec<String>,
    /// Set an environment variable in the guest.
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// The image: a name in the local store, an OCI layout or archive path, or a registry reference.
    image: String,
    /// Arguments for the guest's application.
    args: Vec<String>,
}

pub fn run(_args: RunArgs, _globals: &super::Globals) -> anyhow::Result<ExitCode> {
    super::not_implemented("run", 5)
}
