use bunny::bunnyfile::{BunnyFileError, Pos};
use bunny::containerfile::ContainerfileError;
use bunny::pipeline::PipelineError;

/// gRPC status codes, as BuildKit passes them on to `buildctl` and docker.
pub mod code {
    pub const UNKNOWN: i32 = 2;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const NOT_FOUND: i32 = 5;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
}

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
    Pack {
        file: String,
        message: String,
        /// Its gRPC code, from the failure's chain.
        code: i32,
    },
    /// The pack step's own report of its failure.
    #[error("{}", .failure.message)]
    PackFailed {
        file: String,
        failure: crate::pack::PackFailure,
    },
    #[error("{what}: {why}")]
    Needs { what: String, why: String },
    /// A path the build file names is not in the build context.
    #[error("{file}:{}:{}: error: {what} `{path}` is not in the build context", pos.line, pos.col)]
    Missing {
        file: String,
        pos: Pos,
        what: &'static str,
        path: String,
    },
    /// An image the build file names does not exist.
    #[error("{file}:{}:{}: error: image `{reference}` not found: {message}", pos.line, pos.col)]
    MissingImage {
        file: String,
        pos: Pos,
        reference: String,
        message: String,
    },
    /// The build file itself is not where BuildKit was told to look.
    // The status is not a `#[source]`: its Display repeats the message.
    #[error("cannot read the build file `{file}`: {}", .status.message())]
    NoBuildFile {
        file: String,
        status: Box<tonic::Status>,
    },
    #[error("{path}: {message}")]
    BadLock { path: String, message: String },
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to BuildKit over stdin/stdout")]
    Connect(#[source] tonic::transport::Error),
    /// A solve's failure is BuildKit's own words, as the Dockerfile
    /// frontend passes them on; other calls say which call failed.
    #[error("{}", gateway_message(call, status))]
    Gateway {
        call: &'static str,
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

fn gateway_message(call: &str, status: &tonic::Status) -> String {
    match call {
        "Solve" | "ReadFile" | "StatFile" => status.message().to_string(),
        _ => format!("BuildKit's {call} call failed: {}", status.message()),
    }
}

impl FrontendError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FrontendError {
        let context = context.into();
        move |source| FrontendError::Io { context, source }
    }

    /// The gRPC code the build fails with. As BuildKit's own frontends: the
    /// user's file or options at fault is InvalidArgument, something it
    /// names that is not there NotFound, and a failed solve keeps the code
    /// BuildKit gave it (a failed step is Unknown there).
    pub fn code(&self) -> i32 {
        match self {
            FrontendError::BunnyFile(_)
            | FrontendError::Containerfile(_)
            | FrontendError::Needs { .. }
            | FrontendError::BadLock { .. }
            | FrontendError::BadPath { .. } => code::INVALID_ARGUMENT,
            FrontendError::Missing { .. }
            | FrontendError::MissingImage { .. }
            | FrontendError::NoBuildFile { .. } => code::NOT_FOUND,
            FrontendError::Plan(PipelineError::Unsupported { .. }) => code::INVALID_ARGUMENT,
            FrontendError::Pack { code, .. } => *code,
            FrontendError::Plan(_) | FrontendError::Io { .. } => code::UNKNOWN,
            FrontendError::Connect(_) => code::UNAVAILABLE,
            FrontendError::Gateway { status, .. } => match status.code() as i32 {
                0 => code::UNKNOWN,
                c => c,
            },
            FrontendError::Protocol { .. } => code::INTERNAL,
            FrontendError::PackFailed { failure, .. } => failure.code,
        }
    }

    /// Where in the build file the error is (1-based line and column): the
    /// first error diagnostic, or the path a missing file was named at.
    pub fn position(&self) -> Option<Pos> {
        use bunny::bunnyfile::Severity;
        let first = |d: &[bunny::bunnyfile::Diagnostic]| {
            d.iter()
                .find(|d| d.severity == Severity::Error)
                .or(d.first())
                .map(|d| d.pos)
        };
        match self {
            FrontendError::BunnyFile(e) => first(e.diagnostics()),
            FrontendError::Containerfile(e) => first(e.diagnostics()),
            FrontendError::Missing { pos, .. } | FrontendError::MissingImage { pos, .. } => {
                Some(*pos)
            }
            FrontendError::PackFailed { failure, .. } => {
                failure.line.map(|line| Pos { line, col: 1 })
            }
            _ => None,
        }
    }

    /// The failed call's status, whose details (BuildKit's typed errors:
    /// the failed vertex, its logs, an exit code) go back with the error.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            FrontendError::Gateway { status, .. } | FrontendError::NoBuildFile { status, .. } => {
                Some(status)
            }
            _ => None,
        }
    }
}
