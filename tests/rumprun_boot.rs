//! Real rumprun unikernels boot and serve: examples/httpd-rumprun built with
//! the real toolchains of both Solo5 ABIs (0.4.1, and the v0.9 port whose
//! unikernels carry a `.note.solo5.manifest`), then booted under the real
//! `solo5-spt` tenders by `bunny run -p`, by `bunny-runtime` under
//! containerd, and (v0.9, the ABI urunc speaks) by the real urunc.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::engines::{monitor_argv, ok, wait_page, Containerd, Netns, Task};
use common::guest::{free_port, http_at};
use common::{bunny, require_tool, run};

const PAGE: &str = "hello from a rumprun unikernel built by bunny";
/// Generous: a spt guest answers in well under a second, but the suite
/// runs on two loaded cores.
const BOOT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `oci:DIR:TAG` of a real toolchain image from setup.
fn toolchain(tag: &str) -> String {
    static MADE: OnceLock<()> = OnceLock::new();
    MADE.get_or_init(|| {
        run(Command::new(repo().join("scripts/toolchain-image.sh"))
            .env("BUNNY_KERNEL", repo().join("target/linux-kernel/vmlinuz")));
    });
    let layout = repo().join("target/toolchains/layout");
    let r = format!("oci:{}:{tag}", layout.display());
    assert!(
        Command::new(require_tool("skopeo"))
            .args(["inspect", "--raw", &r])
            .output()
            .unwrap()
            .status
            .success(),
        "no toolchain image {r}: run scripts/setup.sh (the v0.9 one is made only where ../shared/tools/rumprun has its tree)"
    );
    r
}

/// A copy of the example (so its bunny.lock stays out of the repository)
/// and a store of its own.
struct Example {
    dir: tempfile::TempDir,
}

impl Example {
    fn new() -> Example {
        let dir = tempfile::tempdir().unwrap();
        let src = repo().join("examples/httpd-rumprun");
        run(Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(dir.path().join("ctx")));
        Example { dir }
    }
    fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }
    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }
    fn bunny(&self) -> Command {
        bunny(&self.store())
    }
    /// Builds the example with the toolchain `tag` as image `name`, plus
    /// `extra` outputs.
    fn build(&self, tag: &str, name: &str, extra: &[&str]) {
        run(self
            .bunny()
            .args(["build", "--progress=plain", "-t", name, "--toolchain"])
            .arg(format!("rumprun={}", toolchain(tag)))
            .args(extra)
            .arg(self.ctx()));
    }
}

/// `GET path` on `addr` answered with 200, waited for while the guest
/// boots; `what` tells what to show when it never comes.
fn wait_http(addr: &str, path: &str, what: &dyn Fn() -> String) -> String {
    wait_page(addr, path, BOOT, |end| end.then(what)).0
}

/// Every live process whose parent is `pid`: its pid and argv.
fn children(pid: u32) -> Vec<(u32, Vec<String>)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold blanks, so cut after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            let raw = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let argv = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            out.push((child, argv));
        }
    }
    out
}

struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// SIGTERM, as a user's ^C would be, and the exit code.
    fn stop(mut self) -> i32 {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .output();
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            if t.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!(
                    "bunny run did not stop on SIGTERM; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn spawn_logged(mut cmd: Command, log: PathBuf) -> Running {
    let f = fs::File::create(&log).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap();
    Running { child, log }
}

#[test]
fn bunny_run_publishes_a_port_of_spt_guests_of_both_solo5_abis() {
    require_tool("solo5-spt-0.4");
    require_tool("solo5-spt");
    let ex = Example::new();
    for (tag, name, legacy) in [
        ("rumprun-solo5", "httpd:solo5-0.4", true),
        ("rumprun-solo5-v0.9", "httpd:solo5-0.9", false),
    ] {
        let out = ex.dir.path().join(format!("out-{tag}"));
        ex.build(
            tag,
            name,
            &["-o", &format!("type=local,dest={}", out.display())],
        );
        let readelf = run(Command::new(require_tool("readelf"))
            .arg("-n")
            .arg(out.join(".boot/kernel")));
        assert_eq!(
            !readelf.contains(".note.solo5.manifest"),
            legacy,
            "{tag}: manifest note\n{readelf}"
        );

        let port = free_port();
        let mut cmd = ex.bunny();
        cmd.args(["run", "--rm", "-e", "GREETING=hi from the host", "-p"])
            .arg(format!("127.0.0.1:{port}:80"))
            .arg(name);
        let r = spawn_logged(cmd, ex.dir.path().join(format!("run-{tag}.log")));
        let addr = format!("127.0.0.1:{port}");
        let body = wait_http(&addr, "/", &|| r.log());
        assert!(body.contains(PAGE), "{body}");
        let env = wait_http(&addr, "/env", &|| r.log());
        assert!(env.contains("GREETING=hi from the host"), "{env}");

        // The tender that fits the guest's ABI, with that ABI's options.
        let (tender_pid, tender) = children(r.child.id())
            .into_iter()
            .find(|(_, a)| a.first().is_some_and(|p| p.contains("solo5-spt")))
            .unwrap_or_else(|| panic!("no solo5-spt under bunny run; log:\n{}", r.log()));
        // The guest writes to a private copy of the disk; the kernel is
        // read from the store's shared unpacked image.
        let kernel = tender.iter().find(|a| a.ends_with("/.boot/kernel"));
        assert!(
            kernel.is_some_and(|k| k.starts_with(&*ex.store().join("rootfs").to_string_lossy())),
            "{tender:?}"
        );
        if legacy {
            assert!(tender[0].ends_with("solo5-spt-0.4"), "{tender:?}");
            assert!(tender.contains(&"--net=tap0".to_string()), "{tender:?}");
            assert!(
                tender
                    .iter()
                    .any(|a| a.starts_with("--disk=") && a.ends_with("/block.img")),
                "{tender:?}"
            );
        } else {
            assert!(tender[0].ends_with("/solo5-spt"), "{tender:?}");
            assert!(tender.contains(&"--net:tap=tap0".to_string()), "{tender:?}");
            assert!(
                tender
                    .iter()
                    .any(|a| a.starts_with("--block:rootfs=") && a.ends_with("/block.img")),
                "{tender:?}"
            );
        }
        // The guest lives in a network namespace of the run's own.
        let ns = |p: u32| fs::read_link(format!("/proc/{p}/ns/net")).ok();
        assert_ne!(ns(tender_pid), ns(std::process::id()));

        let code = r.stop();
        assert_eq!(code, 128 + 15, "a guest stopped by SIGTERM");
        assert!(
            http_at(addr.parse().unwrap(), "/")
                .filter(|b| b.starts_with("HTTP/1.0 200"))
                .is_none(),
            "the port is still served after the run ended"
        );
    }
}

#[test]
fn bunny_run_uses_a_tap_the_user_names_and_says_what_to_do_without_one() {
    require_tool("solo5-spt-0.4");
    let ex = Example::new();
    ex.build("rumprun-solo5", "httpd:tap", &[]);

    // A missing tap: the error names the option and what to run.
    let out = common::output(
        ex.bunny()
            .args(["run", "--rm", "--tap", "bunnynone0", "httpd:tap"]),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--tap bunnynone0: it does not exist")
            && err.contains("sudo ip tuntap add dev bunnynone0 mode tap"),
        "{err}"
    );

    // A tap made once by the user, in a test host of our own (a network
    // namespace): the guest takes the next address and the proxy reaches it.
    let ns = format!("bunny-tap-{}", std::process::id());
    let ipn = |args: &[&str]| {
        run(Command::new("ip").args(["-n", &ns]).args(args));
    };
    run(Command::new("ip").args(["netns", "add", &ns]));
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }
    let _del = Del(ns.clone());
    ipn(&["link", "set", "lo", "up"]);
    ipn(&["tuntap", "add", "dev", "usertap0", "mode", "tap"]);
    ipn(&["addr", "add", "10.0.3.1/24", "dev", "usertap0"]);
    ipn(&["link", "set", "usertap0", "up"]);
    let port = free_port();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns])
        .arg(env!("CARGO_BIN_EXE_bunny"))
        .env("BUNNY_ROOT", ex.store())
        .env("DOCKER_CONFIG", ex.store().join("docker-config"))
        .args(["run", "--rm", "--tap", "usertap0", "-p"])
        .arg(format!("127.0.0.1:{port}:80"))
        .arg("httpd:tap");
    let r = spawn_logged(cmd, ex.dir.path().join("run-tap.log"));
    let t = Instant::now();
    let body = loop {
        let o = Command::new("ip")
            .args(["netns", "exec", &ns, "curl", "-s", "-m", "3"])
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .unwrap();
        let b = String::from_utf8_lossy(&o.stdout).into_owned();
        if b.contains(PAGE) {
            break b;
        }
        assert!(t.elapsed() < BOOT, "no answer; log:\n{}", r.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.contains(PAGE));
    // The guest took 10.0.3.2 and answers there directly too.
    let direct = run(Command::new("ip").args([
        "netns",
        "exec",
        &ns,
        "curl",
        "-s",
        "-m",
        "3",
        "http://10.0.3.2/",
    ]));
    assert!(direct.contains(PAGE), "{direct}");
    r.stop();

    // Without root, no namespace can be made: the error says what to run
    // and names --tap.
    let store = ex.store();
    run(Command::new("chmod").args(["-R", "a+rwX"]).arg(&store));
    run(Command::new("chmod").arg("a+rx").arg(ex.dir.path()));
    let out = common::output(
        Command::new(require_tool("setpriv"))
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_bunny"))
            .env("BUNNY_ROOT", &store)
            .env("DOCKER_CONFIG", store.join("docker-config"))
            .env("HOME", &store)
            .args(["run", "--rm", "-p", "18099:80", "httpd:tap"]),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("needs root")
            && err.contains("--tap bunny0")
            && err.contains("sudo ip tuntap add dev bunny0 mode tap user $USER"),
        "{err}"
    );
}

fn archive(ex: &Example, tag: &str, name: &str) -> PathBuf {
    let dest = ex.dir.path().join(format!("{tag}.tar"));
    ex.build(
        tag,
        name,
        &["-o", &format!("type=oci-archive,dest={}", dest.display())],
    );
    dest
}

/// The argv of the task's process (the monitor: both runtimes exec it in
/// place of the container's init).
fn task_argv(ctd: &Containerd, id: &str) -> Vec<String> {
    monitor_argv(ctd.task_pid(id).unwrap_or_else(|| panic!("no task {id}")))
}

/// The options of a tender's argv, values cut off: `--net:tap`, `--mem`, ...
fn option_names(argv: &[String]) -> Vec<String> {
    argv.iter()
        .skip(1)
        .take_while(|a| a.as_str() != "--" && a.starts_with("--"))
        .map(|a| a.split('=').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn containerd_boots_rumprun_under_bunny_runtime_and_urunc() {
    require_tool("solo5-spt-0.4");
    let ex = Example::new();
    let legacy = archive(&ex, "rumprun-solo5", "httpd:solo5-0.4");
    let named = archive(&ex, "rumprun-solo5-v0.9", "httpd:solo5-0.9");
    let ctd = Containerd::start();
    for a in [&legacy, &named] {
        ok(
            ctd.ctr().args(["images", "import"]).arg(a),
            Duration::from_secs(60),
        );
    }
    let runc_root = ex.dir.path().join("runc-root");

    // bunny-runtime: both ABIs, on the container's network.
    let mut bunny_argv = None;
    for (i, (image, want)) in [
        ("docker.io/library/httpd:solo5-0.4", "--net=tap0_bunny"),
        ("docker.io/library/httpd:solo5-0.9", "--net:tap=tap0_bunny"),
    ]
    .into_iter()
    .enumerate()
    {
        let subnet = 40 + i as u8;
        let ns = Netns::new(&format!("rr{i}"), subnet);
        let id = format!("rr{i}");
        let _task = Task(&ctd, &id);
        ok(
            ctd.run(&runc_root).args([
                "-d",
                "--with-ns",
                &format!("network:{}", ns.path()),
                image,
                &id,
            ]),
            Duration::from_secs(30),
        );
        let body = wait_http(&format!("10.213.{subnet}.2:80"), "/", &|| {
            let sh = |c: &str| {
                String::from_utf8_lossy(
                    &Command::new("sh").args(["-c", c]).output().unwrap().stdout,
                )
                .into_owned()
            };
            format!(
                "tasks:\n{}\naddrs:\n{}\nprocesses:\n{}\ncontainerd log:\n{}",
                ok(ctd.ctr().args(["task", "ls"]), Duration::from_secs(10)),
                sh(&format!("ip -n {} -br addr", ns.name)),
                sh("ps -eo pid,ppid,args | grep -i solo5 | grep -v grep"),
                ctd.log()
            )
        });
        assert!(body.contains(PAGE), "{body}");
        let argv = task_argv(&ctd, &id);
        assert!(argv.contains(&want.to_string()), "{argv:?}");
        if i == 1 {
            bunny_argv = Some(argv);
        }
    }

    // The real urunc, same v0.9 image, same kind of network.
    if Command::new("sh")
        .args(["-c", "command -v containerd-shim-urunc-v2"])
        .output()
        .is_ok_and(|o| !o.status.success())
    {
        panic!("containerd-shim-urunc-v2 is not on PATH: scripts/setup.sh installs it from ../shared/tools/urunc");
    }
    let ns = Netns::new("ru", 42);
    let task = Task(&ctd, "ru");
    ok(
        ctd.ctr().args([
            "run",
            "-d",
            "--runtime",
            "io.containerd.urunc.v2",
            "--with-ns",
            &format!("network:{}", ns.path()),
            "docker.io/library/httpd:solo5-0.9",
            "ru",
        ]),
        Duration::from_secs(30),
    );
    let body = wait_http("10.213.42.2:80", "/", &|| {
        format!("containerd log:\n{}", ctd.log())
    });
    assert!(body.contains(PAGE), "{body}");
    let urunc_argv = task_argv(&ctd, "ru");
    drop(task);
    let bunny_argv = bunny_argv.unwrap();
    eprintln!("urunc:         {urunc_argv:?}\nbunny-runtime: {bunny_argv:?}");
    // The same memory and named devices. bunny also gives the guest the
    // container's MAC (urunc leaves it to the tender); that and the other
    // differences (tap name, paths, `--`, the JSON) are in docs/rumprun.md.
    let mut u = option_names(&urunc_argv);
    let mut b = option_names(&bunny_argv);
    assert!(b.contains(&"--net-mac:tap".to_string()), "{bunny_argv:?}");
    b.retain(|o| o != "--net-mac:tap");
    u.sort();
    b.sort();
    assert_eq!(
        u,
        ["--block:rootfs", "--mem", "--net:tap"],
        "{urunc_argv:?}"
    );
    assert_eq!(u, b, "urunc {urunc_argv:?}\nbunny {bunny_argv:?}");
    // Both hand the guest the same rumprun config, whatever the argv split.
    let json = |argv: &[String]| -> serde_json::Value {
        let at = argv
            .iter()
            .position(|a| a.ends_with("/.boot/kernel"))
            .unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&argv[at + 1..].join(" ")).unwrap();
        v["net"]["addr"] = "ADDR".into();
        v["net"]["gw"] = "GW".into();
        v.as_object_mut().unwrap().remove("env");
        v
    };
    assert_eq!(json(&urunc_argv), json(&bunny_argv));
}

/// The example without its own block image: its document root comes from
/// a `-v` volume, which the guest mounts (ext2, the one solo5 disk) and
/// writes to; what it wrote is back in the directory after a stop, and
/// the next boot (`bunny start`, or a new run) sees it.
#[test]
fn a_rumprun_volume_keeps_what_the_guest_wrote_across_a_stop_a_start_and_a_new_run() {
    require_tool("solo5-spt-0.4");
    require_tool("solo5-spt");
    let ex = Example::new();
    let bf = fs::read_to_string(ex.ctx().join("BunnyFile")).unwrap();
    let start = bf.find("# An ext2 image").unwrap();
    let end = bf.find("cmd:").unwrap();
    fs::write(
        ex.ctx().join("BunnyFile"),
        format!("{}{}", &bf[..start], &bf[end..]),
    )
    .unwrap();
    for (tag, name, option) in [
        ("rumprun-solo5", "httpd:vol-0.4", "--disk="),
        ("rumprun-solo5-v0.9", "httpd:vol-0.9", "--block:rootfs="),
    ] {
        ex.build(tag, name, &[]);
        let data = ex.dir.path().join(format!("data-{tag}"));
        fs::create_dir_all(data.join("www")).unwrap();
        fs::write(data.join("www/index.html"), "<h1>from a volume</h1>\n").unwrap();
        let vol = format!("{}:/data", data.display());
        // A run, the same run started again, and a new run: each sees what
        // the boots before it wrote.
        let port0 = free_port();
        for (n, word) in ["first", "second", "third"].iter().enumerate() {
            let (run_name, port) = match n {
                0 | 1 => ("rr-0".to_string(), port0),
                _ => ("rr-1".to_string(), free_port()),
            };
            if n == 1 {
                run(ex.bunny().args(["start", &run_name]));
            } else {
                run(ex
                    .bunny()
                    .args(["run", "-d", "--name", &run_name, "-v", &vol, "-p"])
                    .arg(format!("127.0.0.1:{port}:80"))
                    .arg(name));
            }
            let logs = || run(ex.bunny().args(["logs", &run_name]));
            let addr = format!("127.0.0.1:{port}");
            let page = wait_http(&addr, "/", &logs);
            assert!(page.contains("from a volume"), "{tag}: {page}");
            if n > 0 {
                let log = wait_http(&addr, "/log", &logs);
                let before = ["first\n", "first\nsecond\n"][n - 1];
                assert!(log.ends_with(before), "{tag}: {log}");
            }
            let done = wait_http(&addr, &format!("/append/{word}"), &logs);
            assert!(done.contains("appended"), "{tag}: {done}");
            // The volume is the tender's one disk, in the syntax of its ABI.
            let short = run(ex.bunny().args(["ps", "-q", "--filter", "status=running"]));
            let dir = fs::read_dir(ex.store().join("runs"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(short.trim())
                })
                .unwrap_or_else(|| panic!("{tag}: no run {short}"));
            let state: serde_json::Value =
                serde_json::from_slice(&fs::read(dir.join("state.json")).unwrap()).unwrap();
            let pid = state["monitor_pid"].as_u64().unwrap();
            let argv = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
            let argv = String::from_utf8_lossy(&argv).replace('\0', " ");
            assert!(
                argv.contains(option) && argv.contains("/vol0.img"),
                "{tag}: {argv}"
            );
            assert!(argv.contains(r#""mountpoint":"/data""#), "{tag}: {argv}");
            // Stops, then a forced removal: each writes the volume back.
            let verb: &[&str] = if n < 2 {
                &["stop", &run_name]
            } else {
                &["rm", "-f", &run_name]
            };
            run(ex.bunny().args(verb));
        }
        assert_eq!(
            fs::read_to_string(data.join("www/log")).unwrap(),
            "first\nsecond\nthird\n",
            "{tag}"
        );
        run(ex.bunny().args(["rm", "rr-0"]));
    }
}
