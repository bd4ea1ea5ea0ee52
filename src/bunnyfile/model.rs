//! The typed BunnyFile: what the parser hands to the rest of the pipeline.
//! Every value keeps the position it came from so later stages can point at it.

use crate::platform::{Arch, Monitor, RootfsType};

/// A 1-based line and column in the BunnyFile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BunnyFile {
    /// The image named by a `#syntax=IMAGE` first line, if any.
    pub syntax: Option<String>,
    pub version: Spanned<String>,
    pub platforms: Platforms,
    pub rootfs: Rootfs,
    pub kernel: Option<Kernel>,
    /// `kernel: {from: source, ...}` (bunny's extension; `kernel` is None).
    pub kernel_source: Option<crate::build::kernel::KernelSource>,
    pub app: Option<App>,
    pub cmdline: Option<Spanned<String>>,
    pub cmd: Vec<Spanned<String>>,
    pub entrypoint: Vec<Spanned<String>>,
    /// `KEY=VALUE` strings, validated.
    pub envs: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Platforms {
    pub framework: Spanned<String>,
    pub version: Option<Spanned<String>>,
    pub monitor: Spanned<Monitor>,
    /// Normalised; the host's when the file names none.
    pub architecture: Spanned<Arch>,
}

/// Where a kernel, rootfs or included file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Nothing: an empty rootfs that `include` fills.
    Scratch,
    /// The build context.
    Local,
    /// An OCI image reference.
    Image(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rootfs {
    pub from: Spanned<Source>,
    /// A prebuilt rootfs file (in the context or the image).
    pub path: Option<Spanned<String>>,
    /// As written; `None` means the framework's default.
    pub kind: Option<Spanned<RootfsType>>,
    pub include: Vec<Include>,
}

impl Rootfs {
    /// The rootfs type: as written, else the framework's `default`.
    pub fn kind_or(&self, default: RootfsType) -> RootfsType {
        self.kind.as_ref().map(|k| k.value).unwrap_or(default)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    /// `Local` (the context) or `Image`.
    pub from: Source,
    /// Path in the context or image, as written (checked against escapes later).
    pub source: String,
    /// Absolute path in the rootfs being written.
    pub destination: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Kernel {
    /// `Local` or `Image`.
    pub from: Spanned<Source>,
    pub path: Spanned<String>,
}

/// The Go bunny's source-build section.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub name: Spanned<String>,
    pub from: Spanned<String>,
    pub branch: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub language: Option<Spanned<String>>,
    /// Binary packages the app is made of (freebsd: from the package
    /// repository, dependencies resolved by bunny); empty for source builds.
    pub packages: Vec<PackageReq>,
    /// Where `packages` come from; the framework's default when absent.
    pub repository: Option<PackageRepository>,
    /// Keep a shell in the guest (linux: busybox and a shell `/init`)
    /// instead of the cut rootfs of the app, its libraries and bunny-init.
    pub shell: bool,
    pub pos: Pos,
}

/// `from` value meaning the app's files come only from `packages`.
pub const FROM_PACKAGES: &str = "packages";

/// One entry of `app.packages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageReq {
    pub name: String,
    /// The exact version wanted; any (the catalogue's) when absent.
    pub version: Option<String>,
    pub pos: Pos,
}

/// `app.repository`: a package repository and the ABI to take packages for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRepository {
    /// Base URL (`http`, `https` or `file`); `${ABI}` is replaced by `abi`.
    pub url: Option<Spanned<String>>,
    /// e.g. `FreeBSD:14:amd64`.
    pub abi: Option<Spanned<String>>,
    pub pos: Pos,
}
