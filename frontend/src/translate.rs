//! A build file (BunnyFile or Containerfile) -> LLB.
//!
//! The frontend parses the file itself (so errors keep their line:column)
//! and emits:
//! - sources: the context (only the paths the file reads), each image it
//!   names, the framework's layers (toolchain, kernel) pinned by `bunny.lock`
//!   when the context has one;
//! - one exec op per toolchain step of an `app`, in the framework's image,
//!   with the sources read-only at `/src`, `/out` as its output, a tmpfs at
//!   `/tmp` and no network unless the step asks for it (as `bunny build`'s
//!   build containers);
//! - the pack op ([`crate::pack`]): bunny's own build, run from the frontend
//!   image's binary, in the tools image when it needs mke2fs, makefs or
//!   busybox. Its two outputs are the image's files and its config.

use std::collections::BTreeMap;

use bunny::build::lock::LockFile;
use bunny::bunnyfile::{self, BunnyFile, Pos, Source, FROM_PACKAGES};
use bunny::containerfile::{self, Base, Containerfile};
use bunny::frameworks::StepInput;
use bunny::model::KernelSpec;
use bunny::platform::RootfsType;

use crate::error::FrontendError;
use crate::llb::{Exec, Graph, MountSource, Output};
use crate::pack::{self, PackImage, PackSpec};
use crate::proto::pb;

/// The name of the client directory holding the build context.
pub const CONTEXT_NAME: &str = "context";
/// The build-arg naming the tools image (mke2fs, debugfs, makefs, busybox).
pub const TOOLS_ARG: &str = "BUNNY_TOOLS_IMAGE";
/// The build-arg overriding framework layers, as `bunny build --toolchain`:
/// `FRAMEWORK[.LAYER]=REF`, several separated by spaces or commas.
pub const TOOLCHAIN_ARG: &str = "BUNNY_TOOLCHAIN";

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const CONTEXT_MOUNT: &str = "/.bunny/context";

/// What the frontend asks BuildKit (or, for `--llb`, the disk) while
/// translating.
pub trait Resolver {
    /// The image's config object (`Env`, `Cmd`, `Labels`, ...), for inputs
    /// that inherit it as `FROM` does; None when it cannot be had.
    fn image_config(&mut self, reference: &str) -> Option<serde_json::Value>;

    /// Whether the context holds a directory at `path` (an `app.from` that
    /// names a directory, not an image).
    fn is_context_dir(&mut self, path: &str) -> bool;
}

/// A resolver that knows nothing: no configs, no context.
pub struct NoResolver;

impl Resolver for NoResolver {
    fn image_config(&mut self, _reference: &str) -> Option<serde_json::Value> {
        None
    }
    fn is_context_dir(&mut self, _path: &str) -> bool {
        false
    }
}

#[derive(Debug, Clone, Default)]
pub struct TranslateOptions {
    /// The build's session (BUILDKIT_SESSION_ID); None for `buildctl` input.
    pub session: Option<String>,
    /// SOURCE_DATE_EPOCH for every file written.
    pub epoch: u64,
    /// The frontend image, whose binary runs the pack step (BuildKit's
    /// `source` option; `--frontend-image` for `--llb`).
    pub frontend_image: Option<String>,
    /// The image the pack step runs in when it needs filesystem tools.
    pub tools_image: Option<String>,
    /// `FRAMEWORK.LAYER` -> reference.
    pub layer_overrides: BTreeMap<String, String>,
    /// `bunny.lock` beside the build file: pins layers by digest.
    pub lock: Option<LockFile>,
    /// The pack step reports a failure in its metadata output for the
    /// frontend to return (see [`PackSpec::report_errors`]).
    pub report_errors: bool,
}

/// What the frontend solves and returns.
#[derive(Debug)]
pub struct Translation {
    /// The image's files.
    pub definition: pb::Definition,
    /// The image's config and annotations ([`pack::META_CONFIG`],
    /// [`pack::META_ANNOTATIONS`]); shares every op with `definition`.
    pub meta: pb::Definition,
    /// Warnings the parser raised, for the build log.
    pub warnings: Vec<String>,
    /// The context as the pack step gets it (None when it reads none).
    pub context: Option<pb::Definition>,
    /// Context paths the file names, with where: checked before the pack
    /// step runs, so a missing one fails at its line, as BuildKit's own
    /// frontends report a missing COPY source.
    pub checks: Vec<ContextCheck>,
    /// Images the file names (`path` is the reference), with where: one
    /// BuildKit cannot resolve fails at its line.
    pub image_checks: Vec<ContextCheck>,
}

/// A context path the build file names, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextCheck {
    /// As written in the file.
    pub path: String,
    pub pos: Pos,
    /// What the file uses it for (`include`, `kernel`, `COPY source`...).
    pub what: &'static str,
}

/// The build-file syntaxes the frontend may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    BunnyFile,
    Containerfile,
}

/// Tells the two syntaxes apart by content, as `bunny build` does.
pub fn detect(text: &str) -> Syntax {
    if containerfile::is_containerfile(text) {
        Syntax::Containerfile
    } else {
        Syntax::BunnyFile
    }
}

/// Any build file -> LLB.
pub fn translate(
    file_name: &str,
    bytes: &[u8],
    resolver: &mut dyn Resolver,
    opts: &TranslateOptions,
) -> Result<Translation, FrontendError> {
    let text = std::str::from_utf8(bytes).map_err(|_| FrontendError::BadPath {
        path: file_name.to_string(),
        why: "is not UTF-8 text",
    });
    match detect(&String::from_utf8_lossy(bytes)) {
        Syntax::Containerfile => {
            let parsed = containerfile::parse_bytes(file_name, bytes)?;
            let mut t =
                translate_containerfile(&parsed.containerfile, file_name, text?, resolver, opts)?;
            t.warnings = parsed.warnings.iter().map(|w| w.to_string()).collect();
            Ok(t)
        }
        Syntax::BunnyFile => {
            let parsed = bunnyfile::parse_bytes(file_name, bytes)?;
            let mut t = translate_bunnyfile(&parsed.bunnyfile, file_name, text?, resolver, opts)?;
            t.warnings = parsed.warnings.iter().map(|w| w.to_string()).collect();
            Ok(t)
        }
    }
}

/// `path` as a clean relative path (`""` for the root); `..` is refused (the
/// pack step refuses it too, with the file's words; this guards what the
/// frontend asks BuildKit to send).
fn clean(path: &str) -> Result<String, FrontendError> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(FrontendError::BadPath {
                    path: path.to_string(),
                    why: "leaves the build context (`..`)",
                })
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// A mount selector: "" for the whole source, else `/path`.
fn rooted(rel: &str) -> String {
    if rel.is_empty() {
        String::new()
    } else {
        format!("/{rel}")
    }
}

/// The graph and the pack step's inputs, gathered while walking the file.
struct Builder<'a> {
    g: Graph,
    opts: &'a TranslateOptions,
    /// Context paths read; None once the whole context is needed.
    context_paths: Option<Vec<String>>,
    uses_context: bool,
    images: BTreeMap<String, (Output, PackImage)>,
    /// Extra read-only mounts of the pack step.
    mounts: Vec<(String, MountSource)>,
    needs_tools: bool,
    network: bool,
    spec: PackSpec,
    checks: Vec<ContextCheck>,
    image_checks: Vec<ContextCheck>,
}

impl<'a> Builder<'a> {
    /// Images are resolved for `arch` (linux).
    fn new(
        opts: &'a TranslateOptions,
        file_name: &str,
        text: &str,
        arch: bunny::platform::Arch,
    ) -> Builder<'a> {
        let mut g = Graph::new(Some(opts.epoch));
        g.set_platform("linux", &bunny::oci::image::oci_arch(arch).to_string());
        Builder {
            g,
            opts,
            context_paths: Some(Vec::new()),
            uses_context: false,
            images: BTreeMap::new(),
            mounts: Vec::new(),
            needs_tools: false,
            network: false,
            checks: Vec::new(),
            image_checks: Vec::new(),
            spec: PackSpec {
                file_name: file_name.to_string(),
                file: text.to_string(),
                epoch: opts.epoch,
                context: CONTEXT_MOUNT.into(),
                out: pack::OUT_DIR.into(),
                meta: pack::META_DIR.into(),
                report_errors: opts.report_errors,
                ..PackSpec::default()
            },
        }
    }

    /// Notes that the build reads `path` of the context ("" for all of it).
    fn context_path(&mut self, path: &str) -> Result<(), FrontendError> {
        self.uses_context = true;
        let rel = clean(path)?;
        match (&mut self.context_paths, rel.is_empty()) {
            (_, true) => self.context_paths = None,
            (Some(paths), false) => paths.push(rel),
            (None, false) => {}
        }
        Ok(())
    }

    fn context(&mut self) -> Output {
        let paths = self.context_paths.clone().unwrap_or_default();
        self.g
            .local(CONTEXT_NAME, self.opts.session.as_deref(), &paths)
    }

    /// Mounts image `reference` for the pack step (once).
    fn image(&mut self, reference: &str, resolver: &mut dyn Resolver) -> Output {
        if let Some((out, _)) = self.images.get(reference) {
            return out.clone();
        }
        let out = self.g.image(reference);
        let dir = format!("/.bunny/images/{}", self.images.len());
        let config = resolver.image_config(reference);
        self.images.insert(
            reference.to_string(),
            (
                out.clone(),
                PackImage {
                    reference: reference.to_string(),
                    dir,
                    config,
                },
            ),
        );
        out
    }

    fn source(
        &mut self,
        source: &Source,
        path: &str,
        pos: Pos,
        what: &'static str,
        r: &mut dyn Resolver,
    ) -> Result<(), FrontendError> {
        match source {
            Source::Local => {
                self.check(path, pos, what);
                self.context_path(path)
            }
            Source::Image(reference) => {
                self.image_at(reference, pos, r);
                Ok(())
            }
            Source::Scratch => Ok(()),
        }
    }

    /// Notes that the file names context path `path` at `pos`; globs are
    /// left to the pack step.
    fn check(&mut self, path: &str, pos: Pos, what: &'static str) {
        if !path.contains(['*', '?', '[']) {
            self.checks.push(ContextCheck {
                path: path.to_string(),
                pos,
                what,
            });
        }
    }

    /// [`Builder::image`], for an image the file names at `pos`.
    fn image_at(&mut self, reference: &str, pos: Pos, resolver: &mut dyn Resolver) -> Output {
        self.image_checks.push(ContextCheck {
            path: reference.to_string(),
            pos,
            what: "image",
        });
        self.image(reference, resolver)
    }

    /// A framework layer's reference: overridden, else the default; pinned
    /// to the locked digest when `bunny.lock` locks the same reference.
    fn layer_reference(&self, framework: &str, name: &str, default: &str) -> String {
        let key = format!("{framework}.{name}");
        let reference = self
            .opts
            .layer_overrides
            .get(&key)
            .cloned()
            .unwrap_or_else(|| default.to_string());
        match self.opts.lock.as_ref().and_then(|l| l.layers.get(&key)) {
            Some(locked) if locked.reference == reference && !reference.contains('@') => {
                format!("{reference}@{}", locked.digest)
            }
            _ => reference,
        }
    }

    /// The pack op and the two definitions.
    fn finish(mut self) -> Result<Translation, FrontendError> {
        let frontend_ref = self.opts.frontend_image.clone().ok_or_else(|| FrontendError::Needs {
            what: "the frontend image".into(),
            why: "bunny's build runs inside BuildKit from the frontend image's binary; name it with --frontend-image REF (or BUNNY_FRONTEND_IMAGE, as an environment variable or a build-arg)".into(),
        })?;
        let frontend = self.g.image(&frontend_ref);
        let root = if self.needs_tools {
            let tools = self.opts.tools_image.clone().ok_or_else(|| FrontendError::Needs {
                what: "a tools image".into(),
                why: format!("this build writes a filesystem image or packs an app, which needs mke2fs, debugfs, makefs and busybox; pass --build-arg {TOOLS_ARG}=REF (an image with e2fsprogs, makefs and busybox-static, see docs/buildkit.md)"),
            })?;
            self.g.image(&tools)
        } else {
            frontend.clone()
        };
        let mut context = None;
        let mut mounts = vec![(
            pack::BIN_DIR.to_string(),
            MountSource::ReadOnly {
                from: frontend,
                selector: String::new(),
            },
        )];
        if self.uses_context {
            let ctx = self.context();
            context = Some(self.g.definition(Some(&ctx)));
            mounts.push((
                CONTEXT_MOUNT.into(),
                MountSource::ReadOnly {
                    from: ctx,
                    selector: String::new(),
                },
            ));
        } else {
            self.spec.context = "/".into();
        }
        for (out, image) in self.images.values() {
            mounts.push((
                image.dir.clone(),
                MountSource::ReadOnly {
                    from: out.clone(),
                    selector: String::new(),
                },
            ));
        }
        self.spec.images = self
            .images
            .values()
            .map(|(_, i)| (i.reference.clone(), i.clone()))
            .collect();
        mounts.append(&mut self.mounts);
        let spec_json = serde_json::to_vec_pretty(&self.spec).map_err(|e| FrontendError::Io {
            context: "encoding the pack spec".into(),
            source: std::io::Error::other(e),
        })?;
        let spec_file = self.g.mkfile(
            &format!("/{}", pack::SPEC_FILE),
            spec_json,
            0o644,
            "[bunny] pack spec",
        );
        mounts.push((
            pack::SPEC_DIR.into(),
            MountSource::ReadOnly {
                from: spec_file,
                selector: String::new(),
            },
        ));
        mounts.push((pack::OUT_DIR.into(), MountSource::Output));
        mounts.push((pack::META_DIR.into(), MountSource::Output));
        let outs = self.g.exec(
            &Exec {
                root,
                writable_root: true,
                args: vec![
                    format!("{}/{}", pack::BIN_DIR, crate::image::BINARY_NAME),
                    "pack".into(),
                    format!("{}/{}", pack::SPEC_DIR, pack::SPEC_FILE),
                ],
                env: vec![PATH_ENV.into(), "TMPDIR=/tmp".into()],
                cwd: "/".into(),
                mounts,
                network: self.network,
            },
            &format!("[bunny] pack {}", self.spec.file_name),
        );
        Ok(Translation {
            definition: self.g.definition(outs.first()),
            meta: self.g.definition(outs.get(1)),
            warnings: Vec::new(),
            context,
            checks: self.checks,
            image_checks: self.image_checks,
        })
    }
}

/// A BunnyFile -> LLB.
pub fn translate_bunnyfile(
    bf: &BunnyFile,
    file_name: &str,
    text: &str,
    resolver: &mut dyn Resolver,
    opts: &TranslateOptions,
) -> Result<Translation, FrontendError> {
    let arch = bf.platforms.architecture.value;
    let mut b = Builder::new(opts, file_name, text, arch);
    let framework = bunny::frameworks::resolve(&bf.platforms.framework.value);

    if let Some(k) = &bf.kernel {
        b.source(&k.from.value, &k.path.value, k.path.pos, "kernel", resolver)?;
    }
    if let Some(ks) = &bf.kernel_source {
        // The kernel build reads the host's sources and toolchain and its
        // own cache, none of which a BuildKit solve has.
        return Err(FrontendError::Needs {
            what: format!(
                "{file_name}:{}:{}: `kernel: {{from: source}}`",
                ks.pos.line, ks.pos.col
            ),
            why: "kernels built from source are built by `bunny build`, not yet through BuildKit; build the kernel with `bunny build` and name it with `kernel: {from: local, path: ...}`".into(),
        });
    }
    match (&bf.rootfs.from.value, &bf.rootfs.path) {
        (source, Some(p)) => b.source(source, &p.value, p.pos, "rootfs path", resolver)?,
        (Source::Image(r), None) => {
            b.image_at(r, bf.rootfs.from.pos, resolver);
        }
        _ => {}
    }
    for inc in &bf.rootfs.include {
        b.source(&inc.from, &inc.source, inc.pos, "include", resolver)?;
    }
    b.needs_tools = bunnyfile::spec::rootfs_from_files(bf)
        && bunnyfile::spec::rootfs_type(bf) == RootfsType::Block;

    if let Some(app) = &bf.app {
        // Packing an app runs framework code that writes filesystems (ext2
        // data disks) and copies busybox: the tools image has both.
        b.needs_tools = true;
        b.network = !app.packages.is_empty();
        let fw_err = |e: bunny::frameworks::FrameworkError| FrontendError::Needs {
            what: format!("building app `{}`", app.name.value),
            why: e.to_string(),
        };
        let info = bunny::build::app_info(app, Some(bf.platforms.monitor.value), Some(arch));
        let steps = framework.app_steps(&info).map_err(fw_err)?;
        // A layer a step mounts may be an archive the framework unpacks on
        // the host first (FreeBSD's base.txz as a sysroot): no exec op can
        // do that yet.
        if let Some(step) = steps.iter().find(|s| !s.mounts.is_empty()) {
            return Err(FrontendError::Needs {
                what: format!("step `{}`", step.name),
                why: format!(
                    "it mounts the framework layer `{}`, which the BuildKit frontend cannot provide yet; build this app with `bunny build`",
                    step.mounts[0].layer
                ),
            });
        }
        let wanted = framework.app_layers(&info, &steps);
        let mut layers = BTreeMap::new();
        for dep in framework
            .layers()
            .iter()
            .filter(|d| wanted.contains(&d.name))
        {
            let reference = b.layer_reference(framework.name(), dep.name, dep.reference);
            let out = b.g.image(&reference);
            let dir = format!("/.bunny/layers/{}", dep.name);
            b.spec.layers.insert(dep.name.to_string(), dir.clone());
            b.mounts.push((
                dir,
                MountSource::ReadOnly {
                    from: out.clone(),
                    selector: String::new(),
                },
            ));
            layers.insert(dep.name, out);
        }
        let sub = match &app.path {
            Some(p) => clean(&p.value)?,
            None => String::new(),
        };
        let from = app.from.value.as_str();
        // Where the sources are read from: (image, path in it), the context
        // (a path in it), or nowhere.
        let image_source: Option<(Output, String)>;
        let context_source: Option<String>;
        if from == FROM_PACKAGES {
            (image_source, context_source) = (None, None);
        } else if bunny::build::app::is_git_url(from) {
            let branch = app.branch.as_ref().map(|b| b.value.as_str());
            (image_source, context_source) = (Some((b.g.git(from, branch), sub.clone())), None);
        } else if from == "local" {
            (image_source, context_source) = (None, Some(sub.clone()));
        } else if resolver.is_context_dir(&clean(from)?) {
            let dir = clean(from)?;
            let joined = if sub.is_empty() {
                dir
            } else {
                format!("{dir}/{sub}")
            };
            (image_source, context_source) = (None, Some(joined));
        } else {
            (image_source, context_source) = (Some((b.g.image(from), sub.clone())), None);
        }
        // The context source is made once every path it sends is known: the
        // steps and the pack op then share one transfer.
        let sources = match (image_source, context_source) {
            (Some((image, path)), _) => Some((image, rooted(&path))),
            (None, Some(path)) => {
                b.context_path(&path)?;
                Some((b.context(), rooted(&path)))
            }
            (None, None) => None,
        };

        let mut outputs: BTreeMap<String, Output> = BTreeMap::new();
        let mut last = sources.clone();
        for step in &steps {
            let root = layers
                .get(step.image)
                .cloned()
                .ok_or_else(|| FrontendError::Needs {
                    what: format!("step `{}`", step.name),
                    why: format!(
                        "it runs in layer `{}`, which the framework does not declare",
                        step.image
                    ),
                })?;
            let input = match &step.input {
                StepInput::Source => sources.clone(),
                StepInput::Step(name) => Some((
                    outputs
                        .get(name)
                        .cloned()
                        .ok_or_else(|| FrontendError::Needs {
                            what: format!("step `{}`", step.name),
                            why: format!(
                                "it reads the output of `{name}`, which has not run before it"
                            ),
                        })?,
                    String::new(),
                )),
            };
            let src = match input {
                Some((from, selector)) => MountSource::ReadOnly { from, selector },
                None => MountSource::Tmpfs,
            };
            let mut env = step.env.clone();
            if !env.iter().any(|e| e.starts_with("PATH=")) {
                env.push(PATH_ENV.into());
            }
            let outs = b.g.exec(
                &Exec {
                    root,
                    // As `bunny build`'s overlay rootfs.
                    writable_root: true,
                    args: step.command.clone(),
                    env,
                    cwd: step.workdir.clone(),
                    mounts: vec![
                        ("/src".into(), src),
                        ("/out".into(), MountSource::Output),
                        ("/tmp".into(), MountSource::Tmpfs),
                    ],
                    network: step.network,
                },
                &format!("[bunny] {}", step.name),
            );
            let out = outs.into_iter().next().ok_or(FrontendError::Protocol {
                call: "exec",
                missing: "an output",
            })?;
            outputs.insert(step.name.clone(), out.clone());
            last = Some((out, String::new()));
        }
        if let Some((out, selector)) = last {
            b.spec.app_output = Some("/.bunny/app".into());
            b.mounts.push((
                "/.bunny/app".into(),
                MountSource::ReadOnly {
                    from: out,
                    selector,
                },
            ));
        }
    }
    if bunnyfile::spec::app_program(bf).is_some() {
        // A source-built linux app runs under bunny-init, as `bunny build` does.
        b.spec.init = Some(format!("{}/{}", pack::BIN_DIR, crate::image::INIT_NAME));
    }
    b.finish()
}

/// The configs the translation resolved, as the build model's door reads
/// them (the `FROM` image's labels decide the guest).
struct ResolvedConfigs<'a>(&'a BTreeMap<String, (Output, PackImage)>);

impl bunny::pipeline::ImageSource for ResolvedConfigs<'_> {
    fn files(
        &self,
        reference: &str,
    ) -> Result<std::path::PathBuf, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("`{reference}` is only mounted in the pack step").into())
    }

    fn config(&self, reference: &str) -> Option<oci_spec::image::Config> {
        let value = self.0.get(reference)?.1.config.clone()?;
        serde_json::from_value(value).ok()
    }
}

/// A Containerfile -> LLB. What to mount follows from the same build model
/// the pack step plans with: the kernel layer when the model asks for one,
/// bunny-init when it wants the init, the tools image for a block rootfs.
pub fn translate_containerfile(
    cf: &Containerfile,
    file_name: &str,
    text: &str,
    resolver: &mut dyn Resolver,
    opts: &TranslateOptions,
) -> Result<Translation, FrontendError> {
    let mut b = Builder::new(opts, file_name, text, bunny::platform::Arch::host());
    if let Base::Image(r) = &cf.base {
        b.image_at(r, cf.from_pos, resolver);
    }
    for c in &cf.copies {
        match &c.from {
            // A leading `/` is the context's root, as in Docker and BuildKit.
            None => {
                let source = c.source.trim_start_matches('/');
                b.check(source, c.pos, "COPY source");
                b.context_path(source)?
            }
            Some(r) => {
                b.image_at(r, c.pos, resolver);
            }
        }
    }
    let spec = containerfile::to_spec(cf, file_name, &ResolvedConfigs(&b.images))?;
    if let KernelSpec::Source(ks) = &spec.kernel {
        // As for a BunnyFile's `kernel: {from: source}`: the build needs
        // the host's sources and bunny's kernel cache.
        return Err(FrontendError::Needs {
            what: format!(
                "{file_name}:{}:{}: `LABEL {}`",
                ks.pos.line,
                ks.pos.col,
                containerfile::LABEL_KERNEL
            ),
            why: "kernels bunny builds from source are built by `bunny build`, not yet through BuildKit; build this Containerfile with `bunny build`, or COPY a kernel in and name it with `LABEL com.urunc.unikernel.binary`".into(),
        });
    }
    if let KernelSpec::Layer(name) = spec.kernel {
        let fw = bunny::frameworks::resolve(&spec.framework);
        let default = bunny::frameworks::layer_reference(fw.as_ref(), name).unwrap_or_default();
        let reference = b.layer_reference(fw.name(), name, default);
        let out = b.g.image(&reference);
        let dir = "/.bunny/kernel".to_string();
        b.spec.kernel = Some(PackImage {
            reference,
            dir: dir.clone(),
            config: None,
        });
        b.mounts.push((
            dir,
            MountSource::ReadOnly {
                from: out,
                selector: String::new(),
            },
        ));
    }
    if spec.init {
        // bunny-init comes with the frontend image, mounted at BIN_DIR.
        b.spec.init = Some(format!("{}/{}", pack::BIN_DIR, crate::image::INIT_NAME));
    }
    b.needs_tools = spec.rootfs.kind == RootfsType::Block;
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_is_told_apart() {
        assert_eq!(detect("#syntax=x\nversion: v0.1\n"), Syntax::BunnyFile);
        assert_eq!(
            detect("# c\n\nFROM scratch\nCOPY a /a\n"),
            Syntax::Containerfile
        );
        assert_eq!(detect("from: local\n"), Syntax::BunnyFile);
    }

    /// Whether the pack step's spec (a file op's data in the definition)
    /// hands bunny-init over.
    fn packs_with_init(text: &str) -> bool {
        let opts = TranslateOptions {
            frontend_image: Some("frontend:1".into()),
            tools_image: Some("tools:1".into()),
            ..TranslateOptions::default()
        };
        let t = translate("BunnyFile", text.as_bytes(), &mut NoResolver, &opts).unwrap();
        let needle = format!("{}/{}", pack::BIN_DIR, crate::image::INIT_NAME);
        t.definition
            .def
            .iter()
            .any(|op| op.windows(needle.len()).any(|w| w == needle.as_bytes()))
    }

    #[test]
    fn a_linux_app_is_packed_with_bunny_init_unless_it_keeps_a_shell() {
        let head = "version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\n  architecture: x86_64\napp:\n  name: srv\n  from: local\n";
        assert!(packs_with_init(&format!("{head}cmd: [\"80\"]\n")));
        assert!(!packs_with_init(&format!(
            "{head}  shell: true\nentrypoint: [\"/init\"]\n"
        )));
    }

    /// A kernel bunny builds from sources needs `bunny build` (the host's
    /// sources, the kernel cache); through BuildKit it is refused at the
    /// line that asks for it, whichever door it came in by.
    #[test]
    fn kernels_from_sources_are_refused_where_they_are_asked_for() {
        let opts = TranslateOptions {
            frontend_image: Some("frontend:1".into()),
            tools_image: Some("tools:1".into()),
            ..TranslateOptions::default()
        };
        let bunnyfile = "version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\n  architecture: x86_64\nkernel:\n  from: source\n  source: debian:linux-source-6.1\n  config: minimal\n";
        let err = translate("BunnyFile", bunnyfile.as_bytes(), &mut NoResolver, &opts)
            .map(|_| ())
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("BunnyFile:6:") && err.contains("bunny build"),
            "{err}"
        );
        let containerfile =
            "FROM scratch\nLABEL bunny.kernel=minimal\nCOPY app /app\nCMD [\"/app\"]\n";
        let err = translate(
            "Containerfile",
            containerfile.as_bytes(),
            &mut NoResolver,
            &opts,
        )
        .map(|_| ())
        .expect_err("refused")
        .to_string();
        assert!(
            err.contains("LABEL bunny.kernel") && err.contains("bunny build"),
            "{err}"
        );
    }

    /// The definition's bytes, or the translation's error.
    fn translated(text: &str) -> Result<Vec<Vec<u8>>, String> {
        let opts = TranslateOptions {
            frontend_image: Some("frontend:1".into()),
            tools_image: Some("tools:1".into()),
            ..TranslateOptions::default()
        };
        translate("BunnyFile", text.as_bytes(), &mut NoResolver, &opts)
            .map(|t| t.definition.def)
            .map_err(|e| e.to_string())
    }

    /// A FreeBSD C app mounts the base as its sysroot, which no exec op can
    /// make yet; a Go app's step takes only the layers it uses.
    #[test]
    fn freebsd_apps_from_sources_name_only_the_layers_they_use() {
        let app = |language: &str| {
            format!("version: v0.1\nplatforms:\n  framework: freebsd\n  monitor: qemu\n  architecture: x86_64\napp:\n  name: hello\n  from: local\n  language: {language}\nentrypoint: [\"/sbin/urunit\", \"/usr/local/bin/hello\"]\n")
        };
        let err = translated(&app("c")).unwrap_err();
        assert!(
            err.contains("`base`") && err.contains("bunny build"),
            "{err}"
        );
        let names = |def: &[Vec<u8>], needle: &str| {
            def.iter()
                .any(|op| op.windows(needle.len()).any(|w| w == needle.as_bytes()))
        };
        let go = translated(&app("go")).unwrap();
        assert!(names(&go, "freebsd-go"), "the go image is used");
        assert!(!names(&go, "freebsd-toolchain"), "the clang image is not");
        let binary = translated(&app("binary")).unwrap();
        assert!(!names(&binary, "freebsd-go") && !names(&binary, "freebsd-toolchain"));
    }

    #[test]
    fn paths_are_cleaned_and_dotdot_refused() {
        assert_eq!(clean("./a//b/").unwrap(), "a/b");
        assert_eq!(clean(".").unwrap(), "");
        assert!(clean("a/../../b").is_err());
    }
}
