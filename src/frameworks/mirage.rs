//! MirageOS on solo5 or qemu: block storage only.

use super::{Framework, Support};
use crate::platform::{Arch, BlockFs, Monitor, RootfsType};

pub struct Mirage;

impl Framework for Mirage {
    fn name(&self) -> &str {
        "mirage"
    }
    fn unikernel_type(&self) -> &str {
        "mirage"
    }
    fn support(&self) -> Support {
        Support {
            monitors: &[Monitor::Hvt, Monitor::Spt, Monitor::Qemu],
            architectures: &[Arch::Amd64, Arch::Arm64],
            rootfs_types: &[RootfsType::Block, RootfsType::Raw],
        }
    }
    fn block_fs(&self) -> BlockFs {
        BlockFs::Ext2
    }
    fn block_mount_point(&self) -> &str {
        // Go bunny gives every framework but rumprun `/` (the block image
        // is the guest's root); a mirage image must mean the same to urunc.
        "/"
    }
}
