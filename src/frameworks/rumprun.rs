//! Rumprun (NetBSD rump kernels): solo5 hvt/spt, or the hw platform on qemu. Data is an ext2 block image the guest mounts at /data; rumprun has no initrd.

use super::{AppInfo, Framework, FrameworkError, LayerDep, StepSpec, Support};
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

    // Issue 8: the toolchain that builds rumprun apps; its steps go in
    // `app_steps` and `package_app`, the executor is shared.
    fn layers(&self) -> &'static [LayerDep] {
        &[LayerDep {
            name: "toolchain",
            reference: "bunny/rumprun-toolchain:netbsd-9-gcc10",
        }]
    }
    fn app_steps(&self, _app: &AppInfo) -> Result<Vec<StepSpec>, FrameworkError> {
        Err(FrameworkError::Unsupported {
            framework: "rumprun".into(),
            what: "build an `app` from source",
            issue: Some(8),
        })
    }
}
