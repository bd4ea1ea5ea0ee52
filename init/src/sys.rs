//! The system calls PID 1 makes: mounts, modules, interfaces, exec, power off.

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::config::{load_order, modinfo_depends, Config, IpConfig};
use crate::{log, Exec};

fn os_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn mount(source: &str, target: &str, fstype: &str) {
    let _ = std::fs::create_dir_all(target);
    let (Ok(s), Ok(t), Ok(f)) = (
        CString::new(source),
        CString::new(target),
        CString::new(fstype),
    ) else {
        return;
    };
    // SAFETY: valid NUL-terminated strings; no data argument.
    let r = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        let e = os_err();
        // Already mounted (e.g. devtmpfs with CONFIG_DEVTMPFS_MOUNT) is fine.
        if e.raw_os_error() != Some(libc::EBUSY) {
            log(&format!("mount {fstype} on {target}: {e}"));
        }
    }
}

pub fn setup_pid1() {
    mount("proc", "/proc", "proc");
    mount("sysfs", "/sys", "sysfs");
    mount("devtmpfs", "/dev", "devtmpfs");
    // An initrd without /dev/console starts init with no stdio: use the
    // console devtmpfs now provides.
    // SAFETY: fcntl on a possibly closed descriptor only reports EBADF.
    if unsafe { libc::fcntl(2, libc::F_GETFD) } < 0 {
        if let Ok(c) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/console")
        {
            for fd in 0..3 {
                // SAFETY: dup2 onto the standard descriptors.
                unsafe { libc::dup2(c.as_raw_fd(), fd) };
            }
        }
    }
    let _ = std::fs::create_dir_all("/tmp");
}

pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

fn collect_modules(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() && depth < 8 {
            collect_modules(&p, depth + 1, out);
        } else if p.extension().is_some_and(|e| e == "ko") {
            out.push(p);
        }
    }
}

/// Loads every `.ko` under `dir`, each after the modules its `depends=`
/// names (Debian builds virtio_net and friends as modules).
pub fn load_modules(dir: &Path) {
    let mut files = Vec::new();
    collect_modules(dir, 0, &mut files);
    let mods: Vec<(String, Vec<String>)> = files
        .iter()
        .map(|p| {
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().replace('-', "_"))
                .unwrap_or_default();
            let deps = std::fs::read(p)
                .map(|b| modinfo_depends(&b))
                .unwrap_or_default();
            (name, deps)
        })
        .collect();
    let mut loaded = 0;
    for i in load_order(&mods) {
        let path = &files[i];
        let Ok(f) = std::fs::File::open(path) else {
            continue;
        };
        let params = c"";
        // SAFETY: finit_module with an open fd and an empty parameter string.
        let r = unsafe {
            libc::syscall(
                libc::SYS_finit_module,
                f.as_raw_fd(),
                params.as_ptr(),
                0 as libc::c_int,
            )
        };
        if r == 0 {
            loaded += 1;
        } else {
            let e = os_err();
            if e.raw_os_error() != Some(libc::EEXIST) {
                log(&format!("loading {}: {e}", path.display()));
            }
        }
    }
    if loaded > 0 {
        log(&format!("loaded {loaded} kernel modules"));
    }
}

/// `struct ifreq` with the union as bytes (40 bytes on 64-bit Linux).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: [u8; 24],
}

/// The kernel's `struct rtentry` (uapi/linux/route.h).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

fn sockaddr_in(a: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr are both 16 bytes, plain data.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ifreq(dev: &str) -> IfReq {
    let mut r = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: [0; 24],
    };
    let n = dev.len().min(libc::IFNAMSIZ - 1);
    r.name[..n].copy_from_slice(&dev.as_bytes()[..n]);
    r
}

fn ioctl(sock: i32, req: libc::c_ulong, arg: *mut libc::c_void, what: &str) -> bool {
    // SAFETY: arg points at a live struct of the layout `req` expects.
    let r = unsafe { libc::ioctl(sock, req, arg) };
    if r != 0 {
        log(&format!("{what}: {}", os_err()));
    }
    r == 0
}

fn set_addr(sock: i32, dev: &str, req: libc::c_ulong, a: Ipv4Addr, what: &str) -> bool {
    let mut r = ifreq(dev);
    let sa = sockaddr_in(a);
    // SAFETY: copying the 16 bytes of a sockaddr into the union.
    let bytes: [u8; 16] = unsafe { std::mem::transmute(sa) };
    r.data[..16].copy_from_slice(&bytes);
    ioctl(sock, req, (&mut r as *mut IfReq).cast(), what)
}

fn up(sock: i32, dev: &str) -> bool {
    let mut r = ifreq(dev);
    if !ioctl(
        sock,
        libc::SIOCGIFFLAGS,
        (&mut r as *mut IfReq).cast(),
        &format!("flags of {dev}"),
    ) {
        return false;
    }
    let flags =
        i16::from_ne_bytes([r.data[0], r.data[1]]) | (libc::IFF_UP | libc::IFF_RUNNING) as i16;
    r.data[..2].copy_from_slice(&flags.to_ne_bytes());
    ioctl(
        sock,
        libc::SIOCSIFFLAGS,
        (&mut r as *mut IfReq).cast(),
        &format!("bringing {dev} up"),
    )
}

pub fn setup_network() {
    // SAFETY: socket with constant arguments.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        log(&format!("socket: {}", os_err()));
        return;
    }
    set_addr(
        sock,
        "lo",
        libc::SIOCSIFADDR,
        Ipv4Addr::LOCALHOST,
        "address of lo",
    );
    up(sock, "lo");
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if let Some(ip) = IpConfig::from_cmdline(&cmdline) {
        let dev = ip.device.as_str();
        let ok = set_addr(
            sock,
            dev,
            libc::SIOCSIFADDR,
            ip.addr,
            &format!("address of {dev}"),
        ) && set_addr(
            sock,
            dev,
            libc::SIOCSIFNETMASK,
            ip.netmask,
            &format!("netmask of {dev}"),
        ) && up(sock, dev);
        if ok {
            if let Some(gw) = ip.gateway {
                add_default_route(sock, gw);
            }
            log(&format!(
                "{dev} {}/{} gw {}",
                ip.addr,
                ip.netmask,
                ip.gateway
                    .map(|g| g.to_string())
                    .unwrap_or_else(|| "none".into())
            ));
        }
    }
    // SAFETY: closing the socket we opened.
    unsafe { libc::close(sock) };
}

fn add_default_route(sock: i32, gw: Ipv4Addr) {
    let mut rt = RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr_in(Ipv4Addr::UNSPECIFIED),
        rt_gateway: sockaddr_in(gw),
        rt_genmask: sockaddr_in(Ipv4Addr::UNSPECIFIED),
        rt_flags: libc::RTF_UP | libc::RTF_GATEWAY,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_pad4: std::ptr::null_mut(),
        rt_metric: 0,
        rt_dev: std::ptr::null_mut(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    ioctl(
        sock,
        libc::SIOCADDRT,
        (&mut rt as *mut RtEntry).cast(),
        &format!("default route via {gw}"),
    );
}

/// The child side of the fork: identity, directory, exec. Never returns.
pub fn exec_child(exec: &Exec, conf: &Config) -> ! {
    // SAFETY: only async-signal-safe calls on data prepared before the fork.
    unsafe {
        libc::setsid();
        if let Some(gid) = conf.gid {
            if libc::setgid(gid) != 0 {
                libc::_exit(126);
            }
        }
        if let Some(uid) = conf.uid {
            if libc::setuid(uid) != 0 {
                libc::_exit(126);
            }
        }
        if let Some(wd) = &exec.workdir {
            if libc::chdir(wd.as_ptr()) != 0 {
                libc::_exit(126);
            }
        }
        let mut argv: Vec<*const libc::c_char> = exec.argv.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = exec.env.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());
        for p in &exec.paths {
            libc::execve(p.as_ptr(), argv.as_ptr(), envp.as_ptr());
        }
        let msg = b"bunny-init: exec failed: the program was not found or cannot run\n";
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(127);
    }
}

/// Ends the guest: a non-zero status goes to qemu's isa-debug-exit device
/// (port 0xf4; bunny run turns it back into its exit status), then power off.
pub fn power_off(status: i32) -> ! {
    // SAFETY: sync has no arguments.
    unsafe { libc::sync() };
    // Logged first: qemu exits on the port write itself.
    log(&format!("powering off (status {status})"));
    if status != 0 {
        use std::os::unix::fs::FileExt;
        // The device takes a byte; bunny run reads bits 0..7 back.
        let byte = [(status & 0x7f) as u8];
        match std::fs::OpenOptions::new().write(true).open("/dev/port") {
            Ok(f) => {
                let _ = f.write_at(&byte, 0xf4);
            }
            Err(e) => log(&format!("/dev/port: {e}; the exit status is lost")),
        }
    }
    // SAFETY: reboot with a constant command; PID 1 has CAP_SYS_BOOT.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    // reboot only returns on failure; PID 1 must not exit (kernel panic).
    loop {
        // SAFETY: pause has no arguments.
        unsafe { libc::pause() };
    }
}

/// The virtio disk (`vda`..`vdz`) whose serial is `id`, and whether it is
/// read-only, as urunit finds a volume; `sys_block` is `/sys/block`.
pub fn find_volume(sys_block: &Path, id: &str) -> Option<(String, bool)> {
    (b'a'..=b'z').find_map(|c| {
        let name = format!("vd{}", c as char);
        let dir = sys_block.join(&name);
        let serial = std::fs::read_to_string(dir.join("serial")).ok()?;
        if serial.trim_end() != id {
            return None;
        }
        let ro = std::fs::read_to_string(dir.join("ro")).is_ok_and(|r| r.trim() == "1");
        Some((name, ro))
    })
}

/// Mounts the configuration's block volumes (ext4, read-only when the disk
/// is), returning the mount points to unmount at power off.
pub fn mount_volumes(conf: &Config) -> Vec<String> {
    let mut mounted = Vec::new();
    for (id, mp) in &conf.blocks {
        let Some((dev, ro)) = find_volume(Path::new("/sys/block"), id) else {
            log(&format!(
                "block volume {id}: no virtio disk has this serial"
            ));
            continue;
        };
        let _ = std::fs::create_dir_all(mp);
        let (Ok(s), Ok(t), Ok(f)) = (
            CString::new(format!("/dev/{dev}")),
            CString::new(mp.as_str()),
            CString::new("ext4"),
        ) else {
            log(&format!("block volume {id}: a NUL byte in {mp:?}"));
            continue;
        };
        let flags = if ro { libc::MS_RDONLY } else { 0 };
        // SAFETY: valid NUL-terminated strings; no data argument.
        let r = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, std::ptr::null()) };
        if r != 0 {
            log(&format!(
                "block volume {id}: mount /dev/{dev} on {mp}: {}",
                os_err()
            ));
            continue;
        }
        log(&format!(
            "block volume {id} (/dev/{dev}) at {mp}{}",
            if ro { " (read-only)" } else { "" }
        ));
        mounted.push(mp.clone());
    }
    mounted
}

/// Unmounts the volumes (last first), so their filesystems are clean when
/// the host reads them back.
pub fn unmount_volumes(mounted: &[String]) {
    for mp in mounted.iter().rev() {
        let Ok(t) = CString::new(mp.as_str()) else {
            continue;
        };
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::umount(t.as_ptr()) } != 0 {
            log(&format!("umount {mp}: {}", os_err()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_found_by_serial() {
        let d = std::env::temp_dir().join(format!("bunny-init-sys-{}", std::process::id()));
        for (name, serial, ro) in [
            ("vda", "rootfs\n", "0"),
            ("vdb", "bunnyvol0\n", "1"),
            ("vdc", "bunnyvol1", "0"),
        ] {
            std::fs::create_dir_all(d.join(name)).unwrap();
            std::fs::write(d.join(name).join("serial"), serial).unwrap();
            std::fs::write(d.join(name).join("ro"), ro).unwrap();
        }
        assert_eq!(find_volume(&d, "bunnyvol0"), Some(("vdb".into(), true)));
        assert_eq!(find_volume(&d, "bunnyvol1"), Some(("vdc".into(), false)));
        assert_eq!(find_volume(&d, "bunnyvol"), None);
        let _ = std::fs::remove_dir_all(&d);
    }
}
