//! The guest side: kernel command lines per unikernel type, as urunc builds
//! them.

use std::net::Ipv4Addr;

use serde_json::json;

use crate::config::Hypervisor;
use crate::spec::RunSpec;

/// Prefix length of a dotted mask (contiguous or not: bits are counted).
pub(crate) fn mask_bits(mask: Ipv4Addr) -> u32 {
    u32::from(mask).count_ones()
}

/// Whether `ip` and `gateway` share the subnet; when not, urunit must add a
/// default route itself (`URUNIT_DEFROUTE=1`).
pub(crate) fn in_subnet(ip: Ipv4Addr, mask: Ipv4Addr, gateway: Ipv4Addr) -> bool {
    let m = u32::from(mask);
    u32::from(ip) & m == u32::from(gateway) & m
}

/// Linux passes `K=V` words to init as its environment; a value with
/// blanks must be double-quoted or the kernel splits it.
fn kernel_env_word(e: &str) -> String {
    match e.split_once('=') {
        Some((k, v)) if v.contains(char::is_whitespace) && !v.contains('"') => {
            format!("{k}=\"{v}\"")
        }
        _ => e.to_string(),
    }
}

/// urunc's convention with urunit: an argument holding blanks travels in
/// single quotes and urunit joins it back into one argument.
fn quote_arg(a: &str) -> String {
    let t = a.trim();
    if t.contains(' ') {
        format!("'{t}'")
    } else {
        t.to_string()
    }
}

pub(crate) enum LinuxRoot {
    Initrd,
    Block,
    None,
}

/// `panic=-1 console=ttyS0 ROOT [ip=IP::GW:MASK:urunc:eth0:off] ENV
/// (rd)init=ARGV0 -- ARGS`
pub(crate) fn linux(spec: &RunSpec, argv: &[String], root: LinuxRoot) -> String {
    let mut p: Vec<String> = vec!["panic=-1".into(), "console=ttyS0".into()];
    let rd = match root {
        LinuxRoot::Initrd => {
            p.push("root=/dev/ram0 rw".into());
            "rd"
        }
        LinuxRoot::Block => {
            p.push("root=/dev/vda rw".into());
            ""
        }
        LinuxRoot::None => "",
    };
    if let Some((ip, mask, gw)) = spec.net.guest_addr() {
        p.push(format!("ip={ip}::{gw}:{mask}:urunc:eth0:off"));
        if !in_subnet(ip, mask, gw) {
            p.push("URUNIT_DEFROUTE=1".into());
        }
    }
    p.extend(spec.env.iter().map(|e| kernel_env_word(e)));
    if let Some((argv0, rest)) = argv.split_first() {
        p.push(format!("{rd}init={}", quote_arg(argv0)));
        p.push("--".into());
        p.extend(rest.iter().map(|a| quote_arg(a)));
    }
    p.join(" ")
}

/// Rumprun's JSON configuration. It is not quite JSON (one `"env"` key per
/// variable), so it is assembled by hand from escaped pieces.
pub(crate) fn rumprun(
    spec: &RunSpec,
    argv: &[String],
    monitor: Hypervisor,
    block_mount: Option<&str>,
) -> String {
    let s = |v: &str| json!(v).to_string();
    let mut out = format!("{{\"cmdline\":{}", s(&argv.join(" ")));
    for e in &spec.env {
        out.push_str(&format!(",\"env\":{}", s(e)));
    }
    if let Some((ip, mask, gw)) = spec.net.guest_addr() {
        let net = if monitor == Hypervisor::Qemu {
            // The hw platform sees a real virtio NIC, which is not cloned.
            format!(
                "{{\"if\":\"vioif0\",\"type\":\"inet\",\"method\":\"static\",\"addr\":\"{ip}\",\"mask\":\"{}\",\"gw\":\"{gw}\"}}",
                mask_bits(mask)
            )
        } else {
            // urunc's mask 128.0.0.0 (/1) keeps the gateway reachable even
            // when it lies outside the guest's subnet.
            format!(
                "{{\"if\":\"ukvmif0\",\"cloner\":\"True\",\"type\":\"inet\",\"method\":\"static\",\"addr\":\"{ip}\",\"mask\":\"1\",\"gw\":\"{gw}\"}}"
            )
        };
        out.push_str(&format!(",\"net\":{net}"));
    }
    if let Some(mp) = block_mount {
        out.push_str(&format!(
            ",\"blk\":{{\"source\":\"etfs\",\"path\":\"/dev/ld0a\",\"fstype\":\"blk\",\"mountpoint\":{}}}",
            s(mp)
        ));
    }
    out.push('}');
    out
}

/// Unikraft releases before this take the legacy `netdev.ipv4_*` and
/// `vfs.rootfs=` parameters and no environment.
const UNIKRAFT_COMPAT: [u64; 3] = [0, 16, 1];

fn version_before(version: &str, limit: [u64; 3]) -> Option<bool> {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next().unwrap_or_default();
    let mut parts = [0u64; 3];
    for (i, n) in core.split('.').enumerate() {
        if i >= 3 {
            return None;
        }
        parts[i] = n.parse().ok()?;
    }
    Some(parts < limit)
}

/// `Unikraft env.vars=[ .. ] netdev.ip=IP/N:GW:DNS vfs.fstab=[ .. ] -- ARGS`
pub(crate) fn unikraft(spec: &RunSpec, argv: &[String], initrd: bool) -> String {
    let legacy = spec
        .config
        .version
        .as_deref()
        .and_then(|v| version_before(v, UNIKRAFT_COMPAT))
        .unwrap_or(false);
    let mut p: Vec<String> = vec!["Unikraft".into()];
    let net = spec.net.guest_addr();
    if legacy {
        if let Some((ip, mask, gw)) = net {
            p.push(format!("netdev.ipv4_addr={ip}"));
            p.push(format!("netdev.ipv4_gw_addr={gw}"));
            p.push(format!("netdev.ipv4_subnet_mask={mask}"));
        }
        if initrd {
            p.push("vfs.rootfs=initrd".into());
        }
    } else {
        if !spec.env.is_empty() {
            p.push(format!("env.vars=[ {} ]", spec.env.join(" ")));
        }
        if let Some((ip, mask, gw)) = net {
            p.push(format!("netdev.ip={ip}/{}:{gw}:8.8.8.8", mask_bits(mask)));
        }
        if initrd {
            p.push("vfs.fstab=[ \"initrd0:/:extract:::\" ]".into());
        }
    }
    p.push("--".into());
    p.extend(argv.iter().cloned());
    p.join(" ")
}

/// `--ipv4=IP/N --ipv4-gateway=GW ARGS`
pub(crate) fn mirage(spec: &RunSpec, argv: &[String]) -> String {
    let mut p: Vec<String> = Vec::new();
    if let Some((ip, mask, gw)) = spec.net.guest_addr() {
        p.push(format!("--ipv4={ip}/{}", mask_bits(mask)));
        p.push(format!("--ipv4-gateway={gw}"));
    }
    p.extend(argv.iter().cloned());
    p.join(" ")
}

/// FreeBSD's PVH boot arguments (each `name=value` becomes a kenv entry).
pub(crate) fn freebsd(
    init_path: Option<&str>,
    urunit_disk: Option<usize>,
    spec: &RunSpec,
) -> String {
    let mut p = vec!["vfs.root.mountfrom=ufs:/dev/vtbd0".to_string()];
    if let Some(init) = init_path {
        p.push(format!("init_path={init}"));
    }
    if let Some(n) = urunit_disk {
        p.push(format!("URUNIT_CONFIG=/dev/vtbd{n}"));
        if let Some((ip, mask, gw)) = spec.net.guest_addr() {
            if !in_subnet(ip, mask, gw) {
                p.push("URUNIT_DEFROUTE=1".into());
            }
        }
    }
    p.join(" ")
}

/// urunit's configuration for a FreeBSD guest: env, process, volumes and
/// network, padded with newlines to whole 512-byte sectors because it is
/// exposed as a raw disk.
pub(crate) fn freebsd_urunit_config(spec: &RunSpec, args: &[String]) -> Vec<u8> {
    let mut s = String::from("UES\n");
    for e in &spec.env {
        s.push_str(e);
        s.push('\n');
    }
    s.push_str("UEE\nUCS\nUID:0\nGID:0\nWD:/\n");
    s.push_str(&format!("ARC:{}\n", args.len()));
    for a in args {
        s.push_str(&format!("ARV:{a}\n"));
    }
    s.push_str("UCE\nUBS\nUBE\nUNS\n");
    let (ip, gw, mask) = match spec.net.guest_addr() {
        Some((ip, mask, gw)) => (ip.to_string(), gw.to_string(), mask.to_string()),
        None => Default::default(),
    };
    s.push_str(&format!("IP:{ip}\nGW:{gw}\nMSK:{mask}\nUNE\nPAD\n"));
    let mut bytes = s.into_bytes();
    let padded = bytes.len().div_ceil(512) * 512;
    bytes.resize(padded, b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare() {
        assert_eq!(version_before("0.15.0", UNIKRAFT_COMPAT), Some(true));
        assert_eq!(version_before("v0.16.1", UNIKRAFT_COMPAT), Some(false));
        assert_eq!(version_before("0.16", UNIKRAFT_COMPAT), Some(true));
        assert_eq!(version_before("0.17.0-rc1", UNIKRAFT_COMPAT), Some(false));
        assert_eq!(version_before("latest", UNIKRAFT_COMPAT), None);
    }

    #[test]
    fn masks_and_subnets() {
        assert_eq!(mask_bits(Ipv4Addr::new(255, 255, 255, 0)), 24);
        assert_eq!(mask_bits(Ipv4Addr::new(255, 255, 0, 0)), 16);
        let m = Ipv4Addr::new(255, 255, 255, 0);
        assert!(in_subnet(
            Ipv4Addr::new(10, 0, 2, 15),
            m,
            Ipv4Addr::new(10, 0, 2, 2)
        ));
        assert!(!in_subnet(
            Ipv4Addr::new(10, 0, 3, 15),
            m,
            Ipv4Addr::new(10, 0, 2, 2)
        ));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_arg(" a b "), "'a b'");
        assert_eq!(quote_arg("ab"), "ab");
        assert_eq!(kernel_env_word("A=b c"), "A=\"b c\"");
        assert_eq!(kernel_env_word("PATH=/bin"), "PATH=/bin");
    }
}
