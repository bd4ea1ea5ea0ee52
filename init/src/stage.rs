//! The boot stage: bunny-init as an initrd's `/init` that only makes the
//! real root reachable. A kernel with virtio-blk and ext4 as modules
//! (Debian's) cannot mount a block root by itself; the stage loads the
//! modules the initrd carries, mounts `root=`, moves it to `/` and execs
//! `init=` there with the arguments and environment the kernel gave it.

use std::ffi::CString;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::RootConfig;
use crate::log;

/// Present only in the stage initrd bunny builds: an initrd that is the
/// guest's whole root never has it.
pub const MARKER: &str = "/.bunny/boot-stage";

const NEW_ROOT: &str = "/newroot";

fn cstr(s: &str) -> Option<CString> {
    CString::new(s).ok()
}

fn fail(msg: &str) -> ! {
    log(&format!("boot stage: {msg}"));
    // PID 1 exiting panics the kernel: the monitor reports a crashed guest
    // rather than a guest that ran and succeeded.
    std::process::exit(1);
}

/// `statfs` types of the filesystem the kernel unpacks an initrd into.
const RAMFS_MAGIC: i64 = 0x8584_58f6;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Removes the initrd's files, as busybox's switch_root does: they live in
/// the kernel's rootfs (ramfs or tmpfs), which stays mounted, unreachable,
/// under the new root for the guest's whole life, so whatever is not
/// removed is RAM the app never gets back. The walk stays on `/`'s device:
/// the new root mounted on NEW_ROOT is never entered. Returns the bytes of
/// the files removed.
fn free_initramfs() -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Some(slash) = cstr("/") else {
        return 0;
    };
    // SAFETY: a zeroed statfs is a valid out-parameter for statfs(2).
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a valid out-pointer.
    if unsafe { libc::statfs(slash.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    #[allow(clippy::unnecessary_cast)]
    let kind = st.f_type as i64;
    if kind != RAMFS_MAGIC && kind != TMPFS_MAGIC {
        return 0;
    }
    match std::fs::symlink_metadata("/") {
        Ok(root) => remove_children(Path::new("/"), root.dev()),
        Err(_) => 0,
    }
}

fn remove_children(dir: &Path, dev: u64) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut freed = 0;
    for e in entries.flatten() {
        let path = e.path();
        let Ok(md) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        // Another filesystem mounted here (the new root): not the initrd's.
        if md.dev() != dev {
            continue;
        }
        if md.is_dir() {
            freed += remove_children(&path, dev);
            let _ = std::fs::remove_dir(&path);
        } else if std::fs::remove_file(&path).is_ok() {
            freed += md.len();
        }
    }
    freed
}

/// Mounts the root the command line names and execs its init; never returns.
pub fn switch_root(args: &[String]) -> ! {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let Some(root) = RootConfig::from_cmdline(&cmdline) else {
        fail("the kernel command line names no root device (root=/dev/...)");
    };
    // virtio-blk probes while its module loads, but devtmpfs may create the
    // node a moment later.
    let t = Instant::now();
    while !Path::new(&root.device).exists() {
        if t.elapsed() > Duration::from_secs(10) {
            let disks: Vec<String> = std::fs::read_dir("/sys/block")
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            fail(&format!(
                "{} did not appear (block devices: {disks:?}); does the initrd carry virtio_blk.ko?",
                root.device
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::create_dir_all(NEW_ROOT);
    let (Some(dev), Some(target), Some(fstype)) =
        (cstr(&root.device), cstr(NEW_ROOT), cstr(&root.fstype))
    else {
        fail("a NUL byte on the kernel command line");
    };
    let flags = if root.read_only { libc::MS_RDONLY } else { 0 };
    // SAFETY: valid NUL-terminated strings; no data argument.
    let r = unsafe {
        libc::mount(
            dev.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if r != 0 {
        fail(&format!(
            "mount {} ({}) on {NEW_ROOT}: {}",
            root.device,
            root.fstype,
            std::io::Error::last_os_error()
        ));
    }
    log(&format!(
        "boot stage: {} ({}) mounted, starting {}",
        root.device, root.fstype, root.init
    ));
    // The real init mounts its own; detaching these keeps nothing of the
    // initrd busy.
    for m in ["/proc", "/sys", "/dev"] {
        if let Some(p) = cstr(m) {
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
        }
    }
    let freed = free_initramfs();
    log(&format!("boot stage: freed {freed} bytes of the initrd"));
    let (Some(dot), Some(slash)) = (cstr("."), cstr("/")) else {
        fail("internal: path strings");
    };
    // SAFETY: chdir/mount/chroot with valid NUL-terminated paths: the
    // classic switch_root (MS_MOVE the new root over `/`, then chroot).
    let moved = unsafe {
        libc::chdir(target.as_ptr()) == 0
            && libc::mount(
                dot.as_ptr(),
                slash.as_ptr(),
                std::ptr::null(),
                libc::MS_MOVE,
                std::ptr::null(),
            ) == 0
            && libc::chroot(dot.as_ptr()) == 0
            && libc::chdir(slash.as_ptr()) == 0
    };
    if !moved {
        fail(&format!(
            "moving {NEW_ROOT} to /: {}",
            std::io::Error::last_os_error()
        ));
    }
    let Some(prog) = cstr(&root.init) else {
        fail("internal: init path");
    };
    let mut argv: Vec<CString> = vec![prog.clone()];
    argv.extend(args.iter().filter_map(|a| cstr(a)));
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| cstr(&format!("{}={}", k.to_string_lossy(), v.to_string_lossy())))
        .collect();
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut env_p: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    env_p.push(std::ptr::null());
    // SAFETY: NULL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(prog.as_ptr(), argv_p.as_ptr(), env_p.as_ptr()) };
    fail(&format!(
        "exec {} on the new root: {}",
        root.init,
        std::io::Error::last_os_error()
    ));
}
