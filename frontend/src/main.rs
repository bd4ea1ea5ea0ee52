//! `bunny-frontend`: with no arguments, the BuildKit frontend (BuildKit starts
//! it in the frontend image and talks gRPC over its stdin/stdout). Also:
//!   bunny-frontend llb [-f FILE] [--frontend-image REF] [--tools-image REF]
//!                      [--toolchain FRAMEWORK[.LAYER]=REF]... [CONTEXT]
//!                                            print the LLB definition (protobuf)
//!   bunny-frontend image -t TAG [--binary PATH] [--init PATH]
//!                        [--tools-image REF] [--root DIR]
//!                                            put the frontend image in bunny's store
//!   bunny-frontend pack SPEC                 the pack step (run by BuildKit)

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use bunny_frontend::translate::{self, TranslateOptions};
use prost::Message as _;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None => bunny_frontend::gateway::run().map_err(anyhow::Error::from),
        // Go bunny's command line: `-f FILE --LLB` prints the LLB for the
        // files in the current directory; `-v` the versions.
        Some(_) if args.iter().any(|a| a == "--LLB") => {
            let mut rest: Vec<String> = args.iter().filter(|a| *a != "--LLB").cloned().collect();
            rest.push(".".into());
            llb(&rest)
        }
        Some("-v" | "--version") => {
            println!("bunny version:\t\t {}", env!("CARGO_PKG_VERSION"));
            println!(
                "Hops API version:\t v{}",
                bunny::bunnyfile::SUPPORTED_VERSION
            );
            Ok(())
        }
        Some("llb") => llb(&args[1..]),
        Some("image") => image(&args[1..]),
        Some("pack") => match args.get(1) {
            Some(spec) => {
                bunny_frontend::pack::run(std::path::Path::new(spec)).map_err(anyhow::Error::from)
            }
            None => Err(anyhow::anyhow!("pack needs the spec file")),
        },
        Some("-h" | "--help") => {
            println!("usage: bunny-frontend                          (run by BuildKit)\n       bunny-frontend llb [-f FILE] [--frontend-image REF] [--tools-image REF] [--toolchain SPEC]... [CONTEXT]\n       bunny-frontend image -t TAG [--binary PATH] [--init PATH] [--tools-image REF] [--root DIR]");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown command `{other}`; see --help")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "bunny-frontend: error: {}",
                bunny_frontend::gateway::chain(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

/// `--flag VALUE` pairs, and positionals.
type Parsed = (Vec<(String, String)>, Vec<String>);

fn parse(args: &[String], flags: &[&str]) -> anyhow::Result<Parsed> {
    let mut named = Vec::new();
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if flags.contains(&a.as_str()) {
            let Some(v) = it.next() else {
                bail!("{a} needs a value")
            };
            named.push((a.clone(), v.clone()));
        } else if a.starts_with('-') {
            bail!("unknown option `{a}`");
        } else {
            positional.push(a.clone());
        }
    }
    Ok((named, positional))
}

fn get<'a>(named: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    named
        .iter()
        .rev()
        .find(|(k, _)| names.contains(&k.as_str()))
        .map(|(_, v)| v.as_str())
}

fn llb(args: &[String]) -> anyhow::Result<()> {
    let (named, positional) = parse(
        args,
        &[
            "-f",
            "--file",
            "--frontend-image",
            "--tools-image",
            "--toolchain",
        ],
    )?;
    let context = PathBuf::from(positional.first().map(String::as_str).unwrap_or("."));
    let file = match get(&named, &["-f", "--file"]) {
        Some(f) => PathBuf::from(f),
        None if context.join("BunnyFile").exists() => context.join("BunnyFile"),
        None => context.join("bunnyfile"),
    };
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH=`{v}`"))?,
        _ => 0,
    };
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let mut layer_overrides = std::collections::BTreeMap::new();
    for (k, v) in &named {
        if k == "--toolchain" {
            let (key, reference) =
                bunny::build::app::parse_layer_override(v).with_context(|| {
                    format!("--toolchain `{v}`: write FRAMEWORK=REF or FRAMEWORK.LAYER=REF")
                })?;
            layer_overrides.insert(key, reference);
        }
    }
    let lock_path = bunny::build::lock::lock_path(&file);
    let lock = if lock_path.is_file() {
        Some(bunny::build::lock::LockFile::load(&lock_path)?)
    } else {
        None
    };
    let opts = TranslateOptions {
        session: None,
        epoch,
        frontend_image: get(&named, &["--frontend-image"])
            .map(str::to_string)
            .or_else(|| from_env("BUNNY_FRONTEND_IMAGE")),
        tools_image: get(&named, &["--tools-image"])
            .map(str::to_string)
            .or_else(|| from_env(translate::TOOLS_ARG)),
        layer_overrides,
        lock,
        // A user solving this LLB gets the failed step as the error.
        report_errors: false,
    };
    let mut resolver = LocalResolver { context };
    // The name the definition carries (errors in the pack step cite it): the
    // file's name, so the same files give the same LLB wherever they are.
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string());
    let t = translate::translate(&name, &bytes, &mut resolver, &opts)?;
    for w in &t.warnings {
        eprintln!("{w}");
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&t.definition.encode_to_vec())?;
    out.flush()?;
    Ok(())
}

/// `--llb` answers from the disk: the context is a directory here, and no
/// registry is asked for image configs.
struct LocalResolver {
    context: PathBuf,
}

impl translate::Resolver for LocalResolver {
    fn image_config(&mut self, _reference: &str) -> Option<serde_json::Value> {
        None
    }
    fn is_context_dir(&mut self, path: &str) -> bool {
        bunny::layers::tree::resolve_in_context(&self.context, path)
            .map(|p| p.is_dir())
            .unwrap_or(false)
    }
}

fn image(args: &[String]) -> anyhow::Result<()> {
    let (named, _) = parse(
        args,
        &[
            "-t",
            "--tag",
            "--binary",
            "--root",
            "--init",
            "--tools-image",
        ],
    )?;
    let Some(tag) = get(&named, &["-t", "--tag"]) else {
        bail!("image needs -t TAG")
    };
    let binary = match get(&named, &["--binary"]) {
        Some(b) => PathBuf::from(b),
        None => std::env::current_exe().context("finding this binary")?,
    };
    let init = match get(&named, &["--init"]) {
        Some(p) => Some(PathBuf::from(p)),
        None => bunny::containerfile::find_init().ok(),
    };
    if let Some(p) = &init {
        bunny::containerfile::check_static(p).with_context(|| format!("--init {}", p.display()))?;
    } else {
        eprintln!("bunny-frontend: no static bunny-init found (--init PATH); Containerfile builds of linux guests will fail");
    }
    let root = get(&named, &["--root"])
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("BUNNY_ROOT").map(PathBuf::from))
        .unwrap_or_else(bunny::layers::store::Store::default_root);
    let store = bunny::layers::store::Store::open(&root)
        .with_context(|| format!("opening the store at {}", root.display()))?;
    let tag = if tag.rsplit('/').next().is_some_and(|l| l.contains(':')) {
        tag.to_string()
    } else {
        format!("{tag}:latest")
    };
    let digest = bunny_frontend::image::build_image(
        &store,
        &bunny_frontend::image::ImageInputs {
            binary: &binary,
            init: init.as_deref(),
            tools_image: get(&named, &["--tools-image"]),
        },
        &tag,
        0,
    )?;
    println!("{digest}");
    Ok(())
}
