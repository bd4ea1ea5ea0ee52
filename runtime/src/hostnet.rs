//! Networking for monitors without a user-mode network stack (solo5,
//! firecracker, cloud-hypervisor) when `bunny run` starts them: the guest
//! gets a tap device, and published ports are forwarded to it by a userspace
//! proxy on the host side, as docker-proxy does.
//!
//! As root, the tap lives in a network namespace made for the run: the guest
//! can use fixed addresses without clashing with the host or with other
//! runs, nothing of it is left behind when the run ends (the namespace dies
//! with its last reference), and the host's own routes and firewall are not
//! touched. The proxy's listeners stay in the host's namespace; each
//! connection to the guest is opened from a thread that entered the run's
//! namespace (a socket keeps the namespace it was made in).
//!
//! Without root, a tap the user created once can be named instead; the
//! guest then takes an address next to the tap's own.

use std::io::{Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cmdline::mask_bits;
use crate::spec::{NetSpec, PortForward};
use crate::RuntimeError;

/// The guest side of a run's private network: the same addresses qemu's
/// user-mode network gives, so a guest sees one network whatever its monitor.
const PRIVATE_TAP: &str = "tap0";
const PRIVATE_GUEST: Ipv4Addr = crate::spec::USER_NET_GUEST_IP;
const PRIVATE_GATEWAY: Ipv4Addr = crate::spec::USER_NET_GATEWAY;
const PRIVATE_MASK: Ipv4Addr = crate::spec::USER_NET_MASK;
/// Locally administered; unique enough, since each run has its own link.
const GUEST_MAC: &str = "02:42:ac:11:00:02";
/// A guest that is still booting refuses connections for a moment; the
/// proxy retries for this long before giving up on a client.
const CONNECT_PATIENCE: Duration = Duration::from_secs(3);
const UDP_IDLE: Duration = Duration::from_secs(120);

/// A guest network on the host side: the tap, the guest's addresses, and
/// the port proxies. Dropping it stops the proxies; the namespace goes away
/// once the monitor has exited too.
pub struct HostNet {
    netns: Option<Arc<OwnedFd>>,
    tap: String,
    guest: Ipv4Addr,
    gateway: Ipv4Addr,
    mask: Ipv4Addr,
    /// Duplicates of the proxies' sockets, to shut them down on drop.
    listeners: Vec<OwnedFd>,
}

impl std::fmt::Debug for HostNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostNet")
            .field("tap", &self.tap)
            .field("guest", &self.guest)
            .field("private", &self.netns.is_some())
            .finish()
    }
}

impl HostNet {
    /// A tap in a network namespace of the run's own (needs root).
    pub fn private(monitor: &str, forwards: &[PortForward]) -> Result<HostNet, RuntimeError> {
        if !crate::accel::is_root() {
            return Err(RuntimeError::TapNeedsRoot {
                monitor: monitor.to_string(),
            });
        }
        let netns = Arc::new(new_netns()?);
        let addr = format!("{PRIVATE_GATEWAY}/{}", mask_bits(PRIVATE_MASK));
        ip_batch(
            Some(netns.as_raw_fd()),
            &[
                "link set lo up".into(),
                format!("tuntap add dev {PRIVATE_TAP} mode tap"),
                format!("addr add {addr} dev {PRIVATE_TAP}"),
                format!("link set {PRIVATE_TAP} up"),
            ],
        )
        .map_err(|detail| RuntimeError::TapSetup {
            tap: PRIVATE_TAP.into(),
            detail,
        })?;
        let mut net = HostNet {
            netns: Some(netns),
            tap: PRIVATE_TAP.into(),
            guest: PRIVATE_GUEST,
            gateway: PRIVATE_GATEWAY,
            mask: PRIVATE_MASK,
            listeners: Vec::new(),
        };
        net.publish(forwards)?;
        Ok(net)
    }

    /// A tap that already exists in the host's namespace, with an IPv4
    /// address of its own: the guest takes the next address in its subnet.
    pub fn existing(tap: &str, forwards: &[PortForward]) -> Result<HostNet, RuntimeError> {
        let missing = || RuntimeError::TapNotReady {
            tap: tap.to_string(),
            detail: "it does not exist".into(),
        };
        check_ifname(tap)?;
        if !std::path::Path::new("/sys/class/net").join(tap).exists() {
            return Err(missing());
        }
        let out = Command::new("ip")
            .args(["-4", "-o", "addr", "show", "dev", tap])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| RuntimeError::TapSetup {
                tap: tap.into(),
                detail: format!("cannot run ip (install iproute2): {e}"),
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (gateway, bits) = text
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|cidr| cidr.split_once('/'))
            .and_then(|(a, b)| Some((a.parse::<Ipv4Addr>().ok()?, b.parse::<u32>().ok()?)))
            .filter(|(_, b)| (1..=30).contains(b))
            .ok_or_else(|| RuntimeError::TapNotReady {
                tap: tap.to_string(),
                detail: "it has no IPv4 address with a prefix of /30 or wider".into(),
            })?;
        let mask = Ipv4Addr::from(u32::MAX << (32 - bits));
        let net = u32::from(gateway) & u32::from(mask);
        let broadcast = net | !u32::from(mask);
        let mut guest = u32::from(gateway) + 1;
        if guest >= broadcast {
            guest = net + 1;
        }
        let mut hn = HostNet {
            netns: None,
            tap: tap.to_string(),
            guest: Ipv4Addr::from(guest),
            gateway,
            mask,
            listeners: Vec::new(),
        };
        hn.publish(forwards)?;
        Ok(hn)
    }

    /// Only the port proxy, to `target` on the host's own network: how an
    /// address the monitor cannot listen on (qemu 7.2's user network takes
    /// no IPv6 host address) is published through one it can.
    pub fn relay(target: Ipv4Addr, forwards: &[PortForward]) -> Result<HostNet, RuntimeError> {
        let mut net = HostNet {
            netns: None,
            tap: String::new(),
            guest: target,
            gateway: target,
            mask: Ipv4Addr::BROADCAST,
            listeners: Vec::new(),
        };
        net.publish(forwards)?;
        Ok(net)
    }

    /// What the monitor is given.
    pub fn net_spec(&self) -> NetSpec {
        NetSpec::Tap {
            tap: self.tap.clone(),
            ip: self.guest,
            mask: self.mask,
            gateway: self.gateway,
            mac: GUEST_MAC.into(),
        }
    }

    /// The namespace the monitor must run in, if the run has its own.
    pub fn netns_fd(&self) -> Option<RawFd> {
        self.netns.as_ref().map(|fd| fd.as_raw_fd())
    }

    fn publish(&mut self, forwards: &[PortForward]) -> Result<(), RuntimeError> {
        for f in forwards {
            let host_ip = f.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let at = SocketAddr::new(host_ip, f.host_port);
            let bind_err = |e: std::io::Error| RuntimeError::Publish {
                addr: at.to_string(),
                detail: e.to_string(),
            };
            let guest = SocketAddrV4::new(self.guest, f.guest_port);
            let netns = self.netns.clone();
            if f.udp {
                let sock = UdpSocket::bind(at).map_err(bind_err)?;
                self.listeners
                    .push(sock.try_clone().map_err(bind_err)?.into());
                std::thread::spawn(move || udp_proxy(sock, guest, netns));
            } else {
                let listener = TcpListener::bind(at).map_err(bind_err)?;
                self.listeners
                    .push(listener.try_clone().map_err(bind_err)?.into());
                std::thread::spawn(move || tcp_accept(listener, guest, netns));
            }
        }
        Ok(())
    }
}

impl Drop for HostNet {
    fn drop(&mut self) {
        for fd in &self.listeners {
            // Wakes the thread blocked in accept/recv on the same socket.
            // SAFETY: shutdown only reads the descriptor, which we own.
            unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
        }
    }
}

/// Refuses what Linux would not take as an interface name, before it
/// reaches `ip` or a monitor's command line.
pub(crate) fn check_ifname(tap: &str) -> Result<(), RuntimeError> {
    if tap.is_empty() || tap.len() > 15 || tap.contains(['/', ' ', '\n', '\t', '\0']) {
        return Err(RuntimeError::TapSetup {
            tap: tap.into(),
            detail: "not a valid interface name (1-15 characters, no '/' or blanks)".into(),
        });
    }
    Ok(())
}

/// Makes a network namespace and returns a handle to it. unshare(2) moves
/// only the calling thread, so a short-lived thread does it.
fn new_netns() -> Result<OwnedFd, RuntimeError> {
    let err = |detail: String| RuntimeError::TapSetup {
        tap: PRIVATE_TAP.into(),
        detail,
    };
    std::thread::spawn(|| -> Result<OwnedFd, String> {
        // SAFETY: unshare affects only this thread, which does nothing else.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "cannot make a network namespace: {}",
                std::io::Error::last_os_error()
            ));
        }
        std::fs::File::open("/proc/thread-self/ns/net")
            .map(OwnedFd::from)
            .map_err(|e| format!("cannot open the new network namespace: {e}"))
    })
    .join()
    .map_err(|_| err("the namespace thread panicked".into()))?
    .map_err(err)
}

/// Moves the calling thread (or, after fork, process) into `netns`.
pub(crate) fn enter_netns(netns: RawFd) -> std::io::Result<()> {
    // SAFETY: setns only reads the descriptor.
    if unsafe { libc::setns(netns, libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `ip -batch -` with `cmds`, inside `netns` when given: one exec for
/// the whole setup.
pub(crate) fn ip_batch(netns: Option<RawFd>, cmds: &[String]) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new("ip");
    c.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(fd) = netns {
        // SAFETY: setns is async-signal-safe and allocates nothing.
        unsafe {
            c.pre_exec(move || enter_netns(fd));
        }
    }
    let mut child = c
        .spawn()
        .map_err(|e| format!("cannot run ip (install iproute2): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(cmds.join("\n").as_bytes())
            .map_err(|e| format!("cannot talk to ip: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("ip failed: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip -batch` ({}) failed: {}",
            cmds.join("; "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn tcp_accept(listener: TcpListener, guest: SocketAddrV4, netns: Option<Arc<OwnedFd>>) {
    loop {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // EINVAL after shutdown(2): the run is over.
            Err(_) => return,
        };
        let netns = netns.clone();
        std::thread::spawn(move || {
            if let Some(ns) = &netns {
                if enter_netns(ns.as_raw_fd()).is_err() {
                    return;
                }
            }
            if let Some(upstream) = connect_patiently(guest) {
                splice_both(client, upstream);
            }
        });
    }
}

fn connect_patiently(guest: SocketAddrV4) -> Option<TcpStream> {
    let start = Instant::now();
    loop {
        match TcpStream::connect_timeout(&guest.into(), CONNECT_PATIENCE) {
            Ok(s) => return Some(s),
            Err(_) if start.elapsed() < CONNECT_PATIENCE => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(_) => return None,
        }
    }
}

/// Copies both ways until each side has closed its half.
fn splice_both(a: TcpStream, b: TcpStream) {
    let _ = a.set_nodelay(true);
    let _ = b.set_nodelay(true);
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || pump(a2, b2));
    pump(b, a);
    let _ = up.join();
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// One upstream socket per client address, made inside the run's namespace,
/// each with a thread that sends the guest's answers back to that client.
fn udp_proxy(sock: UdpSocket, guest: SocketAddrV4, netns: Option<Arc<OwnedFd>>) {
    let peers: Arc<Mutex<Vec<(SocketAddr, UdpSocket)>>> = Arc::default();
    let mut buf = [0u8; 65536];
    loop {
        let (n, client) = match sock.recv_from(&mut buf) {
            Ok(v) => v,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let known = peers.lock().ok().and_then(|p| {
            p.iter()
                .find(|(c, _)| *c == client)
                .map(|(_, u)| u.try_clone())
        });
        let upstream = match known {
            Some(Ok(u)) => u,
            _ => {
                let ns = netns.clone();
                let made = std::thread::spawn(move || -> std::io::Result<UdpSocket> {
                    if let Some(ns) = &ns {
                        enter_netns(ns.as_raw_fd())?;
                    }
                    let u = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
                    u.connect(guest)?;
                    Ok(u)
                })
                .join();
                let Ok(Ok(u)) = made else { continue };
                let (Ok(back), Ok(reply), Ok(kept)) =
                    (u.try_clone(), sock.try_clone(), u.try_clone())
                else {
                    continue;
                };
                if let Ok(mut p) = peers.lock() {
                    p.push((client, kept));
                }
                let peers = peers.clone();
                std::thread::spawn(move || {
                    let _ = back.set_read_timeout(Some(UDP_IDLE));
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = back.recv(&mut buf) {
                        let _ = reply.send_to(&buf[..n], client);
                    }
                    if let Ok(mut p) = peers.lock() {
                        p.retain(|(c, _)| *c != client);
                    }
                });
                u
            }
        };
        let _ = upstream.send(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_tap_must_exist() {
        let e = HostNet::existing("bunnynope0", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bunnynope0") && e.contains("does not exist"),
            "{e}"
        );
        assert!(e.contains("--tap"), "the error names the option: {e}");
        let e = HostNet::existing("a/b", &[]).unwrap_err().to_string();
        assert!(e.contains("not a valid interface name"), "{e}");
    }
}
