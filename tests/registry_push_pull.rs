//! Push and pull against a real registry (docker-registry over plain HTTP on
//! 127.0.0.1), checked with skopeo as the independent client.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use bunny::layers::store::Store;
use bunny::oci::image::{assemble, ImageConfig, ImageSpec};
use bunny::oci::layer::{write_layer, CompressionChoice, LayerContent, LayerEntry, LayerOptions};
use bunny::oci::registry::{
    self, BlobOutcome, PlatformWanted, RegistryError, RegistryOptions, TransferProgress,
};
use bunny::platform::Arch;
use common::image::{build_sample, random_bytes, EPOCH};
use common::registry::Registry;
use common::{require_tool, run};
use sha2::{Digest, Sha256};

#[derive(Default)]
struct Recorder {
    done: Mutex<Vec<(String, BlobOutcome)>>,
    progress_calls: Mutex<usize>,
}

impl TransferProgress for Recorder {
    fn blob_started(&self, _: &str, _: u64, _: &str) {}
    fn blob_progress(&self, _: &str, _: u64) {
        *self.progress_calls.lock().unwrap() += 1;
    }
    fn blob_done(&self, digest: &str, outcome: BlobOutcome) {
        self.done
            .lock()
            .unwrap()
            .push((digest.to_string(), outcome));
    }
    fn message(&self, _: &str) {}
}

impl Recorder {
    fn outcomes(&self) -> Vec<BlobOutcome> {
        self.done.lock().unwrap().iter().map(|(_, o)| *o).collect()
    }
}

fn opts_with(rec: &Arc<Recorder>) -> RegistryOptions {
    RegistryOptions {
        // No stray credentials or CAs from the machine running the tests.
        docker_config: Some(tempfile::tempdir().unwrap().keep()),
        certs_dir: Some(tempfile::tempdir().unwrap().keep()),
        progress: rec.clone(),
        ..RegistryOptions::default()
    }
}

fn skopeo_raw(reference: &str) -> Vec<u8> {
    let skopeo = require_tool("skopeo");
    let out = common::output(
        Command::new(skopeo)
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{reference}")),
    );
    assert!(
        out.status.success(),
        "skopeo inspect {reference} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[test]
fn push_is_read_by_skopeo_repush_uploads_nothing_and_other_repo_mounts() {
    let reg = Registry::start_http();
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let sample = build_sample(&store, &work.path().join("src"), &random_bytes(300 * 1024));
    store.tag("sample:1", &sample.manifest).unwrap();
    let rec = Arc::new(Recorder::default());
    let opts = opts_with(&rec);
    let dest = format!("{}/bunny/sample:1", reg.host());

    let res = registry::push(&store, "sample:1", &dest, &opts).unwrap();
    assert_eq!(res.digest, sample.manifest.digest().to_string());
    assert_eq!(res.name, dest);
    // 3 layers + config uploaded, then the manifest.
    assert_eq!((res.uploaded, res.skipped), (4, 0));
    assert!(
        *rec.progress_calls.lock().unwrap() >= 4,
        "progress was reported"
    );

    let raw = skopeo_raw(&dest);
    assert_eq!(
        sha256(&raw),
        res.digest,
        "skopeo sees the manifest we pushed"
    );
    assert_eq!(raw, store.read_blob(&res.digest).unwrap(), "byte for byte");

    // skopeo copies it back out, blobs and all.
    let back = work.path().join("back");
    run(Command::new(require_tool("skopeo"))
        .args([
            "copy",
            "--preserve-digests",
            "--dest-oci-accept-uncompressed-layers",
            "--src-tls-verify=false",
        ])
        .arg(format!("docker://{dest}"))
        .arg(format!("oci:{}:copy", back.display())));
    let back_raw = run(Command::new(require_tool("skopeo"))
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:copy", back.display())));
    assert_eq!(sha256(back_raw.as_bytes()), res.digest);
    for layer in &sample.layers {
        let hex = layer.descriptor.digest().to_string().replace("sha256:", "");
        let copied = std::fs::read(back.join("blobs/sha256").join(&hex)).unwrap();
        assert_eq!(sha256(&copied), layer.descriptor.digest().to_string());
    }

    // Unchanged re-push: every blob is found by HEAD, none is uploaded.
    let before = reg.upload_requests("bunny/sample");
    let rec2 = Arc::new(Recorder::default());
    let again = registry::push(&store, "sample:1", &dest, &opts_with(&rec2)).unwrap();
    let after = reg.upload_requests("bunny/sample");
    assert_eq!(
        before.len(),
        after.len(),
        "new upload requests: {:?}",
        &after[before.len()..]
    );
    assert_eq!((again.uploaded, again.skipped), (0, 4));
    assert_eq!(again.digest, res.digest);

    // Another repository on the same registry: blobs are mounted, not sent
    // (the store remembers where they live), and only mount POSTs happen.
    let rec3 = Arc::new(Recorder::default());
    let other = format!("{}/team/other:2", reg.host());
    let third = registry::push(&store, "sample:1", &other, &opts_with(&rec3)).unwrap();
    let blob_outcomes: Vec<BlobOutcome> = rec3.outcomes()[..4].to_vec();
    assert_eq!(blob_outcomes, vec![BlobOutcome::Mounted; 4]);
    let uploads = reg.upload_requests("team/other");
    assert_eq!(uploads.len(), 4, "{uploads:?}");
    assert!(
        uploads
            .iter()
            .all(|l| l.contains("mount=") && l.contains("\"POST ")),
        "{uploads:?}"
    );
    assert_eq!(sha256(&skopeo_raw(&other)), third.digest);

    // buildx-style metadata file.
    let meta = work.path().join("meta.json");
    registry::write_metadata(&meta, &third).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(v["image.name"], other);
    assert_eq!(v["containerimage.digest"], third.digest);
    assert_eq!(v["containerimage.descriptor"]["digest"], third.digest);
    assert_eq!(
        v["containerimage.descriptor"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(v["containerimage.descriptor"]["annotations"]
        .get("org.opencontainers.image.ref.name")
        .is_none());
}

#[test]
fn pull_what_skopeo_pushed_by_tag_and_by_digest() {
    let reg = Registry::start_http();
    let work = tempfile::tempdir().unwrap();
    let src_store = Store::open(&work.path().join("src-store")).unwrap();
    let sample = build_sample(
        &src_store,
        &work.path().join("src"),
        &random_bytes(200 * 1024),
    );
    src_store.tag("sk:1", &sample.manifest).unwrap();
    let remote = format!("{}/from/skopeo:v1", reg.host());
    // The store is an OCI layout, so skopeo reads it directly.
    run(Command::new(require_tool("skopeo"))
        .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:sk:1", src_store.root().display()))
        .arg(format!("docker://{remote}")));
    let remote_digest = sha256(&skopeo_raw(&remote));

    let store = Store::open(&work.path().join("store")).unwrap();
    let rec = Arc::new(Recorder::default());
    let opts = opts_with(&rec);
    let res = registry::pull(&store, &remote, &PlatformWanted::host(), &opts).unwrap();
    assert_eq!(res.name, remote);
    assert_eq!(res.manifest.digest().to_string(), remote_digest);
    assert_eq!((res.downloaded, res.cached), (4, 0));
    assert_eq!(
        store.resolve(&remote).unwrap().digest().to_string(),
        remote_digest
    );
    for layer in &sample.layers {
        assert!(store.has_blob(layer.descriptor.digest().as_ref()));
    }
    assert_eq!(store.verify().unwrap(), Vec::<String>::new());
    // skopeo reads the pulled image from our store.
    let raw = run(Command::new(require_tool("skopeo"))
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:{remote}", store.root().display())));
    assert_eq!(sha256(raw.as_bytes()), remote_digest);

    // By digest: nothing is fetched twice.
    let by_digest = format!("{}/from/skopeo@{remote_digest}", reg.host());
    let res2 = registry::pull(&store, &by_digest, &PlatformWanted::host(), &opts).unwrap();
    assert_eq!(res2.name, by_digest);
    assert_eq!((res2.downloaded, res2.cached), (0, 4));
    assert_eq!(
        store.resolve(&by_digest).unwrap().digest().to_string(),
        remote_digest
    );

    // A tag that does not exist names the tag and repository.
    let missing = format!("{}/from/skopeo:nope", reg.host());
    let err = registry::pull(&store, &missing, &PlatformWanted::host(), &opts).unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("`nope`") && msg.contains("from/skopeo"),
        "{msg}"
    );
    // A wrong digest is refused.
    let wrong = format!("{}/from/skopeo@sha256:{}", reg.host(), "0".repeat(64));
    let err = registry::pull(&store, &wrong, &PlatformWanted::host(), &opts).unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
}

fn build_for(store: &Store, dir: &Path, arch: Arch, os: &str) -> oci_spec::image::Descriptor {
    std::fs::create_dir_all(dir).unwrap();
    let kernel = dir.join("kernel");
    std::fs::write(&kernel, random_bytes(64 * 1024)).unwrap();
    let opts = LayerOptions {
        mtime: EPOCH,
        compression: CompressionChoice::Auto,
    };
    let layer = write_layer(
        &[LayerEntry {
            path: "/.boot/kernel".into(),
            content: LayerContent::File(kernel),
            mode: 0o755,
        }],
        &opts,
        store,
    )
    .unwrap();
    let spec = ImageSpec {
        layers: vec![layer],
        config: ImageConfig {
            os: os.into(),
            architecture: arch,
            cmd: vec![],
            entrypoint: vec![],
            env: vec![],
            labels: BTreeMap::new(),
            working_dir: None,
            user: None,
            created_epoch: EPOCH,
        },
        annotations: BTreeMap::new(),
    };
    assemble(&spec, store).unwrap()
}

#[test]
fn two_platform_index_is_read_by_skopeo_and_pulled_per_platform() {
    let reg = Registry::start_http();
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let amd = build_for(&store, &work.path().join("amd"), Arch::Amd64, "linux");
    let arm = build_for(&store, &work.path().join("arm"), Arch::Arm64, "qemu");
    store.tag("multi:amd64", &amd).unwrap();
    store.tag("multi:arm64", &arm).unwrap();
    let rec = Arc::new(Recorder::default());
    let opts = opts_with(&rec);
    let dest = format!("{}/multi/app:1", reg.host());
    let res = registry::push_index(
        &store,
        &["multi:amd64".to_string(), "multi:arm64".to_string()],
        &dest,
        &opts,
    )
    .unwrap();
    let raw = skopeo_raw(&dest);
    assert_eq!(sha256(&raw), res.digest);
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms: Vec<(String, String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["os"].as_str().unwrap().to_string(),
                m["platform"]["architecture"].as_str().unwrap().to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        platforms,
        vec![
            ("linux".into(), "amd64".into(), amd.digest().to_string()),
            ("qemu".into(), "arm64".into(), arm.digest().to_string()),
        ]
    );
    // skopeo resolves the index to the arm64 image itself.
    let arm_raw = run(Command::new(require_tool("skopeo"))
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--override-arch",
            "arm64",
            "--override-os",
            "qemu",
        ])
        .arg(format!(
            "docker://{}/multi/app@{}",
            reg.host(),
            arm.digest()
        )));
    assert_eq!(sha256(arm_raw.as_bytes()), arm.digest().to_string());

    let fresh = Store::open(&work.path().join("fresh")).unwrap();
    let want_arm = PlatformWanted {
        arch: Arch::Arm64,
        os: Some("qemu".into()),
    };
    let got = registry::pull(&fresh, &dest, &want_arm, &opts).unwrap();
    assert_eq!(got.manifest.digest(), arm.digest());
    let got = registry::pull(
        &fresh,
        &dest,
        &PlatformWanted {
            arch: Arch::Amd64,
            os: None,
        },
        &opts,
    )
    .unwrap();
    assert_eq!(got.manifest.digest(), amd.digest());
    assert_eq!(fresh.verify().unwrap(), Vec::<String>::new());
    let err = registry::pull(
        &fresh,
        &dest,
        &PlatformWanted {
            arch: Arch::Arm64,
            os: Some("firecracker".into()),
        },
        &opts,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("firecracker/arm64")
            && msg.contains("qemu/arm64")
            && msg.contains("linux/amd64"),
        "{msg}"
    );
}

#[test]
fn unreachable_registry_and_unknown_image_say_what_is_wrong() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let sample = build_sample(&store, &work.path().join("src"), &random_bytes(1024));
    store.tag("u:1", &sample.manifest).unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rec = Arc::new(Recorder::default());
    let opts = opts_with(&rec);
    let err = registry::push(&store, "u:1", &format!("127.0.0.1:{port}/a/b:1"), &opts).unwrap_err();
    assert!(matches!(err, RegistryError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    let err =
        registry::push(&store, "nope:1", &format!("127.0.0.1:{port}/a/b:1"), &opts).unwrap_err();
    assert!(err.to_string().contains("`nope:1`"), "{err}");
    let err = registry::pull(
        &store,
        "127.0.0.1:1/a:bad tag!",
        &PlatformWanted::host(),
        &opts,
    )
    .unwrap_err();
    assert!(
        matches!(err, RegistryError::InvalidReference { .. }),
        "{err:?}"
    );
}
