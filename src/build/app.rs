//! The BunnyFile's `app` end to end: resolve the framework's layers (pinned
//! by `bunny.lock`), fetch the sources, run the framework's steps (or take
//! them from the step cache), and let the framework pack the result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use super::cache::{self, KeyInputs, PendingOutput};
use super::fetch::{self, FetchError};
use super::lock::{LockFile, LockedLayer};
use super::rootfs::unpacked_rootfs;
use super::runner::{Runtime, Step};
use super::{io_ctx, resolve_image, BuildError, ResolvedImage, ResolvedLayer};
use crate::bunnyfile::App;
use crate::frameworks::{AppInfo, Framework, FrameworkError, PackInputs, StepInput};
use crate::layers::store::Store;
use crate::layers::tree::{resolve_in_context, Tree};
use crate::pipeline::Progress;

/// How to build an `app`, beyond what the BunnyFile says.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// `bunny.lock` (beside the BunnyFile).
    pub lock_file: PathBuf,
    /// Run every step even when its output is cached.
    pub no_cache: bool,
    /// Resolve every layer again and rewrite the lock file.
    pub update_lock: bool,
    /// The OCI runtime; `runc` from PATH when None.
    pub oci_runtime: Option<PathBuf>,
    /// `FRAMEWORK.LAYER` -> reference (from `--toolchain`); wins over the
    /// config file, which wins over the framework's defaults.
    pub layer_overrides: BTreeMap<String, String>,
    /// The config file; [`default_config_file`] when None.
    pub config_file: Option<PathBuf>,
    /// How to reach registries for layers and sources missing from the
    /// store; None keeps the build offline (store and OCI layouts only).
    pub registry: Option<crate::oci::registry::RegistryOptions>,
    /// The image's monitor and architecture, for frameworks whose steps
    /// depend on them (rumprun); `pipeline::prepare_app` fills them
    /// in from the plan. The architecture defaults to the host's.
    pub monitor: Option<crate::platform::Monitor>,
    pub architecture: Option<crate::platform::Arch>,
    /// The steps already ran elsewhere (the BuildKit frontend runs them as
    /// exec ops): only the packing is left, on these directories.
    pub prebuilt: Option<PrebuiltSteps>,
    /// Directories outside the context whose OCI layouts the BunnyFile may
    /// name (`--allow-layout`).
    pub allowed_layouts: Vec<PathBuf>,
    /// A kernel already built (from sources): the framework's `kernel`
    /// layer is then neither resolved nor packed, so a user needs no
    /// kernel image the build would throw away.
    pub kernel: Option<PathBuf>,
}

/// The outputs of steps that ran outside bunny, and the framework's layers
/// as directories.
#[derive(Debug, Clone, Default)]
pub struct PrebuiltSteps {
    /// The last step's `/out`.
    pub output: PathBuf,
    /// A layer's files, by [`crate::frameworks::LayerDep::name`].
    pub layers: BTreeMap<String, PathBuf>,
}

/// A built app: what the pipeline packs.
pub struct BuiltApp {
    pub kernel: PathBuf,
    pub rootfs: Tree,
    /// Steps that ran in a container, and steps taken from the cache.
    pub steps_run: usize,
    pub steps_cached: usize,
    /// Digest of every layer used, as locked.
    pub layers: BTreeMap<String, String>,
    /// Where the app's sources were read from (a git checkout, a directory
    /// of the context, an unpacked image); None for package-only apps.
    pub source_dir: Option<PathBuf>,
    /// Binary packages the app is made of (freebsd).
    pub packages: Vec<crate::frameworks::InstalledPackage>,
    /// Each step as `name: command` (in the image its layer names), in order:
    /// what provenance records as the build steps.
    pub steps: Vec<String>,
    /// Holds generated files the rootfs points at until the image is written.
    _scratch: crate::layers::store::Scratch,
}

fn describe_steps(steps: &[crate::frameworks::StepSpec]) -> Vec<String> {
    steps
        .iter()
        .map(|s| format!("{} [{}]: {}", s.name, s.image, s.command.join(" ")))
        .collect()
}

/// `$XDG_CONFIG_HOME/bunny/config.json` (else `~/.config/bunny/config.json`).
pub fn default_config_file() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/"))
                .join(".config")
        });
    base.join("bunny").join("config.json")
}

/// The config file: `{"layers": {"linux.toolchain": "oci:/images:gcc"}}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub layers: BTreeMap<String, String>,
}

impl Config {
    /// Reads `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Config, BuildError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| BuildError::Config {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(BuildError::Config {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
        }
    }
}

/// Parses `--toolchain FRAMEWORK[.LAYER]=REF`; LAYER defaults to `toolchain`.
pub fn parse_layer_override(spec: &str) -> Option<(String, String)> {
    let (key, reference) = spec.split_once('=')?;
    if key.is_empty() || reference.is_empty() {
        return None;
    }
    let key = if key.contains('.') {
        key.to_string()
    } else {
        format!("{key}.toolchain")
    };
    Some((key, reference.to_string()))
}

/// Builds `app` with `framework`'s steps and packs it.
pub fn build_app(
    app: &App,
    framework: &dyn Framework,
    context: &Path,
    store: &Store,
    opts: &AppOptions,
    progress: &dyn Progress,
) -> Result<BuiltApp, BuildError> {
    let fw = framework.name().to_string();
    let fw_err = |e: FrameworkError| BuildError::Framework {
        framework: fw.clone(),
        message: e.to_string(),
    };
    let info = app_info(app, opts.monitor, opts.architecture);
    // Ask for the steps first: a framework that cannot build says so before
    // anything is resolved or fetched.
    let steps = framework.app_steps(&info).map_err(fw_err)?;
    let scratch = store.scratch("app")?;
    let pack = |output: &Path, layer: &dyn Fn(&str) -> Result<PathBuf, FrameworkError>| {
        pack_app(
            framework,
            &PackInputs {
                app: &info,
                output,
                kernel: opts.kernel.as_deref(),
                layer,
                scratch: scratch.path(),
                store,
                progress,
            },
        )
        .map_err(fw_err)
    };
    if let Some(done) = &opts.prebuilt {
        let layer = |name: &str| -> Result<PathBuf, FrameworkError> {
            done.layers
                .get(name)
                .cloned()
                .ok_or_else(|| FrameworkError::UnknownLayer(name.to_string()))
        };
        let package = pack(&done.output, &layer)?;
        return Ok(BuiltApp {
            kernel: package.kernel,
            rootfs: package.rootfs,
            steps_run: 0,
            steps_cached: 0,
            layers: BTreeMap::new(),
            source_dir: None,
            packages: package.packages,
            steps: describe_steps(&steps),
            _scratch: scratch,
        });
    }
    // A kernel built from sources replaces the kernel layer: not resolved.
    let wanted: Vec<&str> = framework
        .app_layers(&info, &steps)
        .into_iter()
        .filter(|l| opts.kernel.is_none() || *l != crate::frameworks::KERNEL_LAYER)
        .collect();
    let images = resolve_layers(framework, &wanted, store, opts, progress)?;
    let from_packages = app.from.value == crate::bunnyfile::FROM_PACKAGES;
    let source = if from_packages {
        // Made only of packages: the framework fetches them when packing.
        let empty = scratch.path().join("no-sources");
        std::fs::create_dir_all(&empty).map_err(io_ctx(format!("creating {}", empty.display())))?;
        empty
    } else {
        fetch_source(app, context, store, opts, progress)?
    };

    let runtime = Runtime {
        program: opts
            .oci_runtime
            .clone()
            .unwrap_or_else(|| PathBuf::from("runc")),
        work_dir: store.root().join("tmp"),
    };
    let mut outputs: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut last_output = None;
    let (mut run, mut cached) = (0, 0);
    for spec in &steps {
        let image = match images.get(spec.image) {
            Some(ResolvedLayer::Image(i)) => i,
            Some(ResolvedLayer::Archive(a)) => {
                return Err(BuildError::Framework {
                    framework: fw.clone(),
                    message: format!(
                        "step `{}` runs in layer `{}`, which is the archive {}, not an image",
                        spec.name, spec.image, a.reference
                    ),
                })
            }
            None => {
                return Err(BuildError::Framework {
                    framework: fw.clone(),
                    message: format!(
                        "step `{}` runs in layer `{}`, which it does not declare",
                        spec.name, spec.image
                    ),
                })
            }
        };
        let input = match &spec.input {
            StepInput::Source => source.clone(),
            StepInput::Step(name) => {
                outputs
                    .get(name)
                    .cloned()
                    .ok_or_else(|| BuildError::Framework {
                        framework: fw.clone(),
                        message: format!(
                            "step `{}` reads the output of `{name}`, which has not run before it",
                            spec.name
                        ),
                    })?
            }
        };
        // A mounted layer is named in the key by its locked digest: the
        // directory made from it follows from that.
        let mut mounts = Vec::new();
        let mut mount_keys = Vec::new();
        for m in &spec.mounts {
            let layer = images.get(m.layer).ok_or_else(|| BuildError::Framework {
                framework: fw.clone(),
                message: format!(
                    "step `{}` mounts layer `{}`, which the app's layers do not include",
                    spec.name, m.layer
                ),
            })?;
            mount_keys.push(format!("{}={}", m.target, layer.digest()));
            mounts.push((m, layer));
        }
        let key = cache::step_key(&KeyInputs {
            image_digest: &image.digest(),
            command: &spec.command,
            env: &spec.env,
            workdir: &spec.workdir,
            network: spec.network,
            source: &input,
            mounts: &mount_keys,
        })?;
        progress.start(&spec.name);
        let out = match cache::lookup(store.root(), &key).filter(|_| !opts.no_cache) {
            Some(out) => {
                cached += 1;
                progress.finish(&spec.name, "CACHED");
                out
            }
            None => {
                let (rootfs, unpacked) = unpacked_rootfs(store.root(), image)?;
                if unpacked {
                    progress.log(
                        &spec.name,
                        &format!("unpacked {} ({})", image.reference, image.digest()),
                    );
                }
                let mut mounted = Vec::new();
                for (m, layer) in &mounts {
                    let files = layer.files(store.root())?;
                    let dir = framework
                        .mount_dir(m.layer, &files, store, progress)
                        .map_err(fw_err)?;
                    mounted.push((m.target.clone(), dir));
                }
                let pending = PendingOutput::new(store.root(), &key)?;
                let step = Step {
                    name: spec.name.clone(),
                    rootfs,
                    command: spec.command.clone(),
                    env: spec.env.clone(),
                    workdir: spec.workdir.clone(),
                    source: input,
                    network: spec.network,
                    mounts: mounted,
                };
                let outcome = runtime.run(&step, &pending.out(), progress)?;
                let out = pending.commit()?;
                run += 1;
                progress.finish(
                    &spec.name,
                    if outcome.overlay {
                        "ran (overlay rootfs)"
                    } else {
                        "ran (read-only rootfs)"
                    },
                );
                out
            }
        };
        outputs.insert(spec.name.clone(), out.clone());
        last_output = Some(out);
    }
    let output = last_output.unwrap_or_else(|| source.clone());

    let layer = |name: &str| -> Result<PathBuf, FrameworkError> {
        images
            .get(name)
            .ok_or_else(|| FrameworkError::UnknownLayer(name.to_string()))?
            .files(store.root())
            .map_err(|e| FrameworkError::Build(e.to_string()))
    };
    let package = pack(&output, &layer)?;
    Ok(BuiltApp {
        kernel: package.kernel,
        rootfs: package.rootfs,
        steps_run: run,
        steps_cached: cached,
        layers: images
            .iter()
            .map(|(n, i)| (format!("{fw}.{n}"), i.digest()))
            .collect(),
        source_dir: (!from_packages).then_some(source),
        packages: package.packages,
        steps: describe_steps(&steps),
        _scratch: scratch,
    })
}

/// The BunnyFile's `app` as frameworks see it; the architecture defaults to
/// the host's.
pub fn app_info(
    app: &App,
    monitor: Option<crate::platform::Monitor>,
    architecture: Option<crate::platform::Arch>,
) -> AppInfo {
    AppInfo {
        name: app.name.value.clone(),
        language: app.language.as_ref().map(|l| l.value.clone()),
        monitor,
        architecture: architecture.unwrap_or_else(crate::platform::Arch::host),
        packages: app.packages.clone(),
        repository: app.repository.clone(),
        shell: app.shell,
    }
}

fn pack_app(
    framework: &dyn Framework,
    inputs: &PackInputs,
) -> Result<crate::frameworks::AppPackage, FrameworkError> {
    inputs.progress.start("pack app");
    let package = framework.package_app(inputs)?;
    inputs
        .progress
        .finish("pack app", &format!("{} files", package.rootfs.len()));
    Ok(package)
}

/// The framework's layers named in `wanted` (what the app uses), as the lock
/// file pins them. A layer not in the lock (or whose reference changed, or
/// with `--update-lock`) is resolved now and the lock file rewritten; the
/// lock keeps the entries of layers this build did not use.
fn resolve_layers(
    framework: &dyn Framework,
    wanted: &[&str],
    store: &Store,
    opts: &AppOptions,
    progress: &dyn Progress,
) -> Result<BTreeMap<&'static str, ResolvedLayer>, BuildError> {
    let fw = framework.name();
    let config_path = opts.config_file.clone().unwrap_or_else(default_config_file);
    let config = Config::load(&config_path)?;
    let declared: Vec<String> = framework
        .layers()
        .iter()
        .map(|d| format!("{fw}.{}", d.name))
        .collect();
    for key in opts.layer_overrides.keys().chain(config.layers.keys()) {
        // A kernel built from source names its build image under the same
        // prefix (see kernel.rs); it is not one of the app's layers.
        let kernel_toolchain = key == &format!("{fw}.kernel-toolchain");
        if key.split('.').next() == Some(fw) && !declared.contains(key) && !kernel_toolchain {
            return Err(BuildError::Framework {
                framework: fw.to_string(),
                message: format!(
                    "no layer `{key}` to override; its layers are {}",
                    declared.join(", ")
                ),
            });
        }
    }
    let mut lock = LockFile::load(&opts.lock_file)?;
    let mut changed = false;
    let mut out = BTreeMap::new();
    for dep in framework
        .layers()
        .iter()
        .filter(|d| wanted.contains(&d.name))
    {
        let key = format!("{fw}.{}", dep.name);
        // The lock names the reference as well as the digest, so a build
        // with the lock alone repeats the last one, whatever named the layer
        // then (--toolchain, a config file) and whatever bunny's default is.
        let (reference, from) = if let Some(r) = opts.layer_overrides.get(&key) {
            (r.clone(), "--toolchain".to_string())
        } else if let Some(r) = config.layers.get(&key) {
            (r.clone(), config_path.display().to_string())
        } else if let Some(l) = lock.layers.get(&key) {
            (l.reference.clone(), opts.lock_file.display().to_string())
        } else {
            (dep.reference.to_string(), format!("{fw}'s default"))
        };
        let unavailable =
            |from: String, wanted: &str, e: BuildError| BuildError::LayerUnavailable {
                key: key.clone(),
                reference: wanted.to_string(),
                from,
                lock: opts.lock_file.display().to_string(),
                source: Box::new(e),
            };
        let archive = fetch::parse_archive_ref(&reference)?;
        if let Some(archive) = archive {
            let locked = lock
                .layers
                .get(&key)
                .filter(|l| l.reference == reference && !opts.update_lock)
                .map(|l| l.digest.clone());
            let fetched = match fetch::fetch_archive(
                store,
                &reference,
                &archive,
                locked.as_deref(),
                progress,
                &key,
            ) {
                Ok(f) => f,
                // A file that is not the one pinned is refused as such.
                Err(e @ FetchError::Checksum { .. }) => return Err(e.into()),
                Err(e) => return Err(unavailable(from, &reference, e.into())),
            };
            let entry = LockedLayer {
                reference: reference.clone(),
                digest: fetched.digest.clone(),
            };
            if lock.layers.get(&key) != Some(&entry) {
                lock.layers.insert(key.clone(), entry);
                changed = true;
            }
            out.insert(dep.name, ResolvedLayer::Archive(fetched));
            continue;
        }
        // A registry layer the lock pins is fetched by its digest, never by
        // its tag: a fresh store (a CI runner) builds with exactly the locked
        // image even after the tag has moved, and a store that holds it asks
        // the registry nothing.
        let pinned = lock
            .layers
            .get(&key)
            .filter(|l| l.reference == reference && !opts.update_lock)
            .and_then(|l| pinned_reference(&reference, &l.digest));
        let wanted = pinned.as_deref().unwrap_or(&reference);
        // --update-lock asks the registry again: a retagged layer is only
        // seen when the lock is being refreshed.
        let (image_store, current) =
            resolve_image(store, wanted, opts.registry.as_ref(), opts.update_lock)
                .map_err(|e| unavailable(from, wanted, e))?;
        let manifest = match lock.layers.get(&key) {
            Some(locked) if locked.reference == reference && !opts.update_lock => {
                if locked.digest == current.digest().as_ref() {
                    current
                } else {
                    progress.log(
                        "lock",
                        &format!("{key}: `{reference}` now names {}; keeping the locked {} (--update-lock takes the new one)", current.digest(), locked.digest),
                    );
                    image_store.resolve(&locked.digest).map_err(|e| BuildError::Lock {
                        path: opts.lock_file.clone(),
                        message: format!(
                            "{key} is locked to {} but `{reference}` does not hold it ({e}); rebuild with --update-lock",
                            locked.digest
                        ),
                    })?
                }
            }
            _ => {
                let entry = LockedLayer {
                    reference: reference.clone(),
                    digest: current.digest().to_string(),
                };
                if lock.layers.get(&key) != Some(&entry) {
                    lock.layers.insert(key.clone(), entry);
                    changed = true;
                }
                current
            }
        };
        out.insert(
            dep.name,
            ResolvedLayer::Image(ResolvedImage {
                reference,
                store: image_store,
                manifest,
            }),
        );
    }
    if changed || !opts.lock_file.exists() {
        lock.save(&opts.lock_file)?;
        progress.log("lock", &format!("wrote {}", opts.lock_file.display()));
    }
    Ok(out)
}

/// `host/repo@DIGEST` for a registry reference (`host/repo[:tag][@…]`);
/// `None` for OCI layouts (`oci:…`, a directory), which are read as they are.
fn pinned_reference(reference: &str, digest: &str) -> Option<String> {
    if reference.starts_with("oci:")
        || reference.starts_with('/')
        || reference.starts_with('.')
        || Path::new(reference).join("oci-layout").is_file()
    {
        return None;
    }
    let name = reference.split('@').next().unwrap_or(reference);
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let name = match name[slash..].find(':') {
        Some(colon) => &name[..slash + colon],
        None => name,
    };
    Some(format!("{name}@{digest}"))
}

/// Whether `app.from` names a git remote rather than a directory or an image.
pub fn is_git_url(from: &str) -> bool {
    from.contains("://") || from.starts_with("git@") || from.ends_with(".git")
}

/// The directory holding the app's sources (`app.path` inside it applied).
fn fetch_source(
    app: &App,
    context: &Path,
    store: &Store,
    opts: &AppOptions,
    progress: &dyn Progress,
) -> Result<PathBuf, BuildError> {
    let registry = opts.registry.as_ref();
    let name = &app.name.value;
    let app_err = |message: String| BuildError::App {
        app: name.clone(),
        message,
    };
    let sub = app.path.as_ref().map(|p| p.value.as_str());
    let from = app.from.value.as_str();
    let in_dir = |base: &Path| -> Result<PathBuf, BuildError> {
        let dir = match sub {
            Some(s) => {
                resolve_in_context(base, s).map_err(|e| app_err(format!("path `{s}`: {e}")))?
            }
            None => base.to_path_buf(),
        };
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(app_err(format!("{} is not a directory", dir.display())))
        }
    };
    if from == "local" {
        return in_dir(context);
    }
    if is_git_url(from) {
        let branch = app.branch.as_ref().map(|b| b.value.as_str());
        let checkout = git_clone(from, branch, store, progress)?;
        return in_dir(&checkout);
    }
    // A directory in the context, else an image holding the sources.
    if let Ok(dir) = resolve_in_context(context, from) {
        if dir.is_dir() {
            return in_dir(&dir);
        }
    }
    let from = super::contain_layout(from, context, &opts.allowed_layouts)?;
    let (image_store, manifest) = resolve_image(store, &from, registry, false)?;
    let image = ResolvedImage {
        reference: from.clone(),
        store: image_store,
        manifest,
    };
    let (rootfs, _) = unpacked_rootfs(store.root(), &image)?;
    in_dir(&rootfs)
}

/// Clones `url` at `branch` into `<store root>/sources/<commit>`.
fn git_clone(
    url: &str,
    branch: Option<&str>,
    store: &Store,
    progress: &dyn Progress,
) -> Result<PathBuf, BuildError> {
    let step = format!(
        "git clone {url}{}",
        branch.map(|b| format!("#{b}")).unwrap_or_default()
    );
    progress.start(&step);
    let sources = store.root().join("sources");
    std::fs::create_dir_all(&sources).map_err(io_ctx(format!("creating {}", sources.display())))?;
    let tmp = tempfile::Builder::new()
        .prefix(".clone-")
        .tempdir_in(&sources)
        .map_err(io_ctx(format!(
            "creating a temp dir in {}",
            sources.display()
        )))?;
    let checkout = tmp.path().join("src");
    let clone = |depth: bool| {
        let mut cmd = Command::new("git");
        cmd.args(["clone", "--quiet"]);
        if depth {
            cmd.args(["--depth", "1"]);
        }
        if let Some(b) = branch {
            cmd.args(["--branch", b]);
        }
        cmd.arg("--").arg(url).arg(&checkout);
        run_tool(&mut cmd, &step)
    };
    match clone(true) {
        // A shallow clone is the cheap one, but dumb HTTP remotes (a static
        // web server) cannot serve it: take the whole history there.
        Err(BuildError::Tool { stderr, .. }) if stderr.contains("shallow") => {
            let _ = std::fs::remove_dir_all(&checkout);
            progress.log(
                &step,
                "the remote cannot serve a shallow clone; cloning in full",
            );
            clone(false)?;
        }
        other => {
            other?;
        }
    }
    let mut rev = Command::new("git");
    rev.arg("-C").arg(&checkout).args(["rev-parse", "HEAD"]);
    let commit = run_tool(&mut rev, "git rev-parse HEAD")?;
    let commit = commit.trim();
    if commit.len() < 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BuildError::Tool {
            command: "git rev-parse HEAD".into(),
            status: "0".into(),
            stderr: format!("unexpected output `{commit}`"),
        });
    }
    let done = sources.join(commit);
    if !done.is_dir() {
        std::fs::rename(&checkout, &done).map_err(io_ctx(format!(
            "renaming {} to {}",
            checkout.display(),
            done.display()
        )))?;
    }
    progress.finish(&step, commit);
    Ok(done)
}

fn run_tool(cmd: &mut Command, what: &str) -> Result<String, BuildError> {
    let out = cmd.output().map_err(|e| BuildError::Tool {
        command: what.to_string(),
        status: "not started".into(),
        stderr: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(BuildError::Tool {
            command: what.to_string(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_registry_layers_are_pinned_by_digest() {
        let d = "sha256:abc";
        assert_eq!(
            pinned_reference("127.0.0.1:5000/bunny/tc:gcc-bookworm", d).as_deref(),
            Some("127.0.0.1:5000/bunny/tc@sha256:abc")
        );
        assert_eq!(
            pinned_reference("127.0.0.1:5000/bunny/tc", d).as_deref(),
            Some("127.0.0.1:5000/bunny/tc@sha256:abc")
        );
        assert_eq!(
            pinned_reference("bunny/tc:1@sha256:old", d).as_deref(),
            Some("bunny/tc@sha256:abc")
        );
        assert_eq!(pinned_reference("oci:/x/layout:gcc", d), None);
        assert_eq!(pinned_reference("./layout", d), None);
    }

    #[test]
    fn overrides_parse() {
        assert_eq!(
            parse_layer_override("linux=oci:/x:gcc"),
            Some(("linux.toolchain".into(), "oci:/x:gcc".into()))
        );
        assert_eq!(
            parse_layer_override("linux.kernel=k:1"),
            Some(("linux.kernel".into(), "k:1".into()))
        );
        assert_eq!(parse_layer_override("linux"), None);
        assert!(is_git_url("file:///tmp/r"));
        assert!(!is_git_url("src"));
    }
}
