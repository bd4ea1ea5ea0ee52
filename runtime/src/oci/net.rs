//! The guest's network, urunc's way: inside the container's network
//! namespace a tap device takes over the container interface. The IP moves
//! off the interface (the guest answers for it) and tc ingress qdiscs with
//! `mirred egress redirect` filters pass every frame between the two, so
//! the guest sees the engine's (or CNI's) network unchanged.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::error::OciError;
use crate::NetSpec;

/// The tap's name; each container has its own namespace, so one fixed name
/// does not clash.
pub const TAP: &str = "tap0_bunny";

/// What was changed, so `delete` can undo it in a namespace that outlives
/// the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSetup {
    pub iface: String,
    pub tap: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: String,
}

impl NetSetup {
    pub fn net_spec(&self) -> NetSpec {
        NetSpec::Tap {
            tap: self.tap.clone(),
            ip: self.ip,
            mask: mask_of(self.prefix),
            // urunc hands the guest 0.0.0.0 when there is no default route.
            gateway: self.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED),
            mac: self.mac.clone(),
        }
    }
}

pub fn mask_of(prefix: u8) -> Ipv4Addr {
    let bits = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    Ipv4Addr::from(bits)
}

#[derive(Debug, Deserialize)]
struct IpLink {
    ifname: String,
    #[serde(default)]
    link_type: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Debug, Deserialize)]
struct IpAddrInfo {
    #[serde(default)]
    family: String,
    /// A string: inet6 entries share the field.
    #[serde(default)]
    local: Option<String>,
    #[serde(default)]
    prefixlen: u8,
}

#[derive(Debug, Deserialize)]
struct IpRoute {
    #[serde(default)]
    gateway: Option<Ipv4Addr>,
    #[serde(default)]
    dev: Option<String>,
}

fn net_err(detail: impl Into<String>) -> OciError {
    OciError::Network {
        detail: detail.into(),
    }
}

/// Runs `program args` (in the namespace `netns`, when given) and returns
/// its stdout.
fn tool(program: &str, args: &[&str], netns: Option<RawFd>) -> Result<String, OciError> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(fd) = netns {
        // SAFETY: setns is async-signal-safe; the fd stays open in the
        // parent until the child has been spawned.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd.output().map_err(|e| {
        net_err(format!(
            "cannot run {program} (install iproute2, which has ip and tc): {e}"
        ))
    })?;
    if !out.status.success() {
        return Err(net_err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Picks the container's interface: eth0, else the first non-loopback
/// interface with an IPv4 address. `None` when there is none.
fn pick(links: &[IpLink]) -> Option<(&IpLink, Ipv4Addr, u8)> {
    let v4 = |l: &IpLink| {
        l.addr_info
            .iter()
            .find(|a| a.family == "inet")
            .and_then(|a| {
                let ip = a.local.as_deref()?.parse::<Ipv4Addr>().ok()?;
                Some((ip, a.prefixlen))
            })
    };
    let usable = |l: &&IpLink| l.link_type != "loopback" && l.ifname != TAP && v4(l).is_some();
    let link = links
        .iter()
        .filter(usable)
        .find(|l| l.ifname == "eth0")
        .or_else(|| links.iter().find(usable))?;
    let (ip, prefix) = v4(link)?;
    Some((link, ip, prefix))
}

/// Rewires the current network namespace for the guest. Call it from
/// inside the container's namespace.
pub fn setup_here() -> Result<Option<NetSetup>, OciError> {
    let links_json = tool("ip", &["-j", "addr", "show"], None)?;
    let links: Vec<IpLink> = serde_json::from_str(&links_json)
        .map_err(|e| net_err(format!("cannot read `ip -j addr show`: {e}")))?;
    if links.iter().any(|l| l.ifname == TAP) {
        return Err(taken("a second unikernel"));
    }
    let Some((link, ip, prefix)) = pick(&links) else {
        return Ok(None);
    };
    let routes_json = tool("ip", &["-j", "-4", "route", "show", "default"], None)?;
    let routes: Vec<IpRoute> = serde_json::from_str(&routes_json)
        .map_err(|e| net_err(format!("cannot read `ip -j route show default`: {e}")))?;
    let gateway = routes
        .iter()
        .find(|r| r.dev.as_deref() == Some(link.ifname.as_str()))
        .or_else(|| routes.first())
        .and_then(|r| r.gateway);
    let setup = NetSetup {
        iface: link.ifname.clone(),
        tap: TAP.to_string(),
        ip,
        prefix,
        gateway,
        mac: link.address.clone(),
    };
    let iface = setup.iface.as_str();
    let cidr = format!("{ip}/{prefix}");
    let mtu = link.mtu.unwrap_or(1500).to_string();
    let rewire = || -> Result<(), OciError> {
        let run = |p: &str, a: &[&str]| tool(p, a, None).map(|_| ());
        run("ip", &["tuntap", "add", "dev", TAP, "mode", "tap"])?;
        run("ip", &["link", "set", "dev", TAP, "mtu", &mtu])?;
        run("ip", &["link", "set", "dev", TAP, "up"])?;
        // The guest owns the address now; left here, the namespace would answer
        // for it too.
        run("ip", &["addr", "del", &cidr, "dev", iface])?;
        for (from, to) in [(iface, TAP), (TAP, iface)] {
            run("tc", &["qdisc", "add", "dev", from, "ingress"])?;
            run(
                "tc",
                &[
                    "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32",
                    "match", "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", to,
                ],
            )?;
        }
        Ok(())
    };
    if let Err(e) = rewire() {
        // Half-rewired is worse than untouched: put back what was changed.
        let _ = teardown(None, &setup);
        return Err(e);
    }
    Ok(Some(setup))
}

fn taken(who: &str) -> OciError {
    OciError::Pod(format!(
        "{who} cannot join this network namespace: a unikernel guest already owns it \
         (its {TAP} holds the pod's address, which the guest answers for), so the \
         container would have no network. One unikernel per pod, and no container \
         beside it that needs the network"
    ))
}

/// Refuses to let a container join the namespace at `netns` when a guest
/// has taken it over: whatever it runs would find the pod's address gone.
pub fn check_not_taken(netns: &Path, who: &str) -> Result<(), OciError> {
    // A namespace we cannot open is the engine's business (runc reports it).
    let Ok(ns) = std::fs::File::open(netns) else {
        return Ok(());
    };
    // Only evidence refuses: an ordinary container must not fail because
    // iproute2 is missing or says something unexpected.
    let Ok(links_json) = tool("ip", &["-j", "link", "show"], Some(ns.as_raw_fd())) else {
        return Ok(());
    };
    let links: Vec<IpLink> = serde_json::from_str(&links_json).unwrap_or_default();
    if links.iter().any(|l| l.ifname == TAP) {
        return Err(taken(who));
    }
    Ok(())
}

/// Undoes [`setup_here`] in the namespace at `netns` (used by `delete`), or
/// in the current one: the tap goes, the interface gets its address and
/// default route back. Every step is tried; the first failure is reported.
pub fn teardown(netns: Option<&Path>, setup: &NetSetup) -> Result<(), OciError> {
    let ns = match netns.map(std::fs::File::open) {
        None => None,
        Some(Ok(f)) => Some(f),
        // The namespace is gone, and everything in it with it.
        Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Some(Err(e)) => {
            return Err(OciError::io(
                "cannot open network namespace",
                netns.unwrap_or(Path::new("")),
                e,
            ))
        }
    };
    let fd = ns.as_ref().map(|f| f.as_raw_fd());
    let cidr = format!("{}/{}", setup.ip, setup.prefix);
    let mut first_err = None;
    let mut step = |p: &str, a: &[&str]| {
        if let Err(e) = tool(p, a, fd) {
            first_err.get_or_insert(e);
        }
    };
    step("ip", &["link", "del", "dev", &setup.tap]);
    step("tc", &["qdisc", "del", "dev", &setup.iface, "ingress"]);
    step("ip", &["addr", "add", &cidr, "dev", &setup.iface]);
    if let Some(gw) = setup.gateway {
        let gw = gw.to_string();
        step(
            "ip",
            &[
                "route",
                "replace",
                "default",
                "via",
                &gw,
                "dev",
                &setup.iface,
            ],
        );
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_of(30), Ipv4Addr::new(255, 255, 255, 252));
        assert_eq!(mask_of(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(mask_of(32), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn picks_eth0_else_the_first_ipv4_interface() {
        let links: Vec<IpLink> = serde_json::from_str(
            r#"[{"ifname":"lo","link_type":"loopback","address":"00:00:00:00:00:00",
                 "addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
                {"ifname":"net1","link_type":"ether","address":"aa:aa:aa:aa:aa:01",
                 "addr_info":[{"family":"inet6","local":"fe80::1","prefixlen":64}]},
                {"ifname":"net2","link_type":"ether","address":"aa:aa:aa:aa:aa:02",
                 "addr_info":[{"family":"inet","local":"10.1.0.2","prefixlen":24}]},
                {"ifname":"eth0","link_type":"ether","address":"aa:aa:aa:aa:aa:03","mtu":1450,
                 "addr_info":[{"family":"inet","local":"10.2.0.2","prefixlen":30}]}]"#,
        )
        .unwrap();
        let (l, ip, p) = pick(&links).unwrap();
        assert_eq!(
            (l.ifname.as_str(), ip, p),
            ("eth0", Ipv4Addr::new(10, 2, 0, 2), 30)
        );
        let (l, ip, _) = pick(&links[..3]).unwrap();
        assert_eq!(
            (l.ifname.as_str(), ip),
            ("net2", Ipv4Addr::new(10, 1, 0, 2))
        );
        assert!(pick(&links[..2]).is_none());
    }
}
