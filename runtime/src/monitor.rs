//! The host side: monitor command lines and config files.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::accel::ResolvedAccel;
use crate::cmdline::{self, LinuxRoot};
use crate::config::{Hypervisor, UnikernelType};
use crate::paths::lexical_in_rootfs;
use crate::solo5::Solo5Abi;
use crate::spec::{NetSpec, RunSpec};
use crate::RuntimeError;

/// What to exec, and the files to write first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorCommand {
    pub program: String,
    pub args: Vec<String>,
    /// Written (whole) before the monitor starts, e.g. firecracker's config.
    pub files: Vec<(PathBuf, Vec<u8>)>,
    /// One-line notices for the user.
    pub notes: Vec<String>,
    /// Written before the monitor starts, from a file of the image plus
    /// bytes of the run's (an initrd with urunit's configuration appended).
    pub derived: Vec<DerivedFile>,
}

/// `path` = `base` (if any) zero-padded to 512 bytes, then `tail`, padded
/// likewise: how urunc appends its configuration to an initrd (unpadded,
/// the kernel reports "invalid magic" and loses it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedFile {
    pub path: PathBuf,
    pub base: Option<PathBuf>,
    pub tail: Vec<u8>,
}

/// The serial of volume `n`'s disk, by which the guest's init finds it
/// (urunit's `ID:`); virtio-blk keeps 20 bytes of it.
pub fn volume_serial(n: usize) -> String {
    format!("bunnyvol{n}")
}

/// Host paths of the image files the monitor opens.
#[derive(Debug, Clone)]
pub(crate) struct GuestFiles {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub block: Option<PathBuf>,
    /// For solo5 monitors: the device ABI read from the kernel itself. None
    /// when it could not be read (a command built without the files), and
    /// then urunc's device names are assumed.
    pub solo5: Option<Solo5Abi>,
}

impl GuestFiles {
    /// Paths placed under the rootfs without looking at the disk.
    pub(crate) fn lexical(spec: &RunSpec) -> Result<GuestFiles, RuntimeError> {
        let c = &spec.config;
        Ok(GuestFiles {
            kernel: lexical_in_rootfs(
                &spec.rootfs,
                &c.binary,
                "kernel (com.urunc.unikernel.binary)",
            )?,
            initrd: c
                .initrd
                .as_deref()
                .map(|p| lexical_in_rootfs(&spec.rootfs, p, "initrd (com.urunc.unikernel.initrd)"))
                .transpose()?,
            block: block_path(spec, lexical_in_rootfs)?,
            solo5: None,
        })
    }
}

/// The block image the monitor opens: the run's private copy if it has
/// one, else the image's own file, placed in the rootfs by `place`.
pub(crate) fn block_path(
    spec: &RunSpec,
    place: fn(&Path, &str, &'static str) -> Result<PathBuf, RuntimeError>,
) -> Result<Option<PathBuf>, RuntimeError> {
    match (&spec.config.block, &spec.block_copy) {
        (Some(_), Some(copy)) => Ok(Some(copy.clone())),
        (block, _) => block
            .as_deref()
            .map(|p| place(&spec.rootfs, p, "block image (com.urunc.unikernel.block)"))
            .transpose(),
    }
}

/// The exact command line urunc would run for `spec`. Pure: paths are only
/// placed under the rootfs (`boot` resolves and checks them on disk).
pub fn monitor_command(
    spec: &RunSpec,
    accel: ResolvedAccel,
) -> Result<MonitorCommand, RuntimeError> {
    build(spec, accel, &GuestFiles::lexical(spec)?)
}

/// Side files (firecracker's config, urunit's config disk) go beside the
/// rootfs, as in an OCI bundle, so the image itself is left untouched.
fn side_file(spec: &RunSpec, name: &str) -> PathBuf {
    if let Some(dir) = &spec.work_dir {
        return dir.join(name);
    }
    let dir = match spec.rootfs.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => spec.rootfs.as_path(),
    };
    dir.join(name)
}

fn unsupported(ty: UnikernelType, hv: Hypervisor, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::Unsupported {
        guest: ty.as_str(),
        monitor: hv.as_str(),
        reason: reason.into(),
    }
}

/// A disk handed to the guest, in device order.
struct Disk {
    id: String,
    path: PathBuf,
    /// Volumes: a serial the guest finds it by, read-only, never a
    /// snapshot (what the guest writes must reach the file).
    serial: Option<String>,
    read_only: bool,
}

impl Disk {
    fn image(id: &str, path: &Path) -> Disk {
        Disk {
            id: id.to_string(),
            path: path.to_path_buf(),
            serial: None,
            read_only: false,
        }
    }
}

/// The guest-specific half of a command.
struct GuestPlan {
    cmdline: String,
    initrd: Option<PathBuf>,
    disks: Vec<Disk>,
    /// solo5 device names (net, block).
    solo5_names: (&'static str, &'static str),
    files: Vec<(PathBuf, Vec<u8>)>,
    derived: Vec<DerivedFile>,
    notes: Vec<String>,
    /// FreeBSD only: the bus its kernel finds devices on.
    freebsd_bus: Option<FreeBsdBus>,
}

/// Where a FreeBSD kernel looks for its virtio devices, which decides the
/// machine it can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeBsdBus {
    /// virtio-mmio (the FIRECRACKER config: no ACPI, no PCI virtio). It
    /// learns the devices only from `virtio_mmio.device=` entries on its
    /// command line, which qemu's microvm writes only with `acpi=off`, in
    /// `-device` order.
    Mmio,
    /// virtio-pci (GENERIC): a PC machine.
    Pci,
}

/// The bus of a FreeBSD kernel, from the drivers compiled into it: a kernel
/// built with `device virtio_mmio` carries that driver's name. A kernel
/// that cannot be read counts as FIRECRACKER, bunny's default config; the
/// monitor then reports the missing file itself.
pub fn freebsd_bus(kernel: &Path) -> FreeBsdBus {
    const NEEDLE: &[u8] = b"virtio_mmio";
    let Ok(mut f) = std::fs::File::open(kernel) else {
        return FreeBsdBus::Mmio;
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut keep = 0usize;
    loop {
        let n = match std::io::Read::read(&mut f, &mut buf[keep..]) {
            Ok(0) => return FreeBsdBus::Pci,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return FreeBsdBus::Mmio,
        };
        let end = keep + n;
        if buf[..end].windows(NEEDLE.len()).any(|w| w == NEEDLE) {
            return FreeBsdBus::Mmio;
        }
        // Keep the tail so a name split across reads is still found.
        keep = (NEEDLE.len() - 1).min(end);
        buf.copy_within(end - keep..end, 0);
    }
}

pub(crate) fn build(
    spec: &RunSpec,
    accel: ResolvedAccel,
    files: &GuestFiles,
) -> Result<MonitorCommand, RuntimeError> {
    let hv = spec.hypervisor();
    let ty = spec.config.unikernel_type;
    let plan = plan_guest(spec, hv, files)?;
    let needs_kvm = matches!(
        hv,
        Hypervisor::Firecracker | Hypervisor::Hvt | Hypervisor::CloudHypervisor
    );
    if needs_kvm && accel == ResolvedAccel::Tcg {
        return Err(RuntimeError::NeedsKvm {
            monitor: hv.as_str(),
            reason: format!(
                "this run uses TCG emulation (KVM is unusable here or was not chosen); {}",
                without_kvm(hv)
            ),
        });
    }
    let mut cmd = match hv {
        Hypervisor::Qemu => qemu(spec, accel, files, &plan, ty),
        Hypervisor::Firecracker => firecracker(spec, files, &plan, ty)?,
        Hypervisor::Hvt | Hypervisor::Spt => solo5(spec, hv, files, &plan, ty)?,
        Hypervisor::CloudHypervisor => cloud_hypervisor(spec, files, &plan, ty)?,
    };
    cmd.files.extend(plan.files);
    cmd.derived.extend(plan.derived);
    cmd.notes.extend(plan.notes);
    Ok(cmd)
}

/// What to use instead of a monitor that needs KVM.
pub(crate) fn without_kvm(hv: Hypervisor) -> &'static str {
    match hv {
        Hypervisor::Hvt => {
            "solo5-spt runs the same unikernel code without KVM: bake it for spt (`monitor: spt`)"
        }
        _ => "use qemu (--monitor qemu), which emulates",
    }
}

fn plan_guest(
    spec: &RunSpec,
    hv: Hypervisor,
    files: &GuestFiles,
) -> Result<GuestPlan, RuntimeError> {
    let ty = spec.config.unikernel_type;
    let argv = spec.guest_argv();
    let mut notes = Vec::new();
    let supported: &[Hypervisor] = match ty {
        UnikernelType::Linux => &[
            Hypervisor::Qemu,
            Hypervisor::Firecracker,
            Hypervisor::CloudHypervisor,
        ],
        UnikernelType::Rumprun => &[Hypervisor::Qemu, Hypervisor::Hvt, Hypervisor::Spt],
        UnikernelType::Unikraft => &[Hypervisor::Qemu, Hypervisor::Firecracker],
        UnikernelType::Mirage => &[Hypervisor::Qemu, Hypervisor::Hvt, Hypervisor::Spt],
        UnikernelType::FreeBsd => &[Hypervisor::Qemu, Hypervisor::Firecracker],
        UnikernelType::Hermit | UnikernelType::Mewz => {
            return Err(unsupported(
                ty,
                hv,
                "this runtime does not boot this unikernel type yet",
            ))
        }
    };
    if !supported.contains(&hv) {
        let names: Vec<&str> = supported.iter().map(|h| h.as_str()).collect();
        return Err(unsupported(
            ty,
            hv,
            format!("it runs on {}", names.join(", ")),
        ));
    }
    if spec.config.mount_rootfs && files.initrd.is_none() && files.block.is_none() {
        return Err(unsupported(
            ty,
            hv,
            "mountRootfs=true shares the container rootfs over devmapper/9p/virtiofs, which this runtime does not provide; build the image with an initrd or a block rootfs (BunnyFile `type: initrd`/`type: block`, Containerfile `LABEL bunny.rootfs=initrd`)",
        ));
    }
    if !spec.volumes.is_empty() {
        match (ty, hv) {
            (UnikernelType::Linux, Hypervisor::Qemu)
            | (UnikernelType::Rumprun, _)
            | (UnikernelType::FreeBsd, Hypervisor::Qemu | Hypervisor::Firecracker) => {}
            _ => {
                return Err(unsupported(
                    ty,
                    hv,
                    "volumes (-v) are attached to linux guests under qemu, to rumprun guests and to freebsd guests under qemu and firecracker only, for now",
                ))
            }
        }
    }
    let blk_mnt = spec.config.blk_mnt_point.as_deref();
    let block_is_root = files.block.is_some() && matches!(blk_mnt, None | Some("/"));
    let mut plan = GuestPlan {
        cmdline: String::new(),
        initrd: files.initrd.clone(),
        disks: Vec::new(),
        solo5_names: ("tap", "rootfs"),
        files: Vec::new(),
        derived: Vec::new(),
        notes: Vec::new(),
        freebsd_bus: None,
    };
    match ty {
        UnikernelType::Linux => {
            if argv.is_empty() {
                return Err(RuntimeError::NoInit { guest: ty.as_str() });
            }
            // A block root with an initrd beside it: the initrd is a boot
            // stage (bunny's, for a kernel with virtio-blk as a module) whose
            // /init mounts `root=` and execs `init=` there, as urunc 0.5
            // boots such an image.
            let root = if block_is_root {
                LinuxRoot::Block
            } else if files.initrd.is_some() {
                LinuxRoot::Initrd
            } else if files.block.is_some() {
                return Err(unsupported(
                    ty,
                    hv,
                    format!(
                        "the block image is a volume at {} but the image has no initrd to be the root",
                        blk_mnt.unwrap_or_default()
                    ),
                ));
            } else {
                LinuxRoot::None
            };
            if let (LinuxRoot::Initrd, Some(mp)) = (&root, blk_mnt) {
                if files.block.is_some() {
                    notes.push(format!(
                        "the block image is attached as /dev/vda; mounting it at {mp} is up to the guest"
                    ));
                }
            }
            // urunc's way to tell the init about volumes, and bunny's way to
            // carry an environment the kernel command line cannot (a `"` in
            // a value): urunit's configuration appended to the initrd as
            // `/urunit.conf`. Only an init that reads it (urunit, bunny-init:
            // its path names urunit) gets the environment there.
            let urunit_init = argv.first().is_some_and(|a| a.contains("urunit"));
            let env_in_config = matches!(root, LinuxRoot::Initrd)
                && urunit_init
                && !cmdline::linux_env_fits(&spec.env);
            let urunit_config =
                match (&root, spec.volumes.is_empty() && !env_in_config) {
                    (_, true) => None,
                    (LinuxRoot::Initrd, false) => {
                        let mut conf = cmdline::urunit_volumes(&spec.volumes)?;
                        if env_in_config {
                            conf.extend(cmdline::urunit_env(&spec.env)?);
                        }
                        let path = side_file(spec, "bunny-initrd.img");
                        plan.derived.push(DerivedFile {
                            path: path.clone(),
                            base: files.initrd.clone(),
                            tail: cmdline::cpio_newc("urunit.conf", &conf),
                        });
                        plan.initrd = Some(path);
                        Some("/urunit.conf")
                    }
                    (_, false) => return Err(unsupported(
                        ty,
                        hv,
                        "volumes (-v) reach a linux guest through its initrd; this image has none",
                    )),
                };
            plan.cmdline = cmdline::linux(spec, &argv, root, urunit_config, env_in_config)?;
            if let Some(b) = &files.block {
                plan.disks.push(Disk::image("rootfs", b));
            }
            for (n, v) in spec.volumes.iter().enumerate() {
                plan.disks.push(Disk {
                    id: format!("vol{n}"),
                    path: v.path.clone(),
                    serial: Some(volume_serial(n)),
                    read_only: v.read_only,
                });
            }
        }
        UnikernelType::Rumprun => {
            if let Some(b) = &files.block {
                plan.disks.push(Disk::image("rootfs", b));
            }
            let mut mount = files.block.as_ref().map(|_| match blk_mnt {
                Some(mp) if !mp.is_empty() => mp,
                _ => "/data",
            });
            match spec.volumes.as_slice() {
                [] => {}
                // Solo5 0.4 tenders take one disk (`--disk=`), and v0.9
                // guests only the devices they declared when baked
                // (urunc's pair: one disk, `rootfs`).
                [_] if files.block.is_some() => {
                    return Err(unsupported(
                        ty,
                        hv,
                        "a rumprun guest on solo5 has one disk, and this image uses it for its own block image; a volume needs an image without one",
                    ))
                }
                [v] => {
                    plan.disks.push(Disk {
                        id: "rootfs".into(),
                        path: v.path.clone(),
                        serial: None,
                        read_only: v.read_only,
                    });
                    mount = Some(v.target.as_str());
                }
                _ => {
                    return Err(unsupported(
                        ty,
                        hv,
                        "a rumprun guest on solo5 has one disk: give it one volume",
                    ))
                }
            }
            plan.cmdline = cmdline::rumprun(spec, &argv, hv, mount)?;
        }
        UnikernelType::Unikraft => {
            if files.block.is_some() {
                return Err(unsupported(
                    ty,
                    hv,
                    "unikraft guests take an initrd, not a block image",
                ));
            }
            plan.cmdline = cmdline::unikraft(spec, &argv, files.initrd.is_some())?;
        }
        UnikernelType::Mirage => {
            plan.solo5_names = ("service", "storage");
            if let Some(b) = &files.block {
                plan.disks.push(Disk::image("storage", b));
            }
            plan.cmdline = cmdline::mirage(spec, &argv)?;
        }
        UnikernelType::FreeBsd => {
            if files.initrd.is_some() {
                return Err(unsupported(
                    ty,
                    hv,
                    "FreeBSD boots through PVH and takes no initrd",
                ));
            }
            let Some(block) = &files.block else {
                return Err(unsupported(
                    ty,
                    hv,
                    "FreeBSD needs its root as a UFS2 block image (com.urunc.unikernel.block)",
                ));
            };
            let bus = freebsd_bus(&files.kernel);
            if bus == FreeBsdBus::Pci && hv == Hypervisor::Firecracker {
                return Err(unsupported(
                    ty,
                    hv,
                    "this kernel has no virtio-mmio driver (a GENERIC-like config) and firecracker has no PCI; run it on qemu, or build the kernel with the FIRECRACKER config",
                ));
            }
            plan.freebsd_bus = Some(bus);
            let (init_path, rest) = match argv.split_first() {
                Some((a0, rest)) => (Some(a0.as_str()), rest),
                None => (None, &[][..]),
            };
            if let Some(w) =
                init_path.filter(|w| w.contains(',') || w.contains(char::is_whitespace))
            {
                return Err(unsupported(
                    ty,
                    hv,
                    format!("init path {w:?} has a comma or blank, which FreeBSD boot arguments cannot carry"),
                ));
            }
            plan.disks.push(Disk::image("rootfs", block));
            let uses_urunit = init_path
                .map(|p| Path::new(p).file_name().is_some_and(|n| n == "urunit"))
                .unwrap_or(false);
            let urunit_disk = if uses_urunit {
                let conf = side_file(spec, "bunny-urunit.conf");
                plan.files
                    .push((conf.clone(), cmdline::freebsd_urunit_config(spec, rest)?));
                plan.disks.push(Disk::image("urunit", &conf));
                Some(plan.disks.len() - 1)
            } else {
                if !spec.volumes.is_empty() {
                    // bunny's /etc/rc mounts them from urunit's config,
                    // which only an init named urunit is given.
                    return Err(unsupported(
                        ty,
                        hv,
                        "volumes reach a FreeBSD guest through urunit's configuration, and this image's init is not urunit (make /sbin/urunit the entrypoint)",
                    ));
                }
                if !rest.is_empty() {
                    notes.push(
                        "FreeBSD starts init_path without arguments; the remaining arguments are dropped (make urunit the entrypoint to keep them)".into(),
                    );
                }
                None
            };
            // After the root and urunit's disk, on the same bus: FreeBSD
            // numbers vtbd devices in that order.
            for (n, v) in spec.volumes.iter().enumerate() {
                plan.disks.push(Disk {
                    id: format!("vol{n}"),
                    path: v.path.clone(),
                    serial: Some(volume_serial(n)),
                    read_only: v.read_only,
                });
            }
            plan.cmdline = cmdline::freebsd(init_path, urunit_disk, spec);
        }
        UnikernelType::Hermit | UnikernelType::Mewz => {}
    }
    plan.notes = notes;
    Ok(plan)
}

/// No limit (0) means urunc's default.
fn memory_mb(spec: &RunSpec) -> u64 {
    if spec.memory_mb == 0 {
        crate::spec::DEFAULT_MEMORY_MB
    } else {
        spec.memory_mb
    }
}

/// qemu splits option values on commas; a literal comma is written twice.
fn qemu_escape(p: &Path) -> String {
    p.to_string_lossy().replace(',', ",,")
}

/// qemu's own seccomp filter: no obsolete syscalls, no setuid, no fork or
/// exec, no scheduler or affinity changes. Debian's qemu is built with it;
/// `BUNNY_QEMU_SANDBOX=off` drops it for a qemu that is not.
pub const QEMU_SANDBOX: &str =
    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// qemu's exit device for linux guests (see [`guest_status`]).
pub const GUEST_EXIT_DEVICE: &str = "isa-debug-exit,iobase=0xf4,iosize=0x04";

/// The guest's exit status from qemu's, when the exit device is present: a
/// clean power-off (0) means 0; an odd code 2n+1 with n > 0 means the guest
/// wrote n to port 0xf4; anything else is qemu's own status.
pub fn guest_status(qemu_status: i32) -> i32 {
    if qemu_status >= 3 && qemu_status % 2 == 1 && qemu_status < 256 {
        qemu_status >> 1
    } else {
        qemu_status
    }
}

fn qemu(
    spec: &RunSpec,
    accel: ResolvedAccel,
    files: &GuestFiles,
    plan: &GuestPlan,
    ty: UnikernelType,
) -> MonitorCommand {
    let microvm = match plan.freebsd_bus {
        Some(FreeBsdBus::Mmio) => true,
        Some(FreeBsdBus::Pci) => false,
        None => spec.microvm,
    };
    let bus = if microvm { "device" } else { "pci" };
    let mut a: Vec<String> = vec![
        "-m".into(),
        memory_mb(spec).to_string(),
        "-smp".into(),
        spec.cpus.max(1).to_string(),
        "-nographic".into(),
        "-vga".into(),
        "none".into(),
        // None of qemu's default devices (IDE CD-ROM, floppy controller,
        // parallel port, a monitor on stdio): a guest gets only what it is
        // given, as under urunc. The console, which -nographic would have
        // put there, is then named explicitly.
        "-nodefaults".into(),
        "-serial".into(),
        "stdio".into(),
        "-no-reboot".into(),
    ];
    if std::env::var("BUNNY_QEMU_SANDBOX").as_deref() != Ok("off") {
        a.extend(["-sandbox".into(), QEMU_SANDBOX.into()]);
    }
    match plan.freebsd_bus {
        // No ACPI, so that qemu names the virtio-mmio devices on the
        // kernel's command line (FreeBSD's only way to find them), and an
        // MP table instead, which the FIRECRACKER config reads.
        Some(FreeBsdBus::Mmio) => {
            a.extend(["-M".into(), "microvm,acpi=off,pic=on,pit=on,rtc=on".into()])
        }
        Some(FreeBsdBus::Pci) => a.extend(["-M".into(), "q35".into()]),
        // Without pit and rtc the microvm machine can hang at boot.
        None if microvm => a.extend(["-M".into(), "microvm,acpi=on,pic=on,pit=on,rtc=on".into()]),
        None => {}
    }
    match accel {
        ResolvedAccel::Kvm => a.extend(["-accel", "kvm", "-cpu", "host"].map(String::from)),
        ResolvedAccel::Tcg => a.extend(["-accel", "tcg"].map(String::from)),
    }
    if ty == UnikernelType::Linux && !microvm {
        // Lets the guest's init hand back the app's exit status: a byte
        // written to port 0xf4 makes qemu exit with (byte << 1) | 1.
        a.extend(["-device".into(), GUEST_EXIT_DEVICE.into()]);
    }
    a.extend([
        "-kernel".into(),
        files.kernel.to_string_lossy().into_owned(),
    ]);
    if let Some(i) = &plan.initrd {
        a.extend(["-initrd".into(), i.to_string_lossy().into_owned()]);
    }
    for d in &plan.disks {
        a.push("-drive".into());
        // urunit's config disk is per run; the image's own disks may be shared.
        let snapshot = if spec.shared_image && d.id != "urunit" && d.serial.is_none() {
            ",snapshot=on"
        } else {
            ""
        };
        let ro = if d.read_only { ",readonly=on" } else { "" };
        a.push(format!(
            "file={},format=raw,if=none,id={}{snapshot}{ro}",
            qemu_escape(&d.path),
            d.id
        ));
        a.push("-device".into());
        let serial = d
            .serial
            .as_ref()
            .map(|s| format!(",serial={s}"))
            .unwrap_or_default();
        a.push(format!("virtio-blk-{bus},drive={}{serial}", d.id));
    }
    match &spec.net {
        // qemu adds a NIC of its own unless told not to.
        NetSpec::None => a.extend(["-nic".into(), "none".into()]),
        NetSpec::User { forwards } => {
            let mut netdev = String::from("user,id=net0");
            for f in forwards {
                let proto = if f.udp { "udp" } else { "tcp" };
                let host_ip = match f.host_ip {
                    Some(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
                    Some(ip) => ip.to_string(),
                    None => String::new(),
                };
                netdev.push_str(&format!(
                    ",hostfwd={proto}:{host_ip}:{}-:{}",
                    f.host_port, f.guest_port
                ));
            }
            a.extend(["-netdev".into(), netdev]);
            a.extend(["-device".into(), format!("virtio-net-{bus},netdev=net0")]);
        }
        NetSpec::Tap { tap, mac, .. } => {
            a.extend([
                "-netdev".into(),
                format!(
                    "tap,id=net0,ifname={},script=no,downscript=no",
                    tap.replace(',', ",,")
                ),
            ]);
            a.extend([
                "-device".into(),
                format!("virtio-net-{bus},netdev=net0,mac={mac}"),
            ]);
        }
    }
    a.extend(["-append".into(), plan.cmdline.clone()]);
    MonitorCommand {
        program: Hypervisor::Qemu.program().into(),
        args: a,
        files: Vec::new(),
        notes: Vec::new(),
        derived: Vec::new(),
    }
}

#[derive(Serialize)]
struct FcConfig {
    #[serde(rename = "boot-source")]
    boot_source: FcBootSource,
    #[serde(rename = "machine-config")]
    machine: FcMachine,
    drives: Vec<FcDrive>,
    #[serde(rename = "network-interfaces", skip_serializing_if = "Vec::is_empty")]
    net: Vec<FcNet>,
}

#[derive(Serialize)]
struct FcBootSource {
    kernel_image_path: String,
    boot_args: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    initrd_path: Option<String>,
}

#[derive(Serialize)]
struct FcMachine {
    vcpu_count: u32,
    mem_size_mib: u64,
    smt: bool,
    track_dirty_pages: bool,
}

#[derive(Serialize)]
struct FcDrive {
    drive_id: String,
    is_read_only: bool,
    is_root_device: bool,
    path_on_host: String,
}

#[derive(Serialize)]
struct FcNet {
    iface_id: String,
    guest_mac: String,
    host_dev_name: String,
}

fn tap_only(
    spec: &RunSpec,
    ty: UnikernelType,
    hv: Hypervisor,
) -> Result<Option<(String, String)>, RuntimeError> {
    match &spec.net {
        NetSpec::None => Ok(None),
        NetSpec::Tap { tap, mac, .. } => Ok(Some((tap.clone(), mac.clone()))),
        NetSpec::User { .. } => Err(unsupported(
            ty,
            hv,
            format!(
                "{} has no user-mode networking (no port forwards); give the guest a tap device instead, created once with: sudo ip tuntap add dev bunny0 mode tap user $USER",
                hv.program()
            ),
        )),
    }
}

fn firecracker(
    spec: &RunSpec,
    files: &GuestFiles,
    plan: &GuestPlan,
    ty: UnikernelType,
) -> Result<MonitorCommand, RuntimeError> {
    let net = tap_only(spec, ty, Hypervisor::Firecracker)?;
    // urunc prefixes FreeBSD's drive ids with FC; the guest sees them as
    // vtbd0.. in order either way.
    let prefix = if ty == UnikernelType::FreeBsd {
        "FC"
    } else {
        ""
    };
    let config = FcConfig {
        boot_source: FcBootSource {
            kernel_image_path: files.kernel.to_string_lossy().into_owned(),
            boot_args: plan.cmdline.clone(),
            initrd_path: plan
                .initrd
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        },
        machine: FcMachine {
            vcpu_count: spec.cpus.max(1),
            mem_size_mib: memory_mb(spec),
            smt: false,
            track_dirty_pages: false,
        },
        drives: plan
            .disks
            .iter()
            .map(|d| FcDrive {
                drive_id: if d.id == "urunit" {
                    "FC_URUNIT_CONFIG".into()
                } else {
                    format!("{prefix}{}", d.id)
                },
                is_read_only: d.read_only,
                // The root is named on the kernel cmdline already; firecracker
                // would otherwise append its own root= too.
                is_root_device: false,
                path_on_host: d.path.to_string_lossy().into_owned(),
            })
            .collect(),
        net: net
            .into_iter()
            .map(|(tap, mac)| FcNet {
                iface_id: "net1".into(),
                guest_mac: mac,
                host_dev_name: tap,
            })
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&config).map_err(|e| RuntimeError::Supervise {
        program: "firecracker".into(),
        detail: format!("cannot encode its config: {e}"),
    })?;
    let path = side_file(spec, "bunny-firecracker.json");
    Ok(MonitorCommand {
        program: Hypervisor::Firecracker.program().into(),
        args: vec![
            "--no-api".into(),
            "--config-file".into(),
            path.to_string_lossy().into_owned(),
        ],
        files: vec![(path, json)],
        notes: Vec::new(),
        derived: Vec::new(),
    })
}

fn solo5(
    spec: &RunSpec,
    hv: Hypervisor,
    files: &GuestFiles,
    plan: &GuestPlan,
    ty: UnikernelType,
) -> Result<MonitorCommand, RuntimeError> {
    if plan.initrd.is_some() {
        return Err(unsupported(
            ty,
            hv,
            "solo5 has no initrd; use a block image",
        ));
    }
    let tap = tap_only(spec, ty, hv)?;
    let mut a = vec![format!("--mem={}", memory_mb(spec))];
    match &files.solo5 {
        Some(Solo5Abi::Legacy) => {
            // Solo5 0.4: one NIC and one disk, no names.
            if let Some((tap, mac)) = &tap {
                a.push(format!("--net={tap}"));
                a.push(format!("--net-mac={mac}"));
            }
            match plan.disks.as_slice() {
                [] => {}
                [d] => a.push(format!("--disk={}", d.path.to_string_lossy())),
                _ => {
                    return Err(unsupported(
                        ty,
                        hv,
                        "a Solo5 0.4 unikernel has one disk, and this run has more",
                    ))
                }
            }
        }
        Some(Solo5Abi::Manifest { net, block }) => {
            // The tender refuses to start unless every declared device is
            // attached, so what the guest declares decides, not the image.
            match (net.as_slice(), &tap) {
                ([], _) => {}
                ([name], Some((tap, mac))) => {
                    a.push(format!("--net:{name}={tap}"));
                    a.push(format!("--net-mac:{name}={mac}"));
                }
                ([name], None) => {
                    return Err(unsupported(
                        ty,
                        hv,
                        format!("the unikernel declares network device `{name}`, and the tender starts it only with that device attached: give the guest a network"),
                    ))
                }
                (names, _) => {
                    return Err(unsupported(
                        ty,
                        hv,
                        format!("the unikernel declares {} network devices ({}); this runtime attaches one", names.len(), names.join(", ")),
                    ))
                }
            }
            let mut unused: Vec<&String> = block.iter().collect();
            for d in &plan.disks {
                let name = if let Some(i) = unused.iter().position(|n| **n == d.id) {
                    unused.remove(i)
                } else if plan.disks.len() == 1 && block.len() == 1 && !unused.is_empty() {
                    unused.remove(0)
                } else {
                    return Err(unsupported(
                        ty,
                        hv,
                        format!(
                            "the image has a disk for `{}`, but the unikernel declares block devices [{}]",
                            d.id,
                            block.join(", ")
                        ),
                    ));
                };
                a.push(format!("--block:{name}={}", d.path.to_string_lossy()));
            }
            if let Some(name) = unused.first() {
                return Err(unsupported(
                    ty,
                    hv,
                    format!("the unikernel declares block device `{name}`, and the tender starts it only with that device attached, but the image has no block image (com.urunc.unikernel.block)"),
                ));
            }
        }
        None => {
            let (net_name, blk_name) = plan.solo5_names;
            if let Some((tap, mac)) = &tap {
                a.push(format!("--net:{net_name}={tap}"));
                a.push(format!("--net-mac:{net_name}={mac}"));
            }
            for d in &plan.disks {
                a.push(format!("--block:{blk_name}={}", d.path.to_string_lossy()));
            }
        }
    }
    // `--` ends the tender's options; the whole command line is one argument.
    a.push("--".into());
    a.push(files.kernel.to_string_lossy().into_owned());
    if !plan.cmdline.is_empty() {
        a.push(plan.cmdline.clone());
    }
    Ok(MonitorCommand {
        program: hv.program().into(),
        args: a,
        files: Vec::new(),
        notes: Vec::new(),
        derived: Vec::new(),
    })
}

fn cloud_hypervisor(
    spec: &RunSpec,
    files: &GuestFiles,
    plan: &GuestPlan,
    ty: UnikernelType,
) -> Result<MonitorCommand, RuntimeError> {
    let mut a = vec![
        "--kernel".into(),
        files.kernel.to_string_lossy().into_owned(),
    ];
    if let Some(i) = &plan.initrd {
        a.extend(["--initramfs".into(), i.to_string_lossy().into_owned()]);
    }
    a.extend(["--cmdline".into(), plan.cmdline.clone()]);
    a.extend(["--cpus".into(), format!("boot={}", spec.cpus.max(1))]);
    a.extend(["--memory".into(), format!("size={}M", memory_mb(spec))]);
    for d in &plan.disks {
        a.extend([
            "--disk".into(),
            format!("path={}", d.path.to_string_lossy()),
        ]);
    }
    if let Some((tap, mac)) = tap_only(spec, ty, Hypervisor::CloudHypervisor)? {
        a.extend(["--net".into(), format!("tap={tap},mac={mac}")]);
    }
    a.extend([
        "--serial".into(),
        "tty".into(),
        "--console".into(),
        "off".into(),
    ]);
    Ok(MonitorCommand {
        program: Hypervisor::CloudHypervisor.program().into(),
        args: a,
        files: Vec::new(),
        notes: Vec::new(),
        derived: Vec::new(),
    })
}

#[cfg(test)]
#[path = "monitor_tests.rs"]
mod tests;
