//! Image assembly, urunc annotations, outputs and registries.

pub mod annotations;
pub mod attest;
pub mod dir_image;
pub mod error;
pub mod image;
pub mod inspect;
pub mod layer;
pub mod output;
pub mod registry;

pub use error::OciError;
