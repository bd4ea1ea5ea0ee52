//! `bunny login`: checks credentials against a registry and saves them
//! where Docker keeps them (`config.json` or its credential helper).

use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;

use crate::oci::registry::{self, NoProgress};

use super::transfer::RegistryFlags;

#[derive(Debug, Args)]
#[command(
    about = "Log in to a registry",
    after_help = "Example:\n  echo \"$TOKEN\" | bunny login -u ci --password-stdin registry.example.com"
)]
pub struct LoginArgs {
    /// The registry, HOST[:PORT].
    host: String,
    /// User name (asked for on a terminal when missing).
    #[arg(short, long)]
    username: Option<String>,
    /// Read the password from standard input; a password is never taken
    /// on the command line, where other users could see it.
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    registry: RegistryFlags,
}

pub fn run(args: LoginArgs, _globals: &super::Globals) -> anyhow::Result<ExitCode> {
    let username = match args.username {
        Some(u) => u,
        None if std::io::stdin().is_terminal() && !args.password_stdin => {
            eprint!("Username: ");
            std::io::stderr().flush().ok();
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the user name")?;
            line.trim().to_string()
        }
        None => bail!("no user name: pass -u USER"),
    };
    if username.is_empty() {
        bail!("the user name is empty");
    }
    if !args.password_stdin {
        bail!(
            "pass the password on standard input with --password-stdin, e.g. `echo \"$PASSWORD\" | bunny login -u {username} --password-stdin {}`",
            args.host
        );
    }
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!("the password read from standard input is empty");
    }
    let opts = args.registry.options(std::sync::Arc::new(NoProgress));
    let stored = registry::login(&args.host, &username, &password, &opts)?;
    eprintln!("Login succeeded; credentials saved in {stored}");
    Ok(ExitCode::SUCCESS)
}
