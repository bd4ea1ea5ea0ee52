use std::path::PathBuf;

use thiserror::Error;

use crate::RuntimeError;

/// Why an OCI runtime command failed. The messages follow runc's where
/// containerd's shim matches on them ("container not running", "does not
/// exist").
#[derive(Debug, Error)]
pub enum OciError {
    #[error("{0}")]
    Usage(String),

    #[error("{command} is not supported for unikernels (the container runs a whole guest kernel under a monitor, not a process)")]
    NotSupported { command: String },

    #[error("container {id:?} does not exist")]
    NotExist { id: String },

    #[error("container {id:?} already exists (state in {})", dir.display())]
    Exists { id: String, dir: PathBuf },

    #[error("container {id:?} is not a valid id: {reason}")]
    BadId { id: String, reason: &'static str },

    #[error("container not running")]
    NotRunning,

    #[error("cannot start container {id:?}: it is {status}, not created")]
    NotCreated { id: String, status: &'static str },

    #[error("cannot delete container {id:?} that is not stopped: {status} (use --force)")]
    NotStopped { id: String, status: &'static str },

    #[error("unknown signal {0:?}")]
    BadSignal(String),

    #[error("cannot read the bundle's {}: {detail}", path.display())]
    BadSpec { path: PathBuf, detail: String },

    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("the container is not a unikernel and runc (the fallback for ordinary containers) cannot be run: {detail}")]
    NoFallback { detail: String },

    #[error("network setup in the container's network namespace failed: {detail}")]
    Network { detail: String },

    #[error("{hook} hook {} failed: {detail}", path.display())]
    Hook {
        hook: &'static str,
        path: PathBuf,
        detail: String,
    },

    #[error("the spec's annotations carry only part of urunc's settings: missing {missing} (given: {present}); give all three, or none to use the image's /urunc.json")]
    PartialUruncAnnotations { missing: String, present: String },

    #[error("{0}")]
    Pod(String),

    #[error("the container's init failed: {0}")]
    Init(String),

    #[error("the mount at {destination} cannot be the guest's volume: {detail}")]
    Volume { destination: String, detail: String },

    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl OciError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OciError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(what: impl Into<String>) -> Self {
        OciError::Sys {
            what: what.into(),
            source: std::io::Error::last_os_error(),
        }
    }
}
