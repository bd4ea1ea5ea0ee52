//! Containerfile input: the Dockerfile-like format pun, bima and Go bunny
//! read, as an alternative to a BunnyFile.
//!
//! [`parse`]/[`load`] read the file into a [`Containerfile`] (errors are
//! [`Diagnostic`]s with `file:line:col`, like BunnyFile errors); [`to_spec`]
//! turns it into the build model a BunnyFile also becomes, with Go bunny's
//! meanings: the image's files stay in its layers (`mountRootfs=true`) unless
//! a label names an initrd or a root block image, Linux guests get the
//! framework's kernel layer when no `com.urunc.unikernel.binary` is given,
//! and bunny-init at `/urunit` ahead of the entrypoint unless
//! `LABEL bunny.urunit=false`. The format is documented in
//! `docs/containerfile.md`, the init in `docs/init.md`.

mod parse;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use parse::{is_containerfile, INSTRUCTIONS};

use crate::bunnyfile::{Diagnostic, Diagnostics, Include, Pos, Severity, Source};
use crate::model::{KernelSpec, RootfsSpec, Spec};
use crate::oci::annotations::{
    KEY_BINARY, KEY_HYPERVISOR, KEY_UNIKERNEL_TYPE, KEY_UNIKERNEL_VERSION,
};
use crate::pipeline::ImageSource;
use crate::platform::{Arch, Monitor, RootfsType};

/// Largest Containerfile accepted, as for BunnyFiles.
pub const MAX_FILE_BYTES: usize = crate::bunnyfile::MAX_FILE_BYTES;
/// The label that turns the init off (the Go bunny's name).
pub const LABEL_URUNIT: &str = "bunny.urunit";
/// The label choosing the guest rootfs form for Linux: initrd, block, raw.
pub const LABEL_ROOTFS: &str = "bunny.rootfs";
/// The label asking for a kernel bunny builds: `minimal`.
pub const LABEL_KERNEL: &str = "bunny.kernel";
pub use crate::model::{INIT_CONFIG_PATH, INIT_PATH};

/// `FROM`'s argument.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Base {
    #[default]
    Scratch,
    Image(String),
}

/// One source of a `COPY` (or local `ADD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInstr {
    /// `--from=IMAGE`; `None` is the build context.
    pub from: Option<String>,
    pub source: String,
    /// Ends in `/` when the source goes inside it.
    pub dest: String,
    pub pos: Pos,
}

/// A parsed Containerfile, `ARG`s substituted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Containerfile {
    pub base: Base,
    pub from_pos: Pos,
    pub copies: Vec<CopyInstr>,
    pub labels: BTreeMap<String, String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// In order; a later `ENV` of the same name replaces the earlier one.
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub user_pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub containerfile: Containerfile,
    pub warnings: Vec<Diagnostic>,
}

#[derive(Debug, Error)]
pub enum ContainerfileError {
    #[error("cannot read Containerfile {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every error found (at least one), and any warnings, in file order.
    #[error("{}", Diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ContainerfileError {
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ContainerfileError::Invalid(d) => d,
            ContainerfileError::Io { .. } => &[],
        }
    }
}

fn invalid(file: &str, pos: Pos, message: String, help: &str) -> ContainerfileError {
    ContainerfileError::Invalid(vec![Diagnostic {
        file: file.to_string(),
        pos,
        message,
        help: Some(help.to_string()),
        severity: Severity::Error,
    }])
}

/// Parses a Containerfile held in memory; `file_name` is used in diagnostics.
pub fn parse(file_name: &str, text: &str) -> Result<Parsed, ContainerfileError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(invalid(
            file_name,
            Pos { line: 1, col: 1 },
            format!(
                "the file is {} bytes; a Containerfile may be at most {MAX_FILE_BYTES} bytes",
                text.len()
            ),
            "is this the right file?",
        ));
    }
    match parse::parse(file_name, text) {
        (Some(containerfile), warnings) => Ok(Parsed {
            containerfile,
            warnings,
        }),
        (None, diags) => Err(ContainerfileError::Invalid(diags)),
    }
}

/// Like [`parse`], for bytes that may not be UTF-8.
pub fn parse_bytes(file_name: &str, bytes: &[u8]) -> Result<Parsed, ContainerfileError> {
    match std::str::from_utf8(bytes) {
        Ok(t) => parse(file_name, t),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            Err(invalid(
                file_name,
                Pos { line, col: 1 },
                "the file is not valid UTF-8".into(),
                "save the Containerfile as UTF-8 text",
            ))
        }
    }
}

/// Reads and parses the Containerfile at `path`.
pub fn load(path: &Path) -> Result<Parsed, ContainerfileError> {
    let io = |source| ContainerfileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    parse_bytes(&path.display().to_string(), &bytes)
}

/// bunny-init cannot be used.
#[derive(Debug, Error)]
pub enum InitError {
    #[error("{0}")]
    Unusable(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Finds the static bunny-init: `$BUNNY_INIT`, else beside the running
/// bunny (`bunny-init`), else where `scripts/setup.sh` builds it
/// (`target/bunny-init/x86_64-unknown-linux-gnu/release/bunny-init`).
pub fn find_init() -> Result<PathBuf, InitError> {
    if let Some(p) = std::env::var_os("BUNNY_INIT") {
        let p = PathBuf::from(p);
        check_static(&p)?;
        return Ok(p);
    }
    let mut tried = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let mut candidates = vec![dir.join("bunny-init")];
        // target/{debug,release}/bunny -> target/bunny-init/...; and tests'
        // target/debug/deps.
        for up in [dir.parent(), dir.parent().and_then(Path::parent)]
            .into_iter()
            .flatten()
        {
            candidates.push(up.join("bunny-init/x86_64-unknown-linux-gnu/release/bunny-init"));
        }
        for c in candidates {
            if c.is_file() && check_static(&c).is_ok() {
                return Ok(c);
            }
            tried.push(c.display().to_string());
        }
    }
    Err(InitError::Unusable(format!(
        "no statically linked bunny-init found (tried {}); build it with `bash scripts/setup.sh` or set BUNNY_INIT=PATH",
        tried.join(", ")
    )))
}

/// A guest has no dynamic loader, so the init must be a static ELF: no
/// PT_INTERP program header.
pub fn check_static(path: &Path) -> Result<(), InitError> {
    let bytes = std::fs::read(path).map_err(|source| InitError::Io {
        context: format!("reading {}", path.display()),
        source,
    })?;
    let bad = |why: &str| Err(InitError::Unusable(format!("{}: {why}", path.display())));
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return bad("not a 64-bit little-endian ELF executable");
    }
    let u = |o: usize, n: usize| -> Option<u64> {
        let s = bytes.get(o..o + n)?;
        let mut v = 0u64;
        for (i, b) in s.iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        Some(v)
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u(32, 8), u(54, 2), u(56, 2)) else {
        return bad("truncated ELF header");
    };
    for i in 0..phnum {
        let Some(off) = usize::try_from(phoff + i * phentsize).ok() else {
            return bad("bad program header offset");
        };
        match u(off, 4) {
            Some(3) => {
                return bad(
                    "dynamically linked (has an interpreter); build it with -C target-feature=+crt-static",
                )
            }
            Some(_) => {}
            None => return bad("truncated program headers"),
        }
    }
    Ok(())
}

/// The build model of a Containerfile read from `file_name`. `images` gives
/// the `FROM` image's config, whose labels count as this file's (so an image
/// made for urunc keeps its type, hypervisor and kernel).
pub fn to_spec(
    cf: &Containerfile,
    file_name: &str,
    images: &dyn ImageSource,
) -> Result<Spec, ContainerfileError> {
    let base_config = match &cf.base {
        Base::Image(r) => images.config(r),
        Base::Scratch => None,
    };
    let mut labels: BTreeMap<String, String> = base_config
        .as_ref()
        .and_then(|c| c.labels().clone())
        .map(|l| l.into_iter().collect())
        .unwrap_or_default();
    labels.extend(cf.labels.clone());
    let label = |k: &str| labels.get(k).map(String::as_str);
    let at = cf.from_pos;

    let framework = label(KEY_UNIKERNEL_TYPE).unwrap_or("linux").to_string();
    let monitor = match label(KEY_HYPERVISOR) {
        None => Monitor::Qemu,
        Some(m) => Monitor::parse(m).ok_or_else(|| {
            invalid(
                file_name,
                at,
                format!("LABEL {KEY_HYPERVISOR}=`{m}` is not a monitor urunc knows"),
                &format!(
                    "use one of {}",
                    Monitor::ALL
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?,
    };
    let kernel_layer = crate::frameworks::resolve(&framework).kernel_layer(monitor);
    let kernel = match (label(KEY_BINARY), label(LABEL_KERNEL), kernel_layer) {
        (Some(_), Some(_), _) => {
            return Err(invalid(
                file_name,
                at,
                format!("LABEL {LABEL_KERNEL} and LABEL {KEY_BINARY} both name the kernel"),
                "keep one: the kernel the COPY put in place, or the one bunny builds",
            ))
        }
        (Some(p), None, _) => KernelSpec::InRootfs(p.to_string()),
        (None, Some("minimal"), _) if framework == "linux" => KernelSpec::Source(
            Box::new(crate::build::kernel::KernelSource::debian_minimal(at)),
        ),
        (None, Some(other), _) => {
            return Err(invalid(
                file_name,
                at,
                format!("LABEL {LABEL_KERNEL}=`{other}` is not a kernel bunny builds for `{framework}`"),
                &format!(
                    "`minimal` builds bunny's minimal Linux kernel from Debian's linux-source-6.1 (docs/minimal-kernel.md); for another kernel COPY it in and add `LABEL {KEY_BINARY}=/path/of/the/kernel`, or use a BunnyFile's `kernel: {{from: source}}`"
                ),
            ))
        }
        (None, None, Some(layer)) => KernelSpec::Layer(layer.name),
        (None, None, None) => {
            return Err(invalid(
                file_name,
                at,
                format!("a `{framework}` image needs its kernel named"),
                &format!(
                    "add `LABEL {KEY_BINARY}=/path/of/the/kernel` (the path the COPY put it at)"
                ),
            ))
        }
    };
    // Go bunny keeps the files in the image's layers (`mountRootfs`) unless
    // told otherwise; an initrd or a block image is bunny's opt-in.
    let kind = match label(LABEL_ROOTFS) {
        None | Some("raw") => RootfsType::Raw,
        Some("initrd") => RootfsType::Initrd,
        Some("block") => RootfsType::Block,
        Some(other) => {
            return Err(invalid(
                file_name,
                at,
                format!("LABEL {LABEL_ROOTFS}=`{other}` is not a rootfs form"),
                "use initrd, block or raw",
            ))
        }
    };
    let include = cf
        .copies
        .iter()
        .map(|c| Include {
            from: match &c.from {
                None => Source::Local,
                Some(r) => Source::Image(r.clone()),
            },
            source: c.source.clone(),
            destination: c.dest.clone(),
            pos: c.pos,
        })
        .collect();
    let init = framework == "linux" && label(LABEL_URUNIT) != Some("false");
    Ok(Spec {
        origin: file_name.to_string(),
        unikernel_version: label(KEY_UNIKERNEL_VERSION).map(str::to_string),
        framework,
        monitor,
        architecture: Arch::host(),
        kernel,
        rootfs: RootfsSpec {
            from: match &cf.base {
                Base::Scratch => Source::Scratch,
                Base::Image(r) => Source::Image(r.clone()),
            },
            path: None,
            kind,
            include,
        },
        app: None,
        cmd: cf.cmd.clone(),
        entrypoint: cf.entrypoint.clone(),
        env: cf.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        // Go bunny writes no cmdline for a Containerfile: urunc takes the
        // process's arguments. A LABEL sets one.
        cmdline: None,
        labels: cf.labels.clone(),
        workdir: cf.workdir.clone(),
        user: cf.user.clone().map(|u| (u, cf.user_pos)),
        init,
        inherit: match &cf.base {
            Base::Image(r) => Some((r.clone(), cf.from_pos)),
            Base::Scratch => None,
        },
    })
}
