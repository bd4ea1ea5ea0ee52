//! Errors of image assembly, export and inspection.

use std::io;
use std::path::PathBuf;

use crate::layers::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("urunc settings lack the required key `{0}`")]
    MissingAnnotation(String),
    #[error("urunc key `{key}` is not valid standard base64 of UTF-8 text")]
    InvalidBase64 { key: String },
    #[error("urunc key `{key}` has value `{value}`, expected `true` or `false`")]
    InvalidBool { key: String, value: String },
    #[error("urunc.json is not a flat JSON object of strings: {0}")]
    InvalidUruncJson(#[source] serde_json::Error),
    #[error("invalid path `{path}` for a layer entry: {reason}")]
    InvalidEntryPath { path: String, reason: &'static str },
    #[error("layer entry `{0}` appears twice")]
    DuplicateEntry(String),
    #[error(
        "a layer's input files changed while it was written (expected {diff_id}); build again"
    )]
    LayerInputsChanged { diff_id: String },
    #[error("{path} changed while it was being added to a layer (expected {expected} bytes)")]
    FileChanged { path: PathBuf, expected: u64 },
    #[error("invalid image reference `{reference}`: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("{what} is not valid JSON: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid OCI data ({what}): {message}")]
    Spec { what: String, message: String },
    #[error("unsupported layer media type `{0}`")]
    UnsupportedMediaType(String),
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{0}: the name is not UTF-8")]
    NonUtf8Path(PathBuf),
    #[error("{path} is a {kind}, which a layer cannot carry")]
    UnsupportedFileType { path: PathBuf, kind: &'static str },
}

impl OciError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> OciError {
        let path = path.into();
        move |source| OciError::Io {
            action,
            path,
            source,
        }
    }
}
