//! Kernels built from their sources and a configuration: the BunnyFile's
//! `kernel: {from: source, ...}`, the same shape for every framework that
//! has a kernel.
//!
//! - Linux: a `base` (`tinyconfig`, `allnoconfig`, `defconfig` or a config
//!   file), `fragments` merged over it (`scripts/kconfig/merge_config.sh`),
//!   `set`/`unset`, `make olddefconfig`, then `bzImage`. Every option the
//!   fragments ask for must survive resolution: one that did not take (a
//!   name Kconfig does not know, a dependency that is off) fails the build
//!   naming it and the fragment line it came from.
//! - FreeBSD: `KERNCONF`: a generated config that includes the base
//!   (`FIRECRACKER`, `GENERIC`, `MINIMAL` or a config file) and appends the
//!   fragments' lines (`nodevice`, `options`, ...), cross-built with
//!   FreeBSD's `tools/build/make.py` (clang, lld) in a build container.
//!
//! The result is cached content-addressed in the kernel cache
//! (`$BUNNY_KERNEL_CACHE`, else `STORE/kernels`): the key is the sha256 of a
//! plain-text [`recipe`] naming the sources' sha256, the base, each
//! fragment's sha256 and the toolchain's identity, so the same inputs find
//! the same kernel in well under a second and any change builds a new one.
//! The resolved configuration is kept beside the kernel, and `bunny.lock`
//! pins the sources' digest (a changed tarball is refused until
//! `--update-lock`) and records the resolved configuration's and the
//! kernel's digests.
//!
//! Where the build runs: in a build container under the OCI runtime, like
//! an app's steps, and the key names the image's digest (bunny.lock pins
//! it as `FRAMEWORK.kernel-toolchain`). FreeBSD's cross-build runs in its
//! clang/lld image; a Linux build in a kernel build image (gcc, make, bc,
//! flex, bison, libelf: `scripts/toolchain-image.sh`'s `kbuild-bookworm`,
//! bunny's default [`LINUX_TOOLCHAIN`]). The image is the BunnyFile's
//! `kernel.toolchain`, else `--toolchain FRAMEWORK.kernel-toolchain=REF`,
//! else the config file's, else the default. A Linux build may instead say
//! `host` there ([`HOST_TOOLCHAIN`]): it then runs with the host's gcc and
//! make, and their versions (`gcc --version`, `make --version`) are in the
//! key instead of a digest; such a build depends on whatever the host has
//! installed, which is why it is not the default.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::lock::{LockFile, LockedLayer};
use super::{io_ctx, AppOptions, BuildError};
use crate::bunnyfile::{Pos, Spanned};
use crate::layers::store::Store;
use crate::layers::tree::resolve_in_context;
use crate::pipeline::Progress;
use crate::platform::Arch;

/// bunny's own Linux fragment for the common single-application guest
/// (`config: minimal`).
pub const MINIMAL_FRAGMENT: &str = include_str!("../../kernels/linux-minimal.config");
/// The Linux base `config: minimal` starts from.
pub const MINIMAL_BASE: &str = "tinyconfig";
/// `make` targets a Linux `base` may name.
pub const LINUX_BASES: &[&str] = &["tinyconfig", "allnoconfig", "defconfig"];
/// FreeBSD's amd64 kernel configs a `base` may name.
pub const FREEBSD_BASES: &[&str] = &["FIRECRACKER", "GENERIC", "MINIMAL"];
/// FreeBSD's cross-build image: the same clang/lld image the framework
/// compiles C apps in (`scripts/toolchain-image.sh`'s `clang-bookworm`,
/// which also has the python3 and libraries `tools/build/make.py` needs).
pub const FREEBSD_TOOLCHAIN: &str = crate::frameworks::freebsd::TOOLCHAIN;
/// The Linux kernel build image (`scripts/toolchain-image.sh` builds it as
/// `kbuild-bookworm`).
pub const LINUX_TOOLCHAIN: &str = "bunny/linux-toolchain:kbuild-bookworm";
/// `kernel.toolchain: host`: build a Linux kernel with the host's gcc and
/// make instead of in a build container.
pub const HOST_TOOLCHAIN: &str = "host";
/// Where that image keeps clang and lld (Debian bookworm's LLVM 14).
pub const FREEBSD_CROSS_BINDIR: &str = "/usr/lib/llvm-14/bin";
/// The generated FreeBSD kernel config's name.
pub const FREEBSD_KERNCONF: &str = "BUNNY";
/// What a Linux kernel build leaves in its cache entry besides `config`.
const LINUX_OUTPUTS: &[&str] = &["bzImage", "vmlinux"];
/// How many of a failing build's last output lines its error carries.
const TAIL_LINES: usize = 25;

/// `kernel: {from: source, ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSource {
    pub source: Spanned<SourceRef>,
    pub config: KernelConfig,
    /// The build container image (the framework's default when absent and
    /// none is configured); `host` builds a Linux kernel on the host.
    pub toolchain: Option<Spanned<String>>,
    pub pos: Pos,
}

impl KernelSource {
    /// bunny's minimal Linux kernel from Debian's `linux-source-6.1`, in
    /// the default build image: what a Containerfile's
    /// `LABEL bunny.kernel=minimal` asks for.
    pub fn debian_minimal(pos: Pos) -> KernelSource {
        KernelSource {
            source: Spanned {
                value: SourceRef::Debian(DEBIAN_SOURCE.into()),
                pos,
            },
            config: KernelConfig::minimal(pos),
            toolchain: None,
            pos,
        }
    }
}

/// Debian's kernel source package the minimal kernel is tested with.
pub const DEBIAN_SOURCE: &str = "linux-source-6.1";

/// Where a kernel's sources come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRef {
    /// `http(s)://...tar.xz#sha256=HEX` (or any archive `fetch` reads).
    Url(String),
    /// `debian:linux-source-6.1`: Debian's package, at
    /// `/usr/src/linux-source-6.1.tar.xz`.
    Debian(String),
    /// A tarball or a source tree in the build context.
    Context(String),
}

impl SourceRef {
    /// As written in the BunnyFile.
    pub fn reference(&self) -> String {
        match self {
            SourceRef::Url(u) => u.clone(),
            SourceRef::Debian(p) => format!("debian:{p}"),
            SourceRef::Context(p) => p.clone(),
        }
    }

    /// Reads a `source:` value.
    pub fn parse(s: &str) -> Result<SourceRef, String> {
        if let Some(pkg) = s.strip_prefix("debian:") {
            let ok = pkg.starts_with("linux-source-")
                && pkg.len() > "linux-source-".len()
                && pkg["linux-source-".len()..]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.');
            return if ok {
                Ok(SourceRef::Debian(pkg.to_string()))
            } else {
                Err(format!(
                    "`{s}` is not a Debian kernel source package; write e.g. `debian:linux-source-6.1`"
                ))
            };
        }
        if s.contains("://") {
            return Ok(SourceRef::Url(s.to_string()));
        }
        if s.starts_with('/') {
            return Err(format!(
                "`{s}` is outside the build context; copy the sources into it, name Debian's package (`debian:linux-source-6.1`), or give an `https://...#sha256=HEX` URL"
            ));
        }
        Ok(SourceRef::Context(s.to_string()))
    }
}

/// The configuration: a base, then fragments, then single options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelConfig {
    pub base: Spanned<ConfigBase>,
    pub fragments: Vec<Spanned<Fragment>>,
    /// `CONFIG_NAME` -> value (`y`, `m`, a number, a quoted string).
    pub set: Vec<Spanned<(String, String)>>,
    pub unset: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigBase {
    /// A `make` target (linux) or one of FreeBSD's own configs.
    Named(String),
    /// A config file in the build context.
    File(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragment {
    /// bunny's [`MINIMAL_FRAGMENT`].
    Minimal,
    /// A file in the build context.
    File(String),
}

impl KernelConfig {
    /// `config: minimal`.
    pub fn minimal(pos: Pos) -> KernelConfig {
        KernelConfig {
            base: Spanned {
                value: ConfigBase::Named(MINIMAL_BASE.into()),
                pos,
            },
            fragments: vec![Spanned {
                value: Fragment::Minimal,
                pos,
            }],
            set: Vec::new(),
            unset: Vec::new(),
        }
    }
}

#[derive(Debug, Error)]
pub enum KernelError {
    #[error("kernel sources `{reference}`: {message}")]
    Source { reference: String, message: String },
    #[error("kernel config: {what} `{path}`: {source}")]
    ContextFile {
        what: &'static str,
        path: String,
        #[source]
        source: crate::layers::error::LayerError,
    },
    #[error("kernel config: options the configuration asks for did not take after `make olddefconfig` (a name Kconfig does not know, or one whose dependencies are off):\n{}", .0.join("\n"))]
    NotTaken(Vec<String>),
    #[error("framework `{0}` has no kernel bunny builds from source (linux and freebsd do)")]
    Framework(String),
    #[error("a {0} kernel is cross-built in its build container only; `toolchain: host` is for Linux kernels (name a build image, or leave `toolchain` out for the default)")]
    HostToolchain(String),
    #[error("{key}: cannot get the kernel's build image `{reference}` (named by {from}): {source}; {hint}")]
    ToolchainUnavailable {
        key: String,
        reference: String,
        from: String,
        hint: &'static str,
        #[source]
        source: Box<BuildError>,
    },
    #[error("{framework} kernels are built here for {supported} only, not {arch}")]
    Arch {
        framework: String,
        supported: &'static str,
        arch: String,
    },
    #[error("`{command}` is needed to build the kernel: {source}")]
    ToolMissing {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status})\n--- last {} lines ---\n{}", last_lines.len(), last_lines.join("\n"))]
    Failed {
        command: String,
        status: String,
        last_lines: Vec<String>,
    },
    #[error("the build finished without {0}")]
    NoOutput(String),
    #[error("kernel sources `{reference}` are {actual}, but {lock} pins {expected}; rebuild with --update-lock to take the new sources")]
    Pinned {
        reference: String,
        expected: String,
        actual: String,
        lock: String,
    },
    #[error("freebsd kernel config: `set`/`unset` are Linux options; write `options NAME`/`nooptions NAME`/`nodevice NAME` lines in a fragment file")]
    FreeBsdSet,
}

impl From<KernelError> for BuildError {
    fn from(e: KernelError) -> BuildError {
        BuildError::Kernel(Box::new(e))
    }
}

/// A kernel in the cache.
#[derive(Debug, Clone)]
pub struct BuiltKernel {
    /// The kernel image (bzImage, FreeBSD's `kernel`).
    pub kernel: PathBuf,
    /// The resolved configuration (`.config`, the generated KERNCONF).
    pub config: PathBuf,
    /// The cache key (the recipe's sha256).
    pub key: String,
    /// Found in the cache rather than built.
    pub cached: bool,
}

/// The kernel cache: `$BUNNY_KERNEL_CACHE`, else `STORE/kernels`.
pub fn cache_dir(store_root: &Path) -> PathBuf {
    std::env::var_os("BUNNY_KERNEL_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| store_root.join("kernels"))
}

/// Everything a kernel's cache key covers, as plain text, one fact a line.
/// `scripts/minimal-kernel.sh` writes the same text for `config: minimal`,
/// so the two share the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub framework: String,
    pub arch: String,
    /// `sha256:HEX` of the tarball, or of the tree ([`super::cache::tree_hash`]).
    pub source: String,
    /// `tinyconfig`, `FIRECRACKER`, or `file sha256:HEX`.
    pub base: String,
    /// `sha256:HEX` of each fragment, in order (set/unset as one generated
    /// fragment last).
    pub fragments: Vec<String>,
    /// Compiler and make versions (linux) or the toolchain image's digest.
    pub toolchain: Vec<String>,
    pub target: String,
}

impl Recipe {
    pub fn text(&self) -> String {
        let mut s = format!(
            "bunny-kernel 1\nframework {}\narch {}\nsource {}\nbase {}\n",
            self.framework, self.arch, self.source, self.base
        );
        for f in &self.fragments {
            s.push_str(&format!("fragment {f}\n"));
        }
        for t in &self.toolchain {
            s.push_str(&format!("toolchain {t}\n"));
        }
        s.push_str(&format!("target {}\n", self.target));
        s
    }

    pub fn key(&self) -> String {
        hex::encode(Sha256::digest(self.text().as_bytes()))
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One option a fragment asks for, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub name: String,
    /// `None`: `# CONFIG_X is not set`.
    pub value: Option<String>,
    /// `FILE:LINE`.
    pub origin: String,
}

/// The options Linux fragments ask for, the last word on each name winning
/// (as merge_config.sh merges them).
pub fn wanted_options(fragments: &[(String, String)]) -> Vec<Wanted> {
    let mut out: Vec<Wanted> = Vec::new();
    for (name, text) in fragments {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            let parsed = if let Some(rest) = line
                .strip_prefix("# ")
                .and_then(|l| l.strip_suffix(" is not set"))
            {
                rest.starts_with("CONFIG_")
                    .then(|| (rest.to_string(), None))
            } else if line.starts_with("CONFIG_") {
                line.split_once('=')
                    .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            } else {
                None
            };
            if let Some((key, value)) = parsed {
                out.retain(|w| w.name != key);
                out.push(Wanted {
                    name: key,
                    value,
                    origin: format!("{name}:{}", n + 1),
                });
            }
        }
    }
    out
}

/// The wanted options a resolved `.config` does not have, as messages.
pub fn not_taken(wanted: &[Wanted], resolved: &str) -> Vec<String> {
    let mut have: BTreeMap<&str, &str> = BTreeMap::new();
    for line in resolved.lines() {
        if line.starts_with("CONFIG_") {
            if let Some((k, v)) = line.split_once('=') {
                have.insert(k, v);
            }
        }
    }
    let mut out = Vec::new();
    for w in wanted {
        match (&w.value, have.get(w.name.as_str())) {
            (Some(v), Some(h)) if h == v => {}
            (Some(v), Some(h)) => out.push(format!(
                "  {}={v} ({}): resolved to {}={h}",
                w.name, w.origin, w.name
            )),
            (Some(v), None) => out.push(format!(
                "  {}={v} ({}): not in the resolved config",
                w.name, w.origin
            )),
            // `n` is "not set".
            (None, Some(h)) if *h != "n" => out.push(format!(
                "  # {} is not set ({}): resolved to {}={h}",
                w.name, w.origin, w.name
            )),
            (None, _) => {}
        }
    }
    out
}

/// The `set`/`unset` options as a fragment (empty when there are none).
pub fn options_fragment(config: &KernelConfig) -> String {
    let mut s = String::new();
    for o in &config.set {
        let (k, v) = &o.value;
        if v == "n" {
            s.push_str(&format!("# {k} is not set\n"));
        } else {
            s.push_str(&format!("{k}={v}\n"));
        }
    }
    for u in &config.unset {
        s.push_str(&format!("# {} is not set\n", u.value));
    }
    s
}

/// Checks that the files the config names are in the build context.
pub fn check_context(ks: &KernelSource, context: &Path) -> Result<(), KernelError> {
    let file = |what, path: &str| {
        resolve_in_context(context, path)
            .map(|_| ())
            .map_err(|source| KernelError::ContextFile {
                what,
                path: path.to_string(),
                source,
            })
    };
    if let ConfigBase::File(p) = &ks.config.base.value {
        file("base", p)?;
    }
    for f in &ks.config.fragments {
        if let Fragment::File(p) = &f.value {
            file("fragment", p)?;
        }
    }
    if let SourceRef::Context(p) = &ks.source.value {
        resolve_in_context(context, p).map_err(|source| KernelError::ContextFile {
            what: "source",
            path: p.clone(),
            source,
        })?;
    }
    Ok(())
}

/// The sources as found: a file or directory, and its digest.
struct Sources {
    path: PathBuf,
    digest: String,
    is_dir: bool,
}

/// A source tarball, by the sha256 of its bytes.
fn archive_sources(cache: &Path, path: PathBuf) -> Result<Sources, BuildError> {
    let digest = file_digest(cache, &path)?;
    Ok(Sources {
        path,
        digest,
        is_dir: false,
    })
}

/// A file's sha256, remembered by path, size, mtime and inode in the cache
/// (a 140 MB tarball takes seconds to hash in a debug build).
fn file_digest(cache: &Path, path: &Path) -> Result<String, BuildError> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).map_err(io_ctx(format!("reading {}", path.display())))?;
    let id = format!(
        "{}\0{}\0{}.{}\0{}",
        path.display(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    );
    let memo = cache
        .join(".digests")
        .join(hex::encode(Sha256::digest(id.as_bytes())));
    if let Ok(d) = fs::read_to_string(&memo) {
        if d.starts_with("sha256:") && d.len() == 71 {
            return Ok(d);
        }
    }
    let mut f = fs::File::open(path).map_err(io_ctx(format!("reading {}", path.display())))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(io_ctx(format!("reading {}", path.display())))?;
    let d = format!("sha256:{}", hex::encode(h.finalize()));
    if let Some(dir) = memo.parent() {
        if fs::create_dir_all(dir).is_ok() {
            // A memo is an optimisation: failing to write one is no error.
            let _ = fs::write(&memo, &d);
        }
    }
    Ok(d)
}

fn resolve_sources(
    src: &SourceRef,
    context: &Path,
    store: &Store,
    cache: &Path,
    locked: Option<&str>,
    progress: &dyn Progress,
) -> Result<Sources, BuildError> {
    let reference = src.reference();
    let err = |message: String| KernelError::Source {
        reference: reference.clone(),
        message,
    };
    match src {
        SourceRef::Debian(pkg) => {
            let path = PathBuf::from(format!("/usr/src/{pkg}.tar.xz"));
            if !path.is_file() {
                return Err(err(format!(
                    "{} is missing; `apt-get install {pkg}` installs it",
                    path.display()
                ))
                .into());
            }
            archive_sources(cache, path)
        }
        SourceRef::Context(p) => {
            let path = resolve_in_context(context, p).map_err(|e| err(e.to_string()))?;
            let meta = fs::metadata(&path).map_err(|e| err(e.to_string()))?;
            if meta.is_dir() {
                let digest = format!("sha256:{}", super::cache::tree_hash(&path)?);
                Ok(Sources {
                    path,
                    digest,
                    is_dir: true,
                })
            } else {
                archive_sources(cache, path)
            }
        }
        SourceRef::Url(u) => {
            let archive = super::fetch::parse_archive_ref(u)?.ok_or_else(|| {
                err("not an archive URL (`https://.../linux-6.6.tar.xz#sha256=HEX`)".into())
            })?;
            let fetched =
                super::fetch::fetch_archive(store, u, &archive, locked, progress, "kernel")?;
            Ok(Sources {
                path: fetched.path,
                digest: fetched.digest,
                is_dir: false,
            })
        }
    }
}

/// What a kernel build reads, resolved: the sources, the fragments' texts,
/// the toolchain, and the recipe they make.
pub struct Prepared {
    pub recipe: Recipe,
    sources: Sources,
    fragments: Vec<(String, String)>,
    base_file: Option<(String, Vec<u8>)>,
    image: Option<super::ResolvedImage>,
    lock: LockFile,
    source_key: String,
    reference: String,
    cache: PathBuf,
}

/// Resolves everything the kernel `ks` is built from (hashing the sources,
/// reading the fragments, resolving the toolchain) without building it.
pub fn prepare(
    ks: &KernelSource,
    framework: &str,
    arch: Arch,
    context: &Path,
    store: &Store,
    opts: &AppOptions,
    progress: &dyn Progress,
) -> Result<Prepared, BuildError> {
    let cache = cache_dir(store.root());
    fs::create_dir_all(&cache).map_err(io_ctx(format!("creating {}", cache.display())))?;
    let mut lock = LockFile::load(&opts.lock_file)?;
    let source_key = format!("{framework}.kernel-source");
    let reference = ks.source.value.reference();
    let locked_source = lock
        .layers
        .get(&source_key)
        .filter(|l| l.reference == reference && !opts.update_lock)
        .map(|l| l.digest.clone());
    let sources = resolve_sources(
        &ks.source.value,
        context,
        store,
        &cache,
        locked_source.as_deref(),
        progress,
    )?;
    // An archive is pinned; a tree in the context is the user's to edit
    // (as an app's `from: local` sources are), and its digest only recorded.
    if let Some(expected) = locked_source.as_ref().filter(|_| !sources.is_dir) {
        if *expected != sources.digest {
            return Err(KernelError::Pinned {
                reference,
                expected: expected.clone(),
                actual: sources.digest,
                lock: opts.lock_file.display().to_string(),
            }
            .into());
        }
    }
    // Fragments by name and text, for the recipe and the check.
    let mut fragments: Vec<(String, String)> = Vec::new();
    for f in &ks.config.fragments {
        match &f.value {
            Fragment::Minimal => fragments.push((
                "bunny's minimal fragment (kernels/linux-minimal.config)".into(),
                MINIMAL_FRAGMENT.into(),
            )),
            Fragment::File(p) => {
                let path =
                    resolve_in_context(context, p).map_err(|source| KernelError::ContextFile {
                        what: "fragment",
                        path: p.clone(),
                        source,
                    })?;
                let text = fs::read_to_string(&path)
                    .map_err(io_ctx(format!("reading {}", path.display())))?;
                fragments.push((p.clone(), text));
            }
        }
    }
    let options = options_fragment(&ks.config);
    if !options.is_empty() {
        fragments.push(("kernel.config.set/unset".into(), options));
    }
    let base_file = match &ks.config.base.value {
        ConfigBase::Named(_) => None,
        ConfigBase::File(p) => {
            let path =
                resolve_in_context(context, p).map_err(|source| KernelError::ContextFile {
                    what: "base",
                    path: p.clone(),
                    source,
                })?;
            let text = fs::read(&path).map_err(io_ctx(format!("reading {}", path.display())))?;
            Some((p.clone(), text))
        }
    };
    let base = match (&ks.config.base.value, &base_file) {
        (ConfigBase::Named(n), _) => n.clone(),
        (ConfigBase::File(_), Some((_, text))) => format!("file {}", sha256_hex(text)),
        (ConfigBase::File(p), None) => p.clone(),
    };
    let (toolchain, target, image) = match framework {
        "linux" => {
            if arch != Arch::Amd64 {
                return Err(KernelError::Arch {
                    framework: framework.into(),
                    supported: "x86_64",
                    arch: arch.to_string(),
                }
                .into());
            }
            match kernel_toolchain(
                ks,
                framework,
                LINUX_TOOLCHAIN,
                context,
                opts,
                store,
                &mut lock,
            )? {
                Some(image) => (
                    vec![format!("image {}", image.digest())],
                    "bzImage".to_string(),
                    Some(image),
                ),
                None => (host_toolchain()?, "bzImage".to_string(), None),
            }
        }
        "freebsd" => {
            if !ks.config.set.is_empty() || !ks.config.unset.is_empty() {
                return Err(KernelError::FreeBsdSet.into());
            }
            let image = kernel_toolchain(
                ks,
                framework,
                FREEBSD_TOOLCHAIN,
                context,
                opts,
                store,
                &mut lock,
            )?
            .ok_or_else(|| KernelError::HostToolchain(framework.to_string()))?;
            (
                vec![format!("image {}", image.digest())],
                "kernel".to_string(),
                Some(image),
            )
        }
        other => return Err(KernelError::Framework(other.to_string()).into()),
    };
    let recipe = Recipe {
        framework: framework.to_string(),
        arch: kernel_arch(arch).to_string(),
        source: sources.digest.clone(),
        base,
        fragments: fragments
            .iter()
            .map(|(_, t)| sha256_hex(t.as_bytes()))
            .collect(),
        toolchain,
        target: target.clone(),
    };
    Ok(Prepared {
        recipe,
        sources,
        fragments,
        base_file,
        image,
        lock,
        source_key,
        reference,
        cache,
    })
}

/// Builds (or finds) the kernel `ks` describes for `framework`.
pub fn build_kernel(
    ks: &KernelSource,
    framework: &str,
    arch: Arch,
    context: &Path,
    store: &Store,
    opts: &AppOptions,
    progress: &dyn Progress,
) -> Result<BuiltKernel, BuildError> {
    let step = "kernel";
    progress.start(step);
    let started = Instant::now();
    let Prepared {
        recipe,
        sources,
        fragments,
        base_file,
        image,
        mut lock,
        source_key,
        reference,
        cache,
    } = prepare(ks, framework, arch, context, store, opts, progress)?;
    let key = recipe.key();
    let entry = cache.join(&key);
    // A Linux build keeps both forms of the kernel: the compressed bzImage
    // qemu boots, and the ELF vmlinux (stripped) Firecracker boots by its
    // PVH entry.
    let outputs: &[&str] = if framework == "linux" {
        LINUX_OUTPUTS
    } else {
        &["kernel"]
    };
    let kernel_name = match (framework, opts.monitor) {
        ("linux", Some(crate::platform::Monitor::Firecracker)) => "vmlinux",
        ("linux", _) => "bzImage",
        _ => "kernel",
    };
    // An entry an older bunny wrote may lack the vmlinux: built again once.
    let cached = outputs.iter().all(|f| entry.join(f).is_file()) && !opts.no_cache;
    if cached {
        progress.log(step, &format!("cached at {}", entry.display()));
    } else {
        let work = tempfile::Builder::new()
            .prefix(".build-")
            .tempdir_in(&cache)
            .map_err(io_ctx(format!(
                "creating a temp dir in {}",
                cache.display()
            )))?;
        let out = work.path().join("out");
        fs::create_dir_all(&out).map_err(io_ctx(format!("creating {}", out.display())))?;
        match (framework, &image) {
            ("linux", None) => linux_build(
                &sources,
                &ks.config,
                &base_file,
                &fragments,
                work.path(),
                progress,
            )?,
            ("linux", Some(image)) => linux_container_build(
                &sources,
                &ks.config,
                &base_file,
                &fragments,
                image,
                store,
                opts,
                work.path(),
                progress,
            )?,
            (_, Some(image)) => freebsd_build(
                &sources, &ks.config, &base_file, &fragments, image, arch, store, opts, &out,
                progress,
            )?,
            (other, None) => return Err(KernelError::Framework(other.to_string()).into()),
        }
        fs::write(out.join("recipe"), recipe.text())
            .map_err(io_ctx(format!("writing {}", out.display())))?;
        if entry.exists() {
            fs::remove_dir_all(&entry).map_err(io_ctx(format!("removing {}", entry.display())))?;
        }
        fs::rename(&out, &entry).map_err(io_ctx(format!(
            "renaming {} to {}",
            out.display(),
            entry.display()
        )))?;
    }
    let built = BuiltKernel {
        kernel: entry.join(kernel_name),
        config: entry.join("config"),
        key: key.clone(),
        cached,
    };
    // The lock pins the sources and records what they resolved and built to.
    let digest_of = |p: &Path| -> Result<String, BuildError> {
        let bytes = fs::read(p).map_err(io_ctx(format!("reading {}", p.display())))?;
        Ok(sha256_hex(&bytes))
    };
    let entries = [
        (source_key, reference.clone(), sources.digest.clone()),
        (
            format!("{framework}.kernel-config"),
            format!("recipe sha256:{key}"),
            digest_of(&built.config)?,
        ),
        (
            format!("{framework}.kernel-build"),
            format!("recipe sha256:{key}"),
            digest_of(&built.kernel)?,
        ),
    ];
    let mut changed = false;
    for (k, reference, digest) in entries {
        let e = LockedLayer { reference, digest };
        if let Some(old) = lock.layers.get(&k) {
            if old.reference == e.reference && old.digest != e.digest && !opts.update_lock {
                progress.warn(&format!(
                    "{k}: the same recipe gave {} where {} recorded {}; keeping the new one",
                    e.digest,
                    opts.lock_file.display(),
                    old.digest
                ));
            }
        }
        if lock.layers.get(&k) != Some(&e) {
            lock.layers.insert(k, e);
            changed = true;
        }
    }
    if changed {
        lock.save(&opts.lock_file)?;
    }
    let size = fs::metadata(&built.kernel).map(|m| m.len()).unwrap_or(0);
    progress.finish(
        step,
        &format!(
            "{} {kernel_name}, {} KiB, key {}, {:.1} s",
            if cached { "CACHED" } else { "built" },
            size / 1024,
            &key[..16],
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(built)
}

/// The kernel's own name for the architecture (what the recipe records).
fn kernel_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64",
        Arch::Arm64 => "aarch64",
    }
}

/// The host toolchain's identity: the first line of `gcc --version` and
/// `make --version`.
fn host_toolchain() -> Result<Vec<String>, BuildError> {
    let mut out = Vec::new();
    for tool in ["gcc", "make"] {
        let o = Command::new(tool)
            .arg("--version")
            .output()
            .map_err(|source| KernelError::ToolMissing {
                command: tool.into(),
                source,
            })?;
        let text = String::from_utf8_lossy(&o.stdout);
        out.push(text.lines().next().unwrap_or_default().trim().to_string());
    }
    Ok(out)
}

/// Runs `cmd`, its output lines going to `progress`; fails with the last
/// lines.
fn run_logged(cmd: &mut Command, what: &str, progress: &dyn Progress) -> Result<(), BuildError> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| KernelError::ToolMissing {
            command: what.to_string(),
            source,
        })?;
    let (status, last_lines) =
        super::runner::wait_logged(&mut child, "kernel", TAIL_LINES, progress)
            .map_err(io_ctx(format!("waiting for `{what}`")))?;
    if status.success() {
        return Ok(());
    }
    Err(KernelError::Failed {
        command: what.to_string(),
        status: status.to_string(),
        last_lines,
    }
    .into())
}

/// The Linux source tree: a tree in the context as it is, a tarball
/// extracted into `work/src` (removed with the work directory: an unpacked
/// tree is over a gigabyte).
fn linux_tree(
    sources: &Sources,
    work: &Path,
    progress: &dyn Progress,
) -> Result<PathBuf, BuildError> {
    Ok(if sources.is_dir {
        sources.path.clone()
    } else {
        let src = work.join("src");
        fs::create_dir_all(&src).map_err(io_ctx(format!("creating {}", src.display())))?;
        progress.log("kernel", &format!("extracting {}", sources.path.display()));
        run_logged(
            Command::new("tar")
                .arg("-xf")
                .arg(&sources.path)
                .arg("-C")
                .arg(&src)
                .arg("--strip-components=1"),
            "tar -xf (the kernel sources)",
            progress,
        )?;
        src
    })
}

/// Writes what a Linux configure step reads, the same for the host and the
/// build container: a base config file as `obj/.config`, and the fragments
/// as `work/fragments/N.config` (returned, in merge order).
fn stage_config(
    base: &ConfigBase,
    base_file: &Option<(String, Vec<u8>)>,
    fragments: &[(String, String)],
    obj: &Path,
    work: &Path,
) -> Result<Vec<PathBuf>, BuildError> {
    if let ConfigBase::File(p) = base {
        let text = base_file
            .as_ref()
            .map(|(_, t)| t.as_slice())
            .unwrap_or_default();
        fs::write(obj.join(".config"), text)
            .map_err(io_ctx(format!("writing the base config {p}")))?;
    }
    let frag_dir = work.join("fragments");
    fs::create_dir_all(&frag_dir).map_err(io_ctx(format!("creating {}", frag_dir.display())))?;
    fragments
        .iter()
        .enumerate()
        .map(|(i, (_, text))| {
            let f = frag_dir.join(format!("{i}.config"));
            fs::write(&f, text).map_err(io_ctx(format!("writing {}", f.display())))?;
            Ok(f)
        })
        .collect()
}

/// tinyconfig (or the base file), the fragments merged, olddefconfig, the
/// check, bzImage; `work/out` gets `bzImage` and `config`.
fn linux_build(
    sources: &Sources,
    config: &KernelConfig,
    base_file: &Option<(String, Vec<u8>)>,
    fragments: &[(String, String)],
    work: &Path,
    progress: &dyn Progress,
) -> Result<(), BuildError> {
    let out = work.join("out");
    let obj = work.join("obj");
    fs::create_dir_all(&obj).map_err(io_ctx(format!("creating {}", obj.display())))?;
    let src = linux_tree(sources, work, progress)?;
    let make = |args: &[&str]| {
        let mut c = Command::new("make");
        c.arg("-C")
            .arg(&src)
            .arg(format!("O={}", obj.display()))
            .args(["-s", "ARCH=x86_64"])
            .args(args)
            // A fixed build identity keeps the image the same from build to
            // build.
            .env("KBUILD_BUILD_TIMESTAMP", "1970-01-01")
            .env("KBUILD_BUILD_USER", "bunny")
            .env("KBUILD_BUILD_HOST", "bunny");
        c
    };
    match &config.base.value {
        ConfigBase::Named(target) => run_logged(
            &mut make(&[target.as_str()]),
            &format!("make {target}"),
            progress,
        )?,
        // Written by stage_config below.
        ConfigBase::File(_) => {}
    }
    let staged = stage_config(&config.base.value, base_file, fragments, &obj, work)?;
    let mut merge = Command::new("sh");
    merge
        .arg(src.join("scripts/kconfig/merge_config.sh"))
        .arg("-m")
        .arg("-O")
        .arg(&obj)
        .arg(obj.join(".config"))
        .args(&staged);
    if !fragments.is_empty() {
        run_logged(&mut merge, "merge_config.sh", progress)?;
    }
    run_logged(&mut make(&["olddefconfig"]), "make olddefconfig", progress)?;
    let resolved = fs::read_to_string(obj.join(".config"))
        .map_err(io_ctx(format!("reading {}/.config", obj.display())))?;
    let missing = not_taken(&wanted_options(fragments), &resolved);
    if !missing.is_empty() {
        return Err(KernelError::NotTaken(missing).into());
    }
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    run_logged(
        &mut make(&[&format!("-j{jobs}"), "bzImage"]),
        "make bzImage",
        progress,
    )?;
    let bz = obj.join("arch/x86/boot/bzImage");
    if !bz.is_file() {
        return Err(KernelError::NoOutput(bz.display().to_string()).into());
    }
    fs::copy(&bz, out.join("bzImage")).map_err(io_ctx(format!("copying {}", bz.display())))?;
    // Firecracker reads no symbols; without them the layer is a third
    // smaller (the kernel's own kallsyms stay).
    run_logged(
        Command::new("strip")
            .arg("-o")
            .arg(out.join("vmlinux"))
            .arg(obj.join("vmlinux")),
        "strip vmlinux",
        progress,
    )?;
    fs::write(out.join("config"), resolved).map_err(io_ctx("writing the resolved config"))?;
    Ok(())
}

/// The kernel's build image, pinned in the lock as
/// `FRAMEWORK.kernel-toolchain`: the BunnyFile's, else `--toolchain`'s, else
/// the config file's, else `default`. None: `host`, the build runs on the
/// host (Linux only; a FreeBSD cross-build has no host toolchain here).
fn kernel_toolchain(
    ks: &KernelSource,
    framework: &str,
    default: &str,
    context: &Path,
    opts: &AppOptions,
    store: &Store,
    lock: &mut LockFile,
) -> Result<Option<super::ResolvedImage>, BuildError> {
    let key = format!("{framework}.kernel-toolchain");
    let (reference, from) = match &ks.toolchain {
        Some(t) if t.value == HOST_TOOLCHAIN => (HOST_TOOLCHAIN.to_string(), String::new()),
        // A layout the BunnyFile names must lie in the context (or under
        // --allow-layout), as for every other file it names.
        Some(t) => (
            super::contain_layout(&t.value, context, &opts.allowed_layouts)?,
            format!(
                "the BunnyFile's kernel.toolchain (line {}:{})",
                t.pos.line, t.pos.col
            ),
        ),
        None => match opts.layer_overrides.get(&key) {
            Some(r) => (r.clone(), "--toolchain".to_string()),
            None => {
                let path = opts
                    .config_file
                    .clone()
                    .unwrap_or_else(super::app::default_config_file);
                match super::app::Config::load(&path)?.layers.get(&key) {
                    Some(r) => (r.clone(), path.display().to_string()),
                    None => (default.to_string(), format!("{framework}'s default")),
                }
            }
        },
    };
    if reference == HOST_TOOLCHAIN {
        if framework != "linux" {
            return Err(KernelError::HostToolchain(framework.to_string()).into());
        }
        // Nothing to pin: the host's compiler versions are in the key.
        lock.layers.remove(&key);
        return Ok(None);
    }
    let (image_store, desc) =
        super::resolve_image(store, &reference, opts.registry.as_ref(), false).map_err(|e| {
            KernelError::ToolchainUnavailable {
                key: key.clone(),
                reference: reference.clone(),
                from,
                hint: if framework == "linux" {
                    "scripts/toolchain-image.sh builds it as oci:target/toolchains/layout:kbuild-bookworm: name that with --toolchain linux.kernel-toolchain=oci:target/toolchains/layout:kbuild-bookworm (or the config file's \"layers\", or `kernel.toolchain:` in the BunnyFile), or build with the host's gcc and make: `kernel.toolchain: host`"
                } else {
                    "name a FreeBSD cross-build image (clang, lld, python3) with --toolchain freebsd.kernel-toolchain=REF, the config file's \"layers\", or `kernel.toolchain:` in the BunnyFile"
                },
                source: Box::new(e),
            }
        })?;
    let digest = desc.digest().to_string();
    let manifest = match lock.layers.get(&key) {
        Some(l) if l.reference == reference && l.digest != digest && !opts.update_lock => {
            image_store
                .resolve(&l.digest)
                .map_err(|e| BuildError::Lock {
                    path: opts.lock_file.clone(),
                    message: format!(
                        "{key} is locked to {} but `{reference}` does not hold it ({e}); rebuild with --update-lock",
                        l.digest
                    ),
                })?
        }
        _ => {
            lock.layers.insert(
                key.clone(),
                LockedLayer {
                    reference: reference.clone(),
                    digest,
                },
            );
            desc
        }
    };
    Ok(Some(super::ResolvedImage {
        reference,
        store: image_store,
        manifest,
    }))
}

/// The shell commands of a Linux build in its image, sources at `/src`
/// and everything it writes under `/out`: the configuration (`base`, the
/// fragments `/out/fragments/N.config` merged, `olddefconfig`) and, after
/// bunny has checked it, the kernel.
pub fn linux_container_scripts(base: &ConfigBase, fragments: usize) -> (String, String) {
    let make = "make -C /src O=/out/obj -s ARCH=x86_64";
    let base = match base {
        ConfigBase::Named(t) => format!("{make} {t}; "),
        // bunny wrote it to /out/obj/.config.
        ConfigBase::File(_) => String::new(),
    };
    let merge = if fragments == 0 {
        String::new()
    } else {
        let files: Vec<String> = (0..fragments)
            .map(|i| format!("/out/fragments/{i}.config"))
            .collect();
        format!(
            "sh /src/scripts/kconfig/merge_config.sh -m -O /out/obj /out/obj/.config {}; ",
            files.join(" ")
        )
    };
    (
        format!("set -e; {base}{merge}{make} olddefconfig"),
        format!(
            "set -e; {make} -j\"$(nproc)\" bzImage; cp /out/obj/arch/x86/boot/bzImage /out/out/bzImage; strip -o /out/out/vmlinux /out/obj/vmlinux; cp /out/obj/.config /out/out/config"
        ),
    )
}

/// The Linux build in its image: the same steps as [`linux_build`], run
/// under the OCI runtime with the work directory at `/out` (merge_config.sh
/// makes its temporary files in the working directory, so that is `/out`
/// too); `work/out` gets `bzImage` and `config`.
#[allow(clippy::too_many_arguments)]
fn linux_container_build(
    sources: &Sources,
    config: &KernelConfig,
    base_file: &Option<(String, Vec<u8>)>,
    fragments: &[(String, String)],
    image: &super::ResolvedImage,
    store: &Store,
    opts: &AppOptions,
    work: &Path,
    progress: &dyn Progress,
) -> Result<(), BuildError> {
    let obj = work.join("obj");
    fs::create_dir_all(&obj).map_err(io_ctx(format!("creating {}", obj.display())))?;
    let src = linux_tree(sources, work, progress)?;
    stage_config(&config.base.value, base_file, fragments, &obj, work)?;
    let (configure, build) = linux_container_scripts(&config.base.value, fragments.len());
    let (rootfs, _) = super::rootfs::unpacked_rootfs(store.root(), image)?;
    let runtime = super::runner::Runtime {
        program: opts
            .oci_runtime
            .clone()
            .unwrap_or_else(|| PathBuf::from("runc")),
        work_dir: store.root().join("tmp"),
    };
    let step = |script: String| super::runner::Step {
        name: "kernel".into(),
        rootfs: rootfs.clone(),
        command: vec!["sh".into(), "-c".into(), script],
        // A fixed build identity keeps the image the same from build to
        // build.
        env: vec![
            "KBUILD_BUILD_TIMESTAMP=1970-01-01".into(),
            "KBUILD_BUILD_USER=bunny".into(),
            "KBUILD_BUILD_HOST=bunny".into(),
        ],
        workdir: "/out".into(),
        source: src.clone(),
        network: false,
        mounts: Vec::new(),
    };
    runtime.run(&step(configure), work, progress)?;
    let resolved = fs::read_to_string(obj.join(".config"))
        .map_err(io_ctx(format!("reading {}/.config", obj.display())))?;
    let missing = not_taken(&wanted_options(fragments), &resolved);
    if !missing.is_empty() {
        return Err(KernelError::NotTaken(missing).into());
    }
    runtime.run(&step(build), work, progress)?;
    for f in LINUX_OUTPUTS.iter().chain(&["config"]) {
        if !work.join("out").join(f).is_file() {
            return Err(KernelError::NoOutput(format!("/out/out/{f}")).into());
        }
    }
    Ok(())
}

/// The KERNCONF bunny generates: the base included, the fragments' lines
/// after it.
pub fn freebsd_kernconf(base: &str, fragments: &[(String, String)]) -> String {
    let mut s = format!(
        "# Generated by bunny: {base} and the BunnyFile's fragments.\ninclude \"{base}\"\nident {FREEBSD_KERNCONF}\n"
    );
    for (name, text) in fragments {
        s.push_str(&format!("# {name}\n{text}"));
        if !text.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}

/// The cross-build in the toolchain image: sources read-only at `/src`,
/// the generated config and the object tree under `/out`.
#[allow(clippy::too_many_arguments)]
fn freebsd_build(
    sources: &Sources,
    config: &KernelConfig,
    base_file: &Option<(String, Vec<u8>)>,
    fragments: &[(String, String)],
    image: &super::ResolvedImage,
    arch: Arch,
    store: &Store,
    opts: &AppOptions,
    out: &Path,
    progress: &dyn Progress,
) -> Result<(), BuildError> {
    let (target, target_arch) = match arch {
        Arch::Amd64 => ("amd64", "amd64"),
        Arch::Arm64 => ("arm64", "aarch64"),
    };
    let src = if sources.is_dir {
        sources.path.clone()
    } else {
        let fetched = super::fetch::FetchedArchive {
            reference: sources.path.display().to_string(),
            archive: super::fetch::ArchiveRef {
                url: format!("file://{}", sources.path.display()),
                sha256: None,
                options: BTreeMap::new(),
            },
            digest: sources.digest.clone(),
            path: sources.path.clone(),
        };
        let dir = super::fetch::unpacked(store.root(), &fetched)?;
        // FreeBSD's src.txz holds the tree under usr/src.
        let nested = dir.join("usr/src");
        if nested.is_dir() {
            nested
        } else {
            dir
        }
    };
    let conf = out.join("conf");
    fs::create_dir_all(&conf).map_err(io_ctx(format!("creating {}", conf.display())))?;
    let base = match (&config.base.value, base_file) {
        (ConfigBase::Named(n), _) => n.clone(),
        (ConfigBase::File(_), Some((_, text))) => {
            fs::write(conf.join("BASE"), text).map_err(io_ctx("writing the base config"))?;
            "BASE".to_string()
        }
        (ConfigBase::File(p), None) => p.clone(),
    };
    fs::write(
        conf.join(FREEBSD_KERNCONF),
        freebsd_kernconf(&base, fragments),
    )
    .map_err(io_ctx("writing the kernel config"))?;
    let kernel = format!("/out/obj/src/{target}.{target_arch}/sys/{FREEBSD_KERNCONF}/kernel");
    // Objects go under /out (a real build's are gigabytes: too many for
    // the tmpfs at /tmp) and are removed once the kernel is copied out.
    let script = format!(
        "set -e; MAKEOBJDIRPREFIX=/out/obj python3 /src/tools/build/make.py \
         --cross-bindir={FREEBSD_CROSS_BINDIR} TARGET={target} TARGET_ARCH={target_arch} \
         -j\"$(nproc)\" buildkernel KERNCONF={FREEBSD_KERNCONF} KERNCONFDIR=/out/conf; \
         cp {kernel} /out/kernel; cp /out/conf/{FREEBSD_KERNCONF} /out/config; rm -rf /out/obj"
    );
    let (rootfs, _) = super::rootfs::unpacked_rootfs(store.root(), image)?;
    let runtime = super::runner::Runtime {
        program: opts
            .oci_runtime
            .clone()
            .unwrap_or_else(|| PathBuf::from("runc")),
        work_dir: store.root().join("tmp"),
    };
    let step = super::runner::Step {
        name: "kernel".into(),
        rootfs,
        command: vec!["sh".into(), "-c".into(), script],
        env: Vec::new(),
        workdir: "/src".into(),
        source: src,
        network: false,
        mounts: Vec::new(),
    };
    runtime.run(&step, out, progress)?;
    for f in ["kernel", "config"] {
        if !out.join(f).is_file() {
            return Err(KernelError::NoOutput(format!("/out/{f}")).into());
        }
    }
    let _ = fs::remove_dir_all(&conf);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(name: &str, text: &str) -> (String, String) {
        (name.to_string(), text.to_string())
    }

    #[test]
    fn options_that_did_not_take_are_named_with_their_line() {
        let frags = [
            frag(
                "a.config",
                "CONFIG_VIRTIO=y\nCONFIG_NOT_A_THING=y\n# CONFIG_MODULES is not set\n",
            ),
            frag("b.config", "# a comment\nCONFIG_HZ=250\n"),
        ];
        let wanted = wanted_options(&frags);
        let resolved = "CONFIG_VIRTIO=y\nCONFIG_HZ=100\n# CONFIG_MODULES is not set\n";
        let missing = not_taken(&wanted, resolved);
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(
            missing[0].contains("CONFIG_NOT_A_THING=y (a.config:2)"),
            "{missing:?}"
        );
        assert!(missing[1].contains("CONFIG_HZ=250 (b.config:2): resolved to CONFIG_HZ=100"));
        // An option a fragment turns off that resolution turned on.
        let missing = not_taken(
            &wanted,
            "CONFIG_VIRTIO=y\nCONFIG_HZ=250\nCONFIG_MODULES=y\n",
        );
        assert_eq!(missing.len(), 2);
        assert!(missing
            .iter()
            .any(|m| m.contains("CONFIG_MODULES is not set (a.config:3)")));
        let all = "CONFIG_VIRTIO=y\nCONFIG_HZ=250\nCONFIG_NOT_A_THING=y\n";
        assert!(not_taken(&wanted, all).is_empty());
    }

    #[test]
    fn a_later_fragment_wins() {
        let frags = [
            frag("a", "CONFIG_X=y\n"),
            frag("b", "# CONFIG_X is not set\n"),
        ];
        let wanted = wanted_options(&frags);
        assert_eq!(wanted.len(), 1);
        assert_eq!(wanted[0].value, None);
        assert_eq!(wanted[0].origin, "b:1");
    }

    #[test]
    fn the_bunny_fragment_is_the_repository_file() {
        let file = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/linux-minimal.config"),
        )
        .unwrap();
        assert_eq!(file, MINIMAL_FRAGMENT);
    }

    #[test]
    fn recipes_key_every_input() {
        let r = Recipe {
            framework: "linux".into(),
            arch: "x86_64".into(),
            source: "sha256:aa".into(),
            base: "tinyconfig".into(),
            fragments: vec!["sha256:bb".into()],
            toolchain: vec!["gcc 12".into(), "GNU Make 4.3".into()],
            target: "bzImage".into(),
        };
        assert_eq!(
            r.text(),
            "bunny-kernel 1\nframework linux\narch x86_64\nsource sha256:aa\nbase tinyconfig\nfragment sha256:bb\ntoolchain gcc 12\ntoolchain GNU Make 4.3\ntarget bzImage\n"
        );
        let k = r.key();
        for change in [
            Recipe {
                source: "sha256:ab".into(),
                ..r.clone()
            },
            Recipe {
                base: "defconfig".into(),
                ..r.clone()
            },
            Recipe {
                fragments: vec!["sha256:bc".into()],
                ..r.clone()
            },
            Recipe {
                toolchain: vec!["gcc 13".into()],
                ..r.clone()
            },
        ] {
            assert_ne!(change.key(), k);
        }
    }

    #[test]
    fn the_container_build_configures_then_builds_under_out() {
        let (configure, build) =
            linux_container_scripts(&ConfigBase::Named("tinyconfig".into()), 2);
        assert_eq!(
            configure,
            "set -e; make -C /src O=/out/obj -s ARCH=x86_64 tinyconfig; \
             sh /src/scripts/kconfig/merge_config.sh -m -O /out/obj /out/obj/.config \
             /out/fragments/0.config /out/fragments/1.config; \
             make -C /src O=/out/obj -s ARCH=x86_64 olddefconfig"
        );
        assert!(build.contains("-j\"$(nproc)\" bzImage"), "{build}");
        assert!(
            build.ends_with("cp /out/obj/.config /out/out/config"),
            "{build}"
        );
        // A base file is already /out/obj/.config; no fragments, no merge.
        let (configure, _) = linux_container_scripts(&ConfigBase::File("my.config".into()), 0);
        assert_eq!(
            configure,
            "set -e; make -C /src O=/out/obj -s ARCH=x86_64 olddefconfig"
        );
    }

    #[test]
    fn a_build_image_keys_the_recipe_by_its_digest() {
        let host = Recipe {
            framework: "linux".into(),
            arch: "x86_64".into(),
            source: "sha256:aa".into(),
            base: "tinyconfig".into(),
            fragments: vec!["sha256:bb".into()],
            toolchain: vec![
                "gcc (Debian 12.2.0-14) 12.2.0".into(),
                "GNU Make 4.3".into(),
            ],
            target: "bzImage".into(),
        };
        let image = Recipe {
            toolchain: vec!["image sha256:cc".into()],
            ..host.clone()
        };
        assert!(image
            .text()
            .contains("\ntoolchain image sha256:cc\ntarget bzImage\n"));
        assert_ne!(image.key(), host.key());
        let other = Recipe {
            toolchain: vec!["image sha256:cd".into()],
            ..host.clone()
        };
        assert_ne!(other.key(), image.key());
    }

    #[test]
    fn sources_parse() {
        assert_eq!(
            SourceRef::parse("debian:linux-source-6.1"),
            Ok(SourceRef::Debian("linux-source-6.1".into()))
        );
        assert!(SourceRef::parse("debian:../../etc/passwd").is_err());
        assert!(SourceRef::parse("/usr/src/linux.tar.xz").is_err());
        assert!(matches!(
            SourceRef::parse("https://cdn.kernel.org/linux-6.6.tar.xz#sha256=00"),
            Ok(SourceRef::Url(_))
        ));
        assert_eq!(
            SourceRef::parse("src/linux.tar.xz"),
            Ok(SourceRef::Context("src/linux.tar.xz".into()))
        );
    }

    #[test]
    fn set_and_unset_become_a_fragment() {
        let p = Pos::default();
        let mut c = KernelConfig::minimal(p);
        c.set.push(Spanned {
            value: ("CONFIG_HZ_100".into(), "y".into()),
            pos: p,
        });
        c.set.push(Spanned {
            value: ("CONFIG_SMP".into(), "n".into()),
            pos: p,
        });
        c.unset.push(Spanned {
            value: "CONFIG_ACPI".into(),
            pos: p,
        });
        assert_eq!(
            options_fragment(&c),
            "CONFIG_HZ_100=y\n# CONFIG_SMP is not set\n# CONFIG_ACPI is not set\n"
        );
    }

    #[test]
    fn freebsd_configs_include_their_base() {
        let c = freebsd_kernconf("FIRECRACKER", &[frag("drop.conf", "nodevice sound")]);
        assert!(c.contains("include \"FIRECRACKER\"\nident BUNNY\n"), "{c}");
        assert!(c.ends_with("nodevice sound\n"), "{c}");
    }
}
