//! Images built by bunny, read back by independent tools (skopeo, umoci,
//! GNU tar), plus determinism and layer compression.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bunny::layers::store::Store;
use bunny::oci::annotations::{KERNEL_PATH, ROOTFS_PATH, URUNC_JSON_PATH};
use bunny::oci::inspect::inspect;
use bunny::oci::layer::{
    write_layer, Compression, CompressionChoice, LayerContent, LayerEntry, LayerOptions,
};
use bunny::oci::output::{export, Output};
use common::image::{build_sample, random_bytes, text_bytes, EPOCH};
use common::{require_tool, run};
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn exports_are_read_back_by_skopeo_and_umoci() {
    let skopeo = require_tool("skopeo");
    let umoci = require_tool("umoci");
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let kernel_bytes = random_bytes(300 * 1024);
    let s = build_sample(&store, &tmp.path().join("src"), &kernel_bytes);
    store.tag("hello:latest", &s.manifest).unwrap();
    let digest = s.manifest.digest().to_string();
    let expected_annotations = s.urunc.to_annotations();

    // The store itself is an OCI layout.
    let store_root = store.root().display().to_string();
    let raw = run(Command::new(&skopeo).args([
        "inspect",
        "--raw",
        &format!("oci:{store_root}:hello:latest"),
    ]));
    assert_eq!(
        format!(
            "sha256:{}",
            sha256_hex(raw.trim_end_matches('\n').as_bytes())
        ),
        digest,
        "skopeo reads a different manifest from the store"
    );

    // OCI layout with two tags.
    let layout = tmp.path().join("layout");
    let tags = vec!["hello:latest".to_string(), "hello:v1".to_string()];
    export(
        &store,
        &s.manifest,
        &tags,
        &Output::OciLayout {
            dir: layout.clone(),
        },
    )
    .unwrap();
    // Same filesystem: blobs are hard links to the store's, and readable.
    let kernel_digest = s.layers[0].descriptor.digest().to_string();
    let exported = fs::metadata(layout.join("blobs/sha256").join(&kernel_digest[7..])).unwrap();
    let stored = fs::metadata(store.blob_path(&kernel_digest).unwrap()).unwrap();
    assert_eq!(exported.ino(), stored.ino());
    assert_eq!(exported.permissions().mode() & 0o777, 0o644);
    let index_meta = fs::metadata(layout.join("index.json")).unwrap();
    assert_eq!(index_meta.permissions().mode() & 0o777, 0o644);
    let index = json(&fs::read_to_string(layout.join("index.json")).unwrap());
    let names: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"]["org.opencontainers.image.ref.name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                m["annotations"]["io.containerd.image.name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            (
                "latest".to_string(),
                "docker.io/library/hello:latest".to_string()
            ),
            ("v1".to_string(), "docker.io/library/hello:v1".to_string()),
        ]
    );
    let dir = layout.display().to_string();
    let manifest = json(&run(Command::new(&skopeo).args([
        "inspect",
        "--raw",
        &format!("oci:{dir}:latest"),
    ])));
    assert_eq!(string_map(&manifest["annotations"]), expected_annotations);
    let layer_types: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        layer_types,
        vec![
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ],
        "random kernel stored plain, text layers gzipped"
    );
    let config = json(&run(Command::new(&skopeo).args([
        "inspect",
        "--config",
        "--raw",
        &format!("oci:{dir}:v1"),
    ])));
    assert_eq!(string_map(&config["config"]["Labels"]), s.labels);
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["/bin/httpd", "-f"])
    );
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!(["PATH=/bin:/usr/bin"])
    );
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);

    // skopeo copies our layout into its own archive, and reads ours.
    let theirs = tmp.path().join("skopeo.tar");
    run(Command::new(&skopeo).args([
        "copy",
        &format!("oci:{dir}:latest"),
        &format!("oci-archive:{}:latest", theirs.display()),
    ]));
    assert!(fs::metadata(&theirs).unwrap().len() > kernel_bytes.len() as u64);
    let ours = tmp.path().join("ours.tar");
    export(
        &store,
        &s.manifest,
        &tags,
        &Output::OciArchive { file: ours.clone() },
    )
    .unwrap();
    assert_eq!(
        fs::metadata(&ours).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let raw = run(Command::new(&skopeo).args([
        "inspect",
        "--raw",
        &format!("oci-archive:{}:v1", ours.display()),
    ]));
    assert_eq!(
        format!(
            "sha256:{}",
            sha256_hex(raw.trim_end_matches('\n').as_bytes())
        ),
        digest
    );
    let copied = tmp.path().join("copied");
    // --preserve-digests: skopeo would otherwise gzip the plain kernel layer.
    run(Command::new(&skopeo).args([
        "copy",
        "--preserve-digests",
        &format!("oci-archive:{}:latest", ours.display()),
        &format!("oci:{}:again", copied.display()),
    ]));
    let raw = run(Command::new(&skopeo).args([
        "inspect",
        "--raw",
        &format!("oci:{}:again", copied.display()),
    ]));
    assert_eq!(
        format!(
            "sha256:{}",
            sha256_hex(raw.trim_end_matches('\n').as_bytes())
        ),
        digest,
        "skopeo copy of our archive changed the manifest:\n{raw}\nours:\n{}",
        String::from_utf8_lossy(&store.read_blob(&digest).unwrap())
    );

    // umoci unpacks the layers into a rootfs with the right files and modes.
    let bundle = tmp.path().join("bundle");
    run(Command::new(&umoci).args([
        "unpack",
        "--rootless",
        "--image",
        &format!("{dir}:latest"),
        &bundle.display().to_string(),
    ]));
    let rootfs = bundle.join("rootfs");
    let at = |p: &str| rootfs.join(p.trim_start_matches('/'));
    assert_eq!(fs::read(at(KERNEL_PATH)).unwrap(), kernel_bytes);
    assert_eq!(
        fs::read(at(ROOTFS_PATH)).unwrap(),
        fs::read(&s.initrd).unwrap()
    );
    let mode = |p: &str| fs::metadata(at(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(KERNEL_PATH), 0o755);
    assert_eq!(mode(ROOTFS_PATH), 0o644);
    assert_eq!(mode(URUNC_JSON_PATH), 0o644);
    let urunc_json = json(&fs::read_to_string(at(URUNC_JSON_PATH)).unwrap());
    let decoded: BTreeMap<String, String> = string_map(&urunc_json)
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(STANDARD.decode(v).unwrap()).unwrap()))
        .collect();
    assert_eq!(decoded, expected_annotations);

    // bunny's own inspect agrees.
    let report = inspect(&store, "hello").unwrap();
    assert_eq!(report.name.as_deref(), Some("hello:latest"));
    assert_eq!(report.manifest_digest, digest);
    assert_eq!(report.urunc, expected_annotations);
    assert_eq!(report.urunc_json.as_ref(), Some(&expected_annotations));
    assert_eq!(report.config.labels, s.labels);
    assert_eq!(report.layers[0].files, vec!["/.boot/", "/.boot/kernel"]);
    assert_eq!(report.layers[2].files, vec!["/urunc.json"]);
    let text = report.to_string();
    assert!(
        text.contains("com.urunc.unikernel.binary = /.boot/kernel"),
        "{text}"
    );
    let as_json = serde_json::to_value(&report).unwrap();
    assert_eq!(as_json["manifest_digest"], digest.as_str());
}

#[test]
fn assembly_is_deterministic_across_mtimes_and_time() {
    let kernel = random_bytes(200 * 1024);
    let build = |when: SystemTime, mode: u32| {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store")).unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("kernel"), &kernel).unwrap();
        fs::write(src.join("initrd"), text_bytes(96 * 1024)).unwrap();
        for name in ["kernel", "initrd"] {
            let f = fs::File::options()
                .write(true)
                .open(src.join(name))
                .unwrap();
            f.set_modified(when).unwrap();
            f.set_permissions(fs::Permissions::from_mode(mode)).unwrap();
        }
        let s = build_sample(&store, &src, &kernel);
        let archive = tmp.path().join("out.tar");
        export(
            &store,
            &s.manifest,
            &["x:1".into()],
            &Output::OciArchive {
                file: archive.clone(),
            },
        )
        .unwrap();
        let docker = tmp.path().join("docker.tar");
        export(
            &store,
            &s.manifest,
            &["x:1".into()],
            &Output::DockerArchive {
                file: docker.clone(),
            },
        )
        .unwrap();
        (
            s.manifest.digest().to_string(),
            fs::read(archive).unwrap(),
            fs::read(docker).unwrap(),
            tmp,
        )
    };
    let a = build(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        0o600,
    );
    std::thread::sleep(Duration::from_millis(1100));
    let b = build(SystemTime::now(), 0o777);
    assert_eq!(
        a.0, b.0,
        "manifest digest depends on mtimes, modes or the clock"
    );
    assert!(a.1 == b.1, "OCI archives differ");
    assert!(a.2 == b.2, "docker archives differ");
}

#[test]
fn layer_tar_headers_are_normalised() {
    let gnu_tar = require_tool("tar");
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let src = tmp.path().join("f");
    fs::write(&src, b"payload").unwrap();
    let entries = vec![
        LayerEntry {
            path: "/usr/lib/app/data".into(),
            content: LayerContent::File(src),
            mode: 0o640,
        },
        LayerEntry {
            path: "/bin/sh".into(),
            content: LayerContent::Symlink("/bin/busybox".into()),
            mode: 0o777,
        },
        LayerEntry {
            path: "/a-b".into(),
            content: LayerContent::Bytes(b"x".to_vec()),
            mode: 0o4755,
        },
        LayerEntry {
            path: "/etc".into(),
            content: LayerContent::Dir,
            mode: 0o700,
        },
    ];
    let opts = LayerOptions {
        mtime: EPOCH,
        compression: CompressionChoice::Fixed(Compression::None),
    };
    let layer = write_layer(&entries, &opts, &store).unwrap();
    let blob = store.blob_path(layer.descriptor.digest().as_ref()).unwrap();
    assert_eq!(
        layer.diff_id,
        layer.descriptor.digest().to_string(),
        "uncompressed layer: diff_id is the digest"
    );
    let listing = run(Command::new(gnu_tar)
        .env("TZ", "UTC")
        .args(["--numeric-owner", "--full-time", "-tvf"])
        .arg(&blob));
    let got: Vec<String> = listing
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let t = "2023-11-14 22:13:20";
    assert_eq!(
        got,
        vec![
            format!("-rwsr-xr-x 0/0 1 {t} a-b"),
            format!("drwxr-xr-x 0/0 0 {t} bin"),
            format!("lrwxrwxrwx 0/0 0 {t} bin/sh -> /bin/busybox"),
            format!("drwx------ 0/0 0 {t} etc"),
            format!("drwxr-xr-x 0/0 0 {t} usr"),
            format!("drwxr-xr-x 0/0 0 {t} usr/lib"),
            format!("drwxr-xr-x 0/0 0 {t} usr/lib/app"),
            format!("-rw-r----- 0/0 7 {t} usr/lib/app/data"),
        ]
    );
    // No user/group names and no PAX records (which would carry atime/ctime).
    let mut archive = tar::Archive::new(fs::File::open(&blob).unwrap());
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        assert_eq!(h.groupname_bytes(), Some(&b""[..]));
        assert!(!matches!(
            h.entry_type(),
            tar::EntryType::XHeader | tar::EntryType::XGlobalHeader
        ));
        let gnu = h.as_gnu().expect("GNU header");
        assert_eq!(gnu.atime, [0u8; 12]);
        assert_eq!(gnu.ctime, [0u8; 12]);
    }
}

#[test]
fn auto_compression_skips_compressed_data_and_gzips_text() {
    let gnu_tar = require_tool("tar");
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let opts = LayerOptions {
        mtime: 0,
        compression: CompressionChoice::Auto,
    };
    let one = |name: &str, bytes: Vec<u8>| {
        let p = tmp.path().join(name);
        fs::write(&p, &bytes).unwrap();
        let entries = [LayerEntry {
            path: format!("/{name}"),
            content: LayerContent::File(p),
            mode: 0o644,
        }];
        (
            write_layer(&entries, &opts, &store).unwrap(),
            bytes.len() as u64,
        )
    };
    let (random, random_len) = one("kernel", random_bytes(512 * 1024));
    let (text, text_len) = one("notes.txt", text_bytes(512 * 1024));
    let mut gz = vec![0x1f, 0x8b, 0x08, 0x00];
    gz.extend(text_bytes(8192));
    let (gzipped, _) = one("initrd.gz", gz);
    let mut bz = vec![0u8; 0x202];
    bz.extend_from_slice(b"HdrS");
    bz.extend(vec![0u8; 64 * 1024]);
    let (bzimage, _) = one("bzImage", bz);

    assert_eq!(
        random.descriptor.media_type().to_string(),
        Compression::None.media_type()
    );
    assert!(
        random.descriptor.size() > random_len,
        "stored as a plain tar"
    );
    assert_eq!(
        gzipped.descriptor.media_type().to_string(),
        Compression::None.media_type()
    );
    assert_eq!(
        bzimage.descriptor.media_type().to_string(),
        Compression::None.media_type()
    );
    assert_eq!(
        text.descriptor.media_type().to_string(),
        Compression::Gzip.media_type()
    );
    assert!(
        text.descriptor.size() < text_len / 4,
        "text should shrink a lot"
    );
    assert_ne!(text.diff_id, text.descriptor.digest().to_string());

    // The gzip blob is a real gzip of a tar GNU tar can read, and its diff_id
    // is the digest of the decompressed stream.
    let blob = store.blob_path(text.descriptor.digest().as_ref()).unwrap();
    let listing = run(Command::new(&gnu_tar).arg("-tzf").arg(&blob));
    assert_eq!(listing.trim(), "notes.txt");
    let out = run(Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc '{}' | sha256sum", blob.display())));
    assert_eq!(format!("sha256:{}", &out[..64]), text.diff_id);

    // Fixed zstd gives a zstd frame whose content hashes to the diff_id.
    let zopts = LayerOptions {
        mtime: 0,
        compression: CompressionChoice::Fixed(Compression::Zstd),
    };
    let z = write_layer(
        &[LayerEntry {
            path: "/z".into(),
            content: LayerContent::Bytes(text_bytes(10_000)),
            mode: 0o644,
        }],
        &zopts,
        &store,
    )
    .unwrap();
    assert_eq!(
        z.descriptor.media_type().to_string(),
        Compression::Zstd.media_type()
    );
    let head = fs::read(store.blob_path(z.descriptor.digest().as_ref()).unwrap()).unwrap();
    assert_eq!(&head[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    let plain = zstd::decode_all(head.as_slice()).unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&plain)), z.diff_id);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
