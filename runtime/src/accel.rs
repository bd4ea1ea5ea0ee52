//! Choosing between KVM and TCG.
//!
//! `/dev/kvm` existing proves little: on nested setups such as PVM the device
//! answers every ioctl yet qemu hangs or aborts once a real guest runs. So the
//! probe runs a real guest: four bytes of 16-bit code doing `out` and `hlt`,
//! in a forked child that is killed if it does not finish within the budget.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::RuntimeError;

/// What the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// KVM where it really works, else TCG with a notice.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// What the monitor will use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolvedAccel {
    Kvm,
    Tcg,
}

/// The outcome of probing the host's KVM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmProbe {
    Usable,
    /// Why KVM cannot be used, phrased to follow "KVM is unusable: ".
    Unusable(String),
}

/// The probe gets this long before the guest is declared hung. A working
/// KVM finishes in a few milliseconds.
const PROBE_BUDGET: Duration = Duration::from_millis(500);

/// Resolves `requested` into what the monitor will use, with a one-line
/// notice when `Auto` fell back to TCG.
pub fn resolve_accel(requested: Accel) -> Result<(ResolvedAccel, Option<String>), RuntimeError> {
    match requested {
        Accel::Tcg => Ok((ResolvedAccel::Tcg, None)),
        Accel::Kvm => match cached_probe() {
            KvmProbe::Usable => Ok((ResolvedAccel::Kvm, None)),
            KvmProbe::Unusable(reason) => Err(RuntimeError::KvmUnusable { reason }),
        },
        Accel::Auto => match cached_probe() {
            KvmProbe::Usable => Ok((ResolvedAccel::Kvm, None)),
            KvmProbe::Unusable(reason) => Ok((
                ResolvedAccel::Tcg,
                Some(format!(
                    "KVM is unusable ({reason}); using TCG emulation, which is much slower"
                )),
            )),
        },
    }
}

/// Probes KVM, reusing a result recorded earlier in the same host boot.
pub fn cached_probe() -> KvmProbe {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cache = cache_file();
    if !boot_id.is_empty() {
        if let Some(hit) = cache.as_deref().and_then(|c| read_cache(c, &boot_id)) {
            return hit;
        }
    }
    let result = probe_kvm();
    if let (false, Some(cache)) = (boot_id.is_empty(), cache) {
        // The cache only saves time; failing to write it changes nothing.
        let _ = write_cache(&cache, &boot_id, &result);
    }
    result
}

/// Names the probe's logic, so a changed probe ignores older results.
const CACHE_TAG: &str = "bunny-kvm-probe-v1";

fn cache_file() -> Option<PathBuf> {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ if is_root() => PathBuf::from("/run"),
        _ => return None,
    };
    Some(dir.join("bunny").join("kvm-probe"))
}

fn read_cache(path: &Path, boot_id: &str) -> Option<KvmProbe> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    if lines.next()? != format!("{CACHE_TAG} {boot_id}") {
        return None;
    }
    match lines.next()? {
        "usable" => Some(KvmProbe::Usable),
        "unusable" => Some(KvmProbe::Unusable(lines.next()?.to_string())),
        _ => None,
    }
}

fn write_cache(path: &Path, boot_id: &str, probe: &KvmProbe) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let body = match probe {
        KvmProbe::Usable => format!("{CACHE_TAG} {boot_id}\nusable\n"),
        KvmProbe::Unusable(r) => format!(
            "{CACHE_TAG} {boot_id}\nunusable\n{}\n",
            r.replace('\n', " ")
        ),
    };
    // Written aside and renamed so a concurrent reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Probes KVM now, without the cache. Takes at most about half a second.
pub fn probe_kvm() -> KvmProbe {
    probe_kvm_at(Path::new("/dev/kvm"))
}

fn probe_kvm_at(dev: &Path) -> KvmProbe {
    if !dev.exists() {
        return KvmProbe::Unusable(format!("{} does not exist", dev.display()));
    }
    let Ok(cdev) = CString::new(dev.as_os_str().as_encoded_bytes()) else {
        return KvmProbe::Unusable(format!("{} is not a usable path", dev.display()));
    };
    match run_probe_child(&cdev) {
        // PVM ("pagetable-based virtual machine") runs a tiny guest fine,
        // yet ordinary kernels under qemu hang on it; its module gives it
        // away even where the MSR check passes.
        KvmProbe::Usable if Path::new("/sys/module/kvm_pvm").exists() => KvmProbe::Unusable(
            "the host's KVM is nested PVM (kvm_pvm is loaded), on which qemu guests hang".into(),
        ),
        other => other,
    }
}

/// Exit codes of the probe child; each names the step that failed.
const STEPS: &[&str] = &[
    "the test guest ran",
    "cannot open the device",
    "KVM_GET_API_VERSION failed or is not 12",
    "KVM_CREATE_VM failed",
    "cannot map guest memory",
    "KVM_SET_USER_MEMORY_REGION failed",
    "KVM_CREATE_VCPU failed",
    "cannot map the vCPU state",
    "KVM_GET_SREGS/KVM_SET_SREGS failed",
    "KVM_SET_REGS failed",
    "KVM_RUN failed",
    "the test guest did not reach its port write",
    "the test guest did not halt",
    "KVM refuses the host's MSR 0x10a (IA32_ARCH_CAPABILITIES), on which qemu aborts",
];

fn run_probe_child(dev: &CString) -> KvmProbe {
    // SAFETY: the child only makes raw system calls (no allocation, no
    // locks) and leaves through _exit, which is what fork in a possibly
    // multi-threaded process allows.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return KvmProbe::Unusable(format!(
            "cannot fork the probe: {}",
            std::io::Error::last_os_error()
        ));
    }
    if pid == 0 {
        // SAFETY: see above; probe_in_child only issues system calls.
        unsafe {
            let code = probe_in_child(dev.as_ptr());
            libc::_exit(code);
        }
    }
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: pid is our own child; status is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            if libc::WIFEXITED(status) {
                let code = libc::WEXITSTATUS(status);
                return match code {
                    0 => KvmProbe::Usable,
                    c => KvmProbe::Unusable(format!(
                        "a test guest failed: {}",
                        STEPS.get(c as usize).copied().unwrap_or("unknown failure")
                    )),
                };
            }
            return KvmProbe::Unusable("the test guest's process was killed".into());
        }
        if r < 0 {
            return KvmProbe::Unusable(format!(
                "cannot wait for the probe: {}",
                std::io::Error::last_os_error()
            ));
        }
        if start.elapsed() > PROBE_BUDGET {
            // SAFETY: pid is our own, not yet reaped child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return KvmProbe::Unusable(format!(
                "a test guest did not finish within {} ms",
                PROBE_BUDGET.as_millis()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ioctl numbers of the KVM API on x86_64 (linux/kvm.h).
const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
const KVM_GET_VCPU_MMAP_SIZE: libc::c_ulong = 0xAE04;
const KVM_CREATE_VCPU: libc::c_ulong = 0xAE41;
const KVM_SET_USER_MEMORY_REGION: libc::c_ulong = 0x4020_AE46;
const KVM_RUN: libc::c_ulong = 0xAE80;
const KVM_SET_REGS: libc::c_ulong = 0x4090_AE82;
const KVM_GET_SREGS: libc::c_ulong = 0x8138_AE83;
const KVM_SET_SREGS: libc::c_ulong = 0x4138_AE84;
const KVM_GET_MSRS: libc::c_ulong = 0xC008_AE88;
const KVM_SET_MSRS: libc::c_ulong = 0x4008_AE89;
const MSR_ARCH_CAPABILITIES: u32 = 0x10a;
const KVM_EXIT_IO: u32 = 2;
const KVM_EXIT_HLT: u32 = 5;

const GUEST_ADDR: u64 = 0x1000;
const PROBE_PORT: u16 = 0x10;
const PROBE_BYTE: u8 = 0x42;
/// `mov al, 0x42; out 0x10, al; hlt`
const GUEST_CODE: [u8; 5] = [0xB0, PROBE_BYTE, 0xE6, PROBE_PORT as u8, 0xF4];

#[repr(C)]
struct MemoryRegion {
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    memory_size: u64,
    userspace_addr: u64,
}

/// Runs the test guest; returns an index into `STEPS`.
///
/// # Safety
/// Only for the forked child: it leaks descriptors and mappings on purpose
/// (the process exits right after).
#[cfg(target_arch = "x86_64")]
unsafe fn probe_in_child(dev: *const libc::c_char) -> i32 {
    let kvm = libc::open(dev, libc::O_RDWR | libc::O_CLOEXEC);
    if kvm < 0 {
        return 1;
    }
    if libc::ioctl(kvm, KVM_GET_API_VERSION, 0) != 12 {
        return 2;
    }
    let vm = libc::ioctl(kvm, KVM_CREATE_VM, 0);
    if vm < 0 {
        return 3;
    }
    let mem = libc::mmap(
        std::ptr::null_mut(),
        0x1000,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    );
    if mem == libc::MAP_FAILED {
        return 4;
    }
    std::ptr::copy_nonoverlapping(GUEST_CODE.as_ptr(), mem as *mut u8, GUEST_CODE.len());
    let region = MemoryRegion {
        slot: 0,
        flags: 0,
        guest_phys_addr: GUEST_ADDR,
        memory_size: 0x1000,
        userspace_addr: mem as u64,
    };
    if libc::ioctl(
        vm,
        KVM_SET_USER_MEMORY_REGION,
        &region as *const MemoryRegion,
    ) < 0
    {
        return 5;
    }
    let vcpu = libc::ioctl(vm, KVM_CREATE_VCPU, 0);
    if vcpu < 0 {
        return 6;
    }
    // qemu with `-cpu host` copies MSR 0x10a (IA32_ARCH_CAPABILITIES) from
    // the host's feature MSRs into each vCPU and aborts when KVM refuses
    // it, which nested PVM does.
    let mut msrs = [0u64; 3];
    msrs[0] = 1; // nmsrs = 1, pad = 0
    msrs[1] = MSR_ARCH_CAPABILITIES as u64; // index, reserved = 0
    if libc::ioctl(kvm, KVM_GET_MSRS, msrs.as_mut_ptr()) == 1
        && libc::ioctl(vcpu, KVM_SET_MSRS, msrs.as_ptr()) != 1
    {
        return 13;
    }
    let run_size = libc::ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if run_size <= 0 {
        return 7;
    }
    let run = libc::mmap(
        std::ptr::null_mut(),
        run_size as usize,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
        vcpu,
        0,
    );
    if run == libc::MAP_FAILED {
        return 7;
    }
    // struct kvm_sregs is 312 bytes; cs is its first kvm_segment, with
    // the base at offset 0 and the selector at offset 12.
    let mut sregs = [0u8; 312];
    if libc::ioctl(vcpu, KVM_GET_SREGS, sregs.as_mut_ptr()) < 0 {
        return 8;
    }
    sregs[0..8].copy_from_slice(&0u64.to_ne_bytes());
    sregs[12..14].copy_from_slice(&0u16.to_ne_bytes());
    if libc::ioctl(vcpu, KVM_SET_SREGS, sregs.as_ptr()) < 0 {
        return 8;
    }
    // struct kvm_regs: 18 u64, rip at index 16 and rflags at 17 (bit 1 is
    // reserved and must be set).
    let mut regs = [0u64; 18];
    regs[16] = GUEST_ADDR;
    regs[17] = 2;
    if libc::ioctl(vcpu, KVM_SET_REGS, regs.as_ptr()) < 0 {
        return 9;
    }
    let run = run as *const u8;
    // kvm_run: exit_reason (u32) at offset 8; for KVM_EXIT_IO the io
    // struct starts at 32: direction u8, size u8, port u16, count u32,
    // data_offset u64.
    if libc::ioctl(vcpu, KVM_RUN, 0) < 0 {
        return 10;
    }
    let exit_reason = std::ptr::read_unaligned(run.add(8) as *const u32);
    let port = std::ptr::read_unaligned(run.add(34) as *const u16);
    let data_offset = std::ptr::read_unaligned(run.add(40) as *const u64);
    if exit_reason != KVM_EXIT_IO
        || port != PROBE_PORT
        || data_offset >= run_size as u64
        || *run.add(data_offset as usize) != PROBE_BYTE
    {
        return 11;
    }
    if libc::ioctl(vcpu, KVM_RUN, 0) < 0 {
        return 10;
    }
    if std::ptr::read_unaligned(run.add(8) as *const u32) != KVM_EXIT_HLT {
        return 12;
    }
    0
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn probe_in_child(_dev: *const libc::c_char) -> i32 {
    // The test guest is x86 code; elsewhere trust that the device opens.
    let kvm = libc::open(_dev, libc::O_RDWR | libc::O_CLOEXEC);
    if kvm < 0 {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_is_unusable() {
        let p = probe_kvm_at(Path::new("/nonexistent/kvm"));
        assert!(matches!(p, KvmProbe::Unusable(ref r) if r.contains("does not exist")));
    }

    #[test]
    fn probe_is_fast_and_auto_follows_it() {
        let t = Instant::now();
        let probe = probe_kvm();
        let took = t.elapsed();
        // The probe gives up after PROBE_BUDGET (0.5 s); a hung probe would
        // take forever, and 10 s allows for a loaded machine.
        assert!(
            took < Duration::from_secs(10),
            "the KVM probe took {took:?}"
        );
        let (accel, notice) = resolve_accel(Accel::Auto).unwrap();
        match &probe {
            KvmProbe::Usable => {
                assert_eq!((accel, notice), (ResolvedAccel::Kvm, None));
                assert_eq!(resolve_accel(Accel::Kvm).unwrap().0, ResolvedAccel::Kvm);
            }
            KvmProbe::Unusable(reason) => {
                assert_eq!(accel, ResolvedAccel::Tcg);
                let notice = notice.expect("a fallback must say so");
                assert!(notice.contains("TCG") && !notice.contains('\n'), "{notice}");
                assert!(!reason.is_empty());
                let e = resolve_accel(Accel::Kvm).unwrap_err().to_string();
                assert!(e.contains("KVM") && e.contains("unusable"), "{e}");
            }
        }
        // This project's machines expose a nested PVM /dev/kvm on which qemu
        // hangs; Auto must never pick it.
        if Path::new("/sys/module/kvm_pvm").exists() || !Path::new("/dev/kvm").exists() {
            assert!(matches!(probe, KvmProbe::Unusable(_)), "{probe:?}");
            assert_eq!(accel, ResolvedAccel::Tcg);
        }
    }

    #[test]
    fn cache_round_trip_is_per_boot() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sub/kvm-probe");
        for p in [KvmProbe::Usable, KvmProbe::Unusable("odd\nreason".into())] {
            write_cache(&f, "boot-a", &p).unwrap();
            let want = match &p {
                KvmProbe::Unusable(_) => KvmProbe::Unusable("odd reason".into()),
                u => u.clone(),
            };
            assert_eq!(read_cache(&f, "boot-a"), Some(want));
            assert_eq!(read_cache(&f, "boot-b"), None);
        }
    }

    #[test]
    fn tcg_needs_no_probe() {
        assert_eq!(
            resolve_accel(Accel::Tcg).unwrap(),
            (ResolvedAccel::Tcg, None)
        );
    }
}
