//! bunny's runtime: boots images that follow urunc's contract.
//!
//! [`read_config`] finds urunc's settings for an unpacked image,
//! [`monitor_command`] turns a [`RunSpec`] into the exact monitor command
//! line urunc would use, and [`boot`] runs it with the console on stdout.

mod accel;
mod boot;
mod cmdline;
mod config;
mod error;
mod hostnet;
mod monitor;
mod paths;
pub mod seccomp;
mod solo5;
mod spec;
mod timestamps;
pub mod volume_image;

pub mod oci;

pub use accel::{cached_probe, probe_kvm, resolve_accel, Accel, KvmProbe, ResolvedAccel};
pub use boot::{
    boot, boot_notify, boot_with_console, ensure_tap, final_status, prepare_monitor,
    supervise_monitor, Launch, PreparedMonitor, GUEST_CRASHED,
};
pub use config::{
    read_config, Hypervisor, UnikernelConfig, UnikernelType, ANNOT_BINARY, ANNOT_BLK_MNT_POINT,
    ANNOT_BLOCK, ANNOT_CMDLINE, ANNOT_HYPERVISOR, ANNOT_INITRD, ANNOT_MOUNT_ROOTFS, ANNOT_TYPE,
    ANNOT_VERSION, URUNC_JSON,
};
pub use error::RuntimeError;
pub use hostnet::HostNet;
pub use monitor::{
    freebsd_bus, monitor_command, volume_serial, DerivedFile, FreeBsdBus, MonitorCommand,
};
pub use paths::resolve_in_rootfs;
pub use solo5::{read_abi as read_solo5_abi, Solo5Abi};
pub use spec::{
    parse_publish, NetSpec, PortForward, RunSpec, Volume, DEFAULT_MEMORY_MB, USER_NET_GATEWAY,
    USER_NET_GUEST_IP, USER_NET_MASK,
};
pub use timestamps::timestamp;
