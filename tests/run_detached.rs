//! `bunny run -d`, `ps`, `logs`, `stop` and `rm` with examples/hello-linux
//! under qemu (TCG): every step is a separate bunny process, so the runs'
//! state is what carries over; and `-v` volumes whose data, written by the
//! guest, survives a stop and a start (`bunny start`) or a new run, written
//! back into the directory or kept in the run's own image.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::guest::free_port;
use common::{bunny, output, run};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn build_hello(root: &Path) {
    let ctx = repo().join("examples/hello-linux");
    assert!(
        ctx.join("vmlinuz").exists(),
        "examples/hello-linux/vmlinuz is missing: run `bash scripts/setup.sh` first"
    );
    run(bunny(root)
        .args(["build", "--progress=quiet", "-t", "hello:test"])
        .arg(&ctx));
}

fn http_ok(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(s, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("200 OK")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn logs(root: &Path, name: &str) -> String {
    run(bunny(root).args(["logs", name]))
}

/// Waits for the guest's httpd on `port`, failing with its console.
fn wait_http(root: &Path, name: &str, port: u16) {
    let t0 = Instant::now();
    while !http_ok(port) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no HTTP answer in 120 s; console:\n{}",
            logs(root, name)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn ps(root: &Path, all: bool) -> String {
    let mut c = bunny(root);
    c.arg("ps");
    if all {
        c.arg("-a");
    }
    run(&mut c)
}

fn row<'a>(ps: &'a str, name: &str) -> Option<&'a str> {
    ps.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
}

fn state(root: &Path, id: &str) -> serde_json::Value {
    let bytes = std::fs::read(root.join("runs").join(id).join("state.json")).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[test]
fn a_detached_run_is_listed_logged_stopped_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    build_hello(&root);
    let port = free_port();
    let out = output(
        bunny(&root)
            .args(["run", "-d", "--name", "web", "--accel", "tcg"])
            .args(["-p", &format!("127.0.0.1:{port}:80"), "hello:test"]),
    );
    let (id, err) = text(&out);
    assert!(out.status.success(), "{err}");
    let id = id.trim().to_string();
    assert!(
        id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "run -d prints the run's id: {id:?}"
    );
    // `bunny run -d` has returned; the guest goes on.
    let listed = ps(&root, false);
    let line = row(&listed, "web").unwrap_or_else(|| panic!("{listed}"));
    assert!(
        line.starts_with(&id[..12]) && line.contains("Up "),
        "{listed}"
    );
    assert!(line.contains(&format!("127.0.0.1:{port}:80")), "{listed}");
    wait_http(&root, "web", port);
    let console = logs(&root, "web");
    assert!(
        console.contains("hello-linux: serving http on port 80"),
        "{console}"
    );

    // Docker's rules: names are unique, a running run is removed only with -f.
    let taken = output(bunny(&root).args(["run", "-d", "--name", "web", "hello:test"]));
    let (_, err) = text(&taken);
    assert!(
        !taken.status.success() && err.contains("`web` is already used"),
        "{err}"
    );
    let busy = output(bunny(&root).args(["rm", "web"]));
    let (_, err) = text(&busy);
    assert!(!busy.status.success() && err.contains("rm -f web"), "{err}");

    let t0 = Instant::now();
    run(bunny(&root).args(["stop", "web"]));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t0.elapsed()
    );
    assert!(!http_ok(port), "the guest still answers after stop");
    assert!(row(&ps(&root, false), "web").is_none());
    let all = ps(&root, true);
    let line = row(&all, "web").unwrap_or_else(|| panic!("{all}"));
    assert!(line.contains("Exited (143)"), "stopped by SIGTERM: {all}");
    // The console outlives the guest.
    assert!(logs(&root, "web").contains("serving http"));

    // A run that ends by itself records the guest's status, and logs -f
    // follows it to the end.
    let out = output(bunny(&root).args([
        "run",
        "-d",
        "--name",
        "once",
        "--accel",
        "tcg",
        "hello:test",
        "once",
        "3",
    ]));
    assert!(out.status.success(), "{}", text(&out).1);
    let followed = output(bunny(&root).args(["logs", "-f", "once"]));
    let (console, _) = text(&followed);
    assert!(console.contains("hello-linux: done"), "{console}");
    let all = ps(&root, true);
    assert!(
        row(&all, "once").is_some_and(|l| l.contains("Exited (3)")),
        "{all}"
    );

    run(bunny(&root).args(["rm", "web", "once"]));
    assert_eq!(
        ps(&root, true).lines().count(),
        1,
        "only the header is left"
    );
    assert_eq!(
        std::fs::read_dir(root.join("runs")).unwrap().count(),
        0,
        "rm leaves nothing behind"
    );
    let gone = output(bunny(&root).args(["logs", "web"]));
    assert!(!gone.status.success() && text(&gone).1.contains("no run `web`"));
}

#[test]
fn a_run_whose_bunny_was_killed_is_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    build_hello(&root);
    let id = run(bunny(&root).args(["run", "-d", "--accel", "tcg", "hello:test"]))
        .trim()
        .to_string();
    let st = state(&root, &id);
    let supervisor = st["supervisor_pid"].as_u64().unwrap();
    let monitor = st["monitor_pid"].as_u64().unwrap();
    assert!(alive(supervisor) && alive(monitor), "{st}");
    // SAFETY: kill has no memory-safety preconditions; the pid is the
    // supervisor this test started.
    unsafe { libc::kill(supervisor as i32, libc::SIGKILL) };
    let t0 = Instant::now();
    while alive(supervisor) || alive(monitor) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the monitor outlived its bunny (no PDEATHSIG?)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let name = st["name"].as_str().unwrap();
    assert!(name.starts_with("hello-"), "{name}");
    let all = ps(&root, true);
    assert!(
        row(&all, name).is_some_and(|l| l.contains("Stale")),
        "{all}"
    );
    assert!(row(&ps(&root, false), name).is_none());
    let stop = output(bunny(&root).args(["stop", name]));
    let (_, err) = text(&stop);
    assert!(
        !stop.status.success()
            && err.contains("stale")
            && err.contains(&format!("bunny rm {name}")),
        "{err}"
    );
    // Stale runs go without -f; a prefix of the id names the run too.
    run(bunny(&root).args(["rm", &id[..8]]));
    assert_eq!(ps(&root, true).lines().count(), 1);
}

#[test]
fn a_volume_keeps_what_the_guest_wrote_across_a_stop_a_start_and_a_new_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    build_hello(&root);
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("seed"), "from the host\n").unwrap();
    let vol = format!("{}:/data", data.display());

    let port = free_port();
    let v1 = run(bunny(&root)
        .args(["run", "-d", "--name", "v1", "--accel", "tcg", "-v", &vol])
        .args(["-p", &format!("127.0.0.1:{port}:80")])
        .args(["hello:test", "append", "/data/log", "first"]))
    .trim()
    .to_string();
    wait_http(&root, "v1", port);
    let console = logs(&root, "v1");
    assert!(
        console.contains("volume bunnyvol0 (/dev/vda) at /data (rw)"),
        "{console}"
    );
    // The guest is still running: the directory is not touched until it stops.
    assert!(!data.join("log").exists());
    // The same directory cannot go to two runs at once.
    let twice = output(bunny(&root).args(["run", "-d", "-v", &vol, "hello:test"]));
    assert!(
        !twice.status.success() && text(&twice).1.contains("in use by another run"),
        "{}",
        text(&twice).1
    );
    run(bunny(&root).args(["stop", "v1"]));
    assert_eq!(
        std::fs::read_to_string(data.join("log")).unwrap(),
        "first\n"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("seed")).unwrap(),
        "from the host\n"
    );
    assert!(!data.join("lost+found").exists());

    // `bunny start` boots the same run again, from a fresh image of the
    // directory: the guest sees what it wrote before, and writes again.
    run(bunny(&root).args(["start", "v1"]));
    let listed = ps(&root, false);
    assert!(
        row(&listed, "v1").is_some_and(|l| l.contains("Up ")),
        "{listed}"
    );
    wait_http(&root, "v1", port);
    let console = logs(&root, "v1");
    assert!(
        console.matches("hello-linux:   first").count() == 1 + 2,
        "the second boot shows two lines: {console}"
    );
    run(bunny(&root).args(["stop", "v1"]));
    assert_eq!(
        std::fs::read_to_string(data.join("log")).unwrap(),
        "first\nfirst\n"
    );
    let st = state(&root, &v1);
    assert_eq!(st["restarts"], 1, "{st}");

    // A new run sees what the last one wrote; `rm -f` still writes back.
    let port = free_port();
    run(bunny(&root)
        .args(["run", "-d", "--name", "v2", "--accel", "tcg", "-v", &vol])
        .args(["-p", &format!("127.0.0.1:{port}:80")])
        .args(["hello:test", "append", "/data/log", "second"]));
    wait_http(&root, "v2", port);
    let console = logs(&root, "v2");
    let first = console.find("hello-linux:   first");
    let second = console.find("hello-linux:   second");
    assert!(
        first.is_some() && second.is_some() && first < second,
        "{console}"
    );
    run(bunny(&root).args(["rm", "-f", "v2"]));
    assert_eq!(
        std::fs::read_to_string(data.join("log")).unwrap(),
        "first\nfirst\nsecond\n"
    );
    // The run's disk image went with the run.
    assert_eq!(std::fs::read_dir(root.join("runs")).unwrap().count(), 1);

    // A start that cannot boot (the volume's directory is gone) says why
    // and leaves the run as it was.
    let away = tmp.path().join("away");
    std::fs::rename(&data, &away).unwrap();
    let failed = output(bunny(&root).args(["start", "v1"]));
    let (_, err) = text(&failed);
    assert!(
        !failed.status.success() && err.contains("starting run v1") && err.contains("data"),
        "{err}"
    );
    let all = ps(&root, true);
    assert!(
        row(&all, "v1").is_some_and(|l| l.contains("Exited (143)")),
        "{all}"
    );
    std::fs::rename(&away, &data).unwrap();
}

#[test]
fn a_kept_volume_holds_the_guests_writes_for_the_next_start_and_leaves_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    build_hello(&root);
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("seed"), "from the host\n").unwrap();
    let vol = format!("{}:/data:keep", data.display());

    let refused = output(bunny(&root).args(["run", "--rm", "-v", &vol, "hello:test"]));
    assert!(
        !refused.status.success() && text(&refused).1.contains("--rm removes"),
        "{}",
        text(&refused).1
    );

    let port = free_port();
    let id = run(bunny(&root)
        .args(["run", "-d", "--name", "k", "--accel", "tcg", "-v", &vol])
        .args(["-p", &format!("127.0.0.1:{port}:80")])
        .args(["hello:test", "append", "/data/log", "kept"]))
    .trim()
    .to_string();
    for boot in 1..=2 {
        wait_http(&root, "k", port);
        run(bunny(&root).args(["stop", "k"]));
        let console = logs(&root, "k");
        // Each boot shows the file: one line, then two (the first boot's
        // write came back with the image).
        assert_eq!(
            console.matches("hello-linux:   kept").count(),
            boot * (boot + 1) / 2,
            "boot {boot}: {console}"
        );
        assert!(
            console.matches("are kept in").count() == boot,
            "boot {boot}: {console}"
        );
        // The directory is as the host left it.
        let names: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["seed"], "boot {boot}");
        if boot == 1 {
            run(bunny(&root).args(["start", "k"]));
        }
    }
    // The image in the run's directory holds both boots' writes.
    let image = root.join("runs").join(&id).join("vol0.img");
    let cat = output(
        std::process::Command::new("debugfs")
            .args(["-R", "cat /log"])
            .arg(&image),
    );
    assert_eq!(text(&cat).0, "kept\nkept\n", "{}", text(&cat).1);
    run(bunny(&root).args(["rm", "k"]));
    assert!(!image.exists());
}
