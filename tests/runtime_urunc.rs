//! The same image under the real urunc and under bunny-runtime, through one
//! containerd: both guests serve HTTP on their container's network, and the
//! qemu command lines they build agree where they must (docs/runtime.md
//! lists every difference and why). The qemu-tcg wrapper that lets urunc
//! run without KVM logs each argv it is given, bunny's too.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::engines::{http_get, ok, runtime_binary, Containerd, Netns};

const WRAPPER_DIR: &str = "/usr/lib/qemu-tcg";
const BOOT: Duration = Duration::from_secs(120);

fn hello_archive(dir: &Path) -> PathBuf {
    let ctx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/hello-linux");
    assert!(
        ctx.join("vmlinuz").exists(),
        "examples/hello-linux/vmlinuz is missing: run `bash scripts/setup.sh` first"
    );
    let dest = dir.join("hello.tar");
    let out = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .arg("--root")
        .arg(dir.join("store"))
        .args(["build", "--progress=quiet", "-t", "hello:test", "-o"])
        .arg(format!("type=oci-archive,dest={}", dest.display()))
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bunny build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dest
}

/// The argv the wrapper logged for process `pid` (`[arg]` fields).
fn logged_argv(pid: &str) -> Option<Vec<String>> {
    let log = std::fs::read_to_string(Path::new(WRAPPER_DIR).join("argv.log")).ok()?;
    let line = log
        .lines()
        .rev()
        .find(|l| l.split_whitespace().nth(1) == Some(&format!("pid={pid}")))?;
    let rest = &line[line.find(" [")? + 1..];
    Some(
        rest.strip_prefix('[')?
            .strip_suffix(']')?
            .split("] [")
            .map(String::from)
            .collect(),
    )
}

fn value<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| a == flag)
        .and_then(|i| argv.get(i + 1))
        .map(String::as_str)
}

fn wait_http(addr: &str, what: &str) {
    let t = Instant::now();
    while http_get(addr).is_none_or(|b| !b.contains("hello from bunny")) {
        assert!(t.elapsed() < BOOT, "{what}: no HTTP answer on {addr}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn urunc_and_bunny_runtime_boot_the_same_image_with_agreeing_command_lines() {
    let wrapper = Path::new(WRAPPER_DIR).join("qemu-system-x86_64");
    assert!(
        wrapper.is_file(),
        "urunc's TCG qemu wrapper is missing at {}: run `bash scripts/setup.sh`",
        wrapper.display()
    );
    common::require_tool("urunc");
    common::require_tool("containerd-shim-urunc-v2");
    runtime_binary();
    let tmp = tempfile::tempdir().unwrap();
    let archive = hello_archive(tmp.path());
    let ctd = Containerd::start_with_path_first(Some(Path::new(WRAPPER_DIR)));
    ok(
        ctd.ctr().args(["images", "import"]).arg(&archive),
        Duration::from_secs(60),
    );
    let image = "docker.io/library/hello:test";
    let runc_root = tmp.path().join("runc-root");
    let ns_u = Netns::new("uu", 71);
    let ns_b = Netns::new("ub", 72);

    ok(
        ctd.ctr().args([
            "run",
            "-d",
            "--runtime",
            "io.containerd.urunc.v2",
            "--with-ns",
            &format!("network:{}", ns_u.path()),
            image,
            "web-urunc",
        ]),
        Duration::from_secs(60),
    );
    ok(
        ctd.run(&runc_root).args([
            "-d",
            "--with-ns",
            &format!("network:{}", ns_b.path()),
            image,
            "web-bunny",
        ]),
        Duration::from_secs(60),
    );
    wait_http("10.213.71.2:80", "urunc");
    wait_http("10.213.72.2:80", "bunny-runtime");

    let tasks = ok(ctd.ctr().args(["task", "ls"]), Duration::from_secs(10));
    let pid_of = |id: &str| {
        tasks
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("no task {id}:\n{tasks}"))
            .to_string()
    };
    // urunc execs qemu in its init's place; bunny's init supervises it.
    let urunc_pid = pid_of("web-urunc");
    let sup = pid_of("web-bunny");
    let bunny_pid = std::fs::read_to_string(format!("/proc/{sup}/task/{sup}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("bunny's init {sup} has no child"))
        .to_string();
    let u = logged_argv(&urunc_pid).expect("urunc's qemu argv was not logged");
    let b = logged_argv(&bunny_pid).expect("bunny's qemu argv was not logged");
    let show = format!("urunc: {u:?}\nbunny: {b:?}");

    // What must agree: memory, vCPUs, the guest's command line (root, the
    // address the guest takes over, env, init and its arguments), and the
    // kernel and initrd (urunc's paths are inside the rootfs it chroots to).
    assert_eq!(value(&u, "-m"), value(&b, "-m"), "{show}");
    assert_eq!(value(&u, "-smp"), value(&b, "-smp"), "{show}");
    assert_eq!(value(&u, "-append"), value(&b, "-append"), "{show}");
    for flag in ["-kernel", "-initrd"] {
        let (uk, bk) = (value(&u, flag).unwrap(), value(&b, flag).unwrap());
        assert!(
            bk.ends_with(&format!("/rootfs{uk}")),
            "{flag} differs: {show}"
        );
    }
    // The deliberate differences (docs/runtime.md): urunc asks for KVM,
    // bunny probes it (TCG here); urunc's NIC is `-net nic,model=virtio`
    // with qemu's default MAC, bunny's a virtio-net device with the
    // container's MAC; bunny adds qemu's sandbox, -no-reboot, the exit
    // device and a QMP monitor, so the container's status is the guest's.
    assert!(u.iter().any(|a| a == "-enable-kvm"), "{show}");
    assert!(b.iter().any(|a| a == "tcg"), "{show}");
    assert!(
        b.iter()
            .any(|a| a.starts_with("virtio-net-pci,netdev=net0,mac=")),
        "{show}"
    );
    assert!(
        b.iter().any(|a| a == "-no-reboot") && b.iter().any(|a| a == "-sandbox"),
        "{show}"
    );
    eprintln!("{show}");

    for id in ["web-urunc", "web-bunny"] {
        ok(
            ctd.ctr().args(["task", "kill", "-s", "SIGKILL", id]),
            Duration::from_secs(10),
        );
    }
    let t = Instant::now();
    loop {
        let ls = ok(ctd.ctr().args(["task", "ls"]), Duration::from_secs(10));
        if ls.lines().skip(1).all(|l| l.contains("STOPPED")) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "tasks did not stop:\n{ls}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for id in ["web-urunc", "web-bunny"] {
        ok(
            ctd.ctr().args(["task", "delete", id]),
            Duration::from_secs(20),
        );
        ok(
            ctd.ctr().args(["containers", "rm", id]),
            Duration::from_secs(10),
        );
    }
}
