//! `bunny logout`: forgets the saved credentials for a registry.

use std::process::ExitCode;

use clap::Args;

use crate::oci::registry::{self, RegistryOptions};

#[derive(Debug, Args)]
#[command(
    about = "Log out from a registry",
    after_help = "Example:\n  bunny logout registry.example.com"
)]
pub struct LogoutArgs {
    /// The registry, HOST[:PORT].
    host: String,
}

pub fn run(args: LogoutArgs, _globals: &super::Globals) -> anyhow::Result<ExitCode> {
    if registry::logout(&args.host, &RegistryOptions::default())? {
        eprintln!("Removed the saved credentials for {}", args.host);
    } else {
        eprintln!("Not logged in to {}", args.host);
    }
    Ok(ExitCode::SUCCESS)
}
