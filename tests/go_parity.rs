//! Go bunny parity: for each input Go bunny builds, the image bunny builds
//! means the same to urunc — the same kind of rootfs, the same
//! `com.urunc.unikernel.*` keys and values (in the manifest annotations, the
//! config labels and /urunc.json alike), the same files at the same paths.
//!
//! The expectations are written from Go bunny's sources (hops/package.go
//! `SetAnnotations`/`SetBaseAndGetPaths`, generic.go and unikraft.go
//! defaults, parse_file.go `ParseBunnyfile` and `containerfileToPack`) and
//! urunc's reading of the keys, not from bunny's output. One difference is
//! normalised: Go leaves `mountRootfs` out of a Containerfile image that
//! names an initrd or a root block image, bunny writes `false`; urunc reads
//! both the same.

#[path = "init_helper.rs"]
mod init_helper;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;

struct Case {
    name: &'static str,
    /// `BunnyFile` or `Containerfile`.
    file: &'static str,
    text: &'static str,
    /// Every urunc key the image must carry, and nothing else of urunc's.
    keys: &'static [(&'static str, &'static str)],
    /// Paths the image's files must hold.
    files: &'static [&'static str],
    /// Paths they must not.
    absent: &'static [&'static str],
    /// The config's Entrypoint and Cmd, when the case pins them.
    entrypoint: Option<&'static [&'static str]>,
    cmd: Option<&'static [&'static str]>,
}

const KERNEL_MODE: u32 = 0o640;

const CASES: &[Case] = &[
    Case {
        name: "unikraft-no-type-is-initrd",
        file: "BunnyFile",
        text: "version: v0.1\nplatforms:\n  framework: unikraft\n  version: 0.17.0\n  monitor: qemu\n  architecture: x86\nrootfs:\n  from: scratch\n  include:\n    - conf/redis.conf:/conf/redis.conf\nkernel:\n  from: local\n  path: kernel\ncmd: [\"redis-server\", \"/conf/redis.conf\"]\n",
        keys: &[
            ("unikernelType", "unikraft"),
            ("hypervisor", "qemu"),
            ("binary", "/.boot/kernel"),
            ("cmdline", "redis-server /conf/redis.conf"),
            ("initrd", "/.boot/rootfs"),
            ("mountRootfs", "false"),
            ("unikernelVersion", "0.17.0"),
        ],
        files: &["/.boot/kernel", "/.boot/rootfs"],
        absent: &["/conf/redis.conf"],
        entrypoint: None,
        cmd: Some(&["redis-server", "/conf/redis.conf"]),
    },
    Case {
        // Go bunny's Redis rumprun example, as its README writes it.
        name: "rumprun-raw-redis",
        file: "BunnyFile",
        text: "#syntax=harbor.nbfc.io/nubificus/bunny:latest\nversion: v0.1\n\nplatforms:\n  framework: rumprun\n  monitor: hvt\n  architecture: x86\n\nrootfs:\n  from: scratch\n  type: raw\n  include:\n  - conf/:/conf\n\nkernel:\n  from: local\n  path: kernel\n\ncmd: [\"redis-server\", \"/data/conf/redis.conf\"]\n",
        keys: &[
            ("unikernelType", "rumprun"),
            ("hypervisor", "hvt"),
            ("binary", "/.boot/kernel"),
            ("cmdline", "redis-server /data/conf/redis.conf"),
            ("mountRootfs", "true"),
        ],
        files: &["/.boot/kernel", "/conf/redis.conf"],
        absent: &["/.boot/rootfs"],
        entrypoint: None,
        cmd: Some(&["redis-server", "/data/conf/redis.conf"]),
    },
    Case {
        // No `type`: Go's generic framework defaults to raw.
        name: "rumprun-no-type-is-raw",
        file: "BunnyFile",
        text: "version: v0.1\nplatforms:\n  framework: rumprun\n  monitor: spt\nrootfs:\n  include:\n    - conf/:/conf\nkernel:\n  from: local\n  path: kernel\ncmdline: redis-server /data/conf/redis.conf\n",
        keys: &[
            ("unikernelType", "rumprun"),
            ("hypervisor", "spt"),
            ("binary", "/.boot/kernel"),
            ("cmdline", "redis-server /data/conf/redis.conf"),
            ("mountRootfs", "true"),
        ],
        files: &["/.boot/kernel", "/conf/redis.conf"],
        absent: &["/.boot/rootfs"],
        entrypoint: None,
        // With no `cmd`, `cmdline` split at spaces is the command.
        cmd: Some(&["redis-server", "/data/conf/redis.conf"]),
    },
    Case {
        name: "linux-no-type-is-raw-and-entrypoint-not-in-cmdline",
        file: "BunnyFile",
        text: "version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\nrootfs:\n  include:\n    - conf/redis.conf:/etc/redis.conf\nkernel:\n  from: local\n  path: kernel\nentrypoint: [\"/sbin/init\"]\ncmd: [\"-v\"]\n",
        keys: &[
            ("unikernelType", "linux"),
            ("hypervisor", "qemu"),
            ("binary", "/.boot/kernel"),
            ("cmdline", "-v"),
            ("mountRootfs", "true"),
        ],
        files: &["/.boot/kernel", "/etc/redis.conf"],
        absent: &["/.boot/rootfs"],
        entrypoint: Some(&["/sbin/init"]),
        cmd: Some(&["-v"]),
    },
    Case {
        // `cmdline` next to `cmd` is ignored.
        name: "cmd-wins-over-cmdline",
        file: "BunnyFile",
        text: "version: v0.1\nplatforms:\n  framework: unikraft\n  monitor: firecracker\nkernel:\n  from: local\n  path: kernel\ncmdline: ignored words\ncmd: [\"app\", \"--port\", \"80\"]\n",
        keys: &[
            ("unikernelType", "unikraft"),
            ("hypervisor", "firecracker"),
            ("binary", "/.boot/kernel"),
            ("cmdline", "app --port 80"),
            ("mountRootfs", "false"),
        ],
        files: &["/.boot/kernel"],
        absent: &["/.boot/rootfs"],
        entrypoint: None,
        cmd: Some(&["app", "--port", "80"]),
    },
    Case {
        name: "kernel-only-has-no-rootfs-keys",
        file: "BunnyFile",
        text: "version: v0.1\nplatforms:\n  framework: mirage\n  monitor: hvt\nkernel:\n  from: local\n  path: kernel\n",
        keys: &[
            ("unikernelType", "mirage"),
            ("hypervisor", "hvt"),
            ("binary", "/.boot/kernel"),
            ("mountRootfs", "false"),
        ],
        files: &["/.boot/kernel"],
        absent: &["/.boot/rootfs"],
        entrypoint: None,
        cmd: None,
    },
    Case {
        name: "mirage-block-is-mounted-at-root",
        file: "BunnyFile",
        text: "version: v0.1\nplatforms:\n  framework: mirage\n  monitor: spt\nrootfs:\n  from: local\n  path: disk.img\n  type: block\nkernel:\n  from: local\n  path: kernel\n",
        keys: &[
            ("unikernelType", "mirage"),
            ("hypervisor", "spt"),
            ("binary", "/.boot/kernel"),
            ("block", "/.boot/rootfs"),
            ("blkMntPoint", "/"),
            ("mountRootfs", "false"),
        ],
        files: &["/.boot/kernel", "/.boot/rootfs"],
        absent: &[],
        entrypoint: None,
        cmd: None,
    },
    Case {
        name: "rumprun-block-is-mounted-at-data",
        file: "BunnyFile",
        text: "version: v0.1\nplatforms:\n  framework: rumprun\n  monitor: hvt\nrootfs:\n  from: local\n  path: disk.img\n  type: block\nkernel:\n  from: local\n  path: kernel\n",
        keys: &[
            ("unikernelType", "rumprun"),
            ("hypervisor", "hvt"),
            ("binary", "/.boot/kernel"),
            ("block", "/.boot/rootfs"),
            ("blkMntPoint", "/data"),
            ("mountRootfs", "false"),
        ],
        files: &["/.boot/kernel", "/.boot/rootfs"],
        absent: &[],
        entrypoint: None,
        cmd: None,
    },
    Case {
        // Go takes a prebuilt file without `type` to be raw: the file is
        // carried, the guest gets the container's files (bunny warns).
        name: "prebuilt-file-without-type-is-raw",
        file: "BunnyFile",
        text: "version: v0.1\nplatforms:\n  framework: freebsd\n  monitor: firecracker\nrootfs:\n  from: local\n  path: disk.img\nkernel:\n  from: local\n  path: kernel\n",
        keys: &[
            ("unikernelType", "freebsd"),
            ("hypervisor", "firecracker"),
            ("binary", "/.boot/kernel"),
            ("mountRootfs", "true"),
        ],
        files: &["/.boot/kernel", "/.boot/rootfs"],
        absent: &[],
        entrypoint: None,
        cmd: None,
    },
    Case {
        name: "urunc-guest-names-and-hedge",
        file: "BunnyFile",
        text: "version: v0.1\nplatforms:\n  framework: mewz\n  monitor: hedge\nkernel:\n  from: local\n  path: kernel\ncmd: [\"hello\"]\n",
        keys: &[
            ("unikernelType", "mewz"),
            ("hypervisor", "hedge"),
            ("binary", "/.boot/kernel"),
            ("cmdline", "hello"),
            ("mountRootfs", "false"),
        ],
        files: &["/.boot/kernel"],
        absent: &[],
        entrypoint: None,
        cmd: Some(&["hello"]),
    },
    Case {
        // Go bunny's Redis rumprun Containerfile: `COPY /conf /` reads the
        // context's root; the labels are the keys; no cmdline is made up.
        name: "containerfile-rumprun-redis",
        file: "Containerfile",
        text: "#syntax=harbor.nbfc.io/nubificus/bunny:latest\nFROM scratch\n\nCOPY kernel /unikernel/redis.hvt\nCOPY /conf /\n\nLABEL com.urunc.unikernel.binary=/unikernel/redis.hvt\nLABEL \"com.urunc.unikernel.unikernelType\"=\"rumprun\"\nLABEL \"com.urunc.unikernel.hypervisor\"=\"hvt\"\nLABEL \"com.urunc.unikernel.mountRootfs\"=\"true\"\n\nCMD [\"redis-server\", \"/data/conf/redis.conf\"]\n",
        keys: &[
            ("unikernelType", "rumprun"),
            ("hypervisor", "hvt"),
            ("binary", "/unikernel/redis.hvt"),
            ("mountRootfs", "true"),
        ],
        files: &["/unikernel/redis.hvt", "/redis.conf"],
        absent: &["/.boot/kernel", "/urunit"],
        entrypoint: None,
        cmd: Some(&["redis-server", "/data/conf/redis.conf"]),
    },
    Case {
        // No binary: linux, the framework's kernel, /urunit ahead of the
        // entrypoint, the files in the layers, no cmdline.
        name: "containerfile-linux-default",
        file: "Containerfile",
        text: "FROM scratch\nCOPY conf/redis.conf /etc/redis.conf\nENTRYPOINT [\"/bin/app\"]\nCMD [\"-c\", \"/etc/redis.conf\"]\n",
        keys: &[
            ("unikernelType", "linux"),
            ("hypervisor", "qemu"),
            ("binary", "/.boot/kernel"),
            ("mountRootfs", "true"),
        ],
        files: &["/.boot/kernel", "/urunit", "/etc/redis.conf"],
        absent: &["/.boot/rootfs"],
        entrypoint: Some(&["/urunit", "/bin/app"]),
        cmd: Some(&["-c", "/etc/redis.conf"]),
    },
    Case {
        // The user's urunc labels win, useDMBlock included, and an initrd
        // named by label turns mountRootfs off (Go: not set).
        name: "containerfile-labels-override",
        file: "Containerfile",
        text: "FROM scratch\nCOPY kernel /unikernel/kernel\nCOPY conf/redis.conf /unikernel/initrd\nLABEL com.urunc.unikernel.unikernelType=unikraft\nLABEL com.urunc.unikernel.binary=/unikernel/kernel\nLABEL com.urunc.unikernel.initrd=/unikernel/initrd\nLABEL com.urunc.unikernel.useDMBlock=false\nLABEL com.urunc.unikernel.cmdline=\"nginx -c /nginx/conf/nginx.conf\"\nCMD [\"ignored\"]\n",
        keys: &[
            ("unikernelType", "unikraft"),
            ("hypervisor", "qemu"),
            ("binary", "/unikernel/kernel"),
            ("initrd", "/unikernel/initrd"),
            ("useDMBlock", "false"),
            ("cmdline", "nginx -c /nginx/conf/nginx.conf"),
            ("mountRootfs", "false"),
        ],
        files: &["/unikernel/kernel", "/unikernel/initrd"],
        absent: &["/.boot/kernel", "/urunit"],
        entrypoint: None,
        cmd: Some(&["ignored"]),
    },
];

fn context(dir: &Path, case: &Case) {
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    let kernel = dir.join("kernel");
    std::fs::write(&kernel, vec![0x5au8; 4096]).unwrap();
    std::fs::set_permissions(&kernel, std::fs::Permissions::from_mode(KERNEL_MODE)).unwrap();
    std::fs::write(dir.join("conf/redis.conf"), b"port 6379\n").unwrap();
    std::fs::write(dir.join("disk.img"), vec![0u8; 8192]).unwrap();
    std::fs::write(dir.join(case.file), case.text).unwrap();
}

fn urunc_keys(map: &serde_json::Value) -> BTreeMap<String, String> {
    map.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let k = k.strip_prefix("com.urunc.unikernel.")?;
            Some((k.to_string(), v.as_str().unwrap_or_default().to_string()))
        })
        .collect()
}

fn run_case(case: &Case, tmp: &Path) -> Result<(), String> {
    let ctx = tmp.join(case.name);
    context(&ctx, case);
    let root = tmp.join(format!("{}-store", case.name));
    let local = tmp.join(format!("{}-fs", case.name));
    let out = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .arg("--root")
        .arg(&root)
        .args(["build", "--progress=plain", "-t", "parity:test", "-f"])
        .arg(ctx.join(case.file))
        .args([
            "--toolchain",
            &format!("linux.kernel={}", init_helper::kernel_image()),
        ])
        .arg("-o")
        .arg(format!("type=local,dest={}", local.display()))
        .arg(&ctx)
        .env("BUNNY_INIT", init_helper::static_init())
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(format!(
            "build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("unknown framework") {
        return Err(format!("warned about a framework urunc knows: {stderr}"));
    }
    let inspect = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .arg("--root")
        .arg(&root)
        .args(["inspect", "--json", "parity:test"])
        .output()
        .unwrap();
    let inspect: serde_json::Value = serde_json::from_slice(&inspect.stdout)
        .map_err(|e| format!("bunny inspect --json: {e}"))?;
    let mut want: BTreeMap<String, String> = case
        .keys
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let normalise = |mut m: BTreeMap<String, String>| {
        m.entry("mountRootfs".into())
            .or_insert_with(|| "false".into());
        m
    };
    want = normalise(want);
    let annotations = normalise(urunc_keys(&inspect["annotations"]));
    if annotations != want {
        return Err(format!("annotations {annotations:?}, want {want:?}"));
    }
    let config = &inspect["config"];
    let labels = normalise(urunc_keys(&config["labels"]));
    if labels != want {
        return Err(format!("config labels {labels:?}, want {want:?}"));
    }
    let json: BTreeMap<String, String> = serde_json::from_slice(
        &std::fs::read(local.join("urunc.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let decoded = normalise(
        json.into_iter()
            .filter_map(|(k, v)| {
                let k = k.strip_prefix("com.urunc.unikernel.")?.to_string();
                let v = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
                Some((k, String::from_utf8(v).ok()?))
            })
            .collect(),
    );
    if decoded != want {
        return Err(format!("/urunc.json {decoded:?}, want {want:?}"));
    }
    let at = |p: &str| -> PathBuf { local.join(p.trim_start_matches('/')) };
    for f in case.files {
        if std::fs::symlink_metadata(at(f)).is_err() {
            return Err(format!("{f} is not in the image"));
        }
    }
    for f in case.absent {
        if std::fs::symlink_metadata(at(f)).is_ok() {
            return Err(format!("{f} is in the image but must not be"));
        }
    }
    // A BunnyFile's kernel keeps the source's mode, as Go's copy does.
    if case.file == "BunnyFile" {
        let binary = &want["binary"];
        let mode = std::fs::metadata(at(binary))
            .map_err(|e| format!("{binary}: {e}"))?
            .permissions()
            .mode()
            & 0o7777;
        if mode != KERNEL_MODE {
            return Err(format!(
                "{binary} has mode {mode:o}, the source {KERNEL_MODE:o}"
            ));
        }
    }
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().unwrap_or_default().to_string())
            .collect()
    };
    if let Some(e) = case.entrypoint {
        let got = strings(&config["entrypoint"]);
        if got != e {
            return Err(format!("Entrypoint {got:?}, want {e:?}"));
        }
    }
    if let Some(c) = case.cmd {
        let got = strings(&config["cmd"]);
        if got != c {
            return Err(format!("Cmd {got:?}, want {c:?}"));
        }
    }
    Ok(())
}

#[test]
fn go_bunny_inputs_give_images_urunc_treats_the_same_way() {
    let tmp = tempfile::tempdir().unwrap();
    let failures: Vec<String> = CASES
        .iter()
        .filter_map(|c| {
            run_case(c, tmp.path())
                .err()
                .map(|e| format!("{}: {e}", c.name))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Go bunny takes the kernel per hypervisor: a firecracker guest gets the
/// firecracker kernel layer, never qemu's.
#[test]
fn a_containerfile_kernel_is_chosen_per_hypervisor() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nLABEL com.urunc.unikernel.hypervisor=firecracker\nCMD [\"/bin/app\"]\n",
    )
    .unwrap();
    let build = |layer: &str| {
        Command::new(env!("CARGO_BIN_EXE_bunny"))
            .arg("--root")
            .arg(tmp.path().join("store"))
            .args(["build", "--progress=plain", "--toolchain"])
            .arg(format!("linux.{layer}={}", init_helper::kernel_image()))
            .arg(&ctx)
            .env("BUNNY_INIT", init_helper::static_init())
            .env("BUNNY_REGISTRY_TIMEOUT", "5")
            .output()
            .unwrap()
    };
    // Only qemu's kernel given: the firecracker one is looked for, by name.
    let o = build("kernel");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "built without a firecracker kernel");
    assert!(err.contains("bunny/linux-kernel-firecracker"), "{err}");
    let o = build("kernel-firecracker");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
