use bunny::bunnyfile::BunnyFileError;
use bunny::containerfile::ContainerfileError;
use bunny::pipeline::PipelineError;

#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// The file's own diagnostics (`file:line:col: error: ...`).
    #[error("{0}")]
    BunnyFile(#[from] BunnyFileError),
    /// A Containerfile's diagnostics, as for BunnyFiles.
    #[error("{0}")]
    Containerfile(#[from] ContainerfileError),
    #[error(transparent)]
    Plan(#[from] PipelineError),
    /// The pack step (bunny's build inside BuildKit) failed.
    #[error("{file}: {message}")]
    Pack { file: String, message: String },
    #[error("{what}: {why}")]
    Needs { what: String, why: String },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to BuildKit over stdin/stdout")]
    Connect(#[source] tonic::transport::Error),
    #[error("BuildKit's {call} call failed: {}", .status.message())]
    Gateway {
        call: &'static str,
        #[source]
        status: Box<tonic::Status>,
    },
    #[error("BuildKit answered {call} without {missing}")]
    Protocol {
        call: &'static str,
        missing: &'static str,
    },
    #[error("{path}: {why}")]
    BadPath { path: String, why: &'static str },
}

impl FrontendError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FrontendError {
        let context = context.into();
        move |source| FrontendError::Io { context, source }
    }
}
