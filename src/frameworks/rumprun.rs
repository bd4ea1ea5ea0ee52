//! Rumprun (NetBSD rump kernels): solo5 hvt/spt, or the hw platform on qemu. Data is an ext2 block image the guest mounts at /data; rumprun has no initrd.

use super::{Framework, Support};
use crate::platform::{Arch, BlockFs, Monitor, RootfsType};

pub struct Rumprun;

impl Framework for Rumprun {
    fn name(&self) -> &str {
        "rumprun"
    }
    fn unikernel_type(&self) -> &str {
        "rumprun"
    }
    fn support(&self) -> Support {
        Support {
            monitors: &[Monitor::Hvt, Monitor::Spt, Monitor::Qemu],
            architectures: &[Arch::Amd64, Arch::Arm64],
            rootfs_types: &[RootfsType::Block, RootfsType::Raw],
        }
    }
    fn default_rootfs_type(&self) -> RootfsType {
        RootfsType::Block
    }
    fn block_fs(&self) -> BlockFs {
        BlockFs::Ext2
    }
    fn block_mount_point(&self) -> &str {
        "/data"
    }
}
