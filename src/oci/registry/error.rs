//! Errors of talking to a registry. Every message says what happened and
//! what to do about it; none ever carries a password or token (requests
//! never put secrets in URLs, and bodies quoted here are the registry's own
//! error text).

use std::io;
use std::path::PathBuf;

use crate::layers::store::StoreError;
use crate::oci::OciError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error("invalid image reference `{reference}`: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error(
        "registry {host} refused access to `{repository}` (401 Unauthorized){detail}: run `bunny login {host}` and try again"
    )]
    Unauthorized {
        host: String,
        repository: String,
        detail: String,
    },
    #[error(
        "registry {host} denied access to `{repository}` (403 Forbidden): the account in use lacks permission for this repository; log in as a user who has it (`bunny login {host}`)"
    )]
    Forbidden { host: String, repository: String },
    #[error("registry {host} has no {what} (404 Not Found): check the name and tag")]
    NotFound { host: String, what: String },
    #[error("registry {host} failed ({status}) on {operation}: {message}; the problem is on the registry's side, retry later or ask its operator")]
    Server {
        host: String,
        status: u16,
        operation: String,
        message: String,
    },
    #[error("registry {host} answered {status} on {operation}: {message}")]
    Rejected {
        host: String,
        status: u16,
        operation: String,
        message: String,
    },
    #[error("timed out talking to registry {host} ({operation}); check the network or that the registry is up, then retry")]
    Timeout { host: String, operation: String },
    #[error("TLS connection to registry {host} failed: {detail}; {ca}")]
    Tls {
        host: String,
        detail: String,
        /// Which CA files were tried, already phrased for the message.
        ca: String,
    },
    #[error("cannot connect to registry {host}: {detail}; check the host and port, and that the registry is running")]
    Connect { host: String, detail: String },
    #[error("registry {host}: {message}")]
    Protocol { host: String, message: String },
    #[error("blob {expected} from registry {host} has the wrong content (it hashes to {actual}); nothing was stored, retry the pull")]
    DigestMismatch {
        host: String,
        expected: String,
        actual: String,
    },
    #[error("{reference} has no image for platform {wanted}; its index has {available}")]
    NoPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("login to {host} failed: the registry rejected the user name or password (401 Unauthorized)")]
    LoginRejected { host: String },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("docker config {path}: {message}")]
    DockerConfig { path: PathBuf, message: String },
    #[error("credential helper docker-credential-{helper} failed to {action} credentials for {host}: {message}")]
    CredentialHelper {
        helper: String,
        action: &'static str,
        host: String,
        message: String,
    },
    #[error("cannot start the async runtime for registry I/O: {0}")]
    Runtime(#[source] io::Error),
}

pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> RegistryError {
    let path = path.into();
    move |source| RegistryError::Io {
        action,
        path,
        source,
    }
}

pub(crate) use crate::error_chain as chain_text;

/// The registry's error body, shortened: a 5xx page can be large HTML.
pub(crate) fn short_body(body: &str) -> String {
    let body = body.trim();
    let text = if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        v.get("errors")
            .and_then(|e| e.as_array())
            .map(|errs| {
                errs.iter()
                    .map(|e| {
                        let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                        let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                        format!("{code}: {msg}")
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_else(|| body.to_string())
    } else {
        body.to_string()
    };
    let mut text: String = text.chars().filter(|c| !c.is_control()).collect();
    if text.chars().count() > 500 {
        text = text.chars().take(500).collect::<String>() + "...";
    }
    if text.is_empty() {
        "(empty response body)".to_string()
    } else {
        text
    }
}
