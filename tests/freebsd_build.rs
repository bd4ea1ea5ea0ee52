//! FreeBSD apps from binary packages, end to end without FreeBSD: a package
//! repository served over HTTP on 127.0.0.1 from generated fixtures in the
//! real formats (tests/fixtures/freebsd/gen.rs), a kernel layer and a base
//! layer as OCI layouts; the built image's UFS2 root, annotations and the
//! qemu microvm and firecracker command lines the runtime derives from it.
//! Apps from sources are compiled for real in the clang-bookworm and
//! go-bookworm images (scripts/toolchain-image.sh) under runc; the C one
//! links against a stand-in FreeBSD sysroot whose objects that same clang
//! compiles (no FreeBSD base exists here).

mod common;

#[path = "fixtures/freebsd/gen.rs"]
mod gen;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bunny::build::AppOptions;
use bunny::layers::store::Store;
use bunny::oci::annotations::{KERNEL_PATH, URUNC_JSON_PATH};
use bunny::oci::image::{assemble, ImageConfig, ImageSpec};
use bunny::oci::layer::{write_layer, CompressionChoice, LayerContent, LayerEntry, LayerOptions};
use bunny::oci::output::Output;
use bunny::pipeline::{self, BuildOptions, ImageSource, Progress};
use bunny::platform::Arch;
use bunny_runtime::{monitor_command, read_config, ResolvedAccel, RunSpec};
use common::http::FileServer;
use common::{require_tool, run, toolchains};
use gen::{elf, Item, Pkg};
use sha2::{Digest as _, Sha256};

const ABI: &str = "FreeBSD:14:amd64";
const RTLD: &str = "/libexec/ld-elf.so.1";

/// How many package files (not the catalogue) the server was asked for.
fn pkg_gets(server: &FileServer) -> usize {
    server
        .paths()
        .iter()
        .filter(|p| p.ends_with(".pkg") && !p.ends_with("packagesite.pkg"))
        .count()
}

/// iperf3 -> libiperf -> libcrypto3 (A -> B -> C), plus a package nothing needs.
fn packages() -> Vec<Pkg> {
    vec![
        Pkg {
            name: "iperf3",
            version: "3.17.1",
            deps: vec![("libiperf", "3.17.1")],
            files: vec![
                Item::File(
                    "/usr/local/bin/iperf3",
                    elf(
                        "/usr/local/bin/iperf3",
                        Some(RTLD),
                        &["libiperf.so.0", "libc.so.7"],
                    ),
                    0o755,
                ),
                Item::Symlink("/usr/local/bin/iperf", "iperf3"),
                Item::File(
                    "/usr/local/share/doc/iperf3/README",
                    b"iperf3 docs\n".to_vec(),
                    0o644,
                ),
            ],
            xz: false,
        },
        Pkg {
            name: "libiperf",
            version: "3.17.1",
            deps: vec![("libcrypto3", "3.0.15")],
            files: vec![
                Item::File(
                    "/usr/local/lib/libiperf.so.0",
                    elf(
                        "/usr/local/lib/libiperf.so.0 (from iperf3)",
                        None,
                        &["libcrypto.so.30", "libm.so.5", "libc.so.7"],
                    ),
                    0o755,
                ),
                Item::Symlink("/usr/local/lib/libiperf.so", "libiperf.so.0"),
            ],
            // Older repositories ship .txz packages; both forms are read.
            xz: true,
        },
        Pkg {
            name: "libcrypto3",
            version: "3.0.15",
            deps: vec![],
            files: vec![Item::File(
                "/usr/local/lib/libcrypto.so.30",
                elf(
                    "/usr/local/lib/libcrypto.so.30 (openssl)",
                    None,
                    &["libthr.so.3", "libc.so.7"],
                ),
                0o755,
            )],
            xz: false,
        },
        Pkg {
            name: "unrelated",
            version: "1.0",
            deps: vec![],
            files: vec![Item::File(
                "/usr/local/bin/unrelated",
                b"#!/bin/sh\n".to_vec(),
                0o755,
            )],
            xz: false,
        },
    ]
}

/// Writes the repository under `dir/ABI/quarterly`; `tamper` edits a
/// package's bytes after the catalogue has recorded its sha256, and
/// `catalogue_edit` the catalogue lines.
fn write_repo(dir: &Path, tamper: Option<&str>, drop_from_catalogue: Option<&str>) {
    let repo = dir.join(ABI).join("quarterly");
    fs::create_dir_all(repo.join("All")).unwrap();
    let mut lines = Vec::new();
    for p in packages() {
        let mut archive = gen::pkg_archive(&p);
        if drop_from_catalogue != Some(p.name) {
            lines.push(gen::catalogue_line(&p, &archive));
        }
        if tamper == Some(p.name) {
            let n = archive.len();
            archive[n / 2] ^= 0xff;
        }
        fs::write(
            repo.join(format!("All/{}-{}.pkg", p.name, p.version)),
            archive,
        )
        .unwrap();
    }
    fs::write(repo.join("packagesite.pkg"), gen::packagesite(&lines)).unwrap();
}

/// FreeBSD's base.txz in miniature: the init's programs, their libraries,
/// and files nothing needs (which must stay out of the image).
fn base_txz() -> Vec<u8> {
    gen::xz(&gen::tar(&base_items()))
}

fn base_items() -> Vec<Item> {
    let lib = |name: &'static str, needs: &[&str]| Item::File(name, elf(name, None, needs), 0o444);
    let prog =
        |name: &'static str, needs: &[&str]| Item::File(name, elf(name, Some(RTLD), needs), 0o555);
    vec![
        Item::Dir("./"),
        Item::Dir("./libexec/"),
        Item::File(
            "./libexec/ld-elf.so.1",
            elf("/libexec/ld-elf.so.1", None, &[]),
            0o555,
        ),
        Item::Dir("./lib/"),
        lib("./lib/libc.so.7", &[]),
        lib("./lib/libm.so.5", &["libc.so.7"]),
        lib("./lib/libthr.so.3", &["libc.so.7"]),
        lib("./lib/libutil.so.9", &["libc.so.7"]),
        lib("./lib/libedit.so.8", &["libncursesw.so.9", "libc.so.7"]),
        lib("./lib/libncursesw.so.9", &["libc.so.7"]),
        lib("./lib/libz.so.6", &["libc.so.7"]),
        // An absolute symlink: resolved inside the base, not on the host.
        Item::Symlink("./lib/libjail.so.1", "/usr/lib/libjail.so.1"),
        Item::Dir("./usr/"),
        Item::Dir("./usr/lib/"),
        lib("./usr/lib/libjail.so.1", &["libc.so.7"]),
        lib("./usr/lib/libunused.so.1", &["libc.so.7"]),
        Item::Dir("./bin/"),
        prog("./bin/sh", &["libedit.so.8", "libc.so.7"]),
        prog("./bin/kenv", &["libc.so.7"]),
        prog("./bin/dd", &["libc.so.7"]),
        prog("./bin/ls", &["libutil.so.9", "libc.so.7"]),
        Item::Dir("./sbin/"),
        prog("./sbin/init", &["libutil.so.9", "libc.so.7"]),
        prog("./sbin/mount", &["libutil.so.9", "libc.so.7"]),
        prog("./sbin/ifconfig", &["libjail.so.1", "libc.so.7"]),
        prog("./sbin/route", &["libc.so.7"]),
        prog("./sbin/reboot", &["libutil.so.9", "libc.so.7"]),
        Item::Dir("./usr/bin/"),
        prog("./usr/bin/unused", &["libz.so.6", "libc.so.7"]),
    ]
}

/// An OCI layout at `dir` tagged `tag` whose one layer holds `files`.
fn layout(dir: &Path, tag: &str, files: &[(&str, &Path, u32)]) -> String {
    let store = Store::open(dir).unwrap();
    let opts = LayerOptions {
        mtime: 0,
        compression: CompressionChoice::Auto,
    };
    let entries: Vec<LayerEntry> = files
        .iter()
        .map(|(path, file, mode)| LayerEntry {
            path: path.to_string(),
            content: LayerContent::File(file.to_path_buf()),
            mode: *mode,
        })
        .collect();
    let layer = write_layer(&entries, &opts, &store).unwrap();
    let spec = ImageSpec {
        layers: vec![layer],
        config: ImageConfig {
            os: "linux".into(),
            architecture: Arch::Amd64,
            cmd: vec![],
            entrypoint: vec![],
            env: vec![],
            labels: BTreeMap::new(),
            working_dir: None,
            user: None,
            created_epoch: 0,
        },
        annotations: BTreeMap::new(),
    };
    let manifest = assemble(&spec, &store).unwrap();
    store.tag(tag, &manifest).unwrap();
    format!("oci:{}:{tag}", dir.display())
}

struct Fixture {
    dir: tempfile::TempDir,
    overrides: BTreeMap<String, String>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("kernel");
    fs::write(
        &kernel,
        b"bunny test fixture: stands in for a FreeBSD 14.3 FIRECRACKER kernel (PVH; drivers: virtio_mmio vtnet virtio_blk)\n",
    )
    .unwrap();
    let base = dir.path().join("base.txz");
    fs::write(&base, base_txz()).unwrap();
    let mut overrides = BTreeMap::new();
    overrides.insert(
        "freebsd.kernel".to_string(),
        layout(
            &dir.path().join("kernel-layout"),
            "14.3",
            &[(KERNEL_PATH, &kernel, 0o755)],
        ),
    );
    overrides.insert(
        "freebsd.base".to_string(),
        layout(
            &dir.path().join("base-layout"),
            "14.3",
            &[("/base.txz", &base, 0o644)],
        ),
    );
    Fixture { dir, overrides }
}

struct Quiet;
impl Progress for Quiet {
    fn start(&self, _: &str) {}
    fn finish(&self, _: &str, _: &str) {}
    fn warn(&self, _: &str) {}
    fn log(&self, _: &str, _: &str) {}
}

struct NoImages;
impl ImageSource for NoImages {
    fn files(&self, r: &str) -> Result<PathBuf, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("no image {r} in this test").into())
    }
}

fn bunnyfile(monitor: &str, port: u16, packages: &str) -> String {
    format!(
        r#"version: v0.1
platforms:
  framework: freebsd
  monitor: {monitor}
  architecture: x86_64
app:
  name: iperf3
  packages: {packages}
  repository:
    url: http://127.0.0.1:{port}/${{ABI}}/quarterly
    abi: {ABI}
entrypoint: ["/sbin/urunit", "/usr/local/bin/iperf3"]
cmd: ["-s"]
"#
    )
}

/// Builds the BunnyFile into an OCI layout at `out` (tag `t`); the store is
/// shared between builds so downloads are reused.
fn build(
    f: &Fixture,
    store: &Store,
    text: &str,
    out: &Path,
) -> Result<bunny::pipeline::Built, String> {
    build_with(f, store, text, out, false).map(|(built, _)| built)
}

/// [`build`], optionally running every step again (`--no-cache`); also
/// returns how many steps ran.
fn build_with(
    f: &Fixture,
    store: &Store,
    text: &str,
    out: &Path,
    no_cache: bool,
) -> Result<(bunny::pipeline::Built, usize), String> {
    let ctx = f.dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("BunnyFile"), text).unwrap();
    let parsed = bunny::bunnyfile::parse("BunnyFile", text).map_err(|e| e.to_string())?;
    let spec = bunny::bunnyfile::spec::to_spec(&parsed.bunnyfile, "BunnyFile");
    let inputs = pipeline::PlanInputs {
        context: &ctx,
        architecture: None,
        images: &NoImages,
        init: None,
    };
    let mut plan = pipeline::plan(&spec, &inputs).map_err(|e| e.to_string())?;
    let opts = AppOptions {
        lock_file: ctx.join("bunny.lock"),
        layer_overrides: f.overrides.clone(),
        config_file: Some(f.dir.path().join("no-config.json")),
        no_cache,
        ..AppOptions::default()
    };
    let app = pipeline::prepare_app(&mut plan, store, &opts, &Quiet).map_err(|e| {
        let mut s = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(inner) = src {
            s.push_str(&format!(": {inner}"));
            src = inner.source();
        }
        s
    })?;
    pipeline::build(
        &plan,
        store,
        &BuildOptions {
            tags: vec!["iperf3-freebsd:t".into()],
            compression: CompressionChoice::Auto,
            epoch: 0,
            gzip_initrd: false,
            outputs: vec![Output::OciLayout {
                dir: out.to_path_buf(),
            }],
        },
        &Quiet,
    )
    .map(|built| (built, app.map(|a| a.steps_run).unwrap_or(0)))
    .map_err(|e| e.to_string())
}

// ---- a reader for the UFS2 image bunny writes (little-endian) ----

fn le32(b: &[u8], o: usize) -> u64 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as u64
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

struct Ufs {
    data: Vec<u8>,
    fsize: u64,
    fpg: u64,
    ipg: u64,
    iblkno: u64,
}

impl Ufs {
    fn open(path: &Path) -> Ufs {
        let data = fs::read(path).unwrap();
        let loc = 65536usize;
        assert_eq!(
            le32(&data, loc + 1372),
            0x1954_0119,
            "no UFS2 superblock at 65536"
        );
        let sb = &data[loc..];
        Ufs {
            fsize: le32(sb, 52),
            fpg: le32(sb, 188),
            ipg: le32(sb, 184),
            iblkno: le32(sb, 16),
            data,
        }
    }
    /// (mode, size, direct blocks)
    fn inode(&self, ino: u64) -> (u16, u64, Vec<u64>) {
        let cg = ino / self.ipg;
        let off = ((cg * self.fpg + self.iblkno) * self.fsize + (ino % self.ipg) * 256) as usize;
        let raw = &self.data[off..off + 256];
        (
            u16::from_le_bytes([raw[0], raw[1]]),
            le64(raw, 16),
            (0..12).map(|i| le64(raw, 112 + 8 * i)).collect(),
        )
    }
    fn contents(&self, ino: u64) -> Vec<u8> {
        let (mode, size, db) = self.inode(ino);
        if mode & 0o170000 == 0o120000 && size < 120 {
            // Short symlink targets live in the inode itself.
            let cg = ino / self.ipg;
            let off =
                ((cg * self.fpg + self.iblkno) * self.fsize + (ino % self.ipg) * 256) as usize;
            return self.data[off + 112..off + 112 + size as usize].to_vec();
        }
        let bsize = self.fsize * 8;
        let mut out = Vec::new();
        let mut left = size;
        // Past the 12 direct blocks, the single indirect block's pointers
        // (di_ib[0], right after di_db) name the next ones.
        let mut blocks = db;
        if size > 12 * bsize {
            let cg = ino / self.ipg;
            let off =
                ((cg * self.fpg + self.iblkno) * self.fsize + (ino % self.ipg) * 256) as usize;
            let ib = le64(&self.data[off..off + 256], 208);
            let at = (ib * self.fsize) as usize;
            blocks.extend((0..bsize as usize / 8).map(|i| le64(&self.data, at + 8 * i)));
        }
        for blk in blocks {
            if left == 0 {
                break;
            }
            let n = left.min(bsize);
            let at = (blk * self.fsize) as usize;
            out.extend_from_slice(&self.data[at..at + n as usize]);
            left -= n;
        }
        out
    }
    /// Every path in the filesystem, with its inode's mode.
    fn walk(&self) -> BTreeMap<String, (u16, u64)> {
        let mut out = BTreeMap::new();
        let mut pending = vec![(String::new(), 2u64)];
        while let Some((path, ino)) = pending.pop() {
            let buf = self.contents(ino);
            let mut at = 0;
            while at + 8 <= buf.len() {
                let child = le32(&buf, at);
                let reclen = u16::from_le_bytes([buf[at + 4], buf[at + 5]]) as usize;
                let namlen = buf[at + 7] as usize;
                if reclen == 0 {
                    break;
                }
                let name = String::from_utf8_lossy(&buf[at + 8..at + 8 + namlen]).into_owned();
                if child != 0 && name != "." && name != ".." {
                    let p = format!("{path}/{name}");
                    let (mode, _, _) = self.inode(child);
                    if mode & 0o170000 == 0o040000 {
                        pending.push((p.clone(), child));
                    }
                    out.insert(p, (mode, child));
                }
                at += reclen;
            }
        }
        out
    }
}

fn unpack(layout_dir: &Path, bundle: &Path) -> serde_json::Value {
    require_tool("umoci");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:t", layout_dir.display()))
        .arg(bundle));
    serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap()
}

#[test]
fn iperf3_from_packages_becomes_a_ufs2_freebsd_image() {
    let f = fixture();
    let repo = f.dir.path().join("repo");
    write_repo(&repo, None, None);
    let server = FileServer::start(repo);
    let store = Store::open(&f.dir.path().join("store")).unwrap();

    let mut specs = Vec::new();
    for monitor in ["qemu", "firecracker"] {
        let out = f.dir.path().join(format!("out-{monitor}"));
        let built = build(
            &f,
            &store,
            &bunnyfile(monitor, server.port, "[iperf3]"),
            &out,
        )
        .unwrap();
        let ann = &built.urunc.to_annotations();
        assert_eq!(ann["com.urunc.unikernel.unikernelType"], "freebsd");
        assert_eq!(ann["com.urunc.unikernel.hypervisor"], monitor);
        assert_eq!(ann["com.urunc.unikernel.binary"], "/.boot/kernel");
        assert_eq!(ann["com.urunc.unikernel.block"], "/.boot/rootfs");
        assert_eq!(ann["com.urunc.unikernel.blkMntPoint"], "/");
        // Go bunny's rule: `cmd` joined; urunc starts the process's
        // arguments (entrypoint + cmd) and reads this only without them.
        assert_eq!(ann["com.urunc.unikernel.cmdline"], "-s");
        assert!(!ann.contains_key("com.urunc.unikernel.initrd"));

        let bundle = f.dir.path().join(format!("bundle-{monitor}"));
        let config = unpack(&out, &bundle);
        let rootfs = bundle.join("rootfs");
        assert!(rootfs
            .join(URUNC_JSON_PATH.trim_start_matches('/'))
            .is_file());
        specs.push((monitor, rootfs, config));
    }
    // The three packages were downloaded once, for both builds; `unrelated`
    // never was.
    assert_eq!(pkg_gets(&server), 3);

    let (_, rootfs, _) = &specs[0];
    let kernel = fs::read(rootfs.join(".boot/kernel")).unwrap();
    assert!(
        kernel.starts_with(b"bunny test fixture: stands in for a FreeBSD 14.3 FIRECRACKER kernel")
    );
    let img = rootfs.join(".boot/rootfs");
    let sb = bunny::layers::ufs::read_superblock(&img).unwrap();
    assert!(sb.bsize > 0 && sb.ncg > 0, "{sb:?}");
    common::ufs::check_image(&img);
    let ufs = Ufs::open(&img);
    let listing = ufs.walk();
    let files: BTreeSet<&str> = listing
        .iter()
        .filter(|(_, (mode, _))| mode & 0o170000 != 0o040000)
        .map(|(p, _)| p.as_str())
        .collect();
    let expected: BTreeSet<&str> = [
        // the packages, dependencies included
        "/usr/local/bin/iperf3",
        "/usr/local/bin/iperf",
        "/usr/local/share/doc/iperf3/README",
        "/usr/local/lib/libiperf.so.0",
        "/usr/local/lib/libiperf.so",
        "/usr/local/lib/libcrypto.so.30",
        // what they and the init need from the base, and nothing else
        "/libexec/ld-elf.so.1",
        "/lib/libc.so.7",
        "/lib/libm.so.5",
        "/lib/libthr.so.3",
        "/lib/libutil.so.9",
        "/lib/libedit.so.8",
        "/lib/libncursesw.so.9",
        "/lib/libjail.so.1",
        "/bin/sh",
        "/bin/kenv",
        "/bin/dd",
        "/sbin/init",
        "/sbin/mount",
        "/sbin/ifconfig",
        "/sbin/route",
        "/sbin/reboot",
        // generated
        "/sbin/urunit",
        "/etc/rc",
        "/etc/passwd",
        "/etc/group",
    ]
    .into_iter()
    .collect();
    assert_eq!(files, expected);
    // The size report of the last build (firecracker), and the root's file
    // bytes by origin (docs/benchmarks.md quotes them).
    let report = bunny::oci::inspect::inspect(&store, "iperf3-freebsd:t").unwrap();
    let roles: Vec<&str> = report.layers.iter().map(|l| l.role.as_str()).collect();
    assert_eq!(roles, ["kernel", "rootfs (block)", "urunc.json"]);
    assert_eq!(report.layers[1].size, {
        let desc = &report.layers[1].digest;
        fs::metadata(store.blob_path(desc).unwrap()).unwrap().len()
    });
    let (mut packages, mut base, mut generated) = (0, 0, 0);
    for p in &files {
        let size = ufs.inode(listing[*p].1).1;
        if p.starts_with("/usr/local/") {
            packages += size;
        } else if ["/sbin/urunit", "/etc/rc", "/etc/passwd", "/etc/group"].contains(p) {
            generated += size;
        } else {
            base += size;
        }
    }
    assert!(packages > 0 && base > 0 && generated > 0);
    eprintln!(
        "{}UFS2 root: {} bytes; its files: packages {packages}, base subset {base}, generated {generated}",
        report.size_table(),
        fs::metadata(&img).unwrap().len()
    );
    for d in ["/dev", "/tmp", "/etc", "/var", "/root"] {
        assert_eq!(listing[d].0 & 0o170000, 0o040000, "{d} is a directory");
    }
    assert_eq!(listing["/tmp"].0 & 0o7777, 0o1777);
    assert_eq!(listing["/usr/local/bin/iperf3"].0 & 0o777, 0o755);
    assert_eq!(ufs.contents(listing["/usr/local/bin/iperf"].1), b"iperf3");
    let rc = String::from_utf8(ufs.contents(listing["/etc/rc"].1)).unwrap();
    assert!(rc.contains("set -- /usr/local/bin/iperf3\n"), "{rc}");
    assert!(rc.contains("kenv -q URUNIT_CONFIG"), "{rc}");
    assert!(rc.contains("ifconfig vtnet0 inet"), "{rc}");
    let urunit = String::from_utf8(ufs.contents(listing["/sbin/urunit"].1)).unwrap();
    assert!(
        urunit.starts_with("#!/bin/sh\n") && urunit.contains("exec /sbin/init"),
        "{urunit}"
    );
    // The libraries came from the base archive, byte for byte.
    assert!(
        String::from_utf8_lossy(&ufs.contents(listing["/lib/libjail.so.1"].1))
            .contains("stands in for FreeBSD's ./usr/lib/libjail.so.1")
    );

    // The runtime's view of each image: urunc's FreeBSD command lines.
    for (monitor, rootfs, config) in &specs {
        let uc = read_config(&BTreeMap::new(), rootfs).unwrap();
        let mut spec = RunSpec::new(rootfs.clone(), uc);
        spec.args = config["process"]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_eq!(spec.args, ["/sbin/urunit", "/usr/local/bin/iperf3", "-s"]);
        let work = f.dir.path().join(format!("work-{monitor}"));
        spec.work_dir = Some(work.clone());
        // Firecracker only runs on KVM; qemu is shown under TCG, as here.
        let accel = if *monitor == "qemu" {
            ResolvedAccel::Tcg
        } else {
            ResolvedAccel::Kvm
        };
        let cmd = monitor_command(&spec, accel).unwrap();
        let root = rootfs.display().to_string();
        let w = work.display().to_string();
        let mut argv = vec![cmd.program.clone()];
        argv.extend(cmd.args.iter().cloned());
        let boot_args =
            "vfs.root.mountfrom=ufs:/dev/vtbd0 init_path=/sbin/urunit URUNIT_CONFIG=/dev/vtbd1";
        let urunit_conf = format!("{w}/bunny-urunit.conf");
        if *monitor == "qemu" {
            assert_eq!(
                argv,
                [
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
                    &format!("{root}/.boot/kernel"),
                    "-drive",
                    &format!("file={root}/.boot/rootfs,format=raw,if=none,id=rootfs"),
                    "-device",
                    "virtio-blk-device,drive=rootfs",
                    "-drive",
                    &format!("file={urunit_conf},format=raw,if=none,id=urunit"),
                    "-device",
                    "virtio-blk-device,drive=urunit",
                    "-nic",
                    "none",
                    "-append",
                    boot_args,
                ]
                .map(String::from)
            );
        } else {
            assert_eq!(
                argv,
                [
                    "firecracker",
                    "--no-api",
                    "--config-file",
                    &format!("{w}/bunny-firecracker.json")
                ]
                .map(String::from)
            );
            let json: serde_json::Value = serde_json::from_slice(&cmd.files[0].1).unwrap();
            assert_eq!(
                json["boot-source"],
                serde_json::json!({"kernel_image_path": format!("{root}/.boot/kernel"), "boot_args": boot_args})
            );
            assert_eq!(
                json["drives"][0]["path_on_host"],
                format!("{root}/.boot/rootfs")
            );
            assert_eq!(json["drives"][1]["path_on_host"], urunit_conf);
        }
        let (path, conf) = cmd.files.last().unwrap();
        assert_eq!(path, &PathBuf::from(&urunit_conf));
        let conf = String::from_utf8_lossy(conf);
        assert!(
            conf.contains("ARC:2\nARV:/usr/local/bin/iperf3\nARV:-s\n"),
            "{conf}"
        );
    }
}

#[test]
fn builds_are_reproducible() {
    let f = fixture();
    let repo = f.dir.path().join("repo");
    write_repo(&repo, None, None);
    let server = FileServer::start(repo);
    let text = bunnyfile("firecracker", server.port, "[iperf3]");
    let a = build(
        &f,
        &Store::open(&f.dir.path().join("s1")).unwrap(),
        &text,
        &f.dir.path().join("o1"),
    )
    .unwrap();
    let b = build(
        &f,
        &Store::open(&f.dir.path().join("s2")).unwrap(),
        &text,
        &f.dir.path().join("o2"),
    )
    .unwrap();
    assert_eq!(a.manifest.digest(), b.manifest.digest());
}

#[test]
fn a_missing_dependency_is_named_with_who_needs_it() {
    let f = fixture();
    let repo = f.dir.path().join("repo");
    write_repo(&repo, None, Some("libcrypto3"));
    let server = FileServer::start(repo);
    let store = Store::open(&f.dir.path().join("store")).unwrap();
    let err = build(
        &f,
        &store,
        &bunnyfile("qemu", server.port, "[iperf3]"),
        &f.dir.path().join("o"),
    )
    .err()
    .expect("the build must fail");
    assert!(
        err.contains(
            "package `libcrypto3`, needed by `libiperf`, is not in the repository's catalogue"
        ),
        "{err}"
    );
    let err = build(
        &f,
        &store,
        &bunnyfile("qemu", server.port, "[{name: iperf3, version: 9.9}]"),
        &f.dir.path().join("o"),
    )
    .err()
    .expect("the build must fail");
    assert!(
        err.contains("package `iperf3` version 9.9 is not in the catalogue")
            && err.contains("it has 3.17.1"),
        "{err}"
    );
    // Nothing was downloaded for a build that could not resolve.
    assert_eq!(pkg_gets(&server), 0);
}

#[test]
fn a_corrupted_package_is_refused_by_name() {
    let f = fixture();
    let repo = f.dir.path().join("repo");
    write_repo(&repo, Some("libiperf"), None);
    let server = FileServer::start(repo.clone());
    let store = Store::open(&f.dir.path().join("store")).unwrap();
    let err = build(
        &f,
        &store,
        &bunnyfile("qemu", server.port, "[iperf3]"),
        &f.dir.path().join("o"),
    )
    .err()
    .expect("the build must fail");
    assert!(
        err.contains("package `libiperf` 3.17.1 from http://127.0.0.1:")
            && err.contains("is corrupted"),
        "{err}"
    );
    // Refused before the store took it: not even under its own digest.
    let served: Vec<PathBuf> = files_named_like(&repo, "libiperf");
    assert!(
        !served.is_empty(),
        "no libiperf package in {}",
        repo.display()
    );
    for pkg in served {
        let digest = format!("sha256:{:x}", Sha256::digest(fs::read(&pkg).unwrap()));
        assert!(
            !store.has_blob(&digest),
            "the corrupted {} entered the store",
            pkg.display()
        );
    }
}

fn files_named_like(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            } else if e.file_name().to_string_lossy().starts_with(prefix) {
                found.push(e.path());
            }
        }
    }
    found
}

#[test]
fn package_entries_cannot_escape() {
    let dir = tempfile::tempdir().unwrap();
    // Deep enough that every `..` in the names below still lands inside
    // `dir`, where the whole tree is searched afterwards.
    let target = dir.path().join("a/b/c/t");
    for name in ["/../../escaped", "./usr/../../escaped"] {
        let p = dir.path().join("evil.pkg");
        fs::write(
            &p,
            gen::zstd(&gen::tar(&[Item::Raw(name.to_string(), b"x".to_vec())])),
        )
        .unwrap();
        fs::create_dir_all(&target).unwrap();
        let err = bunny::frameworks::freebsd::archive::unpack(
            fs::File::open(&p).unwrap(),
            &target,
            "package evil-1",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("package evil-1") && err.contains(name),
            "{err}"
        );
        assert_eq!(files_named(dir.path(), "escaped"), Vec::<PathBuf>::new());
    }
    // A symlink pointing out, then a file written through it: the link
    // leads to `dir/out`, so that is where the file would land.
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();
    let p = dir.path().join("evil2.pkg");
    fs::write(
        &p,
        gen::zstd(&gen::tar(&[
            Item::Symlink("/usr/local/out", "../../../../out"),
            Item::File("/usr/local/out/escaped2", b"x".to_vec(), 0o644),
        ])),
    )
    .unwrap();
    let target = dir.path().join("t2");
    fs::create_dir_all(&target).unwrap();
    let err = bunny::frameworks::freebsd::archive::unpack(
        fs::File::open(&p).unwrap(),
        &target,
        "package evil-2",
    );
    assert!(
        err.is_err(),
        "a file written through a symlink must be refused"
    );
    assert!(
        !out.join("escaped2").exists(),
        "escaped through the symlink"
    );
    assert_eq!(files_named(dir.path(), "escaped2"), Vec::<PathBuf>::new());
}

fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                todo.push(p.clone());
            }
            if e.file_name() == name {
                found.push(p);
            }
        }
    }
    found
}

#[test]
fn the_packages_field_is_validated() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/iperf3-freebsd/BunnyFile");
    let parsed = bunny::bunnyfile::load(&example).unwrap().bunnyfile;
    let app = parsed.app.unwrap();
    assert_eq!(app.from.value, "packages");
    assert_eq!(app.packages.len(), 1);
    assert_eq!(app.packages[0].name, "iperf3");

    let bad = bunnyfile("qemu", 1, "[iperf3, iperf3]");
    let err = bunny::bunnyfile::parse("BunnyFile", &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("package `iperf3` is listed twice"), "{err}");
    let bad = bunnyfile("qemu", 1, "[{name: iperf3, versoin: 1}]");
    let err = bunny::bunnyfile::parse("BunnyFile", &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown key `versoin`"), "{err}");
    let bad = bunnyfile("qemu", 1, "[iperf3]").replace("abi: FreeBSD:14:amd64", "abi: amd64");
    let err = bunny::bunnyfile::parse("BunnyFile", &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ABI `amd64` is not OS:MAJOR:ARCH"), "{err}");
    let bad = bunnyfile("qemu", 1, "[iperf3]").replace("framework: freebsd", "framework: linux");
    let err = bunny::bunnyfile::parse("BunnyFile", &bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`app.packages` is for `framework: freebsd`, not `linux`"),
        "{err}"
    );
}

/// A mirror is bounded like a registry: a package longer than the
/// catalogue says is cut off as soon as it passes that size (announced or
/// not), whatever the mirror keeps sending.
#[test]
fn a_mirror_cannot_send_more_than_expected() {
    use std::io::Read;
    use std::sync::atomic::AtomicU64;
    for announce in [false, true] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        std::thread::spawn(move || {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = if announce {
                "HTTP/1.1 200 OK\r\nContent-Length: 3221225472\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
            };
            let _ = s.write_all(head.as_bytes());
            let zeros = vec![0u8; 64 * 1024];
            // At most 256 MiB, so that a client that never stops still ends.
            while counter.load(Ordering::SeqCst) < 256 << 20 {
                if s.write_all(&zeros).is_err() {
                    return;
                }
                counter.fetch_add(zeros.len() as u64, Ordering::SeqCst);
            }
        });
        let fetcher = bunny::frameworks::freebsd::repo::Fetcher::new().unwrap();
        let mut got = Vec::new();
        let err = fetcher
            .get(&format!("http://127.0.0.1:{port}/All/x.pkg"), &mut got, 100)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than the 100 bytes expected"), "{err}");
        assert!(got.len() <= 100, "{} bytes written", got.len());
        // What the socket buffers hold, far below an unbounded read.
        assert!(
            sent.load(Ordering::SeqCst) < 32 << 20,
            "the mirror got {} MiB out",
            sent.load(Ordering::SeqCst) >> 20
        );
    }
}

#[test]
fn a_kernel_without_virtio_mmio_is_refused_for_firecracker() {
    let mut f = fixture();
    let generic = f.dir.path().join("generic-kernel");
    fs::write(
        &generic,
        b"bunny test fixture: stands in for a FreeBSD 14.3 GENERIC kernel (drivers: virtio_pci vtnet virtio_blk)\n",
    )
    .unwrap();
    f.overrides.insert(
        "freebsd.kernel".to_string(),
        layout(
            &f.dir.path().join("generic-layout"),
            "14.3",
            &[(KERNEL_PATH, &generic, 0o755)],
        ),
    );
    let repo = f.dir.path().join("repo");
    write_repo(&repo, None, None);
    let server = FileServer::start(repo);
    let store = Store::open(&f.dir.path().join("store")).unwrap();
    let Err(err) = build(
        &f,
        &store,
        &bunnyfile("firecracker", server.port, "[iperf3]"),
        &f.dir.path().join("out-fc"),
    ) else {
        panic!("a GENERIC kernel was accepted for firecracker");
    };
    assert!(err.contains("virtio-mmio"), "{err}");
    // The same kernel on qemu builds; the runtime gives it a PC machine.
    build(
        &f,
        &store,
        &bunnyfile("qemu", server.port, "[iperf3]"),
        &f.dir.path().join("out-qemu"),
    )
    .unwrap();
}

// ---- layers from FreeBSD's release distribution files ----

/// FreeBSD's kernel.txz in miniature: the kernel where installkernel puts
/// it, and a module beside it.
fn kernel_txz(kernel: &str) -> Vec<u8> {
    gen::xz(&gen::tar(&[
        Item::Dir("./"),
        Item::Dir("./boot/"),
        Item::Dir("./boot/kernel/"),
        Item::File("./boot/kernel/kernel", kernel.as_bytes().to_vec(), 0o555),
        Item::File("./boot/kernel/if_bridge.ko", b"a module".to_vec(), 0o555),
    ]))
}

/// A release directory's MANIFEST, in the form FreeBSD's
/// release/scripts/make-manifest.sh writes it (tab-separated).
fn write_manifest(dir: &Path, files: &[(&str, &[u8])]) {
    let mut text = String::new();
    for (name, bytes) in files {
        let stem = name.trim_end_matches(".txz");
        text.push_str(&format!(
            "{name}\t{:x}\t3\t{stem}\t\"{stem} (MANDATORY)\"\ton\n",
            Sha256::digest(bytes)
        ));
    }
    fs::write(dir.join("MANIFEST"), text).unwrap();
}

const GENERIC: &str = "bunny test fixture: stands in for FreeBSD 14.3's GENERIC kernel (PVH; drivers: virtio_pci vtnet virtio_blk)\n";

fn lock_of(f: &Fixture) -> serde_json::Value {
    serde_json::from_slice(&fs::read(f.dir.path().join("ctx/bunny.lock")).unwrap()).unwrap()
}

#[test]
fn release_files_are_fetched_checked_pinned_and_kept() {
    let mut f = fixture();
    let www = f.dir.path().join("www");
    write_repo(&www, None, None);
    let release = www.join("releases/amd64/14.3-RELEASE");
    fs::create_dir_all(&release).unwrap();
    let kernel = kernel_txz(GENERIC);
    fs::write(release.join("kernel.txz"), &kernel).unwrap();
    write_manifest(&release, &[("kernel.txz", &kernel)]);
    // The base is a local file, with FreeBSD's MANIFEST beside it.
    let local = f.dir.path().join("local");
    fs::create_dir_all(&local).unwrap();
    let base = base_txz();
    fs::write(local.join("base.txz"), &base).unwrap();
    write_manifest(&local, &[("base.txz", &base)]);
    let server = FileServer::start(www);
    let kernel_url = format!(
        "http://127.0.0.1:{}/releases/amd64/14.3-RELEASE/kernel.txz",
        server.port
    );
    let base_url = format!("file://{}/base.txz", local.display());
    f.overrides
        .insert("freebsd.kernel".into(), kernel_url.clone());
    f.overrides.insert("freebsd.base".into(), base_url.clone());
    let text = bunnyfile("qemu", server.port, "[iperf3]");

    let store = Store::open(&f.dir.path().join("s1")).unwrap();
    let out = f.dir.path().join("o1");
    build(&f, &store, &text, &out).unwrap();
    let lock = lock_of(&f);
    let kernel_hex = format!("{:x}", Sha256::digest(&kernel));
    let base_hex = format!("{:x}", Sha256::digest(&base));
    assert_eq!(lock["layers"]["freebsd.kernel"]["reference"], kernel_url);
    assert_eq!(
        lock["layers"]["freebsd.kernel"]["digest"],
        format!("sha256:{kernel_hex}")
    );
    assert_eq!(lock["layers"]["freebsd.base"]["reference"], base_url);
    assert_eq!(
        lock["layers"]["freebsd.base"]["digest"],
        format!("sha256:{base_hex}")
    );
    assert_eq!(
        (server.gets("/kernel.txz"), server.gets("/MANIFEST")),
        (1, 1)
    );
    // The image boots the release's kernel and holds the base's libraries.
    unpack(&out, &f.dir.path().join("bundle"));
    let bundle_root = f.dir.path().join("bundle/rootfs");
    assert_eq!(
        fs::read_to_string(bundle_root.join(".boot/kernel")).unwrap(),
        GENERIC
    );
    let ufs = Ufs::open(&bundle_root.join(".boot/rootfs"));
    let listing = ufs.walk();
    assert!(listing.contains_key("/lib/libc.so.7"), "{listing:?}");
    assert!(listing.contains_key("/sbin/init"), "{listing:?}");
    assert!(!listing.contains_key("/boot/kernel/if_bridge.ko"));

    // Again with the same store: nothing is asked of the server.
    build(&f, &store, &text, &f.dir.path().join("o2")).unwrap();
    assert_eq!(
        (server.gets("/kernel.txz"), server.gets("/MANIFEST")),
        (1, 1)
    );

    // A new store downloads the file again, checked against the lock: the
    // MANIFEST is not read.
    build(
        &f,
        &Store::open(&f.dir.path().join("s2")).unwrap(),
        &text,
        &f.dir.path().join("o3"),
    )
    .unwrap();
    assert_eq!(
        (server.gets("/kernel.txz"), server.gets("/MANIFEST")),
        (2, 1)
    );

    // The server's file changes (its MANIFEST with it): the lock refuses it.
    let changed = kernel_txz("a different kernel\n");
    fs::write(release.join("kernel.txz"), &changed).unwrap();
    write_manifest(&release, &[("kernel.txz", &changed)]);
    let s3 = Store::open(&f.dir.path().join("s3")).unwrap();
    let err = build(&f, &s3, &text, &f.dir.path().join("o4"))
        .err()
        .expect("a changed kernel.txz must be refused");
    let changed_hex = format!("{:x}", Sha256::digest(&changed));
    assert!(
        err.contains(&format!(
            "kernel.txz from {kernel_url} has sha256 {changed_hex}, but bunny.lock says {kernel_hex}; refusing it"
        )),
        "{err}"
    );
    assert!(!s3.has_blob(&format!("sha256:{changed_hex}")));
    // The store that has the pinned file still builds without the server's.
    build(&f, &store, &text, &f.dir.path().join("o5")).unwrap();

    // A changed local file is refused the same way.
    fs::write(release.join("kernel.txz"), &kernel).unwrap();
    let mut other_base = base.clone();
    other_base.extend_from_slice(b"tail");
    fs::write(local.join("base.txz"), &other_base).unwrap();
    let err = build(
        &f,
        &Store::open(&f.dir.path().join("s4")).unwrap(),
        &text,
        &f.dir.path().join("o6"),
    )
    .err()
    .expect("a changed base.txz must be refused");
    assert!(
        err.contains(&format!(
            "base.txz from {base_url} has sha256 {:x}, but bunny.lock says {base_hex}",
            Sha256::digest(&other_base)
        )),
        "{err}"
    );
}

#[test]
fn a_release_file_needs_a_known_digest() {
    let mut f = fixture();
    let www = f.dir.path().join("www");
    write_repo(&www, None, None);
    let kernel = kernel_txz(GENERIC);
    fs::create_dir_all(www.join("k")).unwrap();
    fs::write(www.join("k/kernel.txz"), &kernel).unwrap();
    let server = FileServer::start(www);
    let url = format!("http://127.0.0.1:{}/k/kernel.txz", server.port);
    let text = bunnyfile("qemu", server.port, "[iperf3]");
    let store = Store::open(&f.dir.path().join("s")).unwrap();

    // No MANIFEST, no pin: refused before the file is downloaded.
    f.overrides.insert("freebsd.kernel".into(), url.clone());
    let err = build(&f, &store, &text, &f.dir.path().join("o"))
        .err()
        .expect("no digest known");
    assert!(
        err.contains("no sha256 is known for it") && err.contains("/k/MANIFEST is not there"),
        "{err}"
    );
    assert_eq!(server.gets("/kernel.txz"), 0);

    // A wrong pin in the reference.
    let wrong = "0".repeat(64);
    f.overrides
        .insert("freebsd.kernel".into(), format!("{url}#sha256={wrong}"));
    let err = build(&f, &store, &text, &f.dir.path().join("o"))
        .err()
        .expect("a wrong pin");
    assert!(
        err.contains(&format!(
            "has sha256 {:x}, but the reference says {wrong}",
            Sha256::digest(&kernel)
        )),
        "{err}"
    );

    // The right pin builds, and the lock keeps the reference with its pin.
    let hex = format!("{:x}", Sha256::digest(&kernel));
    let pinned = format!("{url}#sha256={hex}");
    f.overrides.insert("freebsd.kernel".into(), pinned.clone());
    build(&f, &store, &text, &f.dir.path().join("o")).unwrap();
    assert_eq!(lock_of(&f)["layers"]["freebsd.kernel"]["reference"], pinned);
}

/// A static Go program built for FreeBSD on this host (Debian's golang
/// cross-compiles with `GOOS=freebsd`, no cgo): a real FreeBSD ELF. The Go
/// build cache lives under target/ so later runs take a second.
fn go_freebsd_program(dir: &Path) -> PathBuf {
    let go = require_tool("go");
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("main.go"),
        "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"hello from Go on FreeBSD\\n\") }\n",
    )
    .unwrap();
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/go-freebsd-cache");
    run(Command::new(go)
        .args(["build", "-o", "hello", "main.go"])
        .current_dir(dir)
        .env("GOOS", "freebsd")
        .env("GOARCH", "amd64")
        .env("CGO_ENABLED", "0")
        .env("GO111MODULE", "off")
        .env("GOCACHE", &cache)
        .env("HOME", dir));
    dir.join("hello")
}

fn source_bunnyfile(language: &str) -> String {
    format!(
        r#"version: v0.1
platforms:
  framework: freebsd
  monitor: qemu
  architecture: x86_64
app:
  name: hello
  from: local
  language: {language}
entrypoint: ["/sbin/urunit", "/usr/local/bin/hello"]
"#
    )
}

#[test]
fn a_go_program_built_for_freebsd_is_packed_with_what_it_needs_from_the_base() {
    let f = fixture();
    let program = go_freebsd_program(&f.dir.path().join("go"));
    let bytes = fs::read(&program).unwrap();
    let described = run(Command::new(require_tool("file")).arg(&program));
    assert!(
        described.contains("(FreeBSD)") && described.contains("statically linked"),
        "{described}"
    );
    bunny::frameworks::freebsd::check_freebsd_elf("hello", &bytes).unwrap();

    let ctx = f.dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::copy(&program, ctx.join("hello")).unwrap();
    let store = Store::open(&f.dir.path().join("store")).unwrap();
    let out = f.dir.path().join("out");
    build(&f, &store, &source_bunnyfile("binary"), &out).unwrap();
    let bundle = f.dir.path().join("bundle");
    unpack(&out, &bundle);
    let img = bundle.join("rootfs/.boot/rootfs");
    common::ufs::check_image(&img);
    let ufs = Ufs::open(&img);
    let listing = ufs.walk();
    let files: BTreeSet<&str> = listing
        .iter()
        .filter(|(_, (mode, _))| mode & 0o170000 != 0o040000)
        .map(|(p, _)| p.as_str())
        .collect();
    // A static program needs nothing from the base: only the init's
    // programs and their libraries join it.
    let expected: BTreeSet<&str> = [
        "/usr/local/bin/hello",
        "/libexec/ld-elf.so.1",
        "/lib/libc.so.7",
        "/lib/libutil.so.9",
        "/lib/libedit.so.8",
        "/lib/libncursesw.so.9",
        "/lib/libjail.so.1",
        "/bin/sh",
        "/bin/kenv",
        "/bin/dd",
        "/sbin/init",
        "/sbin/mount",
        "/sbin/ifconfig",
        "/sbin/route",
        "/sbin/reboot",
        "/sbin/urunit",
        "/etc/rc",
        "/etc/passwd",
        "/etc/group",
    ]
    .into_iter()
    .collect();
    assert_eq!(files, expected);
    assert_eq!(ufs.contents(listing["/usr/local/bin/hello"].1), bytes);
    assert_eq!(listing["/usr/local/bin/hello"].0 & 0o777, 0o755);
    let rc = String::from_utf8(ufs.contents(listing["/etc/rc"].1)).unwrap();
    assert!(rc.contains("set -- /usr/local/bin/hello\n"), "{rc}");

    // A Linux program is refused by name, as are languages bunny cannot
    // compile for FreeBSD yet and a program the sources lack.
    fs::copy("/bin/busybox", ctx.join("hello")).unwrap();
    let err = build(&f, &store, &source_bunnyfile("binary"), &out)
        .err()
        .expect("the build fails");
    assert!(
        err.contains("`hello` in the sources is not built for FreeBSD"),
        "{err}"
    );
    // No Rust standard library for FreeBSD exists here to compile with:
    // the message says how to cross-build instead.
    let err = build(&f, &store, &source_bunnyfile("rust"), &out)
        .err()
        .expect("the build fails");
    assert!(
        err.contains("cargo build --release --target x86_64-unknown-freebsd"),
        "{err}"
    );
    assert!(err.contains("language: binary"), "{err}");
    // A `binary` app needs no toolchain image: none is resolved or locked
    // (the defaults name images this machine does not have).
    let lock = lock_of(&f);
    assert!(lock["layers"].get("freebsd.toolchain").is_none(), "{lock}");
    assert!(
        lock["layers"].get("freebsd.go-toolchain").is_none(),
        "{lock}"
    );
    fs::remove_file(ctx.join("hello")).unwrap();
    let err = build(&f, &store, &source_bunnyfile("binary"), &out)
        .err()
        .expect("the build fails");
    assert!(
        err.contains("the app's FreeBSD program in its sources is missing"),
        "{err}"
    );
}

#[test]
fn the_sbom_lists_the_installed_packages_with_versions_and_sums() {
    let f = fixture();
    let repo = f.dir.path().join("repo");
    write_repo(&repo, None, None);
    let server = FileServer::start(repo.clone());
    let store = Store::open(&f.dir.path().join("store")).unwrap();
    let ctx = f.dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    let text = bunnyfile("qemu", server.port, "[iperf3]");
    fs::write(ctx.join("BunnyFile"), &text).unwrap();
    let parsed = bunny::bunnyfile::parse("BunnyFile", &text).unwrap();
    let spec = bunny::bunnyfile::spec::to_spec(&parsed.bunnyfile, "BunnyFile");
    let mut plan = pipeline::plan(
        &spec,
        &pipeline::PlanInputs {
            context: &ctx,
            architecture: None,
            images: &NoImages,
            init: None,
        },
    )
    .unwrap();
    let opts = AppOptions {
        lock_file: ctx.join("bunny.lock"),
        layer_overrides: f.overrides.clone(),
        config_file: Some(f.dir.path().join("no-config.json")),
        ..AppOptions::default()
    };
    let app = pipeline::prepare_app(&mut plan, &store, &opts, &Quiet).unwrap();
    let inputs = bunny::attestations::collect(
        &bunny::attestations::Described {
            plan: &plan,
            app: app.as_ref(),
            file: &ctx.join("BunnyFile"),
            context: &ctx,
            lock_file: Some(&ctx.join("bunny.lock")),
            epoch: 0,
        },
        bunny::oci::attest::Wanted {
            sbom: true,
            provenance: true,
        },
    )
    .unwrap();
    // What the server holds, but for the package nothing needs.
    let all = repo.join(ABI).join("quarterly").join("All");
    let mut expected: Vec<(String, String, String)> = packages()
        .iter()
        .filter(|p| p.name != "unrelated")
        .map(|p| {
            let file = all.join(format!("{}-{}.pkg", p.name, p.version));
            (
                p.name.to_string(),
                p.version.to_string(),
                format!("{:x}", Sha256::digest(fs::read(file).unwrap())),
            )
        })
        .collect();
    expected.sort();
    let mut got: Vec<(String, String, String)> = inputs
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone(), p.sha256.clone()))
        .collect();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(got.len(), 3);
    let sbom = bunny::oci::attest::spdx("sha256:00", "iperf3-freebsd:t", &inputs);
    for (name, version, sum) in &expected {
        let p = sbom["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} is not in the SBOM"));
        assert_eq!(p["versionInfo"], version.as_str());
        assert_eq!(p["checksums"][0]["checksumValue"], sum.as_str());
        assert!(p["downloadLocation"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/All/{name}-{version}.pkg")));
    }
    // The provenance names them among the resolved dependencies, and the
    // SBOM lists the rootfs files the packages put there.
    let prov = bunny::oci::attest::provenance(&inputs);
    let deps = prov["buildDefinition"]["resolvedDependencies"].to_string();
    for (name, version, sum) in &expected {
        assert!(
            deps.contains(&format!("pkg:freebsd/{name}@{version}")),
            "{deps}"
        );
        assert!(deps.contains(sum.as_str()));
    }
    assert!(inputs
        .rootfs_files
        .iter()
        .any(|f| f.path.ends_with("/bin/iperf3")));
}

/// `bunny run -v DIR:PATH` on a FreeBSD image: bunny cannot read UFS2
/// back, so a writable directory volume must say what becomes of the
/// guest's changes (`:keep` or `:ro`); said before anything boots.
#[test]
fn a_freebsd_directory_volume_must_be_kept_or_read_only() {
    let f = fixture();
    let repo = f.dir.path().join("repo");
    write_repo(&repo, None, None);
    let server = FileServer::start(repo);
    let root = f.dir.path().join("store");
    let store = Store::open(&root).unwrap();
    build(
        &f,
        &store,
        &bunnyfile("qemu", server.port, "[iperf3]"),
        &f.dir.path().join("out"),
    )
    .unwrap();
    let data = f.dir.path().join("data");
    fs::create_dir(&data).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bunny"))
        .arg("--root")
        .arg(&root)
        .args(["run", "--rm", "-v"])
        .arg(format!("{}:/data", data.display()))
        .arg("iperf3-freebsd:t")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot be written back") && err.contains(":keep"),
        "{err}"
    );
    // Nothing was left behind: no run, no image.
    assert_eq!(fs::read_dir(root.join("runs")).unwrap().count(), 0);
}

// ---- apps compiled from sources in build containers ----

/// `reference`'s rootfs, unpacked in `store` (where the build finds it
/// again).
fn unpacked_image(store: &Store, reference: &str) -> PathBuf {
    let (image_store, manifest) =
        bunny::build::resolve_image(store, reference, None, false).unwrap();
    let image = bunny::build::ResolvedImage {
        reference: reference.to_string(),
        store: image_store,
        manifest,
    };
    bunny::build::rootfs::unpacked_rootfs(store.root(), &image)
        .unwrap()
        .0
}

/// The program at `path` in the built image's UFS2 root, and that root's
/// listing.
fn root_of(f: &Fixture, out: &Path, name: &str) -> (Ufs, BTreeMap<String, (u16, u64)>) {
    let bundle = f.dir.path().join(name);
    unpack(out, &bundle);
    let img = bundle.join("rootfs/.boot/rootfs");
    common::ufs::check_image(&img);
    let ufs = Ufs::open(&img);
    let listing = ufs.walk();
    (ufs, listing)
}

#[test]
fn a_c_app_is_compiled_by_clang_against_the_base_as_its_sysroot() {
    require_tool("runc");
    let mut f = fixture();
    let store = Store::open(&f.dir.path().join("store")).unwrap();
    let clang = format!("oci:{}:clang-bookworm", toolchains().display());
    // The base: the init's programs as before, and a C sysroot whose libc
    // and crt objects the real clang compiles for FreeBSD.
    let started = std::time::Instant::now();
    let clang_rootfs = unpacked_image(&store, &clang);
    eprintln!("clang-bookworm unpacked in {:?}", started.elapsed());
    let sysroot = gen::sysroot_items(&clang_rootfs, f.dir.path());
    let libc = sysroot
        .iter()
        .find_map(|i| match i {
            Item::File("./lib/libc.so.7", data, _) => Some(data.clone()),
            _ => None,
        })
        .unwrap();
    let mut items: Vec<Item> = base_items()
        .into_iter()
        .filter(|i| !matches!(i, Item::File("./lib/libc.so.7", ..)))
        .collect();
    items.extend(sysroot);
    let base = f.dir.path().join("src-base.txz");
    fs::write(&base, gen::xz(&gen::tar(&items))).unwrap();
    f.overrides.insert(
        "freebsd.base".into(),
        layout(
            &f.dir.path().join("src-base-layout"),
            "14.3",
            &[("/base.txz", &base, 0o644)],
        ),
    );
    f.overrides.insert("freebsd.toolchain".into(), clang);

    // The example's sources and BunnyFile, as a user builds them.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-freebsd-src");
    let ctx = f.dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    for file in ["hello.c", "Makefile"] {
        fs::copy(example.join(file), ctx.join(file)).unwrap();
    }
    let bunnyfile = fs::read_to_string(example.join("BunnyFile")).unwrap();
    let out = f.dir.path().join("out");
    let started = std::time::Instant::now();
    let (built, ran) = build_with(&f, &store, &bunnyfile, &out, false).unwrap();
    eprintln!("C app built in {:?}", started.elapsed());
    assert_eq!(ran, 1);
    let (ufs, listing) = root_of(&f, &out, "bundle");
    let program = ufs.contents(listing["/usr/local/bin/hello"].1);
    assert_eq!(listing["/usr/local/bin/hello"].0 & 0o777, 0o755);
    bunny::frameworks::freebsd::check_freebsd_elf("hello", &program).unwrap();
    let elf = goblin::elf::Elf::parse(&program).unwrap();
    assert_eq!(elf.header.e_ident[goblin::elf::header::EI_OSABI], 9);
    assert_eq!(elf.interpreter, Some(RTLD));
    assert_eq!(elf.libraries, vec!["libc.so.7"]);
    // The example's calls go to libc.so.7, resolved when FreeBSD's rtld
    // loads it.
    let imports: BTreeSet<&str> = elf
        .dynsyms
        .iter()
        .filter(|s| s.st_shndx == 0)
        .filter_map(|s| elf.dynstrtab.get_at(s.st_name))
        .collect();
    for call in ["socket", "bind", "listen", "accept", "write", "close"] {
        assert!(imports.contains(call), "{call}: {imports:?}");
    }
    assert!(elf
        .iter_note_headers(&program)
        .into_iter()
        .flatten()
        .flatten()
        .any(|n| n.name == "FreeBSD" && n.n_type == 1));
    // The libc it was linked with is the one the guest gets; what only the
    // link needed (crt objects, headers, the linker script) stays out.
    assert_eq!(ufs.contents(listing["/lib/libc.so.7"].1), libc);
    for only_linked in [
        "/usr/lib/crt1.o",
        "/usr/lib/libc.so",
        "/usr/include/stdio.h",
        "/lib/libgcc_s.so.1",
    ] {
        assert!(!listing.contains_key(only_linked), "{only_linked}");
    }
    let rc = String::from_utf8(ufs.contents(listing["/etc/rc"].1)).unwrap();
    assert!(rc.contains("set -- /usr/local/bin/hello\n"), "{rc}");
    let lock = lock_of(&f);
    assert!(lock["layers"].get("freebsd.toolchain").is_some(), "{lock}");
    assert!(
        lock["layers"].get("freebsd.go-toolchain").is_none(),
        "{lock}"
    );

    // The same sources build the same image, from the cache; a source that
    // does not compile fails the step with the compiler's words.
    let (again, ran) = build_with(&f, &store, &bunnyfile, &out, false).unwrap();
    assert_eq!((again.manifest.digest(), ran), (built.manifest.digest(), 0));
    fs::write(
        ctx.join("hello.c"),
        "int main(void) { return undeclared; }\n",
    )
    .unwrap();
    let err = build(&f, &store, &bunnyfile, &out)
        .err()
        .expect("the build fails");
    assert!(err.contains("undeclared"), "{err}");
}

#[test]
fn a_go_app_is_built_for_freebsd_by_go_and_builds_the_same_twice() {
    require_tool("runc");
    let mut f = fixture();
    f.overrides.insert(
        "freebsd.go-toolchain".into(),
        format!("oci:{}:go-bookworm", toolchains().display()),
    );
    let ctx = f.dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    // A module with one dependency, vendored: the step has no network.
    fs::write(
        ctx.join("go.mod"),
        "module example.com/hello\n\ngo 1.19\n\nrequire example.org/greet v1.0.0\n",
    )
    .unwrap();
    fs::create_dir_all(ctx.join("vendor/example.org/greet")).unwrap();
    fs::write(
        ctx.join("vendor/modules.txt"),
        "# example.org/greet v1.0.0\n## explicit\nexample.org/greet\n",
    )
    .unwrap();
    fs::write(
        ctx.join("vendor/example.org/greet/greet.go"),
        "package greet\n\n// Line is what the server says first.\nconst Line = \"hello from FreeBSD\\n\"\n",
    )
    .unwrap();
    fs::write(
        ctx.join("main.go"),
        r#"package main

// A TCP echo server: net without net/http, which would double the compile.
import (
	"io"
	"net"

	"example.org/greet"
)

func main() {
	l, err := net.Listen("tcp", ":7")
	if err != nil {
		panic(err)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		go func() { io.WriteString(c, greet.Line); io.Copy(c, c); c.Close() }()
	}
}
"#,
    )
    .unwrap();
    let store = Store::open(&f.dir.path().join("store")).unwrap();
    let out = f.dir.path().join("out");
    let started = std::time::Instant::now();
    let (first, ran) = build_with(&f, &store, &source_bunnyfile("go"), &out, false).unwrap();
    eprintln!("Go app built in {:?}", started.elapsed());
    assert_eq!(ran, 1);
    let (ufs, listing) = root_of(&f, &out, "bundle");
    let program = ufs.contents(listing["/usr/local/bin/hello"].1);
    bunny::frameworks::freebsd::check_freebsd_elf("hello", &program).unwrap();
    let elf = goblin::elf::Elf::parse(&program).unwrap();
    assert_eq!(elf.header.e_ident[goblin::elf::header::EI_OSABI], 9);
    // Static: no loader, no libraries (the init's still join it).
    assert_eq!(elf.interpreter, None);
    assert!(elf.libraries.is_empty(), "{:?}", elf.libraries);
    assert!(
        program
            .windows(b"hello from FreeBSD".len())
            .any(|w| w == b"hello from FreeBSD"),
        "the vendored module's string is not in the program"
    );
    // Compiled again from scratch (no step cache), the image is the same.
    let out2 = f.dir.path().join("out2");
    let started = std::time::Instant::now();
    let (second, ran) = build_with(&f, &store, &source_bunnyfile("go"), &out2, true).unwrap();
    eprintln!("Go app built again in {:?}", started.elapsed());
    assert_eq!(ran, 1);
    assert_eq!(second.manifest.digest(), first.manifest.digest());
    let lock = lock_of(&f);
    assert!(lock["layers"].get("freebsd.toolchain").is_none(), "{lock}");

    // Without the vendored copy the module cannot be had (no network, no
    // proxy): the step fails with go's words naming it.
    fs::remove_dir_all(ctx.join("vendor")).unwrap();
    let err = build(&f, &store, &source_bunnyfile("go"), &out)
        .err()
        .expect("the build fails");
    assert!(err.contains("step `go build hello` failed"), "{err}");
    assert!(err.contains("package example.org/greet"), "{err}");
}
