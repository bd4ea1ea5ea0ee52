//! `bunny-frontend`: with no arguments, the BuildKit frontend (BuildKit starts
//! it in the frontend image and talks gRPC over its stdin/stdout). Also:
//!   bunny-frontend llb [-f FILE] [CONTEXT]   print the LLB definition (protobuf)
//!   bunny-frontend image -t TAG [--binary PATH] [--root DIR]
//!                                            put the frontend image in bunny's store

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use bunny_frontend::translate::{self, LocalFiles, TranslateOptions};
use prost::Message as _;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None => bunny_frontend::gateway::run().map_err(anyhow::Error::from),
        Some("llb") => llb(&args[1..]),
        Some("image") => image(&args[1..]),
        Some("-h" | "--help") => {
            println!("usage: bunny-frontend                          (run by BuildKit)\n       bunny-frontend llb [-f FILE] [CONTEXT]\n       bunny-frontend image -t TAG [--binary PATH] [--root DIR]");
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
    let (named, positional) = parse(args, &["-f", "--file"])?;
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
    let mut files = LocalFiles { context };
    let t = translate::translate(
        &file.display().to_string(),
        &bytes,
        &mut files,
        &TranslateOptions {
            session: None,
            epoch,
        },
    )?;
    for w in &t.warnings {
        eprintln!("{w}");
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&t.definition.encode_to_vec())?;
    out.flush()?;
    Ok(())
}

fn image(args: &[String]) -> anyhow::Result<()> {
    let (named, _) = parse(args, &["-t", "--tag", "--binary", "--root"])?;
    let Some(tag) = get(&named, &["-t", "--tag"]) else {
        bail!("image needs -t TAG")
    };
    let binary = match get(&named, &["--binary"]) {
        Some(b) => PathBuf::from(b),
        None => std::env::current_exe().context("finding this binary")?,
    };
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
    let digest = bunny_frontend::image::build_image(&store, &binary, &tag, 0)?;
    println!("{digest}");
    Ok(())
}
