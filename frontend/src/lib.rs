//! bunny as a BuildKit frontend.
//!
//! - [`translate`]: a build file (BunnyFile or Containerfile) -> LLB: sources,
//!   one exec op per toolchain step, and the pack op.
//! - [`pack`]: the pack op's side: bunny's own build inside BuildKit.
//! - [`llb`]: the LLB graph builder.
//! - [`gateway`]: BuildKit's `LLBBridge` gRPC, spoken over stdin/stdout of the
//!   frontend container, and the frontend's run loop.
//! - [`image`]: assembles the frontend's own FROM-scratch image in bunny's store.

pub mod error;
pub mod gateway;
pub mod image;
pub mod llb;
pub mod pack;
pub mod proto;
pub mod translate;

pub use error::FrontendError;
