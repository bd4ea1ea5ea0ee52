//! Images whose layers try to write outside the rootfs they unpack into.
//! Each image is an OCI layout written by hand (no tool would write these),
//! booted with `bunny run DIR`, which unpacks it first.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{bunny, Sandbox};

enum E<'a> {
    File(&'a str, &'a [u8], u32),
    Link(tar::EntryType, &'a str, &'a str),
}

fn raw_header(kind: tar::EntryType, name: &str, size: u64, mode: u32, link: &str) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(mode);
    h.set_entry_type(kind);
    // The tar crate refuses `..` in set_path; hostile archives are written raw.
    let n = name.as_bytes();
    h.as_old_mut().name[..n.len()].copy_from_slice(n);
    let l = link.as_bytes();
    h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
    h.set_cksum();
    h
}

fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::File(name, data, mode) => {
                let h = raw_header(tar::EntryType::Regular, name, data.len() as u64, *mode, "");
                b.append(&h, *data).unwrap();
            }
            E::Link(kind, name, target) => {
                let h = raw_header(*kind, name, 0, 0o644, target);
                b.append(&h, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn put(dir: &Path, bytes: &[u8]) -> (String, usize) {
    let hex = format!("{:x}", Sha256::digest(bytes));
    std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len())
}

/// An OCI layout at `dir` holding one image (tag `t`) with these layers.
fn layout(dir: &Path, layers: &[Vec<u8>]) -> PathBuf {
    layout_annotated(dir, layers, serde_json::json!({}))
}

fn layout_annotated(dir: &Path, layers: &[Vec<u8>], annotations: serde_json::Value) -> PathBuf {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let (d, n) = put(dir, l);
        diff_ids.push(d.clone());
        descs.push(serde_json::json!({"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":d,"size":n}));
    }
    let config = serde_json::json!({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":diff_ids}});
    let (cd, cn) = put(dir, config.to_string().as_bytes());
    let manifest = serde_json::json!({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":cd,"size":cn},"layers":descs,
        "annotations":annotations});
    let (md, mn) = put(dir, manifest.to_string().as_bytes());
    let index = serde_json::json!({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "digest":md,"size":mn,"annotations":{"org.opencontainers.image.ref.name":"t"}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    dir.to_path_buf()
}

fn run(sb: &Sandbox, layers: &[Vec<u8>]) -> crate::Refusal {
    let img = layout(&sb.path().join("target/image"), layers);
    let store = sb.path().join("target/store");
    bunny(
        &store,
        &[
            "run",
            "--rm",
            "--accel",
            "tcg",
            &format!("{}:t", img.display()),
        ],
    )
}

#[test]
fn dotdot_entries() {
    let sb = Sandbox::new();
    run(&sb, &[layer(&[E::File("../../evil", b"x", 0o644)])])
        .says("../../evil")
        .says("contains `..`");
    sb.assert_nothing_outside(&["target"], &["evil"]);
    // Unpacking happens in `<store>/rootfs/.unpack-*/rootfs`: two levels
    // up is the cache itself, where an escape would really land.
    let cache = sb.path().join("target/store/rootfs");
    assert!(
        !cache.join("evil").exists() && !cache.parent().unwrap().join("evil").exists(),
        "the entry escaped into the store"
    );
}

#[test]
fn absolute_entries_are_contained() {
    let sb = Sandbox::new();
    let outside = sb.path().join("abs-evil");
    let name = outside.to_str().unwrap().to_string();
    // Unpacked under the image's root, not at the host path; the image has
    // no urunc settings, so the run ends there.
    run(&sb, &[layer(&[E::File(&name, b"x", 0o644)])]).says("is not an image urunc can boot");
    sb.assert_nothing_outside(&["target"], &["abs-evil"]);
}

#[test]
fn a_hardlink_out() {
    let sb = Sandbox::new();
    run(
        &sb,
        &[layer(&[E::Link(
            tar::EntryType::Link,
            "pw",
            "../../../etc/passwd",
        )])],
    )
    .says("pw (a hard link to ../../../etc/passwd)")
    .says("contains `..`");
    sb.assert_nothing_outside(&["target"], &[]);
}

#[test]
fn a_symlink_then_a_file_through_it() {
    let sb = Sandbox::new();
    let out = sb.path().join("via-link");
    run(
        &sb,
        &[layer(&[
            E::Link(tar::EntryType::Symlink, "esc", out.to_str().unwrap()),
            E::File("esc/planted", b"x", 0o644),
        ])],
    )
    .says("`esc/planted` would land outside the target: a parent directory is a symlink");
    sb.assert_nothing_outside(&["target"], &["via-link"]);
}

#[test]
fn a_symlink_in_one_layer_and_a_file_through_it_in_the_next() {
    let sb = Sandbox::new();
    let out = sb.path().join("via-layers");
    std::fs::create_dir_all(&out).unwrap();
    run(
        &sb,
        &[
            layer(&[E::Link(
                tar::EntryType::Symlink,
                "esc",
                out.to_str().unwrap(),
            )]),
            layer(&[E::File("esc/planted", b"x", 0o644)]),
        ],
    )
    .says("`esc/planted` would land outside the target: a parent directory is a symlink");
    assert!(
        !out.join("planted").exists(),
        "a file was planted through a symlink"
    );
    std::fs::remove_dir(&out).unwrap();
}

#[test]
fn a_device_node() {
    let sb = Sandbox::new();
    run(
        &sb,
        &[layer(&[E::Link(tar::EntryType::Block, "dev/sda", "")])],
    )
    .says("`dev/sda` is a device node");
}

#[test]
fn a_fifo() {
    let sb = Sandbox::new();
    run(&sb, &[layer(&[E::Link(tar::EntryType::Fifo, "pipe", "")])]).says("`pipe` is a fifo");
}

#[test]
fn setuid_bits_are_dropped() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    run(&sb, &[layer(&[E::File("bin/su", b"#!/bin/sh\n", 0o4755)])])
        .says("is not an image urunc can boot");
    let cache = sb.path().join("target/store/rootfs");
    let unpacked = std::fs::read_dir(&cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mode = std::fs::metadata(unpacked.join("bin/su"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "setuid survived: {mode:o}");
}

fn manifest_of(img: &Path) -> (String, PathBuf) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let file = img
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    (digest, file)
}

/// A layout that claims the manifest digest of a real image but holds other
/// files must not be unpacked under that digest, where every later run or
/// build of the real image would use it.
#[test]
fn a_forged_layout_cannot_poison_the_store() {
    let sb = Sandbox::new();
    let genuine = layout(
        &sb.path().join("target/genuine"),
        &[layer(&[E::File("who", b"genuine", 0o644)])],
    );
    let forged = layout(
        &sb.path().join("target/forged"),
        &[layer(&[E::File("who", b"forged", 0o644)])],
    );
    let (real_digest, _) = manifest_of(&genuine);
    let (_, forged_manifest) = manifest_of(&forged);
    // The forger's manifest filed under the real image's digest.
    let claimed = forged
        .join("blobs/sha256")
        .join(real_digest.trim_start_matches("sha256:"));
    std::fs::rename(&forged_manifest, &claimed).unwrap();
    let index = std::fs::read_to_string(forged.join("index.json")).unwrap();
    let (forged_digest, _) = manifest_of(&forged);
    std::fs::write(
        forged.join("index.json"),
        index.replace(&forged_digest, &real_digest),
    )
    .unwrap();

    let store = sb.path().join("target/store");
    let hex = real_digest.trim_start_matches("sha256:");
    let cached = store.join("rootfs").join(hex);
    let forged_run = bunny(&store, &["run", "--rm", &format!("{}:t", forged.display())]);
    forged_run
        .says(&real_digest)
        .says(&claimed.display().to_string());
    assert!(
        !cached.exists(),
        "the forged files were cached as {real_digest}"
    );
    assert!(
        !store.join("blobs/sha256").join(hex).exists(),
        "the forged manifest entered the store"
    );

    // The real image then unpacks to its own files.
    bunny(
        &store,
        &["run", "--rm", &format!("{}:t", genuine.display())],
    )
    .says("is not an image urunc can boot");
    assert_eq!(std::fs::read(cached.join("who")).unwrap(), b"genuine");
    let ok = bunny(&store, &["store", "verify"]);
    assert!(ok.out.status.success(), "{}", ok.stderr());

    // A cache changed behind the store's back (say, by an older bunny that
    // trusted layouts) is found by `store verify`.
    std::fs::write(cached.join("who"), b"planted").unwrap();
    let bad = bunny(&store, &["store", "verify"]);
    assert!(!bad.out.status.success(), "verify passed a poisoned cache");
    let report = String::from_utf8_lossy(&bad.out.stdout).into_owned();
    assert!(
        report.contains(&cached.display().to_string()) && report.contains("/who"),
        "verify did not name the poisoned file: {report}"
    );
}

/// Input layouts may be read-only or someone else's: bunny reads them and
/// writes nothing there.
#[test]
fn an_input_layout_is_not_written() {
    let sb = Sandbox::new();
    let img = layout(
        &sb.path().join("target/image"),
        &[layer(&[E::File("who", b"me", 0o644)])],
    );
    let before = tree(&img);
    bunny(
        &sb.path().join("target/store"),
        &["run", "--rm", &format!("{}:t", img.display())],
    )
    .says("is not an image urunc can boot");
    assert_eq!(tree(&img), before, "bunny wrote into its input layout");
}

fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

/// Env values and arguments reach the guest's kernel command line; none may
/// add kernel parameters, end the environment early or replace the
/// program's arguments. What cannot be carried is refused before the
/// monitor starts.
#[test]
fn env_and_arguments_cannot_rewrite_the_kernel_command_line() {
    let sb = Sandbox::new();
    let img = layout_annotated(
        &sb.path().join("target/image"),
        &[layer(&[
            E::File("kernel", b"not really a kernel", 0o644),
            E::File("bin/app", b"#!/bin/sh\n", 0o755),
        ])],
        serde_json::json!({
            "com.urunc.unikernel.unikernelType": "linux",
            "com.urunc.unikernel.hypervisor": "qemu",
            "com.urunc.unikernel.binary": "/kernel",
            "com.urunc.unikernel.cmdline": "/bin/app",
        }),
    );
    let store = sb.path().join("target/store");
    let image = format!("{}:t", img.display());
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--rm", "--accel", "tcg"];
        args.extend_from_slice(extra);
        args.push(&image);
        bunny(&store, &args)
    };
    for env in [
        "MSG=say \"hi\" quiet loglevel=0 -- injected",
        "MSG=a\"b",
        "MSG=two\nlines",
        "rdinit=/bin/sh",
    ] {
        run(&["-e", env])
            .says("cannot pass environment variable")
            .says("Linux guest");
    }
    let args = [
        "run",
        "--rm",
        "--accel",
        "tcg",
        &image,
        "/bin/app",
        "x\" rdinit=/bin/sh",
    ];
    bunny(&store, &args).says("cannot pass argument");
}

/// A BunnyFile is the repository's, not the user's: the layouts it names
/// must be in its context unless the user allows a directory by flag.
#[test]
fn a_bunnyfile_cannot_name_a_layout_outside_its_context() {
    let sb = Sandbox::new();
    let outside = layout(
        &sb.path().join("target/outside"),
        &[layer(&[E::File("secret", b"not the repository's", 0o644)])],
    );
    let ctx = sb.path().join("target/ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("vmlinuz"), b"a kernel stand-in").unwrap();
    let bunnyfile = |from: &str| {
        format!(
            "version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\n\
             kernel:\n  from: local\n  path: vmlinuz\nrootfs:\n  include:\n    - from: \"{from}\"\n      source: /secret\ncmd: [\"/bin/app\"]\n"
        )
    };
    let store = sb.path().join("target/store");
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "--progress=plain", "-t", "img"];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        bunny(&store, &args)
    };
    for from in [
        format!("oci:{}:t", outside.display()),
        "oci:../outside:t".to_string(),
    ] {
        std::fs::write(ctx.join("BunnyFile"), bunnyfile(&from)).unwrap();
        build(&[]).says("outside the build context");
    }
    // Named by the user, it is theirs to allow.
    let allowed = build(&["--allow-layout", outside.to_str().unwrap()]);
    assert!(allowed.out.status.success(), "{}", allowed.stderr());
    // Inside the context, a relative DIR is taken from the context.
    copy_dir(&outside, &ctx.join("img"));
    std::fs::write(ctx.join("BunnyFile"), bunnyfile("oci:img:t")).unwrap();
    let inside = build(&[]);
    assert!(inside.out.status.success(), "{}", inside.stderr());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
