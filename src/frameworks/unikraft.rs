//! Unikraft: initrd or 9p (raw); urunc gives it no block device.

use super::{Framework, Support};
use crate::platform::{Arch, BlockFs, Monitor, RootfsType};

pub struct Unikraft;

impl Framework for Unikraft {
    fn name(&self) -> &str {
        "unikraft"
    }
    fn unikernel_type(&self) -> &str {
        "unikraft"
    }
    fn support(&self) -> Support {
        Support {
            monitors: &[Monitor::Qemu, Monitor::Firecracker],
            architectures: &[Arch::Amd64, Arch::Arm64],
            rootfs_types: &[RootfsType::Initrd, RootfsType::Raw],
        }
    }
    fn default_rootfs_type(&self) -> RootfsType {
        RootfsType::Initrd
    }
    fn block_fs(&self) -> BlockFs {
        BlockFs::Ext2
    }
    fn block_mount_point(&self) -> &str {
        "/"
    }
}
