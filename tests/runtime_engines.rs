//! `bunny-runtime` under real engines: containerd (driven by `ctr`) and
//! dockerd each call it with runc's command line. The hello-linux example
//! boots under qemu as the container, with the guest on the container's
//! network; a plain busybox image falls through to runc.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::engines::{hello_archive, http_get, ok, runtime_binary, timed, Containerd, Netns};
use common::{require_tool, Dockerd, DockerdOptions};

const BOOT: Duration = Duration::from_secs(90);

#[test]
fn containerd_boots_hello_linux_and_its_guest_serves_on_the_container_network() {
    let runtime = runtime_binary();
    let tmp = tempfile::tempdir().unwrap();
    let archive = hello_archive(tmp.path(), "oci-archive");
    let ctd = Containerd::start();
    ok(
        ctd.ctr().args(["images", "import"]).arg(&archive),
        Duration::from_secs(60),
    );
    let image = "docker.io/library/hello:test";
    let runc_root = tmp.path().join("runc-root");

    // The process args reach the guest's init; `once` powers it off.
    let out = ok(
        ctd.run(&runc_root)
            .args(["--rm", image, "once1", "/init", "once"]),
        BOOT,
    );
    assert!(out.contains("hello-linux: init up"), "console:\n{out}");
    assert!(
        out.contains("hello-linux: args [once] GREETING=hello"),
        "console:\n{out}"
    );
    assert!(out.contains("hello-linux: done"), "console:\n{out}");

    // A namespace prepared as CNI would: the guest takes over eth0's
    // address and answers HTTP on it.
    let ns = Netns::new("c", 1);
    let with_ns = format!("network:{}", ns.path());
    ok(
        ctd.run(&runc_root).args([
            "-d",
            "--seccomp",
            "--with-ns",
            &with_ns,
            "--memory-limit",
            "536870912",
            image,
            "web1",
        ]),
        Duration::from_secs(30),
    );
    let t = Instant::now();
    let body = loop {
        if let Some(b) = http_get("10.213.1.2:80") {
            break b;
        }
        assert!(
            t.elapsed() < BOOT,
            "the guest never answered HTTP on 10.213.1.2; state: {}",
            String::from_utf8_lossy(
                &Command::new(&runtime)
                    .arg("--root")
                    .arg(runc_root.join("bunnytest"))
                    .args(["state", "web1"])
                    .output()
                    .unwrap()
                    .stdout
            )
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(body.contains("hello from bunny"), "{body}");

    // The monitor runs in the cgroup containerd named (`/NAMESPACE/ID`),
    // limited to the guest's RAM (the limit asked) plus the monitor's
    // allowance (256 MiB), and in a uts namespace of its own.
    let state: serde_json::Value = serde_json::from_slice(
        &Command::new(&runtime)
            .arg("--root")
            .arg(runc_root.join("bunnytest"))
            .args(["state", "web1"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let pid = state["pid"].as_i64().unwrap();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let memory_line = cgroups
        .lines()
        .find(|l| l.split(':').nth(1) == Some("memory") || l.starts_with("0::"))
        .unwrap_or_default()
        .to_string();
    assert!(
        memory_line.ends_with("/bunnytest/web1"),
        "the monitor is not in the container's cgroup:\n{cgroups}"
    );
    let limit_file = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "/sys/fs/cgroup/bunnytest/web1/memory.max"
    } else {
        "/sys/fs/cgroup/memory/bunnytest/web1/memory.limit_in_bytes"
    };
    assert_eq!(
        std::fs::read_to_string(limit_file).unwrap().trim(),
        (536870912u64 + (256 << 20)).to_string()
    );
    let ps = ok(
        Command::new(&runtime)
            .arg("--root")
            .arg(runc_root.join("bunnytest"))
            .args(["ps", "--format", "json", "web1"]),
        Duration::from_secs(5),
    );
    assert!(ps.contains(&pid.to_string()), "ps: {ps}");
    // The container's process is bunny's supervisor; the monitor is its
    // child, born into the container's pid namespace (as its pid 1) and
    // mount namespace.
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let monitor = children
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("the supervisor {pid} has no child"))
        .to_string();
    let comm = std::fs::read_to_string(format!("/proc/{monitor}/comm")).unwrap();
    assert!(comm.starts_with("qemu-system"), "the child is {comm}");
    let nsl = |p: &str, kind: &str| std::fs::read_link(format!("/proc/{p}/ns/{kind}")).unwrap();
    assert_ne!(
        nsl(&pid.to_string(), "uts"),
        nsl("self", "uts"),
        "no uts namespace"
    );
    assert_ne!(
        nsl(&monitor, "mnt"),
        nsl("self", "mnt"),
        "no mount namespace"
    );
    assert_ne!(nsl(&monitor, "pid"), nsl("self", "pid"), "no pid namespace");
    let status = std::fs::read_to_string(format!("/proc/{monitor}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["NSpid:", &monitor, "1"]),
        "the monitor is not pid 1 of its namespace:\n{status}"
    );
    // Two seccomp filters: the spec's profile (`ctr run --seccomp` gives
    // containerd's default), then qemu's own (`-sandbox`).
    let filters = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .map(|v| v.trim().to_string());
    assert_eq!(
        filters.as_deref(),
        Some("2"),
        "the monitor's seccomp filters:\n{status}"
    );

    let addrs = ok(
        Command::new("ip").args(["-n", &ns.name, "-br", "addr"]),
        Duration::from_secs(5),
    );
    assert!(addrs.contains("tap0_bunny"), "{addrs}");
    assert!(
        !addrs.contains("10.213.1.2"),
        "eth0 kept its address: {addrs}"
    );

    ok(
        ctd.ctr().args(["task", "kill", "-s", "SIGKILL", "web1"]),
        Duration::from_secs(10),
    );
    let t = Instant::now();
    while !ok(ctd.ctr().args(["task", "ls"]), Duration::from_secs(10)).contains("STOPPED") {
        assert!(t.elapsed() < Duration::from_secs(10), "web1 did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(
        ctd.ctr().args(["task", "delete", "web1"]),
        Duration::from_secs(10),
    );
    ok(
        ctd.ctr().args(["containers", "rm", "web1"]),
        Duration::from_secs(10),
    );
    // delete undid the rewiring in the namespace that outlives the container.
    let addrs = ok(
        Command::new("ip").args(["-n", &ns.name, "-br", "addr"]),
        Duration::from_secs(5),
    );
    assert!(!addrs.contains("tap0_bunny"), "{addrs}");
    assert!(addrs.contains("10.213.1.2/30"), "{addrs}");
    assert!(
        !Path::new(limit_file).exists(),
        "delete left the cgroup behind"
    );
    let left: Vec<_> = std::fs::read_dir(runc_root.join("bunnytest"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "state left behind: {left:?}");
}

#[test]
fn dockerd_runs_unikernels_and_hands_other_images_to_runc() {
    let runtime = runtime_binary();
    require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let archive = hello_archive(tmp.path(), "docker");
    let dockerd = Dockerd::start_with(DockerdOptions {
        runtimes: vec![("bunny".into(), runtime)],
        ..Default::default()
    });
    ok(
        dockerd.docker().arg("load").arg("-i").arg(&archive),
        Duration::from_secs(60),
    );
    // The entrypoint is /init, so `once` is its first argument.
    let out = ok(
        dockerd.docker().args([
            "run",
            "--rm",
            "--runtime",
            "bunny",
            "--network",
            "none",
            "hello:test",
            "once",
        ]),
        BOOT,
    );
    assert!(out.contains("hello-linux: init up"), "console:\n{out}");
    assert!(out.contains("hello-linux: args [once]"), "console:\n{out}");

    // A user-defined bridge network: docker's prestart hook (libnetwork)
    // wires the namespace, then the guest takes over the container's address.
    let octet = 100 + std::process::id() % 100;
    let subnet = format!("10.214.{octet}.0/24");
    let ip = format!("10.214.{octet}.2");
    let net = format!("bunnynet{octet}");
    ok(
        dockerd
            .docker()
            .args(["network", "create", "--subnet", &subnet, &net]),
        Duration::from_secs(30),
    );
    ok(
        dockerd.docker().args([
            "run",
            "-d",
            "--runtime",
            "bunny",
            "--network",
            &net,
            "--ip",
            &ip,
            "--name",
            "web",
            "hello:test",
        ]),
        Duration::from_secs(30),
    );
    let t = Instant::now();
    let body = loop {
        if let Some(b) = http_get(&format!("{ip}:80")) {
            break b;
        }
        if t.elapsed() > BOOT {
            let logs = timed(
                dockerd.docker().args(["logs", "web"]),
                Duration::from_secs(10),
            );
            panic!(
                "the guest never answered HTTP on {ip}; console:\n{}",
                String::from_utf8_lossy(&logs.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(body.contains("hello from bunny"), "{body}");
    // SIGTERM reaches the monitor, which stops at once.
    let t = Instant::now();
    // A 60 s grace before docker's SIGKILL: stopping well within it means
    // the monitor acted on SIGTERM, with room for a loaded machine.
    ok(
        dockerd.docker().args(["stop", "-t", "60", "web"]),
        Duration::from_secs(90),
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "docker stop took {:?}: the monitor ignored SIGTERM",
        t.elapsed()
    );
    ok(
        dockerd.docker().args(["rm", "web"]),
        Duration::from_secs(30),
    );
    ok(
        dockerd.docker().args(["network", "rm", &net]),
        Duration::from_secs(30),
    );

    // An ordinary image: FROM scratch plus busybox, run by runc.
    let rootfs = tmp.path().join("bb");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("/bin/busybox is missing: apt-get install busybox-static");
    let tar = tmp.path().join("bb.tar");
    ok(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
        Duration::from_secs(30),
    );
    ok(
        dockerd.docker().arg("import").arg(&tar).arg("plain:test"),
        Duration::from_secs(30),
    );
    let out = ok(
        dockerd.docker().args([
            "run",
            "--rm",
            "--runtime",
            "bunny",
            "--network",
            "none",
            "plain:test",
            "/bin/busybox",
            "echo",
            "runc-fallback-ok",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(out.trim(), "runc-fallback-ok");
}

/// The container's exit status is the guest's: `ctr run` reports what the
/// guest's init handed to qemu's exit device, and a guest whose kernel
/// panicked (its init exited) fails instead of reporting success.
#[test]
fn containerd_sees_the_guests_exit_status_and_a_panic_as_failure() {
    runtime_binary();
    let tmp = tempfile::tempdir().unwrap();
    let archive = hello_archive(tmp.path(), "oci-archive");
    let ctd = Containerd::start();
    ok(
        ctd.ctr().args(["images", "import"]).arg(&archive),
        Duration::from_secs(60),
    );
    let image = "docker.io/library/hello:test";
    let runc_root = tmp.path().join("runc-root");

    let out = timed(
        ctd.run(&runc_root)
            .args(["--rm", image, "st7", "/init", "once", "7"]),
        BOOT,
    );
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(
        console.contains("hello-linux: done"),
        "{}; console:\n{console}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(7), "console:\n{console}");

    // busybox `true` as the guest's init: it exits, and the kernel panics
    // ("Attempted to kill init!"), which panic=-1 turns into a reset.
    let out = timed(
        ctd.run(&runc_root)
            .args(["--rm", image, "pan1", "/bin/busybox", "true"]),
        BOOT,
    );
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(
        console.contains("Kernel panic"),
        "the guest did not panic:\n{console}"
    );
    assert_eq!(
        out.status.code(),
        Some(bunny_runtime::GUEST_CRASHED),
        "console:\n{console}"
    );

    // As runc: `kill --all` on a container that has stopped (its state not
    // yet deleted) succeeds; a plain `kill` says it is not running.
    ok(
        ctd.run(&runc_root).args(["-d", image, "dead1"]),
        Duration::from_secs(30),
    );
    ok(
        ctd.ctr().args(["task", "kill", "-s", "SIGKILL", "dead1"]),
        Duration::from_secs(30),
    );
    let t = Instant::now();
    while ok(ctd.ctr().args(["task", "ls"]), Duration::from_secs(10))
        .lines()
        .any(|l| l.starts_with("dead1 ") && !l.contains("STOPPED"))
    {
        assert!(t.elapsed() < Duration::from_secs(20), "dead1 did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let runtime = |args: &[&str]| {
        Command::new(runtime_binary())
            .arg("--root")
            .arg(runc_root.join("bunnytest"))
            .args(args)
            .output()
            .unwrap()
    };
    let all = runtime(&["kill", "--all", "dead1", "KILL"]);
    assert!(
        all.status.success(),
        "kill --all on a stopped container: {}",
        String::from_utf8_lossy(&all.stderr)
    );
    let one = runtime(&["kill", "dead1", "KILL"]);
    assert!(
        !one.status.success() && String::from_utf8_lossy(&one.stderr).contains("not running"),
        "kill on a stopped container: {}",
        String::from_utf8_lossy(&one.stderr)
    );
    ok(
        ctd.ctr().args(["task", "delete", "dead1"]),
        Duration::from_secs(30),
    );
    ok(
        ctd.ctr().args(["containers", "rm", "dead1"]),
        Duration::from_secs(30),
    );
}

/// A bind mount of a host directory (`ctr run --mount type=bind,...`)
/// becomes the guest's volume, as `bunny run -v` makes it: the guest's
/// writes are back in the directory when the container stops, and the next
/// container sees them; a read-only bind mount stays unchanged; a bind
/// mount of a block device (a loop device here) is the guest's disk itself.
#[test]
fn containerd_bind_mounts_become_volumes_written_back_when_the_guest_stops() {
    runtime_binary();
    let tmp = tempfile::tempdir().unwrap();
    let archive = hello_archive(tmp.path(), "oci-archive");
    let ctd = Containerd::start();
    ok(
        ctd.ctr().args(["images", "import"]).arg(&archive),
        Duration::from_secs(60),
    );
    let image = "docker.io/library/hello:test";
    let runc_root = tmp.path().join("runc-root");
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("seed"), "from the host\n").unwrap();

    for (n, (word, mode, want)) in [
        ("first", "rw", "first\n"),
        ("second", "rw", "first\nsecond\n"),
        ("third", "ro", "first\nsecond\n"),
    ]
    .into_iter()
    .enumerate()
    {
        let mount = format!(
            "type=bind,src={},dst=/data,options=rbind:{mode}",
            data.display()
        );
        let out = timed(
            ctd.run(&runc_root).args(["--rm", "--mount", &mount]).args([
                image,
                &format!("vol{n}"),
                "/init",
                "append",
                "/data/log",
                word,
                "once",
            ]),
            BOOT,
        );
        let console = String::from_utf8_lossy(&out.stdout);
        assert!(
            console.contains(&format!("volume bunnyvol0 (/dev/vda) at /data ({mode})"))
                && console.contains("hello-linux: done"),
            "{mode}: {}; console:\n{console}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // The guest saw what the containers before it wrote.
        let shown = want.lines().count();
        assert_eq!(
            console.matches("hello-linux:   ").count(),
            shown,
            "{mode}: {console}"
        );
        assert_eq!(out.status.code(), Some(0), "console:\n{console}");
        assert_eq!(
            std::fs::read_to_string(data.join("log")).unwrap(),
            want,
            "{mode}"
        );
        assert_eq!(
            std::fs::read_to_string(data.join("seed")).unwrap(),
            "from the host\n"
        );
        assert!(!data.join("lost+found").exists());
    }

    // A block device is handed to the guest as it is: its writes land on
    // the device itself.
    let disk = tmp.path().join("disk.ext4");
    let seed = tmp.path().join("seed");
    std::fs::create_dir(&seed).unwrap();
    std::fs::write(seed.join("log"), "on the device\n").unwrap();
    ok(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-d"])
            .arg(&seed)
            .arg(&disk)
            .arg("32M"),
        Duration::from_secs(30),
    );
    let dev = Loop::attach(&disk);
    let mount = format!("type=bind,src={},dst=/blk,options=rbind:rw", dev.0);
    let out = timed(
        ctd.run(&runc_root).args(["--rm", "--mount", &mount]).args([
            image,
            "blk",
            "/init",
            "append",
            "/blk/log",
            "guest-wrote",
            "once",
        ]),
        BOOT,
    );
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(
        console.contains("at /blk (rw)") && console.contains("hello-linux:   guest-wrote"),
        "{}; console:\n{console}",
        out.status
    );
    drop(dev);
    let cat = Command::new("debugfs")
        .args(["-R", "cat /log"])
        .arg(&disk)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&cat.stdout),
        "on the device\nguest-wrote\n"
    );
}

/// A loop device over an image file, detached when dropped.
struct Loop(String);

impl Loop {
    fn attach(file: &Path) -> Loop {
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}
