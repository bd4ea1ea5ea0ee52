//! Image assembly, urunc annotations, outputs and (issue 4) registries.

pub mod annotations;
pub mod error;
pub mod image;
pub mod inspect;
pub mod layer;
pub mod output;
pub mod registry;

pub use error::OciError;
