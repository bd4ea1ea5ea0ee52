//! The real urunc and bunny-runtime under one containerd, same images, each
//! guest on a container network of its own: examples/hello-linux (a
//! BunnyFile, initrd root) and a Containerfile-built Linux guest (block
//! root with bunny's boot stage) both serve HTTP under both runtimes, and
//! their qemu command lines (read from /proc/PID/cmdline) differ exactly as
//! docs/runtime.md's table says. (A rumprun guest under both:
//! tests/rumprun_boot.rs.)
//!
//! urunc execs qemu with `-enable-kvm -cpu host`, which hangs on these
//! machines, so containerd's PATH starts with the qemu-tcg wrapper that
//! scripts/setup.sh installs from ../shared/tools/urunc: what the tests read
//! is the wrapper's translation (`-cpu max`, no `-enable-kvm`).

mod common;
#[path = "init_helper.rs"]
mod init_helper;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::engines::{monitor_argv, ok, runtime_binary, wait_http, Containerd, Netns, Task};
use common::{bunny, require_tool, run};

const BOOT: Duration = Duration::from_secs(180);
const WRAPPER_DIR: &str = "/usr/lib/qemu-tcg";
const PAGE: &str = "served by a Containerfile guest";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn hello_archive(dir: &Path) -> PathBuf {
    let ctx = repo().join("examples/hello-linux");
    assert!(
        ctx.join("vmlinuz").exists(),
        "examples/hello-linux/vmlinuz is missing: run `bash scripts/setup.sh` first"
    );
    let dest = dir.join("hello.tar");
    run(bunny(&dir.join("store"))
        .args(["build", "--progress=quiet", "-t", "hello:test", "-o"])
        .arg(format!("type=oci-archive,dest={}", dest.display()))
        .arg(&ctx));
    dest
}

fn containerfile_archive(dir: &Path) -> PathBuf {
    let base = init_helper::busybox_image(dir, "web", &[("/www/index.html", &format!("{PAGE}\n"))]);
    let ctx = dir.join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        format!(
            "FROM {base}\nLABEL com.urunc.unikernel.hypervisor=qemu\nLABEL bunny.rootfs=block\n\
             CMD [\"/bin/busybox\",\"httpd\",\"-f\",\"-p\",\"80\",\"-h\",\"/www\"]\n"
        ),
    )
    .unwrap();
    let dest = dir.join("web.tar");
    run(bunny(&dir.join("store"))
        .args([
            "build",
            "--progress=quiet",
            "-t",
            "web:block",
            "--toolchain",
        ])
        .arg(format!(
            "linux.kernel={}",
            init_helper::kernel_image_with_modules(dir)
        ))
        .arg("--allow-layout")
        .arg(dir)
        .arg("-o")
        .arg(format!("type=oci-archive,dest={}", dest.display()))
        .arg(&ctx)
        .env("BUNNY_INIT", init_helper::static_init_private()));
    dest
}

/// The options of a qemu argv (`-m`, `-netdev`, ...), values dropped; a
/// repeated option counts once.
fn options(argv: &[String]) -> BTreeSet<String> {
    argv.iter()
        .skip(1)
        .filter(|a| a.starts_with('-'))
        .map(|a| a.trim_start_matches('-').to_string())
        .collect()
}

fn value_of<'a>(argv: &'a [String], opt: &str) -> Vec<&'a str> {
    argv.windows(2)
        .filter(|w| w[0] == opt)
        .map(|w| w[1].as_str())
        .collect()
}

/// The kernel command line with the guest's own address taken out (each
/// runtime's guest is on a network of its own).
fn append(argv: &[String]) -> String {
    value_of(argv, "-append")
        .first()
        .unwrap_or(&"")
        .split(' ')
        .filter(|w| !w.is_empty() && !w.starts_with("ip="))
        .collect::<Vec<_>>()
        .join(" ")
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

struct Pair {
    urunc: Vec<String>,
    bunny: Vec<String>,
    bunny_mac: String,
}

/// Runs `image` under both runtimes at once (the boots overlap), waits for
/// both to serve, and returns both monitors' argv.
fn side_by_side(
    ctd: &Containerd,
    runc_root: &Path,
    image: &str,
    tag: &str,
    subnets: (u8, u8),
    urunc_annotations: &[(&str, String)],
    want: &str,
) -> Pair {
    let nu = Netns::new(&format!("u{tag}"), subnets.0);
    let nb = Netns::new(&format!("b{tag}"), subnets.1);
    let (iu, ib) = (format!("u{tag}"), format!("b{tag}"));
    let mut cmd = ctd.ctr();
    // No `--seccomp`: under containerd's default profile urunc 0.5 never
    // started qemu in the run tried here (docs/runtime.md).
    let console = runc_root.with_file_name(format!("console-{iu}.log"));
    cmd.args(["run", "-d", "--runtime", "io.containerd.urunc.v2"])
        .arg("--log-uri")
        .arg(format!("file://{}", console.display()))
        .arg("--with-ns")
        .arg(format!("network:{}", nu.path()));
    for (k, v) in urunc_annotations {
        cmd.arg("--annotation").arg(format!("{k}={v}"));
    }
    let _tu = Task(ctd, &iu);
    ok(cmd.args([image, &iu]), Duration::from_secs(60));
    let _tb = Task(ctd, &ib);
    ok(
        ctd.run(runc_root).args([
            "-d",
            "--with-ns",
            &format!("network:{}", nb.path()),
            image,
            &ib,
        ]),
        Duration::from_secs(60),
    );
    let bunny_mac = ok(
        Command::new("ip").args(["-n", &nb.name, "-br", "link", "show", "eth0"]),
        Duration::from_secs(5),
    )
    .split_whitespace()
    .nth(2)
    .unwrap_or_default()
    .to_string();
    let mut argv = Vec::new();
    for (id, subnet) in [(&iu, subnets.0), (&ib, subnets.1)] {
        let (body, took) = wait_http(&format!("10.213.{subnet}.2:80"), BOOT, |late| {
            (late || ctd.task_pid(id).is_none()).then(|| {
                format!(
                    "task {id}; `ctr task ls`:\n{}\nurunc's console:\n{}\ncontainerd log:\n{}",
                    ok(ctd.ctr().args(["task", "ls"]), Duration::from_secs(10)),
                    std::fs::read_to_string(&console).unwrap_or_default(),
                    ctd.log()
                )
            })
        });
        assert!(body.contains(want), "{id}: {body}");
        eprintln!("{id}: HTTP after {took:?} (of waiting)");
        let pid = ctd.task_pid(id).expect("the task runs");
        argv.push(monitor_argv(pid));
    }
    let bunny = argv.pop().unwrap();
    let urunc = argv.pop().unwrap();
    eprintln!("{tag} urunc:         {urunc:?}\n{tag} bunny-runtime: {bunny:?}");
    Pair {
        urunc,
        bunny,
        bunny_mac,
    }
}

#[test]
fn urunc_and_bunny_runtime_serve_the_same_images_and_differ_only_as_documented() {
    require_tool("containerd-shim-urunc-v2");
    require_tool("urunc");
    let wrapper = Path::new(WRAPPER_DIR).join("qemu-system-x86_64");
    assert!(
        wrapper.is_file(),
        "{} is missing: scripts/setup.sh builds it from ../shared/tools/urunc/qemu-tcg.c",
        wrapper.display()
    );
    runtime_binary();
    let tmp = tempfile::tempdir().unwrap();
    let hello = hello_archive(tmp.path());
    let web = containerfile_archive(tmp.path());
    let path = format!(
        "{WRAPPER_DIR}:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    let ctd = Containerd::start_with_env(&[("PATH", path)]);
    for a in [&hello, &web] {
        ok(
            ctd.ctr().args(["images", "import"]).arg(a),
            Duration::from_secs(60),
        );
    }
    let runc_root = tmp.path().join("runc-root");

    // urunc 0.5 reads a missing useDMBlock as "use the snapshot's block
    // device": with an initrd-only image it hands the guest the device
    // under the container's rootfs (the host's own disk with the native
    // snapshotter; an error with overlayfs). The image's settings are given
    // again as spec annotations (which this urunc base64-decodes) with
    // useDMBlock=false, which keeps it on the image's initrd.
    let hello_keys: Vec<(&str, String)> = [
        ("com.urunc.unikernel.unikernelType", "linux"),
        ("com.urunc.unikernel.hypervisor", "qemu"),
        ("com.urunc.unikernel.binary", "/.boot/kernel"),
        ("com.urunc.unikernel.initrd", "/.boot/rootfs"),
        ("com.urunc.unikernel.useDMBlock", "false"),
    ]
    .iter()
    .map(|(k, v)| (*k, b64(v)))
    .collect();
    let h = side_by_side(
        &ctd,
        &runc_root,
        "docker.io/library/hello:test",
        "h",
        (62, 63),
        &hello_keys,
        "hello from bunny",
    );
    // A block root: urunc takes the image's block file, no useDMBlock needed.
    let w = side_by_side(
        &ctd,
        &runc_root,
        "docker.io/library/web:block",
        "w",
        (64, 65),
        &[],
        PAGE,
    );

    // hello-linux has no disk: urunc then passes no -device at all, bunny
    // its exit device.
    for (what, p, bunny_only) in [
        (
            "hello-linux",
            &h,
            &[
                "S", "accel", "chardev", "device", "mon", "netdev", "sandbox", "smp",
            ][..],
        ),
        (
            "containerfile",
            &w,
            &["S", "accel", "chardev", "mon", "netdev", "sandbox", "smp"][..],
        ),
    ] {
        let (u, b) = (options(&p.urunc), options(&p.bunny));
        let only_u: BTreeSet<_> = u.difference(&b).cloned().collect();
        let only_b: BTreeSet<_> = b.difference(&u).cloned().collect();
        // docs/runtime.md, "urunc and bunny-runtime side by side": every
        // option one runtime passes and the other does not.
        assert_eq!(
            only_u,
            set(&["L", "cpu", "net"]),
            "{what}: urunc {:?}\nbunny {:?}",
            p.urunc,
            p.bunny
        );
        assert_eq!(
            only_b,
            set(bunny_only),
            "{what}: urunc {:?}\nbunny {:?}",
            p.urunc,
            p.bunny
        );
        // qemu's default MAC under urunc (its `-net nic` names none), the
        // container interface's under bunny.
        assert!(!p.urunc.iter().any(|a| a.contains("mac=")), "{:?}", p.urunc);
        assert!(
            p.bunny
                .iter()
                .any(|a| a.ends_with(&format!("mac={}", p.bunny_mac))),
            "{what}: no mac={} in {:?}",
            p.bunny_mac,
            p.bunny
        );
        assert_eq!(value_of(&p.urunc, "-m"), ["256M"], "{what}");
        assert_eq!(value_of(&p.bunny, "-m"), ["256"], "{what}");
        // The same guest command line, but for the address.
        assert_eq!(append(&p.urunc), append(&p.bunny), "{what}");
    }
    // The block root with its boot stage, under both.
    for argv in [&w.urunc, &w.bunny] {
        let a = append(argv);
        assert!(
            a.contains("root=/dev/vda rw") && !a.contains("rdinit="),
            "{a}"
        );
        assert!(
            value_of(argv, "-initrd")
                .iter()
                .any(|i| i.ends_with("/.boot/initrd")),
            "{argv:?}"
        );
    }
}
