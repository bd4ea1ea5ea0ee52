//! What to run: the unpacked image plus the user's run options.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::accel::Accel;
use crate::config::{Hypervisor, UnikernelConfig};
use crate::RuntimeError;

/// urunc's default when the spec sets no memory limit.
pub const DEFAULT_MEMORY_MB: u64 = 256;

/// The guest side of qemu's user networking (qemu's fixed defaults).
pub const USER_NET_GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
pub const USER_NET_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
pub const USER_NET_MASK: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 0);

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NetSpec {
    /// No guest NIC at all.
    #[default]
    None,
    /// qemu user-mode networking with host port forwards.
    User { forwards: Vec<PortForward> },
    /// An existing (or to-be-created) tap device; the guest gets `ip`.
    Tap {
        tap: String,
        ip: Ipv4Addr,
        mask: Ipv4Addr,
        gateway: Ipv4Addr,
        mac: String,
    },
}

impl NetSpec {
    /// The guest's address, mask and gateway, if it has a NIC.
    pub fn guest_addr(&self) -> Option<(Ipv4Addr, Ipv4Addr, Ipv4Addr)> {
        match self {
            NetSpec::None => None,
            NetSpec::User { .. } => Some((USER_NET_GUEST_IP, USER_NET_MASK, USER_NET_GATEWAY)),
            NetSpec::Tap {
                ip, mask, gateway, ..
            } => Some((*ip, *mask, *gateway)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortForward {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub guest_port: u16,
    pub udp: bool,
}

/// Parses a `docker run -p` style publication: `18080:80`,
/// `127.0.0.1:18080:80`, `53:53/udp` (a leading `-p ` is tolerated).
pub fn parse_publish(s: &str) -> Result<PortForward, RuntimeError> {
    let bad = |reason: &str| RuntimeError::BadPublish {
        value: s.to_string(),
        reason: reason.to_string(),
    };
    let mut body = s.trim();
    for prefix in ["--publish=", "--publish ", "-p=", "-p "] {
        if let Some(rest) = body.strip_prefix(prefix) {
            body = rest.trim();
            break;
        }
    }
    let (body, udp) = match body.rsplit_once('/') {
        Some((b, "udp")) => (b, true),
        Some((b, "tcp")) => (b, false),
        Some((_, proto)) => return Err(bad(&format!("unknown protocol {proto:?}"))),
        None => (body, false),
    };
    // An IPv6 address is written in brackets, as Docker wants it:
    // `[::1]:8080:80`; its colons are not separators.
    let (host_ip, ports) = match body.strip_prefix('[') {
        Some(rest) => {
            let (ip, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address needs its closing `]`"))?;
            let ip = ip
                .parse::<Ipv6Addr>()
                .map_err(|_| bad(&format!("{ip:?} is not an IPv6 address")))?;
            let ports = after
                .strip_prefix(':')
                .ok_or_else(|| bad("write [IPv6]:HOST_PORT:GUEST_PORT"))?;
            (Some(IpAddr::V6(ip)), ports)
        }
        None => match body.split(':').collect::<Vec<_>>().as_slice() {
            [_, _] => (None, body),
            [ip, _, _] => {
                let ip = if ip.is_empty() {
                    None
                } else {
                    Some(IpAddr::V4(ip.parse::<Ipv4Addr>().map_err(|_| {
                        bad(&format!(
                            "{ip:?} is not an IPv4 address (an IPv6 one goes in brackets)"
                        ))
                    })?))
                };
                (ip, body.split_once(':').map_or(body, |(_, p)| p))
            }
            [_] => return Err(bad("both a host port and a guest port are needed")),
            _ => return Err(bad("too many ':' (an IPv6 address goes in brackets)")),
        },
    };
    let (host_port, guest_port) = match ports.split(':').collect::<Vec<_>>().as_slice() {
        [h, g] => (*h, *g),
        [_] => return Err(bad("both a host port and a guest port are needed")),
        _ => return Err(bad("too many ':'")),
    };
    let port = |p: &str, which: &str| -> Result<u16, RuntimeError> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad(&format!("{which} port {p:?} is not in 1-65535"))),
            Ok(n) => Ok(n),
        }
    };
    Ok(PortForward {
        host_ip,
        host_port: port(host_port, "host")?,
        guest_port: port(guest_port, "guest")?,
        udp,
    })
}

/// A disk the user attaches to the guest (`bunny run -v`), which the
/// guest mounts at `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The disk image on the host.
    pub path: PathBuf,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The unpacked image; every path from the config is resolved inside it.
    pub rootfs: PathBuf,
    pub config: UnikernelConfig,
    /// The process args (entrypoint + cmd, or the user's override).
    pub args: Vec<String>,
    /// `K=V` entries.
    pub env: Vec<String>,
    pub memory_mb: u64,
    pub cpus: u32,
    pub net: NetSpec,
    pub accel: Accel,
    /// Overrides the image's monitor.
    pub monitor: Option<Hypervisor>,
    /// qemu only: use the microvm machine (FreeBSD always does).
    pub microvm: bool,
    /// Where side files (firecracker's config, urunit's config disk) go;
    /// beside the rootfs when unset, as in an OCI bundle.
    pub work_dir: Option<PathBuf>,
    /// The rootfs is shared by other runs (bunny's unpacked-image cache):
    /// qemu opens the image's disks with `snapshot=on`, so guest writes go to
    /// a throw-away overlay instead of the shared file.
    pub shared_image: bool,
    /// A network namespace (an open `/proc/.../ns/net` descriptor owned by
    /// the caller) the monitor runs in: where `bunny run` put the guest's tap.
    pub netns: Option<std::os::fd::RawFd>,
    /// A private copy (a host path) of the image's block file, handed to
    /// the monitor instead of the one in `rootfs`: for monitors that cannot
    /// overlay a shared disk the way qemu's `snapshot=on` does.
    pub block_copy: Option<PathBuf>,
    /// Extra disks, after the image's own.
    pub volumes: Vec<Volume>,
}

impl RunSpec {
    /// A spec with urunc's defaults: 256 MB, one vCPU, no NIC, automatic
    /// acceleration.
    pub fn new(rootfs: impl Into<PathBuf>, config: UnikernelConfig) -> RunSpec {
        RunSpec {
            rootfs: rootfs.into(),
            config,
            args: Vec::new(),
            env: Vec::new(),
            memory_mb: DEFAULT_MEMORY_MB,
            cpus: 1,
            net: NetSpec::None,
            accel: Accel::Auto,
            monitor: None,
            microvm: false,
            work_dir: None,
            shared_image: false,
            netns: None,
            block_copy: None,
            volumes: Vec::new(),
        }
    }

    /// The monitor that will run: the override, else the image's.
    pub fn hypervisor(&self) -> Hypervisor {
        self.monitor.unwrap_or(self.config.hypervisor)
    }

    /// argv of the guest's program: the process args, else the image's
    /// `cmdline` split on whitespace (as urunc does).
    pub fn guest_argv(&self) -> Vec<String> {
        if !self.args.is_empty() {
            return self.args.clone();
        }
        self.config
            .cmdline
            .as_deref()
            .map(|c| c.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(host_ip: Option<IpAddr>, h: u16, g: u16, udp: bool) -> PortForward {
        PortForward {
            host_ip,
            host_port: h,
            guest_port: g,
            udp,
        }
    }

    #[test]
    fn publish_forms() {
        assert_eq!(
            parse_publish("18080:80").unwrap(),
            fwd(None, 18080, 80, false)
        );
        assert_eq!(
            parse_publish("-p 18080:80").unwrap(),
            fwd(None, 18080, 80, false)
        );
        assert_eq!(
            parse_publish("127.0.0.1:18080:80").unwrap(),
            fwd(Some(Ipv4Addr::LOCALHOST.into()), 18080, 80, false)
        );
        assert_eq!(
            parse_publish("[::1]:8080:80").unwrap(),
            fwd(Some(Ipv6Addr::LOCALHOST.into()), 8080, 80, false)
        );
        assert_eq!(
            parse_publish("[::]:53:53/udp").unwrap(),
            fwd(Some(Ipv6Addr::UNSPECIFIED.into()), 53, 53, true)
        );
        assert_eq!(parse_publish("53:53/udp").unwrap(), fwd(None, 53, 53, true));
        assert_eq!(
            parse_publish("8080:80/tcp").unwrap(),
            fwd(None, 8080, 80, false)
        );
        assert_eq!(
            parse_publish(":8080:80").unwrap(),
            fwd(None, 8080, 80, false)
        );
    }

    #[test]
    fn ipv6_forwards_reach_qemu_in_brackets() {
        let config = crate::config::UnikernelConfig {
            unikernel_type: crate::config::UnikernelType::Linux,
            hypervisor: crate::config::Hypervisor::Qemu,
            binary: "/.boot/kernel".into(),
            cmdline: Some("/init".into()),
            initrd: Some("/.boot/rootfs".into()),
            block: None,
            blk_mnt_point: None,
            mount_rootfs: false,
            version: None,
        };
        let mut spec = RunSpec::new("/b/rootfs", config);
        spec.net = NetSpec::User {
            forwards: vec![
                parse_publish("[::1]:8080:80").unwrap(),
                parse_publish("127.0.0.1:8081:81/udp").unwrap(),
            ],
        };
        let cmd = crate::monitor_command(&spec, crate::ResolvedAccel::Tcg).unwrap();
        let netdev = cmd
            .args
            .iter()
            .find(|a| a.starts_with("user,"))
            .expect("a user netdev");
        assert!(
            netdev.contains(",hostfwd=tcp:[::1]:8080-:80")
                && netdev.contains(",hostfwd=udp:127.0.0.1:8081-:81"),
            "{netdev}"
        );
    }

    #[test]
    fn publish_errors_say_why() {
        for (input, needle) in [
            ("80", "both a host port"),
            ("1:2:3:4", "too many"),
            ("x:80", "host port \"x\""),
            ("80:0", "guest port \"0\""),
            ("80:70000", "guest port"),
            ("80:80/sctp", "unknown protocol"),
            ("300.1.1.1:80:80", "not an IPv4"),
            ("::1:8080:80", "in brackets"),
            ("[::1:8080:80", "closing"),
            ("[fe80::zz]:80:80", "not an IPv6"),
            ("[::1]8080:80", "[IPv6]:HOST_PORT"),
            ("[::1]:8080", "both a host port"),
        ] {
            let e = parse_publish(input).unwrap_err().to_string();
            assert!(e.contains(needle), "{input}: {e}");
            assert!(e.contains(input), "{input}: {e}");
        }
    }
}
