//! The command line: one module per verb; the only place `anyhow` is used.

mod build;
mod images;
mod inspect;
mod progress;
mod pull;
mod push;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use progress::ProgressMode;

/// Exit status of a verb that exists in the interface but is not built yet.
pub const EXIT_NOT_IMPLEMENTED: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "bunny",
    version,
    about = "Build applications as unikernels and ship them as OCI images that urunc boots",
    after_help = "Example:\n  bunny build -f BunnyFile -t hello:latest --output type=oci,dest=out ."
)]
struct Cli {
    /// Where images are stored (default: $BUNNY_ROOT, else $XDG_DATA_HOME/bunny).
    #[arg(long, global = true, env = "BUNNY_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,

    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    Build(build::BuildArgs),
    Run(run::RunArgs),
    Push(push::PushArgs),
    Pull(pull::PullArgs),
    Images(images::ImagesArgs),
    Inspect(inspect::InspectArgs),
}

/// Global settings every verb may need.
pub struct Globals {
    pub root: PathBuf,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let globals = Globals {
        root: cli
            .root
            .unwrap_or_else(crate::layers::store::Store::default_root),
    };
    let result = match cli.verb {
        Verb::Build(a) => build::run(a, &globals),
        Verb::Run(a) => run::run(a, &globals),
        Verb::Push(a) => push::run(a, &globals),
        Verb::Pull(a) => pull::run(a, &globals),
        Verb::Images(a) => images::run(a, &globals),
        Verb::Inspect(a) => inspect::run(a, &globals),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("bunny: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Says plainly that a verb is not built yet and exits 2: never a silent no-op.
fn not_implemented(verb: &str, issue: u32) -> anyhow::Result<ExitCode> {
    eprintln!("bunny {verb}: not implemented yet (tracked as issue {issue}); nothing was done");
    Ok(ExitCode::from(EXIT_NOT_IMPLEMENTED))
}
