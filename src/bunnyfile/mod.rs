//! BunnyFile parsing and validation (format v0.1 of the Go bunny, extended).
//!
//! [`parse`] and [`load`] turn a BunnyFile into the typed [`BunnyFile`] or a
//! list of [`Diagnostic`]s, each with the line and column it is about and, for
//! errors, what to write instead. The format is documented in
//! `docs/bunnyfile.md`.

pub mod model;
pub mod spec;
mod validate;
mod yaml;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use model::*;

/// The newest BunnyFile format version this bunny reads.
pub const SUPPORTED_VERSION: &str = "0.1";

/// Largest BunnyFile accepted, in bytes: real ones are well under 10 KiB, and
/// the cap keeps hostile input from costing time or memory.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

pub use yaml::{MAX_DEPTH, MAX_EXPANDED_BYTES, MAX_NODES};

/// A parsed and validated BunnyFile, with the warnings it raised.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub bunnyfile: BunnyFile,
    pub warnings: Vec<Diagnostic>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding about a BunnyFile, pointing at where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Pos,
    pub message: String,
    /// What to write instead.
    pub help: Option<String>,
    pub severity: Severity,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.pos.line, self.pos.col, self.severity, self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Diagnostics printed one after another, for [`BunnyFileError::Invalid`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics<'a>(pub &'a [Diagnostic]);

impl fmt::Display for Diagnostics<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BunnyFileError {
    #[error("cannot read BunnyFile {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every error found (at least one), and any warnings, in file order.
    #[error("{}", Diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
}

impl BunnyFileError {
    /// The diagnostics of an `Invalid` error; empty for I/O errors.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            BunnyFileError::Invalid(d) => d,
            BunnyFileError::Io { .. } => &[],
        }
    }
}

/// Parses and validates a BunnyFile held in memory. `file_name` is only used
/// in diagnostics.
pub fn parse(file_name: &str, text: &str) -> Result<Parsed, BunnyFileError> {
    validate::parse_text(file_name, text)
}

/// Like [`parse`], for bytes that may not be UTF-8 (a bad byte is reported
/// with its position).
pub fn parse_bytes(file_name: &str, bytes: &[u8]) -> Result<Parsed, BunnyFileError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(too_large(file_name, bytes.len() as u64));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(file_name, text),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            // The prefix is valid UTF-8 by construction; fall back to 1:1 if not.
            let pos = std::str::from_utf8(good)
                .map(validate::end_pos)
                .unwrap_or(Pos { line: 1, col: 1 });
            Err(BunnyFileError::Invalid(vec![Diagnostic {
                file: file_name.to_string(),
                pos,
                message: "the file is not valid UTF-8".into(),
                help: Some("save the BunnyFile as UTF-8 text".into()),
                severity: Severity::Error,
            }]))
        }
    }
}

/// Reads and parses the BunnyFile at `path`; diagnostics name the path.
pub fn load(path: &Path) -> Result<Parsed, BunnyFileError> {
    let io = |source| BunnyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    // Read one byte past the cap so an oversized file is detected without
    // reading all of it.
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let name = path.display().to_string();
    if bytes.len() > MAX_FILE_BYTES {
        let size = std::fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(bytes.len() as u64);
        return Err(too_large(&name, size));
    }
    parse_bytes(&name, &bytes)
}

fn too_large(file_name: &str, size: u64) -> BunnyFileError {
    BunnyFileError::Invalid(vec![Diagnostic {
        file: file_name.to_string(),
        pos: Pos { line: 1, col: 1 },
        message: format!(
            "the file is {size} bytes; a BunnyFile may be at most {MAX_FILE_BYTES} bytes"
        ),
        help: Some("is this the right file? BunnyFiles are short YAML files".into()),
        severity: Severity::Error,
    }])
}
