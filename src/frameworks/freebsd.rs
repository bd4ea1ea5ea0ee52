//! FreeBSD single-application kernels booted by PVH: a UFS2 root disk, never an initrd.

use super::{AppInfo, Framework, FrameworkError, LayerDep, StepSpec, Support};
use crate::platform::{Arch, BlockFs, Monitor, RootfsType};

pub struct FreeBsd;

impl Framework for FreeBsd {
    fn name(&self) -> &str {
        "freebsd"
    }
    fn unikernel_type(&self) -> &str {
        "freebsd"
    }
    fn support(&self) -> Support {
        Support {
            monitors: &[Monitor::Qemu, Monitor::Firecracker],
            architectures: &[Arch::Amd64, Arch::Arm64],
            rootfs_types: &[RootfsType::Block, RootfsType::Raw],
        }
    }
    fn default_rootfs_type(&self) -> RootfsType {
        RootfsType::Block
    }
    fn block_fs(&self) -> BlockFs {
        BlockFs::Ufs2
    }
    fn block_mount_point(&self) -> &str {
        "/"
    }

    // Issue 9: the toolchain that builds freebsd apps; its steps go in
    // `app_steps` and `package_app`, the executor is shared.
    fn layers(&self) -> &'static [LayerDep] {
        &[LayerDep {
            name: "toolchain",
            reference: "bunny/freebsd-toolchain:14.1",
        }]
    }
    fn app_steps(&self, _app: &AppInfo) -> Result<Vec<StepSpec>, FrameworkError> {
        Err(FrameworkError::Unsupported {
            framework: "freebsd".into(),
            what: "build an `app` from source",
            issue: Some(9),
        })
    }
}
