//! Frameworks: what each unikernel framework supports and how it is packaged.
//!
//! Validation reads [`Framework::support`] so that a framework x monitor x
//! rootfs combination urunc cannot boot is refused before anything is built.
//! Build steps and dependency layers (issue 7) plug in behind the same trait.

mod freebsd;
mod generic;
mod linux;
mod mirage;
mod rumprun;
mod unikraft;

pub use generic::Generic;

use crate::platform::{Arch, BlockFs, Monitor, RootfsType};

/// What a framework can boot, as urunc's contract allows it.
#[derive(Debug, Clone, Copy)]
pub struct Support {
    pub monitors: &'static [Monitor],
    pub architectures: &'static [Arch],
    pub rootfs_types: &'static [RootfsType],
}

/// One unikernel framework.
pub trait Framework: Send + Sync {
    /// The name written in `platforms.framework`.
    fn name(&self) -> &str;

    /// The value of `com.urunc.unikernel.unikernelType`.
    fn unikernel_type(&self) -> &str;

    fn support(&self) -> Support;

    /// The rootfs type used when the BunnyFile names none but has content.
    fn default_rootfs_type(&self) -> RootfsType;

    /// The filesystem a `block` rootfs is written in.
    fn block_fs(&self) -> BlockFs;

    /// Where the guest mounts a `block` rootfs (`blkMntPoint`).
    fn block_mount_point(&self) -> &str;

    /// False for frameworks bunny only packages generically.
    fn is_known(&self) -> bool {
        true
    }
}

static KNOWN: &[&dyn Framework] = &[
    &linux::Linux,
    &rumprun::Rumprun,
    &freebsd::FreeBsd,
    &unikraft::Unikraft,
    &mirage::Mirage,
];

/// The frameworks bunny knows by name.
pub fn known() -> &'static [&'static dyn Framework] {
    KNOWN
}

/// Resolves a framework name; unknown names get the generic packager, as the
/// Go bunny does (callers warn).
pub fn resolve(name: &str) -> Box<dyn Framework> {
    match KNOWN.iter().find(|f| f.name() == name) {
        Some(f) => Box::new(Known(*f)),
        None => Box::new(Generic::new(name)),
    }
}

struct Known(&'static dyn Framework);

impl Framework for Known {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn unikernel_type(&self) -> &str {
        self.0.unikernel_type()
    }
    fn support(&self) -> Support {
        self.0.support()
    }
    fn default_rootfs_type(&self) -> RootfsType {
        self.0.default_rootfs_type()
    }
    fn block_fs(&self) -> BlockFs {
        self.0.block_fs()
    }
    fn block_mount_point(&self) -> &str {
        self.0.block_mount_point()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_rules_hold() {
        let fb = resolve("freebsd");
        assert!(!fb.support().rootfs_types.contains(&RootfsType::Initrd));
        assert_eq!(fb.block_fs(), BlockFs::Ufs2);
        assert_eq!(fb.block_mount_point(), "/");

        let uk = resolve("unikraft");
        assert!(!uk.support().rootfs_types.contains(&RootfsType::Block));

        let rr = resolve("rumprun");
        assert_eq!(rr.block_fs(), BlockFs::Ext2);
        assert_eq!(rr.block_mount_point(), "/data");
        assert!(!rr.support().monitors.contains(&Monitor::Firecracker));

        let lx = resolve("linux");
        assert_eq!(lx.block_fs(), BlockFs::Ext4);
        assert!(!lx.support().monitors.contains(&Monitor::Hvt));
    }

    #[test]
    fn unknown_frameworks_are_generic() {
        let f = resolve("osv");
        assert!(!f.is_known());
        assert_eq!(f.unikernel_type(), "osv");
        assert_eq!(f.support().monitors, Monitor::ALL);
    }
}
