//! Frameworks bunny does not know: packaged as given, every combination allowed,
//! as the Go bunny does.

use super::{Framework, Support};
use crate::platform::{Arch, BlockFs, Monitor, RootfsType};

pub struct Generic {
    name: String,
}

/// Guests urunc boots that bunny packages as given, with nothing of its own
/// to add: known names, so no "unknown framework" warning.
pub const URUNC_GUESTS: &[&str] = &["mewz", "hermit", "includeos", "osv"];

impl Generic {
    pub fn new(name: &str) -> Generic {
        Generic {
            name: name.to_string(),
        }
    }
}

impl Framework for Generic {
    fn name(&self) -> &str {
        &self.name
    }
    fn unikernel_type(&self) -> &str {
        &self.name
    }
    fn support(&self) -> Support {
        Support {
            monitors: Monitor::ALL,
            architectures: Arch::ALL,
            rootfs_types: RootfsType::ALL,
        }
    }
    fn block_fs(&self) -> BlockFs {
        BlockFs::Ext2
    }
    fn block_mount_point(&self) -> &str {
        "/"
    }
    fn is_known(&self) -> bool {
        URUNC_GUESTS.contains(&self.name.as_str())
    }
}
