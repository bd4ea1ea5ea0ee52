//! A build file -> LLB + image config. The BunnyFile goes through bunny's
//! own parser and planner (so the urunc keys, Cmd, Env and initrd are the
//! ones `bunny build` writes); only where the bytes come from differs.
//!
//! The planner resolves paths on disk, so the frontend gives it a skeleton
//! context: files that LLB copies straight from the context or an image
//! (kernels, prebuilt rootfs files, raw-rootfs includes) are empty
//! placeholders there, and only the files the frontend itself must read (an
//! initrd's includes) are fetched for real through [`SourceFiles`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bunny::bunnyfile::{self, BunnyFile, Source};
use bunny::layers::initrd::{write_initrd, InitrdOptions};
use bunny::oci::annotations::{KERNEL_PATH, ROOTFS_PATH, URUNC_JSON_PATH};
use bunny::pipeline::{self, ImageSource, KernelInput, RootfsPlan};
use bunny::platform::RootfsType;
use sha2::{Digest as _, Sha256};

use crate::error::FrontendError;
use crate::llb::{FileStep, Graph, Output};
use crate::proto::pb;

/// The name of the client directory holding the build context.
pub const CONTEXT_NAME: &str = "context";

/// Where the frontend reads the files it must see itself.
pub trait SourceFiles {
    /// Writes the file or directory `path` (relative, already checked to stay
    /// inside) of `source` (the context or an image) to `dest`, with contents,
    /// permission bits and symlinks.
    fn fetch(&mut self, source: &Source, path: &Path, dest: &Path) -> Result<(), FrontendError>;

    /// The context paths the build's LLB sends (`local.followpaths`), told
    /// before any fetch: a reader that solves the context should solve this
    /// same source, so BuildKit transfers the context once.
    fn context_paths(&mut self, _paths: &[String]) {}
}

#[derive(Debug, Clone, Default)]
pub struct TranslateOptions {
    /// The build's session (BUILDKIT_SESSION_ID); None for `buildctl` input.
    pub session: Option<String>,
    /// SOURCE_DATE_EPOCH for every file written.
    pub epoch: u64,
}

/// What the frontend solves and returns.
#[derive(Debug)]
pub struct Translation {
    pub definition: pb::Definition,
    /// The image config (`containerimage.config`): Cmd, Entrypoint, Env and
    /// the urunc keys as labels.
    pub image_config: Vec<u8>,
    /// The urunc keys, also offered as manifest annotations.
    pub annotations: BTreeMap<String, String>,
    /// Warnings the parser raised, for the build log.
    pub warnings: Vec<String>,
}

/// The build-file syntaxes the frontend may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    BunnyFile,
    /// Dockerfile-style instructions (issue 11).
    Containerfile,
}

/// Tells the two syntaxes apart by the first line that is not blank or a
/// comment: a Containerfile starts with an instruction (`FROM`, `ARG`), a
/// BunnyFile with a YAML key.
pub fn detect(text: &str) -> Syntax {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    let Some(line) = first else {
        return Syntax::BunnyFile;
    };
    let word = line.split_whitespace().next().unwrap_or("");
    if !word.ends_with(':')
        && (word.eq_ignore_ascii_case("FROM") || word.eq_ignore_ascii_case("ARG"))
    {
        Syntax::Containerfile
    } else {
        Syntax::BunnyFile
    }
}

/// Any build file -> LLB. The seam for issue 11: a Containerfile gets its own
/// translation here, sharing [`SourceFiles`] and [`Translation`].
pub fn translate(
    file_name: &str,
    bytes: &[u8],
    files: &mut dyn SourceFiles,
    opts: &TranslateOptions,
) -> Result<Translation, FrontendError> {
    match detect(&String::from_utf8_lossy(bytes)) {
        Syntax::Containerfile => Err(FrontendError::Containerfile {
            file: file_name.to_string(),
        }),
        Syntax::BunnyFile => {
            let parsed = bunnyfile::parse_bytes(file_name, bytes)?;
            let mut t = translate_bunnyfile(&parsed.bunnyfile, files, opts)?;
            t.warnings = parsed.warnings.iter().map(|w| w.to_string()).collect();
            Ok(t)
        }
    }
}

/// `path` as a clean relative path; `..` and absolute paths are refused (the
/// planner says so with the BunnyFile's words, this only guards the skeleton).
fn clean(path: &str) -> Result<PathBuf, FrontendError> {
    let mut rel = PathBuf::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(FrontendError::BadPath {
                    path: path.to_string(),
                    why: "leaves the build context (`..`)",
                })
            }
            p => rel.push(p),
        }
    }
    Ok(rel)
}

/// `/`-rooted form of a relative path, as LLB copies name sources.
fn rooted(rel: &Path) -> String {
    format!("/{}", rel.display())
}

struct Skeleton {
    root: tempfile::TempDir,
}

impl Skeleton {
    fn dir(&self, source: &Source) -> PathBuf {
        match source {
            Source::Image(r) => {
                let h = hex::encode(Sha256::digest(r.as_bytes()));
                self.root.path().join("images").join(&h[..16])
            }
            _ => self.root.path().join(CONTEXT_NAME),
        }
    }

    fn placeholder(&self, source: &Source, path: &str) -> Result<(), FrontendError> {
        let rel = clean(path)?;
        let full = self.dir(source).join(&rel);
        if full.symlink_metadata().is_ok() {
            return Ok(());
        }
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .map_err(FrontendError::io(format!("creating {}", parent.display())))?;
        }
        std::fs::File::create(&full)
            .map_err(FrontendError::io(format!("creating {}", full.display())))?;
        Ok(())
    }
}

impl ImageSource for Skeleton {
    fn files(&self, reference: &str) -> Result<PathBuf, Box<dyn std::error::Error + Send + Sync>> {
        let dir = self.dir(&Source::Image(reference.to_string()));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

/// A BunnyFile -> LLB: the kernel at /.boot/kernel, the rootfs at
/// /.boot/rootfs (or as files, for `type: raw`), and /urunc.json.
pub fn translate_bunnyfile(
    bf: &BunnyFile,
    files: &mut dyn SourceFiles,
    opts: &TranslateOptions,
) -> Result<Translation, FrontendError> {
    let framework = bunny::frameworks::resolve(&bf.platforms.framework.value);
    let kind = bf
        .rootfs
        .kind
        .as_ref()
        .map(|k| k.value)
        .unwrap_or_else(|| framework.default_rootfs_type());
    if bf.app.is_some() && bf.kernel.is_none() {
        return Err(FrontendError::Unsupported {
            what: "building an `app` from source".into(),
            why: "it runs the framework's toolchain in bunny's build containers; run `bunny build`, or give a prebuilt `kernel`".into(),
        });
    }
    let built_from_files =
        bf.rootfs.path.is_none() && !matches!(bf.rootfs.from.value, Source::Local);
    if built_from_files
        && kind == RootfsType::Block
        && !(bf.rootfs.include.is_empty() && bf.rootfs.from.value == Source::Scratch)
    {
        return Err(FrontendError::Unsupported {
            what: "a block rootfs built from files".into(),
            why: "it needs mke2fs/makefs, which the frontend image (FROM scratch) does not carry; build it with `bunny build`, or name a prebuilt image with `rootfs.path`".into(),
        });
    }
    if let (Source::Image(r), true, RootfsType::Initrd) =
        (&bf.rootfs.from.value, built_from_files, kind)
    {
        return Err(FrontendError::Unsupported {
            what: format!("an initrd made of image {r}'s files"),
            why: "the frontend would have to read the whole image through the gateway; use `type: raw`, or `bunny build`".into(),
        });
    }
    let fetch_includes = built_from_files && kind == RootfsType::Initrd;

    let skeleton = Skeleton {
        root: tempfile::Builder::new()
            .prefix("bunny-frontend-")
            .tempdir()
            .map_err(FrontendError::io("creating a scratch directory"))?,
    };
    std::fs::create_dir_all(skeleton.dir(&Source::Local))
        .map_err(FrontendError::io("creating the skeleton context"))?;
    let mut local_paths: Vec<String> = Vec::new();
    let mut note_local = |source: &Source, path: &str| -> Result<(), FrontendError> {
        if matches!(source, Source::Local) {
            local_paths.push(clean(path)?.display().to_string());
        }
        Ok(())
    };
    if let Some(k) = &bf.kernel {
        skeleton.placeholder(&k.from.value, &k.path.value)?;
        note_local(&k.from.value, &k.path.value)?;
    }
    if let Some(p) = &bf.rootfs.path {
        skeleton.placeholder(&bf.rootfs.from.value, &p.value)?;
        note_local(&bf.rootfs.from.value, &p.value)?;
    }
    for inc in &bf.rootfs.include {
        note_local(&inc.from, &inc.source)?;
    }
    files.context_paths(&local_paths);
    for inc in &bf.rootfs.include {
        if fetch_includes {
            let rel = clean(&inc.source)?;
            let dest = skeleton.dir(&inc.from).join(&rel);
            if dest.symlink_metadata().is_err() {
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(FrontendError::io(format!("creating {}", parent.display())))?;
                }
                files.fetch(&inc.from, &rel, &dest)?;
            }
        } else {
            skeleton.placeholder(&inc.from, &inc.source)?;
        }
    }

    let plan = pipeline::plan(bf, &skeleton.dir(&Source::Local), None, &skeleton)?;
    let urunc = plan.urunc();
    let arch = bunny::oci::image::oci_arch(plan.architecture).to_string();

    let mut g = Graph::new(Some(opts.epoch));
    g.set_platform("linux", &arch);
    let mut local: Option<Output> = None;
    let mut source_output = |g: &mut Graph, source: &Source| -> Output {
        match source {
            Source::Image(r) => g.image(r),
            _ => local
                .get_or_insert_with(|| g.local(CONTEXT_NAME, opts.session.as_deref(), &local_paths))
                .clone(),
        }
    };

    let mut base = None;
    let mut steps = vec![FileStep::MkDir {
        path: "/.boot".into(),
        mode: 0o755,
    }];
    match &plan.kernel {
        KernelInput::Local(_) => {
            if let Some(k) = &bf.kernel {
                steps.push(FileStep::Copy {
                    from: source_output(&mut g, &k.from.value),
                    src: rooted(&clean(&k.path.value)?),
                    dest: KERNEL_PATH.into(),
                    mode: Some(0o755),
                });
            }
        }
        KernelInput::App => {
            return Err(FrontendError::Unsupported {
                what: "building an `app` from source".into(),
                why: "run `bunny build`".into(),
            })
        }
    }
    match &plan.rootfs {
        RootfsPlan::None => {}
        RootfsPlan::Prebuilt { .. } => {
            if let Some(p) = &bf.rootfs.path {
                steps.push(FileStep::Copy {
                    from: source_output(&mut g, &bf.rootfs.from.value),
                    src: rooted(&clean(&p.value)?),
                    dest: ROOTFS_PATH.into(),
                    mode: Some(0o644),
                });
            }
        }
        RootfsPlan::Initrd(tree) => {
            let mut data = Vec::new();
            write_initrd(
                tree,
                &mut data,
                &InitrdOptions {
                    mtime: opts.epoch,
                    gzip: false,
                },
            )
            .map_err(FrontendError::Initrd)?;
            steps.push(FileStep::MkFile {
                path: ROOTFS_PATH.into(),
                data,
                mode: 0o644,
            });
        }
        RootfsPlan::Block(..) => {
            return Err(FrontendError::Unsupported {
                what: "a block rootfs built from files".into(),
                why: "build it with `bunny build`".into(),
            })
        }
        RootfsPlan::Raw(_) => {
            // The image's files are the base; includes go on top.
            if let Source::Image(r) = &bf.rootfs.from.value {
                base = Some(g.image(r));
            }
            for inc in &bf.rootfs.include {
                steps.push(FileStep::Copy {
                    from: source_output(&mut g, &inc.from),
                    src: rooted(&clean(&inc.source)?),
                    dest: inc.destination.clone(),
                    mode: None,
                });
            }
        }
    }
    steps.push(FileStep::MkFile {
        path: URUNC_JSON_PATH.into(),
        data: urunc.urunc_json(),
        mode: 0o644,
    });
    let result = g.file(
        base.as_ref(),
        &steps,
        "[bunny] pack kernel, rootfs and urunc.json",
    );
    let definition = g.definition(result.as_ref());

    let annotations = urunc.to_annotations();
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {
            "Cmd": non_empty(&plan.cmd),
            "Entrypoint": non_empty(&plan.entrypoint),
            "Env": non_empty(&plan.env),
            "Labels": annotations,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    let image_config = serde_json::to_vec(&config).map_err(|e| FrontendError::Io {
        context: "encoding the image config".into(),
        source: e.into(),
    })?;
    Ok(Translation {
        definition,
        image_config,
        annotations,
        warnings: Vec::new(),
    })
}

fn non_empty(v: &[String]) -> Option<&[String]> {
    (!v.is_empty()).then_some(v)
}

/// Reads sources from disk: the context directory (for `bunny build --llb`
/// and tests). Images are not read here.
pub struct LocalFiles {
    pub context: PathBuf,
}

impl SourceFiles for LocalFiles {
    fn fetch(&mut self, source: &Source, path: &Path, dest: &Path) -> Result<(), FrontendError> {
        match source {
            Source::Image(r) => Err(FrontendError::Unsupported {
                what: format!("an initrd including files of image {r}, printed as LLB"),
                why: "`--llb` reads only the context; use `bunny build` or the frontend".into(),
            }),
            _ => copy_tree(&self.context.join(path), dest),
        }
    }
}

fn copy_tree(src: &Path, dest: &Path) -> Result<(), FrontendError> {
    let meta = src
        .symlink_metadata()
        .map_err(FrontendError::io(format!("reading {}", src.display())))?;
    let ctx = |what: &str, p: &Path| format!("{what} {}", p.display());
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).map_err(FrontendError::io(ctx("reading", src)))?;
        std::os::unix::fs::symlink(target, dest)
            .map_err(FrontendError::io(ctx("creating", dest)))?;
    } else if meta.is_dir() {
        std::fs::create_dir_all(dest).map_err(FrontendError::io(ctx("creating", dest)))?;
        for entry in std::fs::read_dir(src).map_err(FrontendError::io(ctx("reading", src)))? {
            let entry = entry.map_err(FrontendError::io(ctx("reading", src)))?;
            copy_tree(&entry.path(), &dest.join(entry.file_name()))?;
        }
        std::fs::set_permissions(dest, meta.permissions())
            .map_err(FrontendError::io(ctx("chmod", dest)))?;
    } else {
        std::fs::copy(src, dest).map_err(FrontendError::io(ctx("copying to", dest)))?;
    }
    Ok(())
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
        assert_eq!(detect("arg X=1\nFROM a\n"), Syntax::Containerfile);
        assert_eq!(detect("from: local\n"), Syntax::BunnyFile);
    }
}
