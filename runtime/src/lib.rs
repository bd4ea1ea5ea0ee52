//! bunny's runtime: boots images that follow urunc's contract.
//!
//! Booting (`bunny run`, issue 5) and the runc-compatible binary (issue 6)
//! land here; until then the library only says so.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("{what} is not implemented yet (tracked as issue {issue}); nothing was started")]
    NotImplemented { what: &'static str, issue: u32 },
}
