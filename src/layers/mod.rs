//! Dependency layers, rootfs writers and the content-addressed store.
pub mod store;
