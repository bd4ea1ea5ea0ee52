//! Real boots: a Debian kernel and a busybox initrd under qemu, through the
//! same `boot` path `bunny run` uses.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bunny_runtime::{
    boot_with_console, Accel, Hypervisor, NetSpec, RunSpec, UnikernelConfig, UnikernelType,
};

fn kernel() -> PathBuf {
    if let Some(k) = std::env::var_os("BUNNY_TEST_KERNEL") {
        return PathBuf::from(k);
    }
    let k = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/linux-kernel/vmlinuz");
    assert!(
        k.is_file(),
        "no kernel to boot at {}: run scripts/setup.sh (or set BUNNY_TEST_KERNEL)",
        k.display()
    );
    k
}

fn need(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} is missing: apt-get install {package} (or run scripts/setup.sh)"
    );
}

/// An unpacked image: `/.boot/kernel` plus a busybox initrd at
/// `/.boot/rootfs` whose `/init` is `script`.
fn image(dir: &Path, script: &str) -> PathBuf {
    need("cpio", "cpio");
    assert!(
        Path::new("/bin/busybox").is_file(),
        "/bin/busybox is missing: apt-get install busybox-static (or run scripts/setup.sh)"
    );
    let tree = dir.join("initrd-tree");
    for d in ["bin", "dev", "proc"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).unwrap();
    let init = tree.join("init");
    std::fs::write(&init, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();

    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join(".boot")).unwrap();
    let cpio_out = std::fs::File::create(rootfs.join(".boot/rootfs")).unwrap();
    let mut cpio = Command::new("cpio")
        .args(["--quiet", "-o", "-H", "newc", "--reproducible"])
        .current_dir(&tree)
        .stdin(Stdio::piped())
        .stdout(cpio_out)
        .spawn()
        .unwrap();
    cpio.stdin
        .take()
        .unwrap()
        .write_all(b".\nbin\nbin/busybox\ndev\nproc\ninit\n")
        .unwrap();
    assert!(cpio.wait().unwrap().success(), "cpio failed");
    let k = rootfs.join(".boot/kernel");
    if std::fs::hard_link(kernel(), &k).is_err() {
        std::fs::copy(kernel(), &k).unwrap();
    }
    rootfs
}

fn linux_spec(rootfs: PathBuf) -> RunSpec {
    let config = UnikernelConfig {
        unikernel_type: UnikernelType::Linux,
        hypervisor: Hypervisor::Qemu,
        binary: "/.boot/kernel".into(),
        cmdline: Some("/init from-annotation".into()),
        initrd: Some("/.boot/rootfs".into()),
        block: None,
        blk_mnt_point: None,
        mount_rootfs: false,
        version: None,
    };
    let mut spec = RunSpec::new(rootfs, config);
    spec.accel = Accel::Auto;
    spec.net = NetSpec::User { forwards: vec![] };
    spec
}

/// Mounts devtmpfs so the script has a console even though the initrd
/// carries no device nodes (making them would need root).
const PRELUDE: &str = "#!/bin/busybox sh\n\
/bin/busybox mount -t devtmpfs dev /dev\n\
exec >/dev/console 2>&1 </dev/null\n";

#[test]
fn boots_linux_initrd_under_qemu_and_passes_args_and_env() {
    need("qemu-system-x86_64", "qemu-system-x86");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let script = format!(
        "{PRELUDE}echo \"BUNNY-MARKER argc=$# args=[$*] greeting=[$GREETING] mode=[$MODE]\"\n\
         /bin/busybox poweroff -f\n"
    );
    let mut spec = linux_spec(image(dir.path(), &script));
    spec.args = vec!["/init".into(), "one".into(), "two words".into()];
    spec.env = vec!["GREETING=hello-bunny".into(), "MODE=test".into()];

    // A hung guest must fail the test, not stall the suite: SIGTERM to
    // ourselves goes through boot's own forwarding.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(Duration::from_secs(120)).is_err() {
            // SAFETY: signalling our own process.
            unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
        }
    });
    let mut console = Vec::new();
    let started = Instant::now();
    let status = boot_with_console(&spec, &mut console).unwrap();
    let _ = done_tx.send(());
    watchdog.join().unwrap();
    let text = String::from_utf8_lossy(&console);
    eprintln!("booted in {:?}", started.elapsed());
    assert_eq!(status, 0, "qemu exit status; console:\n{text}");
    // The kernel hands `'two words'` over as two words; urunit would join
    // them again, a plain shell does not.
    assert!(
        text.contains(
            "BUNNY-MARKER argc=3 args=[one 'two words'] greeting=[hello-bunny] mode=[test]"
        ),
        "marker missing from console:\n{text}"
    );
}

#[test]
fn missing_kernel_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = linux_spec(dir.path().to_path_buf());
    spec.accel = Accel::Tcg;
    let e = boot_with_console(&spec, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/.boot/kernel") && e.contains("does not exist in the image"),
        "{e}"
    );
}

/// Run by `sigint_stops_the_guest_promptly` in a child process,
/// since the signal goes to the whole process.
#[test]
#[ignore = "helper: run as a child process by sigint_stops_the_guest_promptly"]
fn sigint_child() {
    let dir = PathBuf::from(std::env::var("BUNNY_SIGINT_DIR").unwrap());
    let script = format!(
        "{PRELUDE}echo BUNNY-SLEEPING\n\
         while :; do /bin/busybox sleep 1000; done\n"
    );
    let spec = linux_spec(image(&dir, &script));
    let mut out = std::io::stdout();
    let status = boot_with_console(&spec, &mut out).unwrap();
    println!("BUNNY-BOOT-RETURNED {status}");
    std::io::stdout().flush().unwrap();
}

#[test]
fn sigint_stops_the_guest_promptly() {
    need("qemu-system-x86_64", "qemu-system-x86");
    kernel();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let me = std::env::current_exe().unwrap();
    let mut child = Command::new(me)
        .args([
            "--exact",
            "sigint_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BUNNY_SIGINT_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, line)) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("BUNNY-SLEEPING") {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("the guest never reported it was sleeping; output:\n{seen}");
            }
        }
    }
    let sent = Instant::now();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let returned = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((at, line)) if line.contains("BUNNY-BOOT-RETURNED") => break (at, line),
            Ok((_, line)) => {
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) => {
                let _ = child.kill();
                panic!("boot did not return within 60 s of SIGINT; output:\n{seen}");
            }
        }
    };
    let took = returned.0.duration_since(sent);
    let status = child.wait().unwrap();
    // The runtime waits GRACE (1.2 s) for the guest, then kills the
    // monitor: 15 s is far above that on a loaded 2-core machine, and far
    // below a runtime that waits for the guest (bench/stop-latency.sh
    // measures the real figure).
    assert!(
        took < Duration::from_secs(15),
        "the guest took {took:?} to stop"
    );
    assert_eq!(returned.1.trim(), "BUNNY-BOOT-RETURNED 130");
    assert!(status.success(), "the helper test failed: {status:?}");
}

fn tiny_image(ty: UnikernelType, hv: Hypervisor) -> (tempfile::TempDir, RunSpec) {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join(".boot")).unwrap();
    std::fs::write(rootfs.join(".boot/kernel"), b"not really a kernel").unwrap();
    std::fs::write(rootfs.join(".boot/rootfs"), vec![0u8; 4096]).unwrap();
    let mut spec = linux_spec(rootfs);
    spec.config.unikernel_type = ty;
    spec.config.hypervisor = hv;
    spec.config.initrd = None;
    spec.config.block = Some("/.boot/rootfs".into());
    spec.net = NetSpec::None;
    (dir, spec)
}

#[test]
fn spt_refuses_a_kernel_that_is_no_solo5_unikernel() {
    // The tender is picked by the ABI the unikernel's ELF notes declare, so
    // a kernel that is no ELF at all is refused before any tender runs.
    let (_dir, spec) = tiny_image(UnikernelType::Rumprun, Hypervisor::Spt);
    let e = boot_with_console(&spec, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("is not a unikernel a Solo5 tender can run") && e.contains("ELF"),
        "{e}"
    );
}

#[test]
fn kvm_only_monitor_on_a_tcg_host_says_why() {
    let (accel, notice) = bunny_runtime::resolve_accel(Accel::Auto).unwrap();
    let (_dir, spec) = tiny_image(UnikernelType::Rumprun, Hypervisor::Hvt);
    let r = boot_with_console(&spec, &mut Vec::new());
    match accel {
        bunny_runtime::ResolvedAccel::Tcg => {
            let e = r.unwrap_err().to_string();
            assert!(notice.is_some());
            // It says why, and what runs instead; not that it goes on.
            assert!(
                e.contains("hvt needs KVM")
                    && e.contains("cannot fall back to emulation")
                    && e.contains("bake it for spt")
                    && !e.contains("using TCG"),
                "{e}"
            );
        }
        // Where KVM works the next hurdle is the missing solo5 program.
        bunny_runtime::ResolvedAccel::Kvm => {
            assert!(r.unwrap_err().to_string().contains("solo5-hvt"));
        }
    }
}

#[test]
fn bad_tap_names_are_refused_before_anything_runs() {
    let e = bunny_runtime::ensure_tap("a/b", [10, 0, 0, 1].into(), [255, 255, 255, 0].into())
        .unwrap_err()
        .to_string();
    assert!(e.contains("a/b") && e.contains("interface name"), "{e}");
}
