//! `bunny build`: BunnyFile -> image, shaped like `docker buildx build`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use crate::bunnyfile;
use crate::layers::store::Store;
use crate::oci::layer::{Compression, CompressionChoice};
use crate::oci::output::Output;
use crate::pipeline::{self, BuildOptions};
use crate::platform::Arch;

use super::progress::{reporter, ProgressMode};

#[derive(Debug, Args)]
#[command(
    about = "Build an image from a BunnyFile",
    after_help = "Examples:\n  \
        bunny build --check -f BunnyFile\n  \
        bunny build -f examples/hello-linux/BunnyFile -t hello:latest examples/hello-linux\n  \
        bunny build -t hello --output type=oci,dest=out/hello --output type=docker,dest=hello.tar ."
)]
pub struct BuildArgs {
    /// The BunnyFile or Containerfile (default: CONTEXT/BunnyFile, else
    /// CONTEXT/bunnyfile, CONTEXT/Containerfile, CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,

    /// Name and optionally tag the image (NAME[:TAG]); repeatable.
    #[arg(short = 't', long = "tag", value_name = "NAME:TAG")]
    tags: Vec<String>,

    /// Target platform, e.g. linux/amd64 (overrides `platforms.architecture`).
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,

    /// Where to write the image, besides the local store; repeatable.
    /// type=oci|oci-archive|docker|local,dest=PATH
    #[arg(short = 'o', long = "output", value_name = "type=TYPE,dest=PATH")]
    outputs: Vec<String>,

    /// Push the image to its registry after building.
    #[arg(long)]
    push: bool,

    /// How to show progress.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,

    /// Attach an SBOM (SPDX 2.3) attestation: the kernel, the framework's
    /// layers, the app's sources and every rootfs file, by digest. Off
    /// unless asked for, as in `docker buildx build`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = parse_attest_flag)]
    sbom: Option<bool>,

    /// Attach SLSA v1 provenance (inputs by digest, build steps). On by
    /// default with --push (buildx's `mode=min`), off otherwise;
    /// `--provenance=false` or BUILDX_NO_DEFAULT_ATTESTATIONS=1 turn the
    /// default off.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = parse_attest_flag)]
    provenance: Option<bool>,

    /// Write the image name and digest as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    metadata_file: Option<PathBuf>,

    #[command(flatten)]
    registry: super::transfer::RegistryFlags,

    /// Always pull `from:` images, even when the store has them.
    #[arg(long)]
    pull: bool,

    /// Only validate the BunnyFile; exit 0 if it is valid, 1 if not.
    #[arg(long)]
    check: bool,

    // The BuildKit frontend's LLB.
    /// Print the LLB definition (protobuf, what `buildctl build` reads on
    /// stdin) instead of building. Runs `bunny-frontend llb` ($BUNNY_FRONTEND,
    /// else beside this binary, else in PATH). The build runs inside BuildKit
    /// from the frontend image: name it with $BUNNY_FRONTEND_IMAGE (and the
    /// tools image, when needed, with $BUNNY_TOOLS_IMAGE).
    #[arg(long)]
    llb: bool,

    /// Layer compression (auto: gzip, except for data that is already compressed).
    #[arg(long, value_enum, default_value = "auto")]
    compression: CompressionArg,

    /// Gzip the initrd.
    #[arg(long)]
    gzip_initrd: bool,

    // Building `app` sections in build containers.
    /// Run every build step, even those whose output is cached.
    #[arg(long)]
    no_cache: bool,

    /// Resolve the framework's layers again and rewrite bunny.lock.
    #[arg(long)]
    update_lock: bool,

    /// The OCI runtime build steps run under (default: runc in PATH).
    #[arg(long, value_name = "PATH")]
    oci_runtime: Option<PathBuf>,

    /// Use REF for a framework's toolchain (FRAMEWORK=REF) or another of its
    /// layers (FRAMEWORK.LAYER=REF); repeatable. REF is a registry reference
    /// (host/repo:tag or @sha256:...), a name in bunny's store, an OCI layout
    /// (oci:DIR:TAG, or DIR holding one image). What it resolves to is pinned
    /// in bunny.lock, which later builds follow without the flag. Toolchain
    /// images carry no device nodes (the runtime makes /dev). E.g.
    /// rumprun=oci:target/toolchains/layout:rumprun-solo5,
    /// linux.kernel=oci:DIR:kernel-bookworm.
    #[arg(long = "toolchain", value_name = "FRAMEWORK=REF")]
    toolchains: Vec<String>,

    /// Let the BunnyFile or Containerfile name OCI layouts under DIR,
    /// outside the build context (inside it they need no flag); repeatable.
    #[arg(long = "allow-layout", value_name = "DIR")]
    allow_layouts: Vec<PathBuf>,

    /// The build context: the directory local paths are resolved in.
    #[arg(default_value = ".")]
    context: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompressionArg {
    Auto,
    Gzip,
    Zstd,
    None,
}

/// An `--output` value, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OutputSpec {
    Image(Output),
    Local(PathBuf),
}

pub(crate) fn parse_output(spec: &str) -> anyhow::Result<OutputSpec> {
    let mut kind = None;
    let mut dest = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_string()),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            // buildx's shorthand: `-o DIR` means a local export.
            None if !part.is_empty() && spec == part => {
                return Ok(OutputSpec::Local(PathBuf::from(part)))
            }
            _ => bail!(
                "--output `{spec}`: unknown field `{part}`; write type=oci|oci-archive|docker|local,dest=PATH"
            ),
        }
    }
    let Some(dest) = dest else {
        bail!("--output `{spec}`: missing dest=PATH")
    };
    Ok(match kind.as_deref() {
        Some("oci") => OutputSpec::Image(Output::OciLayout { dir: dest }),
        Some("oci-archive") => OutputSpec::Image(Output::OciArchive { file: dest }),
        Some("docker") => OutputSpec::Image(Output::DockerArchive { file: dest }),
        Some("local") => OutputSpec::Local(dest),
        Some("tar") => bail!(
            "--output `{spec}`: type=tar is not supported; use type=oci-archive or type=docker"
        ),
        Some(other) => bail!(
            "--output `{spec}`: unknown type `{other}`; use oci, oci-archive, docker or local"
        ),
        None => bail!("--output `{spec}`: missing type=oci|oci-archive|docker|local"),
    })
}

fn parse_platform(p: &str) -> anyhow::Result<Arch> {
    let (os, rest) = p.split_once('/').unwrap_or(("linux", p));
    if os != "linux" {
        bail!("--platform `{p}`: images are linux/ARCH (urunc's convention); got os `{os}`");
    }
    let arch = rest.split('/').next().unwrap_or(rest);
    Arch::parse(arch).with_context(|| {
        format!("--platform `{p}`: unknown architecture `{arch}`; use linux/amd64 or linux/arm64")
    })
}

fn default_file(context: &Path) -> PathBuf {
    let upper = context.join("BunnyFile");
    if upper.exists() {
        return upper;
    }
    let lower = context.join("bunnyfile");
    if lower.exists() {
        return lower;
    }
    // A Containerfile (or Dockerfile) when there is no BunnyFile.
    for name in ["Containerfile", "Dockerfile"] {
        let p = context.join(name);
        if p.exists() {
            return p;
        }
    }
    upper
}

/// SOURCE_DATE_EPOCH as reproducible-builds.org defines it; 0 when unset.
pub(crate) fn source_date_epoch() -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH=`{v}` is not a number of seconds")),
        _ => Ok(0),
    }
}

pub fn run(args: BuildArgs, globals: &super::Globals) -> anyhow::Result<ExitCode> {
    let file = args
        .file
        .clone()
        .unwrap_or_else(|| default_file(&args.context));
    if args.llb {
        return print_llb(&file, &args.context, &args.toolchains);
    }
    // A Containerfile (told apart by its content) takes its own path.
    if let Ok(head) = std::fs::read(&file) {
        if crate::door::detect_format(&head) == crate::door::Format::Containerfile {
            return run_containerfile(&args, globals, &file);
        }
    }
    let parsed = match bunnyfile::load(&file) {
        Ok(p) => p,
        Err(err) => {
            eprintln!("{err}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &parsed.warnings {
        eprintln!("{w}");
    }
    if let Some(syntax) = &parsed.bunnyfile.syntax {
        eprintln!(
            "{}: #syntax={syntax} (used by BuildKit; bunny builds directly)",
            file.display()
        );
    }
    if args.check {
        outln!("{}: ok", file.display())?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.push && args.tags.is_empty() {
        bail!("--push needs a destination: add -t REGISTRY/NAME:TAG");
    }

    let (opts, locals) = build_options(&args)?;
    let architecture = args.platform.as_deref().map(parse_platform).transpose()?;

    let progress = reporter(args.progress);
    if !parsed.bunnyfile.platforms.framework.value.is_empty()
        && !crate::frameworks::resolve(&parsed.bunnyfile.platforms.framework.value).is_known()
    {
        progress.warn(&format!(
            "framework `{}` is not one bunny knows; packaging it generically",
            parsed.bunnyfile.platforms.framework.value
        ));
    }
    let store = Store::open(&globals.root)
        .with_context(|| format!("opening the store at {}", globals.root.display()))?;
    let bf = &parsed.bunnyfile;
    let source = StoreSource::new(
        &args,
        &store,
        globals,
        crate::oci::registry::PlatformWanted {
            arch: architecture.unwrap_or(bf.platforms.architecture.value),
            // The Go bunny's rule: Unikraft images name the monitor as their OS.
            os: (bf.platforms.framework.value == "unikraft")
                .then(|| bf.platforms.monitor.value.as_str().to_string()),
        },
    )?;
    let spec = crate::bunnyfile::spec::to_spec(bf, &file.display().to_string());
    let plan = pipeline::plan(
        &spec,
        &pipeline::PlanInputs {
            context: &args.context,
            architecture,
            images: &source,
            init: None,
        },
    )
    .with_context(|| format!("planning {}", file.display()))?;
    let layer_overrides = source.layer_overrides.clone();
    build_planned(
        &args,
        &store,
        plan,
        &file,
        layer_overrides,
        (opts, locals),
        progress.as_ref(),
    )
}

/// Everything after planning, the same for every front door: the kernel
/// and app built (pinned in `bunny.lock` beside `file`), the image packed,
/// attested and exported.
fn build_planned(
    args: &BuildArgs,
    store: &Store,
    mut plan: pipeline::Plan,
    file: &Path,
    layer_overrides: std::collections::BTreeMap<String, String>,
    (mut opts, locals): (BuildOptions, Vec<PathBuf>),
    progress: &dyn pipeline::Progress,
) -> anyhow::Result<ExitCode> {
    let app_opts = crate::build::AppOptions {
        lock_file: crate::build::lock::lock_path(file),
        no_cache: args.no_cache,
        update_lock: args.update_lock,
        oci_runtime: args.oci_runtime.clone(),
        layer_overrides,
        config_file: None,
        allowed_layouts: args.allow_layouts.clone(),
        registry: Some(
            args.registry
                .options(super::transfer::renderer(args.progress)),
        ),
        // prepare_app sets the monitor and architecture from the plan.
        ..Default::default()
    };
    let name = file.display().to_string();
    let app = pipeline::prepare_app(&mut plan, store, &app_opts, progress)
        .with_context(|| format!("building {name}"))?;
    let outputs = std::mem::take(&mut opts.outputs);
    let built = pipeline::build(&plan, store, &opts, progress)
        .with_context(|| format!("building {name}"))?;
    let described = crate::attestations::Described {
        plan: &plan,
        app: app.as_ref(),
        file,
        context: &args.context,
        lock_file: Some(&app_opts.lock_file),
        epoch: opts.epoch,
    };
    let image = attest_and_export(
        args,
        store,
        &built.manifest,
        &described,
        &outputs,
        &opts.tags,
        progress,
    )?;
    finish(args, store, &built.manifest, &image, &locals)
}

/// `bunny build` of a Containerfile.
fn run_containerfile(
    args: &BuildArgs,
    globals: &super::Globals,
    file: &Path,
) -> anyhow::Result<ExitCode> {
    let parsed = match crate::containerfile::load(file) {
        Ok(p) => p,
        Err(err) => {
            eprintln!("{err}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &parsed.warnings {
        eprintln!("{w}");
    }
    if args.check {
        // The same translation the build makes, so that check and build
        // never disagree (a FROM image's labels are read at build time).
        if let Err(err) = crate::containerfile::to_spec(
            &parsed.containerfile,
            &file.display().to_string(),
            &NoImages,
        ) {
            eprintln!("{err}");
            return Ok(ExitCode::FAILURE);
        }
        outln!("{}: ok", file.display())?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.push && args.tags.is_empty() {
        bail!("--push needs a destination: add -t REGISTRY/NAME:TAG");
    }
    let (opts, locals) = build_options(args)?;
    let architecture = args.platform.as_deref().map(parse_platform).transpose()?;
    let progress = reporter(args.progress);
    let store = Store::open(&globals.root)
        .with_context(|| format!("opening the store at {}", globals.root.display()))?;
    let source = StoreSource::new(
        args,
        &store,
        globals,
        crate::oci::registry::PlatformWanted {
            arch: architecture.unwrap_or_else(Arch::host),
            os: None,
        },
    )?;
    let name = file.display().to_string();
    let spec = match crate::containerfile::to_spec(&parsed.containerfile, &name, &source) {
        Ok(spec) => spec,
        Err(err) => {
            eprintln!("{err}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let plan = pipeline::plan(
        &spec,
        &pipeline::PlanInputs {
            context: &args.context,
            architecture,
            images: &source,
            init: None,
        },
    )
    .with_context(|| format!("planning {name}"))?;
    let layer_overrides = source.layer_overrides.clone();
    build_planned(
        args,
        &store,
        plan,
        file,
        layer_overrides,
        (opts, locals),
        progress.as_ref(),
    )
}

/// `--sbom` / `--provenance` values: buildx's `true|false`, and its
/// `mode=min|max` for provenance (both mean on here: bunny records no build
/// arguments or environment that `max` would add).
fn parse_attest_flag(v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" | "mode=min" | "mode=max" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("`{v}`: use true or false")),
    }
}

/// Which attestations this build attaches: an SBOM only when asked for;
/// provenance when asked for, and by default when pushing (buildx's
/// `mode=min` default, for the registry, where every client skips the
/// `unknown/unknown` entry). Local outputs get none unasked: umoci, for one,
/// cannot unpack a tag that names such an index ("tag is ambiguous").
fn attestations_wanted(args: &BuildArgs) -> crate::oci::attest::Wanted {
    let no_default = std::env::var("BUILDX_NO_DEFAULT_ATTESTATIONS")
        .map(|v| !v.is_empty() && v != "0" && v != "false")
        .unwrap_or(false);
    crate::oci::attest::Wanted {
        sbom: args.sbom.unwrap_or(false),
        provenance: args.provenance.unwrap_or(args.push && !no_default),
    }
}

/// Attaches the attestations asked for and writes the `--output`s. Returns
/// what the image is published as: the index carrying the attestations, or
/// the image manifest when there are none.
fn attest_and_export(
    args: &BuildArgs,
    store: &Store,
    manifest: &oci_spec::image::Descriptor,
    described: &crate::attestations::Described,
    outputs: &[Output],
    tags: &[String],
    progress: &dyn pipeline::Progress,
) -> anyhow::Result<oci_spec::image::Descriptor> {
    let wanted = attestations_wanted(args);
    let image = if wanted.any() {
        progress.start("attestations");
        let inputs = crate::attestations::collect(described, wanted)?;
        let name = tags.first().cloned().unwrap_or_default();
        let index = crate::oci::attest::attest(store, manifest, &name, &inputs, wanted)?
            .context("attaching attestations")?;
        let sizes = crate::oci::attest::read(store, &index, manifest.digest().as_ref())?
            .iter()
            .map(|(pt, v)| {
                let kind = if pt == crate::oci::attest::SPDX_PREDICATE {
                    "sbom"
                } else {
                    "provenance"
                };
                let len = crate::layers::store::canonical_json(v)
                    .map(|b| b.len())
                    .unwrap_or(0);
                format!("{kind} {len} bytes")
            })
            .collect::<Vec<_>>()
            .join(", ");
        progress.finish("attestations", &format!("{} ({sizes})", index.digest()));
        index
    } else {
        crate::oci::attest::attest(
            store,
            manifest,
            "",
            &Default::default(),
            crate::oci::attest::Wanted::default(),
        )?;
        manifest.clone()
    };
    for out in outputs {
        let step = match out {
            Output::OciLayout { dir } => format!("export oci layout {}", dir.display()),
            Output::OciArchive { file } => format!("export oci archive {}", file.display()),
            Output::DockerArchive { file } => {
                if wanted.any() {
                    progress.warn(&format!(
                        "{}: docker archives carry no attestations (`docker load` reads one image), as with buildx's docker exporter",
                        file.display()
                    ));
                }
                format!("export docker archive {}", file.display())
            }
        };
        progress.start(&step);
        crate::oci::output::export(store, &image, tags, out)
            .with_context(|| format!("writing {step}"))?;
        progress.finish(&step, "");
    }
    Ok(image)
}

/// `--toolchain FRAMEWORK[.LAYER]=REF`, by `FRAMEWORK.LAYER`.
fn layer_overrides(args: &BuildArgs) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut overrides = std::collections::BTreeMap::new();
    for t in &args.toolchains {
        let (k, v) = crate::build::app::parse_layer_override(t).with_context(|| {
            format!("--toolchain `{t}`: write FRAMEWORK=REF or FRAMEWORK.LAYER=REF")
        })?;
        overrides.insert(k, v);
    }
    Ok(overrides)
}

/// Images for a check, which reads none.
struct NoImages;

impl pipeline::ImageSource for NoImages {
    fn files(&self, reference: &str) -> Result<PathBuf, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("`{reference}` is not read by a check").into())
    }
}

/// The build settings both input formats share: outputs (and `local`
/// directories, written after the build), compression, tags, epoch.
fn build_options(args: &BuildArgs) -> anyhow::Result<(BuildOptions, Vec<PathBuf>)> {
    let mut outputs = Vec::new();
    let mut locals = Vec::new();
    for o in &args.outputs {
        match parse_output(o)? {
            OutputSpec::Image(out) => outputs.push(out),
            OutputSpec::Local(dir) => locals.push(dir),
        }
    }
    let compression = match args.compression {
        CompressionArg::Auto => CompressionChoice::Auto,
        CompressionArg::Gzip => CompressionChoice::Fixed(Compression::Gzip),
        CompressionArg::Zstd => CompressionChoice::Fixed(Compression::Zstd),
        CompressionArg::None => CompressionChoice::Fixed(Compression::None),
    };
    let opts = BuildOptions {
        tags: opts_tags(args),
        compression,
        epoch: source_date_epoch()?,
        gzip_initrd: args.gzip_initrd,
        outputs,
    };
    Ok((opts, locals))
}

/// After a build: `local` outputs, `--push`, `--metadata-file`, the digest.
fn finish(
    args: &BuildArgs,
    store: &Store,
    manifest: &oci_spec::image::Descriptor,
    published: &oci_spec::image::Descriptor,
    locals: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    for dir in locals {
        super::images::export_local(store, manifest, dir)
            .with_context(|| format!("writing the local output {}", dir.display()))?;
    }
    let mut pushed = None;
    if args.push {
        let ropts = args
            .registry
            .options(super::transfer::renderer(args.progress));
        for tag in &opts_tags(args) {
            let result = crate::oci::registry::push(store, tag, tag, &ropts)
                .with_context(|| format!("pushing {tag}"))?;
            pushed.get_or_insert(result);
        }
    }
    if let Some(path) = &args.metadata_file {
        let result = match pushed {
            Some(r) => r,
            None => crate::oci::registry::PushResult {
                name: opts_tags(args).join(","),
                digest: published.digest().to_string(),
                descriptor: published.clone(),
                uploaded: 0,
                skipped: 0,
            },
        };
        crate::oci::registry::write_metadata(path, &result)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.progress != ProgressMode::Quiet {
        // Read back from the stored image, so it is what `bunny inspect` shows.
        match crate::oci::inspect::inspect(store, manifest.digest().as_ref()) {
            Ok(report) => eprint!("{}", report.size_table()),
            Err(e) => eprintln!("warning: cannot read the layer sizes back: {e}"),
        }
    }
    outln!("{}", manifest.digest())?;
    Ok(ExitCode::SUCCESS)
}

/// `bunny-frontend`: $BUNNY_FRONTEND, else beside this binary, else in PATH.
/// The LLB code lives in the `bunny-frontend` crate, which depends on this
/// one (it reuses the parser and planner), so `bunny` cannot link it and
/// runs its binary instead.
fn frontend_binary() -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("bunny-frontend")))
        .filter(|p| p.is_file());
    std::env::var_os("BUNNY_FRONTEND")
        .map(PathBuf::from)
        .or(beside)
        .unwrap_or_else(|| PathBuf::from("bunny-frontend"))
}

/// Runs `bunny-frontend ARGS` with this process's stdio and returns its
/// status.
pub(super) fn exec_frontend(args: &[&str]) -> ExitCode {
    let bin = frontend_binary();
    match std::process::Command::new(&bin).args(args).status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!(
                "bunny: error: running {}: {e} (build it with `cargo build -p bunny-frontend`, or set BUNNY_FRONTEND)",
                bin.display()
            );
            ExitCode::FAILURE
        }
    }
}

fn print_llb(file: &Path, context: &Path, toolchains: &[String]) -> anyhow::Result<ExitCode> {
    let bin = frontend_binary();
    let mut cmd = std::process::Command::new(&bin);
    cmd.arg("llb").arg("-f").arg(file);
    for t in toolchains {
        cmd.arg("--toolchain").arg(t);
    }
    let status = cmd.arg(context).status().with_context(|| {
        format!(
            "running {} (build it with `cargo build -p bunny-frontend`, or set BUNNY_FRONTEND)",
            bin.display()
        )
    })?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn opts_tags(args: &BuildArgs) -> Vec<String> {
    args.tags.iter().map(|t| normalize_tag(t)).collect()
}

/// `from: IMAGE` for the pipeline: the store first (as `docker build` uses
/// local images unless told `--pull`), else the registry.
struct StoreSource<'a> {
    store: &'a Store,
    /// Layouts the BunnyFile or Containerfile names must be in here...
    context: PathBuf,
    /// ...or under one of these, which the user named.
    allowed_layouts: Vec<PathBuf>,
    opts: crate::oci::registry::RegistryOptions,
    platform: crate::oci::registry::PlatformWanted,
    cache: PathBuf,
    pull: bool,
    /// `--toolchain` references, by `FRAMEWORK.LAYER`.
    layer_overrides: std::collections::BTreeMap<String, String>,
    /// The config file's `layers`, which come after `--toolchain`.
    config_layers: std::collections::BTreeMap<String, String>,
}

impl<'a> StoreSource<'a> {
    /// The images a build reads, as `args` allow them, for `platform`.
    fn new(
        args: &BuildArgs,
        store: &'a Store,
        globals: &super::Globals,
        platform: crate::oci::registry::PlatformWanted,
    ) -> anyhow::Result<StoreSource<'a>> {
        Ok(StoreSource {
            store,
            context: args.context.clone(),
            allowed_layouts: args.allow_layouts.clone(),
            opts: args
                .registry
                .options(super::transfer::renderer(args.progress)),
            platform,
            cache: globals.root.join("rootfs"),
            pull: args.pull,
            layer_overrides: layer_overrides(args)?,
            config_layers: crate::build::app::Config::load(
                &crate::build::app::default_config_file(),
            )?
            .layers,
        })
    }
}

impl pipeline::ImageSource for StoreSource<'_> {
    fn layer(
        &self,
        framework: &dyn crate::frameworks::Framework,
        name: &str,
    ) -> Result<(String, PathBuf), Box<dyn std::error::Error + Send + Sync>> {
        let key = format!("{}.{name}", framework.name());
        // As for an app's layers: the flag, then the config file, then the
        // framework's default.
        let reference = match self
            .layer_overrides
            .get(&key)
            .or_else(|| self.config_layers.get(&key))
        {
            Some(r) => r.clone(),
            None => crate::frameworks::layer_reference(framework, name)
                .map(str::to_string)
                .ok_or_else(|| format!("framework `{}` has no `{name}` layer", framework.name()))?,
        };
        // Layers are the user's own choice (a flag), like toolchain layers:
        // resolved from the store, a layout or the registry.
        let (store, manifest) =
            crate::build::resolve_image(self.store, &reference, Some(&self.opts), self.pull)?;
        let resolved = crate::build::ResolvedImage {
            reference: reference.clone(),
            store,
            manifest,
        };
        let dir = crate::build::rootfs::unpacked_rootfs(self.store.root(), &resolved)?.0;
        Ok((reference, dir))
    }

    fn files(&self, reference: &str) -> Result<PathBuf, Box<dyn std::error::Error + Send + Sync>> {
        let reference =
            &crate::build::contain_layout(reference, &self.context, &self.allowed_layouts)?;
        // `oci:DIR[:TAG]` layouts too (e.g. `FROM oci:./img:tag`).
        if reference.starts_with("oci:") {
            let (layout, manifest) =
                crate::build::resolve_image(self.store, reference, None, false)?;
            return Ok(crate::layers::image_fs::unpacked_image(
                &layout,
                &manifest,
                &self.cache,
            )?);
        }
        let local = if self.pull {
            None
        } else {
            self.store.resolve(&store_name(reference)).ok()
        };
        let manifest = match local {
            Some(d) => d,
            None => {
                crate::oci::registry::pull(self.store, reference, &self.platform, &self.opts)?
                    .manifest
            }
        };
        Ok(crate::layers::image_fs::unpacked_image(
            self.store,
            &manifest,
            &self.cache,
        )?)
    }

    fn config(&self, reference: &str) -> Option<oci_spec::image::Config> {
        let reference =
            &crate::build::contain_layout(reference, &self.context, &self.allowed_layouts).ok()?;
        let (store, manifest) = if reference.starts_with("oci:") {
            crate::build::resolve_image(self.store, reference, None, false).ok()?
        } else {
            (
                self.store.clone(),
                self.store.resolve(&store_name(reference)).ok()?,
            )
        };
        let m = crate::layers::image_fs::read_manifest(&store, &manifest).ok()?;
        let blob = store.open_blob(m.config().digest().as_ref()).ok()?;
        oci_spec::image::ImageConfiguration::from_reader(std::io::BufReader::new(blob))
            .ok()?
            .config()
            .clone()
    }
}

/// The name a reference has in the store (as `bunny pull` names it).
fn store_name(reference: &str) -> String {
    if reference.contains('@') {
        reference.to_string()
    } else {
        normalize_tag(reference)
    }
}

/// `name` -> `name:latest`, as docker does; digests and tags are kept.
pub(crate) fn normalize_tag(t: &str) -> String {
    let last = t.rsplit('/').next().unwrap_or(t);
    if last.contains(':') || t.contains('@') {
        t.to_string()
    } else {
        format!("{t}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse_like_buildx() {
        assert_eq!(
            parse_output("type=oci,dest=out").unwrap(),
            OutputSpec::Image(Output::OciLayout { dir: "out".into() })
        );
        assert_eq!(
            parse_output("dest=x.tar,type=docker").unwrap(),
            OutputSpec::Image(Output::DockerArchive {
                file: "x.tar".into()
            })
        );
        assert_eq!(
            parse_output("outdir").unwrap(),
            OutputSpec::Local("outdir".into())
        );
        assert!(parse_output("type=oci")
            .unwrap_err()
            .to_string()
            .contains("dest"));
        assert!(parse_output("type=zip,dest=a")
            .unwrap_err()
            .to_string()
            .contains("unknown type"));
    }

    #[test]
    fn tags_normalise() {
        assert_eq!(normalize_tag("hello"), "hello:latest");
        assert_eq!(normalize_tag("hello:1"), "hello:1");
        assert_eq!(
            normalize_tag("localhost:5000/hello"),
            "localhost:5000/hello:latest"
        );
    }

    #[test]
    fn platforms_parse() {
        assert_eq!(parse_platform("linux/amd64").unwrap(), Arch::Amd64);
        assert_eq!(parse_platform("linux/arm64/v8").unwrap(), Arch::Arm64);
        assert!(parse_platform("freebsd/amd64").is_err());
    }
}
