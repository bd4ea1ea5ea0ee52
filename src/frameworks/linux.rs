//! Single-application Linux guests: initrd, ext4 block or the container rootfs.

use super::{Framework, Support};
use crate::platform::{Arch, BlockFs, Monitor, RootfsType};

pub struct Linux;

impl Framework for Linux {
    fn name(&self) -> &str {
        "linux"
    }
    fn unikernel_type(&self) -> &str {
        "linux"
    }
    fn support(&self) -> Support {
        Support {
            monitors: &[
                Monitor::Qemu,
                Monitor::Firecracker,
                Monitor::CloudHypervisor,
            ],
            architectures: &[Arch::Amd64, Arch::Arm64],
            rootfs_types: &[RootfsType::Initrd, RootfsType::Block, RootfsType::Raw],
        }
    }
    fn default_rootfs_type(&self) -> RootfsType {
        RootfsType::Initrd
    }
    fn block_fs(&self) -> BlockFs {
        BlockFs::Ext4
    }
    fn block_mount_point(&self) -> &str {
        "/"
    }
}
