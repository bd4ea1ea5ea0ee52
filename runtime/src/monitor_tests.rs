use std::net::Ipv4Addr;

use serde_json::json;

use super::*;
use crate::config::UnikernelConfig;
use crate::spec::{parse_publish, PortForward};

const ROOT: &str = "/b/rootfs";

fn config(ty: UnikernelType, hv: Hypervisor) -> UnikernelConfig {
    UnikernelConfig {
        unikernel_type: ty,
        hypervisor: hv,
        binary: "/.boot/kernel".into(),
        cmdline: None,
        initrd: None,
        block: None,
        blk_mnt_point: None,
        mount_rootfs: false,
        version: None,
    }
}

fn spec(ty: UnikernelType, hv: Hypervisor) -> RunSpec {
    RunSpec::new(ROOT, config(ty, hv))
}

fn tap() -> NetSpec {
    NetSpec::Tap {
        tap: "tap0".into(),
        ip: Ipv4Addr::new(10, 1, 0, 2),
        mask: Ipv4Addr::new(255, 255, 255, 0),
        gateway: Ipv4Addr::new(10, 1, 0, 1),
        mac: "02:00:0a:01:00:02".into(),
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn argv(cmd: &MonitorCommand) -> Vec<String> {
    let mut v = vec![cmd.program.clone()];
    v.extend(cmd.args.iter().cloned());
    v
}

fn fc_json(cmd: &MonitorCommand) -> serde_json::Value {
    assert_eq!(cmd.files.len(), 1, "{:?}", cmd.files);
    assert_eq!(cmd.files[0].0, PathBuf::from("/b/bunny-firecracker.json"));
    serde_json::from_slice(&cmd.files[0].1).unwrap()
}

#[test]
fn linux_qemu_initrd_user_net_with_forwards() {
    let mut sp = spec(UnikernelType::Linux, Hypervisor::Qemu);
    sp.config.initrd = Some("/.boot/rootfs".into());
    sp.args = s(&["/bin/httpd", "-f", "-h", "/www dir", "-p", "80"]);
    sp.env = s(&["PATH=/bin:/sbin", "GREETING=hello world"]);
    sp.net = NetSpec::User {
        forwards: vec![
            parse_publish("127.0.0.1:18080:80").unwrap(),
            parse_publish("5353:53/udp").unwrap(),
        ],
    };
    sp.memory_mb = 512;
    sp.cpus = 2;
    let cmd = monitor_command(&sp, ResolvedAccel::Tcg).unwrap();
    assert_eq!(
        argv(&cmd),
        s(&[
            "qemu-system-x86_64",
            "-m",
            "512",
            "-smp",
            "2",
            "-nographic",
            "-vga",
            "none",
            "-nodefaults",
            "-serial",
            "stdio",
            "-no-reboot",
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
            "-accel",
            "tcg",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-kernel",
            "/b/rootfs/.boot/kernel",
            "-initrd",
            "/b/rootfs/.boot/rootfs",
            "-netdev",
            "user,id=net0,hostfwd=tcp:127.0.0.1:18080-:80,hostfwd=udp::5353-:53",
            "-device",
            "virtio-net-pci,netdev=net0",
            "-append",
            "panic=-1 console=ttyS0 root=/dev/ram0 rw ip=10.0.2.15::10.0.2.2:255.255.255.0:urunc:eth0:off PATH=/bin:/sbin GREETING=\"hello world\" rdinit=/bin/httpd -- -f -h '/www dir' -p 80",
        ])
    );
    assert!(cmd.files.is_empty() && cmd.notes.is_empty());
}

#[test]
fn linux_qemu_block_root_kvm_no_net_cmdline_from_annotation() {
    let mut sp = spec(UnikernelType::Linux, Hypervisor::Qemu);
    sp.config.block = Some("/.boot/rootfs".into());
    sp.config.blk_mnt_point = Some("/".into());
    sp.config.cmdline = Some("/usr/bin/app  --port 80".into());
    let cmd = monitor_command(&sp, ResolvedAccel::Kvm).unwrap();
    assert_eq!(
        argv(&cmd),
        s(&[
            "qemu-system-x86_64",
            "-m",
            "256",
            "-smp",
            "1",
            "-nographic",
            "-vga",
            "none",
            "-nodefaults",
            "-serial",
            "stdio",
            "-no-reboot",
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-kernel",
            "/b/rootfs/.boot/kernel",
            "-drive",
            "file=/b/rootfs/.boot/rootfs,format=raw,if=none,id=rootfs",
            "-device",
            "virtio-blk-pci,drive=rootfs",
            "-nic",
            "none",
            "-append",
            "panic=-1 console=ttyS0 root=/dev/vda rw init=/usr/bin/app -- --port 80",
        ])
    );
}

#[test]
fn linux_qemu_tap_microvm_and_comma_paths() {
    let mut sp = RunSpec::new("/b/a,b", config(UnikernelType::Linux, Hypervisor::Qemu));
    sp.config.block = Some("/disk".into());
    sp.args = s(&["/init"]);
    sp.net = tap();
    sp.microvm = true;
    let cmd = monitor_command(&sp, ResolvedAccel::Tcg).unwrap();
    assert_eq!(
        argv(&cmd),
        s(&[
            "qemu-system-x86_64",
            "-m",
            "256",
            "-smp",
            "1",
            "-nographic",
            "-vga",
            "none",
            "-nodefaults",
            "-serial",
            "stdio",
            "-no-reboot",
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
            "-M",
            "microvm,acpi=on,pic=on,pit=on,rtc=on",
            "-accel",
            "tcg",
            "-kernel",
            "/b/a,b/.boot/kernel",
            "-drive",
            "file=/b/a,,b/disk,format=raw,if=none,id=rootfs",
            "-device",
            "virtio-blk-device,drive=rootfs",
            "-netdev",
            "tap,id=net0,ifname=tap0,script=no,downscript=no",
            "-device",
            "virtio-net-device,netdev=net0,mac=02:00:0a:01:00:02",
            "-append",
            "panic=-1 console=ttyS0 root=/dev/vda rw ip=10.1.0.2::10.1.0.1:255.255.255.0:urunc:eth0:off init=/init --",
        ])
    );
}

#[test]
fn linux_firecracker_json() {
    let mut sp = spec(UnikernelType::Linux, Hypervisor::Firecracker);
    sp.config.block = Some("/.boot/rootfs".into());
    sp.config.blk_mnt_point = Some("/".into());
    sp.args = s(&["/bin/app", "x"]);
    sp.env = s(&["A=1"]);
    sp.net = tap();
    sp.cpus = 2;
    let cmd = monitor_command(&sp, ResolvedAccel::Kvm).unwrap();
    assert_eq!(
        argv(&cmd),
        s(&[
            "firecracker",
            "--no-api",
            "--config-file",
            "/b/bunny-firecracker.json"
        ])
    );
    assert_eq!(
        fc_json(&cmd),
        json!({
            "boot-source": {
                "kernel_image_path": "/b/rootfs/.boot/kernel",
                "boot_args": "panic=-1 console=ttyS0 root=/dev/vda rw ip=10.1.0.2::10.1.0.1:255.255.255.0:urunc:eth0:off A=1 init=/bin/app -- x"
            },
            "machine-config": {"vcpu_count": 2, "mem_size_mib": 256, "smt": false, "track_dirty_pages": false},
            "drives": [{
                "drive_id": "rootfs",
                "is_read_only": false,
                "is_root_device": false,
                "path_on_host": "/b/rootfs/.boot/rootfs"
            }],
            "network-interfaces": [{"iface_id": "net1", "guest_mac": "02:00:0a:01:00:02", "host_dev_name": "tap0"}]
        })
    );
}

#[test]
fn linux_firecracker_initrd_without_net_and_tcg_refused() {
    let mut sp = spec(UnikernelType::Linux, Hypervisor::Firecracker);
    sp.config.initrd = Some("/.boot/rootfs".into());
    sp.args = s(&["/init"]);
    let cmd = monitor_command(&sp, ResolvedAccel::Kvm).unwrap();
    assert_eq!(
        fc_json(&cmd),
        json!({
            "boot-source": {
                "kernel_image_path": "/b/rootfs/.boot/kernel",
                "boot_args": "panic=-1 console=ttyS0 root=/dev/ram0 rw rdinit=/init --",
                "initrd_path": "/b/rootfs/.boot/rootfs"
            },
            "machine-config": {"vcpu_count": 1, "mem_size_mib": 256, "smt": false, "track_dirty_pages": false},
            "drives": []
        })
    );
    let e = monitor_command(&sp, ResolvedAccel::Tcg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("firecracker needs KVM"), "{e}");
    sp.net = NetSpec::User { forwards: vec![] };
    let e = monitor_command(&sp, ResolvedAccel::Kvm)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ip tuntap add"), "{e}");
}

#[test]
fn rumprun_qemu_hw_with_block() {
    let mut sp = spec(UnikernelType::Rumprun, Hypervisor::Qemu);
    sp.config.block = Some("/.boot/rootfs".into());
    sp.config.blk_mnt_point = Some("/data".into());
    sp.config.cmdline = Some("hello \"world\"".into());
    sp.env = s(&["A=1", "B=<&>"]);
    sp.net = tap();
    let cmd = monitor_command(&sp, ResolvedAccel::Tcg).unwrap();
    assert_eq!(
        argv(&cmd),
        s(&[
            "qemu-system-x86_64",
            "-m",
            "256",
            "-smp",
            "1",
            "-nographic",
            "-vga",
            "none",
            "-nodefaults",
            "-serial",
            "stdio",
            "-no-reboot",
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
            "-accel",
            "tcg",
            "-kernel",
            "/b/rootfs/.boot/kernel",
            "-drive",
            "file=/b/rootfs/.boot/rootfs,format=raw,if=none,id=rootfs",
            "-device",
            "virtio-blk-pci,drive=rootfs",
            "-netdev",
            "tap,id=net0,ifname=tap0,script=no,downscript=no",
            "-device",
            "virtio-net-pci,netdev=net0,mac=02:00:0a:01:00:02",
            "-append",
            r#"{"cmdline":"hello \"world\"","env":"A=1","env":"B=<&>","net":{"if":"vioif0","type":"inet","method":"static","addr":"10.1.0.2","mask":"24","gw":"10.1.0.1"},"blk":{"source":"etfs","path":"/dev/ld0a","fstype":"blk","mountpoint":"/data"}}"#,
        ])
    );
}

#[test]
fn rumprun_hvt_net_and_block() {
    let mut sp = spec(UnikernelType::Rumprun, Hypervisor::Hvt);
    sp.config.block = Some("/.boot/rootfs".into());
    sp.config.blk_mnt_point = Some("/data".into());
    sp.args = s(&["nginx", "-c", "/data/conf/nginx.conf"]);
    sp.net = tap();
    sp.memory_mb = 128;
    let cmd = monitor_command(&sp, ResolvedAccel::Kvm).unwrap();
    assert_eq!(
        argv(&cmd),
        s(&[
            "solo5-hvt",
            "--mem=128",
            "--net:tap=tap0",
            "--net-mac:tap=02:00:0a:01:00:02",
            "--block:rootfs=/b/rootfs/.boot/rootfs",
            "--",
            "/b/rootfs/.boot/kernel",
            r#"{"cmdline":"nginx -c /data/conf/nginx.conf","net":{"if":"ukvmif0","cloner":"True","type":"inet","method":"static","addr":"10.1.0.2","mask":"1","gw":"10.1.0.1"},"blk":{"source":"etfs","path":"/dev/ld0a","fstype":"blk","mountpoint":"/data"}}"#,
        ])
    );
    let e = monitor_command(&sp, ResolvedAccel::Tcg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("hvt needs KVM"), "{e}");
}

#[test]
fn rumprun_spt_without_net_defaults_mount_to_data() {
    let mut sp = spec(UnikernelType::Rumprun, Hypervisor::Spt);
    sp.config.block = Some("/.boot/rootfs".into());
    sp.args = s(&["hello"]);
    // spt needs no accelerator, so TCG is fine.
    let cmd = monitor_command(&sp, ResolvedAccel::Tcg).unwrap();
    assert_eq!(
        argv(&cmd),
        s(&[
            "solo5-spt",
            "--mem=256",
            "--block:rootfs=/b/rootfs/.boot/rootfs",
            "--",
            "/b/rootfs/.boot/kernel",
            r#"{"cmdline":"hello","blk":{"source":"etfs","path":"/dev/ld0a","fstype":"blk","mountpoint":"/data"}}"#,
        ])
    );
    sp.net = NetSpec::User {
        forwards: vec![PortForward {
            host_ip: None,
            host_port: 8080,
            guest_port: 80,
            udp: false,
        }],
    };
    let e = monitor_command(&sp, ResolvedAccel::Tcg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("solo5-spt has no user-mode networking") && e.contains("ip tuntap add"),
        "{e}"
    );
}

#[test]
fn unikraft_qemu_initrd() {
    let mut sp = spec(UnikernelType::Unikraft, Hypervisor::Qemu);
    sp.config.initrd = Some("/.boot/rootfs".into());
    sp.config.version = Some("0.18.0".into());
    sp.args = s(&["/nginx", "-c", "/nginx/conf/nginx.conf"]);
    sp.env = s(&["A=1", "B=2"]);
    sp.net = tap();
    let cmd = monitor_command(&sp, ResolvedAccel::Tcg).unwrap();
    assert_eq!(
        argv(&cmd),
        s(&[
            "qemu-system-x86_64",
            "-m",
            "256",
            "-smp",
            "1",
            "-nographic",
            "-vga",
            "none",
            "-nodefaults",
            "-serial",
            "stdio",
            "-no-reboot",
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
            "-accel",
            "tcg",
            "-kernel",
            "/b/rootfs/.boot/kernel",
            "-initrd",
            "/b/rootfs/.boot/rootfs",
            "-netdev",
            "tap,id=net0,ifname=tap0,script=no,downscript=no",
            "-device",
            "virtio-net-pci,netdev=net0,mac=02:00:0a:01:00:02",
            "-append",
            "Unikraft env.vars=[ A=1 B=2 ] netdev.ip=10.1.0.2/24:10.1.0.1:8.8.8.8 vfs.fstab=[ \"initrd0:/:extract:::\" ] -- /nginx -c /nginx/conf/nginx.conf",
        ])
    );
    // Releases before 0.16.1 take the legacy parameters and no env.
    sp.config.version = Some("0.15.0".into());
    let cmd = monitor_command(&sp, ResolvedAccel::Tcg).unwrap();
    assert_eq!(
        cmd.args.last().unwrap(),
        "Unikraft netdev.ipv4_addr=10.1.0.2 netdev.ipv4_gw_addr=10.1.0.1 netdev.ipv4_subnet_mask=255.255.255.0 vfs.rootfs=initrd -- /nginx -c /nginx/conf/nginx.conf"
    );
}

#[test]
fn mirage_hvt() {
    let mut sp = spec(UnikernelType::Mirage, Hypervisor::Hvt);
    sp.config.block = Some("/.boot/disk".into());
    sp.config.cmdline = Some("--hello=world".into());
    sp.net = tap();
    let cmd = monitor_command(&sp, ResolvedAccel::Kvm).unwrap();
    assert_eq!(
        argv(&cmd),
        s(&[
            "solo5-hvt",
            "--mem=256",
            "--net:service=tap0",
            "--net-mac:service=02:00:0a:01:00:02",
            "--block:storage=/b/rootfs/.boot/disk",
            "--",
            "/b/rootfs/.boot/kernel",
            "--ipv4=10.1.0.2/24 --ipv4-gateway=10.1.0.1 --hello=world",
        ])
    );
}

#[test]
fn freebsd_qemu_microvm_with_urunit() {
    let mut sp = spec(UnikernelType::FreeBsd, Hypervisor::Qemu);
    sp.config.block = Some("/.boot/rootfs".into());
    sp.config.blk_mnt_point = Some("/".into());
    sp.args = s(&["/sbin/urunit", "/usr/local/bin/app", "-v"]);
    sp.env = s(&["A=1"]);
    let cmd = monitor_command(&sp, ResolvedAccel::Tcg).unwrap();
    assert_eq!(
        argv(&cmd),
        s(&[
            "qemu-system-x86_64",
            "-m",
            "256",
            "-smp",
            "1",
            "-nographic",
            "-vga",
            "none",
            "-nodefaults",
            "-serial",
            "stdio",
            "-no-reboot",
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
            "-M",
            "microvm,acpi=off,pic=on,pit=on,rtc=on",
            "-accel",
            "tcg",
            "-kernel",
            "/b/rootfs/.boot/kernel",
            "-drive",
            "file=/b/rootfs/.boot/rootfs,format=raw,if=none,id=rootfs",
            "-device",
            "virtio-blk-device,drive=rootfs",
            "-drive",
            "file=/b/bunny-urunit.conf,format=raw,if=none,id=urunit",
            "-device",
            "virtio-blk-device,drive=urunit",
            "-nic",
            "none",
            "-append",
            "vfs.root.mountfrom=ufs:/dev/vtbd0 init_path=/sbin/urunit URUNIT_CONFIG=/dev/vtbd1",
        ])
    );
    assert_eq!(cmd.files.len(), 1);
    let (path, conf) = &cmd.files[0];
    assert_eq!(path, &PathBuf::from("/b/bunny-urunit.conf"));
    assert_eq!(conf.len(), 512);
    let text = String::from_utf8(conf.clone()).unwrap();
    assert_eq!(
        text.trim_end_matches('\n'),
        "UES\nA=1\nUEE\nUCS\nUID:0\nGID:0\nWD:/\nARC:2\nARV:/usr/local/bin/app\nARV:-v\nUCE\nUBS\nUBE\nUNS\nIP:\nGW:\nMSK:\nUNE\nPAD"
    );
}

#[test]
fn freebsd_without_urunit_notes_dropped_args_and_refuses_commas() {
    let mut sp = spec(UnikernelType::FreeBsd, Hypervisor::Qemu);
    sp.config.block = Some("/.boot/rootfs".into());
    sp.args = s(&["/bin/app", "x"]);
    let cmd = monitor_command(&sp, ResolvedAccel::Kvm).unwrap();
    assert_eq!(
        cmd.args.last().unwrap(),
        "vfs.root.mountfrom=ufs:/dev/vtbd0 init_path=/bin/app"
    );
    assert!(cmd.files.is_empty());
    assert_eq!(cmd.notes.len(), 1, "{:?}", cmd.notes);
    sp.args = s(&["/bin/a,b"]);
    let e = monitor_command(&sp, ResolvedAccel::Kvm)
        .unwrap_err()
        .to_string();
    assert!(e.contains("comma"), "{e}");
    sp.config.block = None;
    let e = monitor_command(&sp, ResolvedAccel::Kvm)
        .unwrap_err()
        .to_string();
    assert!(e.contains("UFS2 block image"), "{e}");
}

#[test]
fn freebsd_firecracker_json() {
    let mut sp = spec(UnikernelType::FreeBsd, Hypervisor::Firecracker);
    sp.config.block = Some("/.boot/rootfs".into());
    sp.config.blk_mnt_point = Some("/".into());
    sp.args = s(&["/sbin/urunit", "/bin/app"]);
    sp.net = tap();
    let cmd = monitor_command(&sp, ResolvedAccel::Kvm).unwrap();
    assert_eq!(
        argv(&cmd),
        s(&[
            "firecracker",
            "--no-api",
            "--config-file",
            "/b/bunny-firecracker.json"
        ])
    );
    assert_eq!(cmd.files.len(), 2);
    let (conf_path, conf) = &cmd.files[1];
    assert_eq!(conf_path, &PathBuf::from("/b/bunny-urunit.conf"));
    assert!(String::from_utf8_lossy(conf).contains("IP:10.1.0.2\nGW:10.1.0.1\nMSK:255.255.255.0\n"));
    let json: serde_json::Value = serde_json::from_slice(&cmd.files[0].1).unwrap();
    assert_eq!(
        json,
        json!({
            "boot-source": {
                "kernel_image_path": "/b/rootfs/.boot/kernel",
                "boot_args": "vfs.root.mountfrom=ufs:/dev/vtbd0 init_path=/sbin/urunit URUNIT_CONFIG=/dev/vtbd1"
            },
            "machine-config": {"vcpu_count": 1, "mem_size_mib": 256, "smt": false, "track_dirty_pages": false},
            "drives": [
                {"drive_id": "FCrootfs", "is_read_only": false, "is_root_device": false, "path_on_host": "/b/rootfs/.boot/rootfs"},
                {"drive_id": "FC_URUNIT_CONFIG", "is_read_only": false, "is_root_device": false, "path_on_host": "/b/bunny-urunit.conf"}
            ],
            "network-interfaces": [{"iface_id": "net1", "guest_mac": "02:00:0a:01:00:02", "host_dev_name": "tap0"}]
        })
    );
}

#[test]
fn cloud_hypervisor_linux() {
    let mut sp = spec(UnikernelType::Linux, Hypervisor::CloudHypervisor);
    sp.config.initrd = Some("/.boot/rootfs".into());
    sp.args = s(&["/init"]);
    sp.net = tap();
    let cmd = monitor_command(&sp, ResolvedAccel::Kvm).unwrap();
    assert_eq!(
        argv(&cmd),
        s(&[
            "cloud-hypervisor",
            "--kernel",
            "/b/rootfs/.boot/kernel",
            "--initramfs",
            "/b/rootfs/.boot/rootfs",
            "--cmdline",
            "panic=-1 console=ttyS0 root=/dev/ram0 rw ip=10.1.0.2::10.1.0.1:255.255.255.0:urunc:eth0:off rdinit=/init --",
            "--cpus",
            "boot=1",
            "--memory",
            "size=256M",
            "--net",
            "tap=tap0,mac=02:00:0a:01:00:02",
            "--serial",
            "tty",
            "--console",
            "off",
        ])
    );
}

#[test]
fn monitor_override_and_refusals() {
    let mut sp = spec(UnikernelType::Linux, Hypervisor::Firecracker);
    sp.args = s(&["/init"]);
    sp.config.initrd = Some("/i".into());
    sp.monitor = Some(Hypervisor::Qemu);
    assert_eq!(
        monitor_command(&sp, ResolvedAccel::Tcg).unwrap().program,
        "qemu-system-x86_64"
    );

    sp.monitor = Some(Hypervisor::Hvt);
    let e = monitor_command(&sp, ResolvedAccel::Kvm)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("linux on hvt") && e.contains("qemu, firecracker"),
        "{e}"
    );

    sp.monitor = None;
    sp.args.clear();
    let e = monitor_command(&sp, ResolvedAccel::Kvm)
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs the program to run"), "{e}");

    let mut sp = spec(UnikernelType::Linux, Hypervisor::Qemu);
    sp.args = s(&["/init"]);
    sp.config.initrd = Some("/../../etc/shadow".into());
    let e = monitor_command(&sp, ResolvedAccel::Tcg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("initrd") && e.contains("\"..\""), "{e}");

    let mut sp = spec(UnikernelType::Hermit, Hypervisor::Qemu);
    sp.args = s(&["/x"]);
    assert!(matches!(
        monitor_command(&sp, ResolvedAccel::Tcg),
        Err(RuntimeError::Unsupported {
            guest: "hermit",
            ..
        })
    ));
}

#[test]
fn zero_memory_means_urunc_default() {
    let mut sp = spec(UnikernelType::Rumprun, Hypervisor::Spt);
    sp.memory_mb = 0;
    sp.args = s(&["x"]);
    let cmd = monitor_command(&sp, ResolvedAccel::Tcg).unwrap();
    assert_eq!(cmd.args[0], "--mem=256");
}

#[test]
fn shared_images_open_disks_as_snapshots_and_side_files_go_to_the_work_dir() {
    let mut sp = spec(UnikernelType::Linux, Hypervisor::Qemu);
    sp.config.block = Some("/.boot/rootfs".into());
    sp.config.blk_mnt_point = Some("/".into());
    sp.args = s(&["/init"]);
    sp.shared_image = true;
    sp.work_dir = Some(PathBuf::from("/w/run-1"));
    let cmd = monitor_command(&sp, ResolvedAccel::Tcg).unwrap();
    assert!(
        argv(&cmd).contains(
            &"file=/b/rootfs/.boot/rootfs,format=raw,if=none,id=rootfs,snapshot=on".to_string()
        ),
        "{:?}",
        argv(&cmd)
    );

    let mut fc = spec(UnikernelType::Linux, Hypervisor::Firecracker);
    fc.args = s(&["/init"]);
    fc.work_dir = Some(PathBuf::from("/w/run-2"));
    let cmd = monitor_command(&fc, ResolvedAccel::Kvm).unwrap();
    assert_eq!(
        cmd.files[0].0,
        PathBuf::from("/w/run-2/bunny-firecracker.json")
    );
}

#[test]
fn guest_exit_status_comes_back_through_qemu() {
    assert_eq!(guest_status(0), 0, "a clean power-off");
    assert_eq!(guest_status((7 << 1) | 1), 7);
    assert_eq!(guest_status((127 << 1) | 1), 127);
    assert_eq!(guest_status(1), 1, "qemu's own failure stays a failure");
    assert_eq!(guest_status(130), 130, "a signal is not a guest status");
}

#[test]
fn freebsd_generic_kernel_gets_a_pc_machine_with_virtio_pci() {
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("rootfs/.boot");
    std::fs::create_dir_all(&boot).unwrap();
    // What the GENERIC config compiles in: virtio over PCI only.
    std::fs::write(
        boot.join("kernel"),
        b"\x7fELF ... virtio_pci vtnet virtio_blk ...",
    )
    .unwrap();
    let mut sp = spec(UnikernelType::FreeBsd, Hypervisor::Qemu);
    sp.rootfs = dir.path().join("rootfs");
    sp.config.block = Some("/.boot/rootfs".into());
    sp.config.blk_mnt_point = Some("/".into());
    sp.args = s(&["/sbin/init"]);
    sp.net = tap();
    let cmd = monitor_command(&sp, ResolvedAccel::Tcg).unwrap();
    let a = argv(&cmd);
    let m = a.iter().position(|x| x == "-M").unwrap();
    assert_eq!(a[m + 1], "q35");
    assert!(
        a.contains(&"virtio-blk-pci,drive=rootfs".to_string()),
        "{a:?}"
    );
    assert!(
        a.iter()
            .any(|x| x.starts_with("virtio-net-pci,netdev=net0")),
        "{a:?}"
    );
    assert!(
        !a.iter()
            .any(|x| x.starts_with("virtio-") && x.contains("-device,")),
        "no virtio-mmio devices on a PC: {a:?}"
    );

    sp.config.hypervisor = Hypervisor::Firecracker;
    let err = monitor_command(&sp, ResolvedAccel::Kvm).unwrap_err();
    assert!(err.to_string().contains("virtio-mmio"), "{err}");
}

#[test]
fn freebsd_bus_finds_the_mmio_driver_across_read_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let k = dir.path().join("kernel");
    // The driver name straddles the 1 MiB read buffer.
    let mut bytes = vec![0u8; (1 << 20) - 4];
    bytes.extend_from_slice(b"virtio_mmio");
    bytes.extend_from_slice(&[0u8; 100]);
    std::fs::write(&k, &bytes).unwrap();
    assert_eq!(freebsd_bus(&k), FreeBsdBus::Mmio);
    bytes.truncate((1 << 20) - 4);
    bytes.extend_from_slice(b"virtio_pci");
    std::fs::write(&k, &bytes).unwrap();
    assert_eq!(freebsd_bus(&k), FreeBsdBus::Pci);
}

#[test]
fn the_container_status_is_the_guests() {
    use crate::boot::{final_status, GUEST_CRASHED};
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;
    let code = |c: i32| ExitStatus::from_raw(c << 8);
    // The guest wrote 7 to qemu's exit device.
    assert_eq!(final_status(code((7 << 1) | 1), None, true, None), 7);
    // A clean power-off.
    assert_eq!(final_status(code(0), None, true, Some("guest-shutdown")), 0);
    // A panic with panic=-1 is a reset, which -no-reboot turns into exit 0.
    assert_eq!(
        final_status(code(0), None, true, Some("guest-reset")),
        GUEST_CRASHED
    );
    assert_eq!(
        final_status(code(0), None, false, Some("guest-panic")),
        GUEST_CRASHED
    );
    // qemu's own failure, with no exit device: its code.
    assert_eq!(final_status(code(1), None, false, None), 1);
    // Stopped on our behalf by SIGTERM, whatever qemu said.
    assert_eq!(
        final_status(code(0), Some(15), true, Some("host-signal")),
        143
    );
    // The monitor died of a signal.
    assert_eq!(final_status(ExitStatus::from_raw(9), None, true, None), 137);
}

#[test]
fn linux_volumes_are_disks_with_serials_named_in_urunits_config() {
    let mut sp = spec(UnikernelType::Linux, Hypervisor::Qemu);
    sp.config.initrd = Some("/.boot/rootfs".into());
    sp.args = s(&["/init"]);
    sp.shared_image = true;
    sp.work_dir = Some("/w".into());
    sp.volumes = vec![
        crate::spec::Volume {
            path: "/w/vol0.img".into(),
            target: "/data".into(),
            read_only: false,
        },
        crate::spec::Volume {
            path: "/v/conf.img".into(),
            target: "/etc/app".into(),
            read_only: true,
        },
    ];
    let cmd = monitor_command(&sp, ResolvedAccel::Tcg).unwrap();
    let a = argv(&cmd).join(" ");
    // The run's initrd: the image's, with urunit's configuration appended.
    assert!(a.contains("-initrd /w/bunny-initrd.img"), "{a}");
    assert!(
        a.contains("-drive file=/w/vol0.img,format=raw,if=none,id=vol0 -device virtio-blk-pci,drive=vol0,serial=bunnyvol0"),
        "volumes are no snapshots: {a}"
    );
    assert!(
        a.contains("file=/v/conf.img,format=raw,if=none,id=vol1,readonly=on -device virtio-blk-pci,drive=vol1,serial=bunnyvol1"),
        "{a}"
    );
    assert!(
        a.contains(" URUNIT_CONFIG=/urunit.conf rdinit=/init"),
        "{a}"
    );
    assert_eq!(cmd.derived.len(), 1);
    let d = &cmd.derived[0];
    assert_eq!(d.base, Some(PathBuf::from("/b/rootfs/.boot/rootfs")));
    let tail = String::from_utf8_lossy(&d.tail);
    assert!(
        tail.starts_with("070701") && tail.contains("urunit.conf\0"),
        "{tail}"
    );
    assert!(
        tail.contains(
            "UBS\nID: bunnyvol0\nMP: /data\nUBE\nUBS\nID: bunnyvol1\nMP: /etc/app\nUBE\n"
        ),
        "{tail}"
    );
    assert!(tail.contains("TRAILER!!!"), "{tail}");
    // Without an initrd there is nowhere to put the configuration.
    sp.config.initrd = None;
    sp.config.block = Some("/.boot/rootfs".into());
    let e = monitor_command(&sp, ResolvedAccel::Tcg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("initrd"), "{e}");
    // Other monitors attach no volumes yet.
    sp.config.initrd = Some("/.boot/rootfs".into());
    sp.config.block = None;
    sp.monitor = Some(Hypervisor::Firecracker);
    sp.net = tap();
    let e = monitor_command(&sp, ResolvedAccel::Kvm)
        .unwrap_err()
        .to_string();
    assert!(e.contains("volumes"), "{e}");
}

#[test]
fn a_rumprun_volume_takes_the_one_solo5_disk() {
    let mut sp = spec(UnikernelType::Rumprun, Hypervisor::Spt);
    sp.args = s(&["app"]);
    sp.volumes = vec![crate::spec::Volume {
        path: "/w/vol0.img".into(),
        target: "/state".into(),
        read_only: false,
    }];
    let cmd = monitor_command(&sp, ResolvedAccel::Tcg).unwrap();
    let a = argv(&cmd).join(" ");
    assert!(a.contains("--block:rootfs=/w/vol0.img"), "{a}");
    assert!(
        a.contains(
            r#""blk":{"source":"etfs","path":"/dev/ld0a","fstype":"blk","mountpoint":"/state"}"#
        ),
        "{a}"
    );
    sp.config.block = Some("/.boot/rootfs".into());
    let e = monitor_command(&sp, ResolvedAccel::Tcg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("one disk"), "{e}");
    sp.config.block = None;
    sp.volumes.push(sp.volumes[0].clone());
    let e = monitor_command(&sp, ResolvedAccel::Tcg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("one volume"), "{e}");
}

#[test]
fn env_a_command_line_cannot_carry_goes_to_urunits_config_for_urunit() {
    let mut sp = spec(UnikernelType::Linux, Hypervisor::Qemu);
    sp.config.initrd = Some("/.boot/rootfs".into());
    sp.shared_image = true;
    sp.work_dir = Some("/w".into());
    sp.env = s(&[
        "GREETING=hello",
        "MSG=say \"hi\" quiet loglevel=0 -- injected",
    ]);
    sp.args = s(&["/urunit", "/bin/app"]);
    let cmd = monitor_command(&sp, ResolvedAccel::Tcg).unwrap();
    let a = argv(&cmd).join(" ");
    assert!(!a.contains("MSG=") && !a.contains("GREETING="), "{a}");
    assert!(
        a.contains(" URUNIT_CONFIG=/urunit.conf rdinit=/urunit -- /bin/app"),
        "{a}"
    );
    let tail = String::from_utf8_lossy(&cmd.derived[0].tail);
    assert!(
        tail.contains("UES\nGREETING=hello\nMSG=say \"hi\" quiet loglevel=0 -- injected\nUEE\n"),
        "{tail}"
    );
    // Values that fit stay on the command line, as urunc puts them.
    sp.env = s(&["GREETING=hello"]);
    let a = argv(&monitor_command(&sp, ResolvedAccel::Tcg).unwrap()).join(" ");
    assert!(
        a.contains("GREETING=hello") && !a.contains("URUNIT_CONFIG"),
        "{a}"
    );
    // An init that does not read urunit's configuration: still refused.
    sp.env = s(&["MSG=a\"b"]);
    sp.args = s(&["/init"]);
    assert!(monitor_command(&sp, ResolvedAccel::Tcg).is_err());
    // A line break cannot be carried anywhere.
    sp.env = s(&["MSG=a\nUEE"]);
    sp.args = s(&["/urunit", "/bin/app"]);
    assert!(monitor_command(&sp, ResolvedAccel::Tcg).is_err());
}

#[test]
fn freebsd_volumes_follow_the_root_and_urunit_disks_on_the_kernels_bus() {
    let vols = || {
        vec![
            crate::spec::Volume {
                path: "/v/data.img".into(),
                target: "/data".into(),
                read_only: false,
            },
            crate::spec::Volume {
                path: "/v/srv.img".into(),
                target: "/srv/www".into(),
                read_only: true,
            },
        ]
    };
    let mut sp = spec(UnikernelType::FreeBsd, Hypervisor::Qemu);
    sp.config.block = Some("/.boot/rootfs".into());
    sp.config.blk_mnt_point = Some("/".into());
    sp.args = s(&["/sbin/urunit", "/bin/app"]);
    sp.volumes = vols();
    // No kernel file here: bunny's default, FIRECRACKER (virtio-mmio).
    let cmd = monitor_command(&sp, ResolvedAccel::Tcg).unwrap();
    let a = argv(&cmd);
    let devices: Vec<&str> = a
        .windows(2)
        .filter(|w| w[0] == "-device")
        .map(|w| w[1].as_str())
        .collect();
    assert_eq!(
        devices,
        [
            "virtio-blk-device,drive=rootfs",
            "virtio-blk-device,drive=urunit",
            "virtio-blk-device,drive=vol0,serial=bunnyvol0",
            "virtio-blk-device,drive=vol1,serial=bunnyvol1",
        ],
        "{a:?}"
    );
    // The guest's writes reach the volumes: no snapshot; :ro is read-only.
    assert!(a.contains(&"file=/v/data.img,format=raw,if=none,id=vol0".to_string()));
    assert!(a.contains(&"file=/v/srv.img,format=raw,if=none,id=vol1,readonly=on".to_string()));
    let conf = String::from_utf8(cmd.files[0].1.clone()).unwrap();
    assert!(
        conf.contains(
            "UCE\nUBS\nID: bunnyvol0\nMP: /data\nUBE\nUBS\nID: bunnyvol1\nMP: /srv/www\nUBE\nUNS\n"
        ),
        "{conf}"
    );

    // A GENERIC kernel: the same disks on virtio-pci.
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("rootfs/.boot");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::write(boot.join("kernel"), b"\x7fELF ... virtio_pci ...").unwrap();
    let mut pc = sp.clone();
    pc.rootfs = dir.path().join("rootfs");
    let a = argv(&monitor_command(&pc, ResolvedAccel::Tcg).unwrap());
    assert!(
        a.contains(&"virtio-blk-pci,drive=vol1,serial=bunnyvol1".to_string()),
        "{a:?}"
    );

    // firecracker: after the root and urunit's drive, read-only kept.
    sp.config.hypervisor = Hypervisor::Firecracker;
    sp.net = tap();
    let cmd = monitor_command(&sp, ResolvedAccel::Kvm).unwrap();
    let json = fc_json(&MonitorCommand {
        files: cmd.files[..1].to_vec(),
        ..cmd.clone()
    });
    let drives: Vec<(String, bool)> = json["drives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["drive_id"].as_str().unwrap().to_string(),
                d["is_read_only"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        drives,
        [
            ("FCrootfs".to_string(), false),
            ("FC_URUNIT_CONFIG".to_string(), false),
            ("FCvol0".to_string(), false),
            ("FCvol1".to_string(), true),
        ]
    );

    // Only urunit's config tells bunny's /etc/rc about volumes.
    let mut plain = spec(UnikernelType::FreeBsd, Hypervisor::Qemu);
    plain.config.block = Some("/.boot/rootfs".into());
    plain.args = s(&["/bin/app"]);
    plain.volumes = vols();
    let e = monitor_command(&plain, ResolvedAccel::Tcg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("urunit"), "{e}");
    // A mount point urunit's one-line items cannot carry.
    sp.volumes[0].target = "/a b".into();
    let e = monitor_command(&sp, ResolvedAccel::Kvm)
        .unwrap_err()
        .to_string();
    assert!(e.contains("volume mount point"), "{e}");
}

#[test]
fn linux_block_root_with_a_boot_stage_initrd_mounts_the_block() {
    let mut sp = spec(UnikernelType::Linux, Hypervisor::Qemu);
    sp.config.block = Some("/.boot/rootfs".into());
    sp.config.blk_mnt_point = Some("/".into());
    sp.config.initrd = Some("/.boot/initrd".into());
    sp.config.cmdline = Some("/urunit /bin/httpd".into());
    let cmd = monitor_command(&sp, ResolvedAccel::Tcg).unwrap();
    let a = argv(&cmd).join(" ");
    assert!(a.contains("-initrd /b/rootfs/.boot/initrd"), "{a}");
    assert!(
        a.contains("file=/b/rootfs/.boot/rootfs,format=raw,if=none,id=rootfs"),
        "{a}"
    );
    // The kernel runs the initrd's /init (the stage), which reads root= and
    // init=; rdinit= would make the kernel look for the app in the initrd.
    assert!(a.contains("root=/dev/vda rw"), "{a}");
    assert!(!a.contains("rdinit="), "{a}");
    assert!(a.contains(" init=/urunit -- /bin/httpd"), "{a}");
}
