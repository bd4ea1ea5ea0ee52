//! The command line: one module per verb; the only place `anyhow` is used.

/// `println!` for a verb's output: a reader that stops early (`| head`)
/// closes the pipe, which ends the output quietly instead of panicking as
/// `println!` does; any other write error is the verb's error.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        match writeln!(std::io::stdout().lock(), $($arg)*) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            r => r,
        }
    }};
}

mod build;
mod images;
mod inspect;
mod login;
mod logout;
mod logs;
mod pack;
mod progress;
mod ps;
mod pull;
mod push;
mod rm;
mod run;
mod start;
mod stop;
mod store;
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use progress::ProgressMode;

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
    Ps(ps::PsArgs),
    Logs(logs::LogsArgs),
    Start(start::StartArgs),
    Stop(stop::StopArgs),
    Rm(rm::RmArgs),
    Push(push::PushArgs),
    Pull(pull::PullArgs),
    Images(images::ImagesArgs),
    Inspect(inspect::InspectArgs),
    Login(login::LoginArgs),
    Logout(logout::LogoutArgs),
    Store(store::StoreArgs),
    Pack(pack::PackArgs),
}

/// Global settings every verb may need.
pub struct Globals {
    pub root: PathBuf,
}

pub fn main() -> ExitCode {
    bunny_runtime::timestamp("bunny-start");
    use_ca_bundle();
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Some(code) = go_command_line(&args) {
        return code;
    }
    let cli = Cli::parse();
    let globals = Globals {
        root: cli
            .root
            .unwrap_or_else(crate::layers::store::Store::default_root),
    };
    let result = match cli.verb {
        Verb::Build(a) => build::run(a, &globals),
        Verb::Run(a) => run::run(a, &globals),
        Verb::Ps(a) => ps::run(a, &globals),
        Verb::Logs(a) => logs::run(a, &globals),
        Verb::Start(a) => start::run(a, &globals),
        Verb::Stop(a) => stop::run(a, &globals),
        Verb::Rm(a) => rm::run(a, &globals),
        Verb::Push(a) => push::run(a, &globals),
        Verb::Pull(a) => pull::run(a, &globals),
        Verb::Images(a) => images::run(a, &globals),
        Verb::Inspect(a) => inspect::run(a, &globals),
        Verb::Login(a) => login::run(a, &globals),
        Verb::Logout(a) => logout::run(a, &globals),
        Verb::Store(a) => store::run(a, &globals),
        Verb::Pack(a) => pack::run(a, &globals),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("bunny: error: {}", chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// Go bunny's own command line, which scripts and docs written for it use:
/// `bunny --version`/`-v` (bunny's and the BunnyFile API's versions),
/// `bunny -f FILE --LLB` (the LLB for `buildctl build`), and no arguments at
/// all under BuildKit (be the frontend). `None`: not Go's form, so bunny's
/// own verbs parse it.
fn go_command_line(args: &[std::ffi::OsString]) -> Option<ExitCode> {
    let args: Vec<&str> = args.iter().map(|a| a.to_str().unwrap_or("")).collect();
    match args.as_slice() {
        ["--version" | "-v"] => {
            let _ = outln!(
                "bunny version:\t\t {}\nHops API version:\t v{}",
                env!("CARGO_PKG_VERSION"),
                crate::bunnyfile::SUPPORTED_VERSION
            );
            Some(ExitCode::SUCCESS)
        }
        [] if std::env::var_os("BUILDKIT_SESSION_ID").is_some() => {
            // Started by BuildKit as a frontend: the frontend binary is the
            // one that speaks its gateway protocol.
            Some(build::exec_frontend(&[]))
        }
        _ if args.contains(&"--LLB") => {
            let mut file = None;
            let mut it = args.iter();
            while let Some(a) = it.next() {
                match *a {
                    "-f" | "--file" => file = it.next().copied(),
                    "--LLB" => {}
                    other => {
                        eprintln!("bunny: error: `{other}` is not one of Go bunny's options (-f FILE, --LLB, -v)");
                        return Some(ExitCode::FAILURE);
                    }
                }
            }
            let Some(file) = file else {
                eprintln!("bunny: error: no instructions file as input: add -f FILE");
                return Some(ExitCode::FAILURE);
            };
            // Go bunny reads the files of its `context` input from the
            // current directory.
            Some(build::exec_frontend(&["llb", "-f", file, "."]))
        }
        _ => None,
    }
}

/// The error and its causes on one line.
fn chain(err: &anyhow::Error) -> String {
    crate::error_chain(err.as_ref())
}

/// The run verbs' shape, as docker's: `f` on each run named, its name
/// printed when it worked, its error when not, and a failure status when
/// any failed (the others are still done).
fn each_run(
    globals: &Globals,
    keys: &[String],
    f: impl Fn(&crate::runs::Runs, &str) -> anyhow::Result<()>,
) -> anyhow::Result<std::process::ExitCode> {
    let runs = crate::runs::Runs::open(&globals.root)?;
    let mut failed = false;
    for key in keys {
        match f(&runs, key) {
            Ok(()) => outln!("{key}")?,
            Err(e) => {
                eprintln!("bunny: error: {}", chain(&e));
                failed = true;
            }
        }
    }
    Ok(if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}

/// Points the TLS stack at the distribution's CA bundle when the user has not
/// chosen CA locations. Without this, every HTTP client the registry code
/// builds scans each file of /etc/ssl/certs (tens of milliseconds per client,
/// on every push and pull); the bundle holds the same certificates.
/// Runs first in `main`, before any thread exists.
fn use_ca_bundle() {
    if std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some() {
        return;
    }
    for bundle in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ] {
        if std::path::Path::new(bundle).is_file() {
            std::env::set_var("SSL_CERT_FILE", bundle);
            return;
        }
    }
}
