//! BunnyFile parsing and validation (format v0.1 of the Go bunny, extended).

pub mod model;

pub use model::*;
