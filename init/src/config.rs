//! What the init reads besides its own arguments: urunit's configuration
//! format (urunc appends it to the initrd as `/urunit.conf`, or hands it over
//! as a retained initrd at `/sys/firmware/initrd`, and names it with
//! `URUNIT_CONFIG`), the quoting urunc uses for arguments with spaces, and
//! the kernel's `ip=` argument.
//!
//! The configuration is text, one item a line, in optional blocks:
//! `UES` env lines `UEE`, `UCS` `UID: n` `GID: n` `WD: dir` `UCE`,
//! `UBS` `ID: serial` `MP: mountpoint` ... `UBE`.

use std::net::Ipv4Addr;

/// The app's execution settings, from one or more configuration files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Config {
    /// `None`: no env block; the app inherits the init's environment.
    pub env: Option<Vec<String>>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub workdir: Option<String>,
    /// Block volumes (serial id, mount point).
    pub blocks: Vec<(String, String)>,
}

impl Config {
    /// Parses urunit's format. Unknown lines are skipped; a block missing
    /// its end marker is reported (and what was read of it kept).
    pub fn parse(text: &str) -> (Config, Vec<String>) {
        let mut c = Config::default();
        let mut warnings = Vec::new();
        let mut block: Option<&str> = None;
        let mut pending_id: Option<String> = None;
        for raw in text.split('\n') {
            // A retained initrd is padded with NULs after the text.
            let line = raw.trim_end_matches(['\r', '\0']);
            match (block, line.trim()) {
                (None, "UES") => {
                    block = Some("UEE");
                    c.env.get_or_insert_with(Vec::new);
                }
                (None, "UCS") => block = Some("UCE"),
                (None, "UBS") => block = Some("UBE"),
                (None, _) => {}
                (Some(end), l) if l == end => block = None,
                (Some("UEE"), _) => {
                    if !line.is_empty() {
                        c.env.get_or_insert_with(Vec::new).push(line.to_string());
                    }
                }
                (Some("UCE"), l) => {
                    if let Some(v) = value(l, "UID") {
                        match v.parse() {
                            Ok(n) => c.uid = Some(n),
                            Err(_) => warnings.push(format!("bad UID `{v}`")),
                        }
                    } else if let Some(v) = value(l, "GID") {
                        match v.parse() {
                            Ok(n) => c.gid = Some(n),
                            Err(_) => warnings.push(format!("bad GID `{v}`")),
                        }
                    } else if let Some(v) = value(l, "WD") {
                        if !v.is_empty() {
                            c.workdir = Some(v.to_string());
                        }
                    }
                }
                (Some(_), l) => {
                    if let Some(v) = value(l, "ID") {
                        pending_id = Some(v.to_string());
                    } else if let Some(v) = value(l, "MP") {
                        if let Some(id) = pending_id.take() {
                            c.blocks.push((id, v.to_string()));
                        }
                    }
                }
            }
        }
        if let Some(end) = block {
            warnings.push(format!("the configuration ends without `{end}`"));
        }
        (c, warnings)
    }

    /// Fields `other` sets win over ours.
    pub fn merge(&mut self, other: Config) {
        if other.env.is_some() {
            self.env = other.env;
        }
        self.uid = other.uid.or(self.uid);
        self.gid = other.gid.or(self.gid);
        self.workdir = other.workdir.or(self.workdir.take());
        self.blocks.extend(other.blocks);
    }
}

/// `KEY: value` or `KEY:value` -> `value`.
fn value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.strip_prefix(key)?
        .trim_start()
        .strip_prefix(':')
        .map(str::trim)
}

/// Joins arguments urunc wrapped in single (or double) quotes because they
/// hold spaces, which the kernel split at: `'hello` `world'` -> `hello world`.
pub fn join_quoted(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut open: Option<(char, String)> = None;
    for a in args {
        if let Some((q, mut acc)) = open.take() {
            acc.push(' ');
            if let Some(done) = a.strip_suffix(q) {
                acc.push_str(done);
                out.push(acc);
            } else {
                acc.push_str(a);
                open = Some((q, acc));
            }
            continue;
        }
        let q = match a.chars().next() {
            Some(c @ ('\'' | '"')) => c,
            _ => {
                out.push(a.clone());
                continue;
            }
        };
        let inner = &a[1..];
        match inner.strip_suffix(q) {
            Some(whole) => out.push(whole.to_string()),
            None => open = Some((q, inner.to_string())),
        }
    }
    // An unterminated quote keeps what followed it as one argument.
    if let Some((_, acc)) = open {
        out.push(acc);
    }
    out
}

/// The kernel's `ip=` argument as urunc writes it:
/// `IP::GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub addr: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    pub netmask: Ipv4Addr,
    pub device: String,
}

impl IpConfig {
    pub fn parse(value: &str) -> Option<IpConfig> {
        let mut f = value.split(':');
        let addr = f.next()?.parse().ok()?;
        let _server = f.next();
        let gateway = f.next().and_then(|g| g.parse().ok());
        let netmask = f
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(Ipv4Addr::new(255, 255, 255, 0));
        let _host = f.next();
        let device = match f.next() {
            Some(d) if !d.is_empty() => d.to_string(),
            _ => "eth0".to_string(),
        };
        Some(IpConfig {
            addr,
            gateway,
            netmask,
            device,
        })
    }

    /// Finds `ip=` in a kernel command line.
    pub fn from_cmdline(cmdline: &str) -> Option<IpConfig> {
        cmdline
            .split_ascii_whitespace()
            .find_map(|a| a.strip_prefix("ip="))
            .and_then(IpConfig::parse)
    }
}

/// What the boot stage reads from the kernel command line: the root
/// device (`root=`), its filesystem (`rootfstype=`, default ext4), whether
/// it is read-only (`ro`; the last of `ro`/`rw` wins, as the kernel reads
/// them) and the init to run on it (`init=`, default `/sbin/init`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootConfig {
    pub device: String,
    pub fstype: String,
    pub read_only: bool,
    pub init: String,
}

impl RootConfig {
    /// `None` when the line names no root device to mount (no `root=`, or
    /// the initrd itself: `/dev/ram0`). Words after `--` are the init's.
    pub fn from_cmdline(cmdline: &str) -> Option<RootConfig> {
        let mut device = None;
        let mut fstype = "ext4".to_string();
        let mut read_only = false;
        let mut init = "/sbin/init".to_string();
        for w in cmdline.split_ascii_whitespace() {
            if w == "--" {
                break;
            }
            if let Some(v) = w.strip_prefix("root=") {
                device = Some(v.to_string());
            } else if let Some(v) = w.strip_prefix("rootfstype=") {
                fstype = v.to_string();
            } else if let Some(v) = w.strip_prefix("init=") {
                init = v.to_string();
            } else if w == "ro" {
                read_only = true;
            } else if w == "rw" {
                read_only = false;
            }
        }
        let device = device.filter(|d| d.starts_with("/dev/") && d != "/dev/ram0")?;
        Some(RootConfig {
            device,
            fstype,
            read_only,
            init,
        })
    }
}

/// A module's `depends=` list, from its `.modinfo` strings.
pub fn modinfo_depends(bytes: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"depends=";
    let mut i = 0;
    while let Some(pos) = find(&bytes[i..], KEY) {
        let start = i + pos;
        // A modinfo string starts after a NUL (or at the section start).
        if start == 0 || bytes[start - 1] == 0 {
            let rest = &bytes[start + KEY.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            return String::from_utf8_lossy(&rest[..end])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.replace('-', "_"))
                .collect();
        }
        i = start + 1;
    }
    Vec::new()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Orders modules so each comes after the ones it depends on; a dependency
/// not in the set is taken to be built in. Cycles keep their file order.
pub fn load_order(mods: &[(String, Vec<String>)]) -> Vec<usize> {
    let mut done = vec![false; mods.len()];
    let mut order = Vec::new();
    loop {
        let mut progressed = false;
        for (i, (_, deps)) in mods.iter().enumerate() {
            if done[i] {
                continue;
            }
            let ready = deps.iter().all(|d| {
                mods.iter()
                    .enumerate()
                    .all(|(j, (n, _))| n != d || done[j] || j == i)
            });
            if ready {
                done[i] = true;
                order.push(i);
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    order.extend((0..mods.len()).filter(|&i| !done[i]));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_reads_root_and_init() {
        let c = RootConfig::from_cmdline(
            "panic=-1 console=ttyS0 root=/dev/vda rw ip=10.0.0.2::10.0.0.1:255.255.255.0:urunc:eth0:off A=b init=/urunit -- /bin/app init=x ro",
        )
        .unwrap();
        assert_eq!(c.device, "/dev/vda");
        assert_eq!(c.fstype, "ext4");
        assert!(!c.read_only);
        assert_eq!(c.init, "/urunit");
        let c = RootConfig::from_cmdline("root=/dev/vdb rootfstype=ext2 ro").unwrap();
        assert_eq!((c.fstype.as_str(), c.read_only), ("ext2", true));
        assert_eq!(c.init, "/sbin/init");
        assert_eq!(
            RootConfig::from_cmdline("root=/dev/ram0 rw rdinit=/init"),
            None
        );
        assert_eq!(
            RootConfig::from_cmdline("console=ttyS0 -- root=/dev/vda"),
            None
        );
        assert_eq!(RootConfig::from_cmdline("root=LABEL=x"), None);
    }

    #[test]
    fn urunit_config_parses() {
        let (c, w) = Config::parse(
            "UES\nPATH=/bin\nA=b c\nUEE\nUCS\nUID: 1000\nGID:100\nWD: /srv\nUCE\nUBS\nID: vol1\nMP: /data\nUBE\n\0\0",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.env, Some(vec!["PATH=/bin".into(), "A=b c".into()]));
        assert_eq!((c.uid, c.gid), (Some(1000), Some(100)));
        assert_eq!(c.workdir.as_deref(), Some("/srv"));
        assert_eq!(c.blocks, vec![("vol1".into(), "/data".into())]);
        let (_, w) = Config::parse("UES\nA=1\n");
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn quoted_args_join() {
        let a: Vec<String> = ["-c", "'echo", "hello", "world'", "'x'", "y"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(join_quoted(&a), ["-c", "echo hello world", "x", "y"]);
    }

    #[test]
    fn ip_parses() {
        let ip = IpConfig::from_cmdline(
            "console=ttyS0 ip=10.0.2.15::10.0.2.2:255.255.255.0:urunc:eth0:off init=/x",
        )
        .unwrap();
        assert_eq!(ip.addr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(ip.gateway, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(ip.device, "eth0");
    }

    #[test]
    fn modules_order_by_depends() {
        let m = vec![
            ("virtio_net".to_string(), vec!["net_failover".to_string()]),
            ("net_failover".to_string(), vec!["failover".to_string()]),
            ("failover".to_string(), vec![]),
        ];
        assert_eq!(load_order(&m), vec![2, 1, 0]);
        let info = b"\0license=GPL\0depends=virtio,virtio-ring\0name=x\0";
        assert_eq!(modinfo_depends(info), ["virtio", "virtio_ring"]);
    }
}
