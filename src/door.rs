//! Which front door a build file goes through. `bunny build` and the
//! BuildKit frontend read both formats and pick by content, not by file
//! name; each door then turns its file into the one build model
//! ([`crate::model::Spec`]), so neither parser needs to know the other.

/// The kinds of build file bunny reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    BunnyFile,
    Containerfile,
}

/// Tells the formats apart by content: a Containerfile's first line that is
/// neither empty nor a comment starts with a Dockerfile instruction (`FROM`,
/// `ARG`, ...).
pub fn detect_format(bytes: &[u8]) -> Format {
    if crate::containerfile::is_containerfile(&String::from_utf8_lossy(bytes)) {
        Format::Containerfile
    } else {
        Format::BunnyFile
    }
}
