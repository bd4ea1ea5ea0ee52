//! Errors of the rootfs writers; each names the path, entry or command at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("{action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("writing {what}: {source}")]
    Output {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("destination `{path}` climbs above the rootfs root with `..`")]
    EscapesRoot { path: String },

    #[error("invalid destination `{path}`: {reason}")]
    InvalidDestination { path: String, reason: &'static str },

    #[error("include `{entry}` {reason}")]
    OutsideContext { entry: String, reason: String },

    #[error("include `{entry}`: symlink `{}` -> `{target}` points outside the build context", link.display())]
    SymlinkEscape {
        entry: String,
        link: PathBuf,
        target: String,
    },

    #[error("include `{entry}`: `{}` is a {kind}; only files, directories and symlinks can go into a rootfs", path.display())]
    UnsupportedFileType {
        entry: String,
        path: PathBuf,
        kind: &'static str,
    },

    #[error("`{}` is not a regular file", path.display())]
    NotAFile { path: PathBuf },

    #[error("file name `{}` is not valid UTF-8", path.display())]
    NonUtf8Path { path: PathBuf },

    #[error("`{path}` conflicts with an existing entry: {reason}")]
    Conflict { path: String, reason: &'static str },

    #[error(
        "`{path}` is {size} bytes; the initrd (cpio newc) format stores files below 4 GiB only"
    )]
    FileTooLarge { path: String, size: u64 },

    #[error("`{}` changed while being read: expected {expected} bytes, got {actual}", path.display())]
    FileChanged {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },

    #[error("mtime {mtime} does not fit the {format} format (at most {max})")]
    MtimeOutOfRange {
        mtime: u64,
        format: &'static str,
        max: u64,
    },

    #[error("invalid label `{label}`: {reason}")]
    InvalidLabel { label: String, reason: String },

    #[error("`{path}` cannot be written into a {fs} image: {reason}")]
    UnsupportedName {
        path: String,
        fs: &'static str,
        reason: &'static str,
    },

    #[error(
        "`{tool}` not found; install the Debian package `{package}` (or run scripts/setup.sh)"
    )]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },

    #[error("`{command}` failed ({status}): {stderr}")]
    ToolFailed {
        command: String,
        status: String,
        stderr: String,
    },

    #[error("`{}` is not the image expected: {reason}", path.display())]
    BadImage { path: PathBuf, reason: String },
}

impl LayerError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        LayerError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
