//! The one typed build model. Every front door — a BunnyFile, a Containerfile,
//! the BuildKit frontend — turns its text into a [`Spec`]; the planner
//! ([`crate::pipeline::plan`]) and the pack step take only this. The rules a
//! door's format implies (Go bunny's `cmd`/`cmdline` rule, Containerfile
//! `FROM` inheritance, urunit) are decided by the door, so the planner never
//! has to know which format a value came from.

use std::collections::BTreeMap;

use crate::bunnyfile::{App, Include, Pos, Source};
use crate::platform::{Arch, Monitor, RootfsType};

/// What to build: an image for one framework x monitor x architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The file the spec came from, for messages.
    pub origin: String,
    pub framework: String,
    pub unikernel_version: Option<String>,
    pub monitor: Monitor,
    pub architecture: Arch,
    pub kernel: KernelSpec,
    pub rootfs: RootfsSpec,
    /// Built in build containers before packing (a bunny extension).
    pub app: Option<App>,
    /// `None`: not set (an inherited value, if any, stays).
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE`, in order; a later key replaces an earlier (and an
    /// inherited) one.
    pub env: Vec<String>,
    /// `com.urunc.unikernel.cmdline` as the door's format defines it.
    pub cmdline: Option<String>,
    /// Labels the image gets besides the urunc keys. A urunc key here is the
    /// user's and wins over the value bunny would compute.
    pub labels: BTreeMap<String, String>,
    pub workdir: Option<String>,
    /// `USER` as written (a name is looked up in the rootfs's /etc/passwd).
    pub user: Option<(String, Pos)>,
    /// Put bunny-init at [`INIT_PATH`] ahead of the entrypoint.
    pub init: bool,
    /// An image whose config (Env, Entrypoint, Cmd, Labels, WorkingDir,
    /// User) this one inherits, as Dockerfile's `FROM` does.
    pub inherit: Option<(String, Pos)>,
}

/// Where the image's kernel comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSpec {
    /// A file in the build context (`Source::Local`) or in an image; packed
    /// at `/.boot/kernel`.
    File {
        from: Source,
        path: String,
        pos: Pos,
    },
    /// A file among the rootfs's own files (a raw rootfs that brings its
    /// kernel); `binary` names it where it is.
    InRootfs(String),
    /// The framework's kernel layer of this name (e.g. linux `kernel`),
    /// resolved like every dependency layer (overrides, `bunny.lock`).
    Layer(&'static str),
    /// Built from [`Spec::app`].
    App,
    /// Built from its sources and a configuration (a bunny extension); with
    /// an `app`, this kernel replaces the framework's.
    Source(Box<crate::build::kernel::KernelSource>),
}

/// The guest's root filesystem.
#[derive(Debug, Clone, PartialEq)]
pub struct RootfsSpec {
    pub from: Source,
    /// A prebuilt rootfs file in the context or the image.
    pub path: Option<(String, Pos)>,
    /// Decided by the door (its format's default when the user gave none).
    pub kind: RootfsType,
    pub include: Vec<Include>,
}

/// Where bunny-init goes. urunc passes its urunit configuration only to an
/// init whose path contains `urunit`, so the name matters.
pub const INIT_PATH: &str = "/urunit";
/// The init's configuration baked into the image (WORKDIR, USER), in
/// urunit's format.
pub const INIT_CONFIG_PATH: &str = "/.bunny/urunit.conf";
