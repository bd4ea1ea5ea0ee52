//! The shared vocabulary of targets: monitors, architectures, rootfs types and
//! block filesystems. Every stage speaks these types instead of strings.

use std::fmt;

/// A virtual machine monitor urunc knows how to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Monitor {
    Qemu,
    Firecracker,
    Hvt,
    Spt,
    CloudHypervisor,
    /// urunc's hedge, which starts guests through a kernel module.
    Hedge,
}

impl Monitor {
    pub const ALL: &'static [Monitor] = &[
        Monitor::Qemu,
        Monitor::Firecracker,
        Monitor::Hvt,
        Monitor::Spt,
        Monitor::CloudHypervisor,
        Monitor::Hedge,
    ];

    /// The value of `com.urunc.unikernel.hypervisor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Monitor::Qemu => "qemu",
            Monitor::Firecracker => "firecracker",
            Monitor::Hvt => "hvt",
            Monitor::Spt => "spt",
            Monitor::CloudHypervisor => "cloud-hypervisor",
            Monitor::Hedge => "hedge",
        }
    }

    pub fn parse(s: &str) -> Option<Monitor> {
        Monitor::ALL.iter().copied().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CPU architecture, normalised to OCI's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: &'static [Arch] = &[Arch::Amd64, Arch::Arm64];

    /// OCI's name (`amd64`, `arm64`).
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// Accepts the spellings users write (x86, x86_64, amd64, arm64, aarch64).
    pub fn parse(s: &str) -> Option<Arch> {
        match s.to_ascii_lowercase().as_str() {
            "x86" | "x86_64" | "x86-64" | "amd64" => Some(Arch::Amd64),
            "arm64" | "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }

    /// The architecture bunny itself runs on; unknown hosts fall back to amd64.
    pub fn host() -> Arch {
        match std::env::consts::ARCH {
            "aarch64" => Arch::Arm64,
            _ => Arch::Amd64,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the guest gets its root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RootfsType {
    Initrd,
    Block,
    Raw,
}

impl RootfsType {
    pub const ALL: &'static [RootfsType] =
        &[RootfsType::Initrd, RootfsType::Block, RootfsType::Raw];

    pub fn as_str(self) -> &'static str {
        match self {
            RootfsType::Initrd => "initrd",
            RootfsType::Block => "block",
            RootfsType::Raw => "raw",
        }
    }

    pub fn parse(s: &str) -> Option<RootfsType> {
        RootfsType::ALL.iter().copied().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for RootfsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The filesystem written into a block rootfs image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockFs {
    Ext2,
    Ext4,
    Ufs2,
}

impl BlockFs {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockFs::Ext2 => "ext2",
            BlockFs::Ext4 => "ext4",
            BlockFs::Ufs2 => "ufs2",
        }
    }
}

impl fmt::Display for BlockFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Joins values as "`a`, `b` or `c`" for error messages that list the choices.
pub fn one_of<T: fmt::Display>(values: &[T]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_spellings_normalise() {
        for s in ["x86", "x86_64", "AMD64", "amd64"] {
            assert_eq!(Arch::parse(s), Some(Arch::Amd64), "{s}");
        }
        for s in ["arm64", "aarch64"] {
            assert_eq!(Arch::parse(s), Some(Arch::Arm64), "{s}");
        }
        assert_eq!(Arch::parse("riscv64"), None);
    }

    #[test]
    fn one_of_lists_choices() {
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
        assert_eq!(one_of(&["a"]), "`a`");
    }
}
