//! Dependency layers, rootfs writers and the content-addressed store.
//!
//! [`tree::Tree`] collects the files that go into a guest rootfs;
//! [`initrd::write_initrd`] and [`block::build_block`] turn it into an initrd
//! or a block image, byte-identical for the same inputs; [`store::Store`]
//! keeps blobs by digest; [`unpack`] unpacks layers without escaping.

pub mod block;
pub mod error;
pub mod image_fs;
pub mod initrd;
pub mod layout;
pub mod store;
pub mod tree;
pub mod ufs;
pub mod unpack;

pub use block::{build_block, BlockOptions};
pub use error::LayerError;
pub use initrd::{write_initrd, InitrdOptions};
pub use tree::{Entry, EntryKind, Tree};
