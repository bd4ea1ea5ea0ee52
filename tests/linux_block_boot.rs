//! Linux guests with a block rootfs boot on Debian's kernel, which has
//! virtio-blk and ext4 only as modules: bunny adds a boot stage (an initrd
//! with bunny-init and those modules) that mounts the block root and starts
//! the guest's init on it. A Containerfile image (`LABEL bunny.rootfs=block`)
//! serves HTTP under `bunny run` and under bunny-runtime through containerd;
//! a BunnyFile image (hello-linux with `type: block`) under `bunny run`.

mod common;
#[path = "init_helper.rs"]
mod init_helper;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::engines::{monitor_argv, ok, runtime_binary, wait_http, Containerd, Netns, Task};
use common::guest::free_port;
use common::{bunny, run};

/// A TCG boot takes seconds; this only guards against a hang on a loaded
/// machine.
const BOOT: Duration = Duration::from_secs(180);
const PAGE: &str = "served from a block root";

/// `bunny run -p PORT:80 IMAGE`, console to `log`; killed on drop.
struct Guest {
    child: Child,
    log: PathBuf,
}

impl Guest {
    fn start(store: &Path, image: &str, log: PathBuf) -> (Guest, u16) {
        let port = free_port();
        let child = bunny(store)
            .args(["run", "--rm", "--accel", "auto", "-p"])
            .arg(format!("127.0.0.1:{port}:80"))
            .arg(image)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        (Guest { child, log }, port)
    }
    fn console(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn serve(&mut self, port: u16) -> String {
        let log = self.log.clone();
        let child = &mut self.child;
        wait_http(&format!("127.0.0.1:{port}"), BOOT, |late| {
            let console = || std::fs::read_to_string(&log).unwrap_or_default();
            match child.try_wait().unwrap() {
                Some(st) => Some(format!("bunny run exited ({st}):\n{}", console())),
                None => late.then(console),
            }
        })
        .0
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_containerfile_block_root_boots_under_bunny_run_and_bunny_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let base = init_helper::busybox_image(
        tmp.path(),
        "web",
        &[("/www/index.html", &format!("{PAGE}\n"))],
    );
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        format!(
            "FROM {base}\nLABEL com.urunc.unikernel.hypervisor=qemu\nLABEL bunny.rootfs=block\n\
             CMD [\"/bin/busybox\",\"httpd\",\"-f\",\"-p\",\"80\",\"-h\",\"/www\"]\n"
        ),
    )
    .unwrap();
    let store = tmp.path().join("store");
    let archive = tmp.path().join("web.tar");
    run(bunny(&store)
        .args([
            "build",
            "--progress=quiet",
            "-t",
            "web:block",
            "--toolchain",
        ])
        .arg(format!(
            "linux.kernel={}",
            init_helper::kernel_image_with_modules(tmp.path())
        ))
        .arg("--allow-layout")
        .arg(tmp.path())
        .arg("-o")
        .arg(format!("type=oci-archive,dest={}", archive.display()))
        .arg(&ctx)
        .env("BUNNY_INIT", init_helper::static_init_private()));
    let inspect = run(bunny(&store).args(["inspect", "web:block"]));
    assert!(
        inspect.contains("/.boot/initrd") && inspect.contains("/.boot/rootfs"),
        "the image names no boot stage beside its block root:\n{inspect}"
    );

    let (mut guest, port) = Guest::start(&store, "web:block", tmp.path().join("run.log"));
    let page = guest.serve(port);
    assert!(page.contains(PAGE), "{page}");
    let console = guest.console();
    assert!(
        console.contains("boot stage: /dev/vda (ext4) mounted, starting /urunit"),
        "{console}"
    );
    // The stage's files (bunny-init, the modules: about 2.6 MB) are given
    // back to the guest before the switch, not left in the kernel's rootfs.
    let freed: u64 = console
        .split("boot stage: freed ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `freed` line:\n{console}"));
    assert!(freed > 1_000_000, "freed only {freed} bytes:\n{console}");
    eprintln!("boot stage freed {freed} bytes");
    drop(guest);

    // The same image under bunny-runtime, on a container network.
    runtime_binary();
    let ctd = Containerd::start();
    ok(
        ctd.ctr().args(["images", "import"]).arg(&archive),
        Duration::from_secs(60),
    );
    let ns = Netns::new("lb", 61);
    let runc_root = tmp.path().join("runc-root");
    ok(
        ctd.run(&runc_root).args([
            "-d",
            "--with-ns",
            &format!("network:{}", ns.path()),
            "docker.io/library/web:block",
            "blk1",
        ]),
        Duration::from_secs(30),
    );
    let _task = Task(&ctd, "blk1");
    let (page, _) = wait_http("10.213.61.2:80", BOOT, |late| {
        (late || ctd.task_pid("blk1").is_none())
            .then(|| format!("the task is gone or late; containerd log:\n{}", ctd.log()))
    });
    let argv = ctd.task_pid("blk1").map(monitor_argv).unwrap_or_default();
    assert!(page.contains(PAGE), "{page}");
    let line = argv.join(" ");
    assert!(line.contains("/.boot/initrd"), "{line}");
    assert!(line.contains("root=/dev/vda rw"), "{line}");
    assert!(!line.contains("rdinit="), "{line}");
}

#[test]
fn a_bunnyfile_block_root_boots_under_bunny_run() {
    let tmp = tempfile::tempdir().unwrap();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/hello-linux");
    assert!(
        src.join("vmlinuz").exists(),
        "examples/hello-linux/vmlinuz is missing: run `bash scripts/setup.sh` first"
    );
    let ctx = tmp.path().join("ctx");
    run(Command::new("cp").arg("-a").arg(&src).arg(&ctx));
    let bf = std::fs::read_to_string(ctx.join("BunnyFile")).unwrap();
    assert!(bf.contains("type: initrd"), "{bf}");
    std::fs::write(
        ctx.join("BunnyFile"),
        bf.replace("type: initrd", "type: block"),
    )
    .unwrap();
    let store = tmp.path().join("store");
    run(bunny(&store)
        .args(["build", "--progress=quiet", "-t", "hello:block"])
        .arg(&ctx)
        .env("BUNNY_INIT", init_helper::static_init_private()));
    let (mut guest, port) = Guest::start(&store, "hello:block", tmp.path().join("run.log"));
    let page = guest.serve(port);
    assert!(page.contains("hello from bunny"), "{page}");
    let console = guest.console();
    assert!(
        console.contains("boot stage: /dev/vda (ext4) mounted, starting /init"),
        "{console}"
    );
}
