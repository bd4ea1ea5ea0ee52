//! kill -9 in the middle of a push and of a pull (a big random layer), then
//! the same command again: it succeeds and the store verifies clean.
//!
//! The process to kill is this test binary run again with the test's own
//! name and an environment variable saying what to do, so no separate
//! helper binary is needed.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bunny::layers::store::Store;
use bunny::oci::registry::{self, PlatformWanted, RegistryOptions};
use common::image::{build_sample, random_bytes};
use common::registry::Registry;
use common::{require_tool, run};
use sha2::{Digest, Sha256};

const BIG: usize = 24 * 1024 * 1024;

fn opts(dir: &Path) -> RegistryOptions {
    RegistryOptions {
        docker_config: Some(dir.join("docker")),
        certs_dir: Some(dir.join("certs")),
        ..RegistryOptions::default()
    }
}

/// In the child: once this much of the big blob has moved, the transfer
/// stops moving (its progress callback sleeps) until the parent kills it.
/// Without the stall a fast pull could finish before a busy parent looks,
/// and the kill would race the end of the transfer.
const STALL_AT: u64 = 6 * 1024 * 1024;

struct StallMidway;

impl registry::TransferProgress for StallMidway {
    fn blob_started(&self, _: &str, _: u64, _: &str) {}
    fn blob_progress(&self, _: &str, bytes: u64) {
        if bytes >= STALL_AT {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    fn blob_done(&self, _: &str, _: registry::BlobOutcome) {}
    fn message(&self, _: &str) {}
}

/// In the child: does the push or pull named by the environment and exits.
fn child_work() -> bool {
    let Ok(action) = std::env::var("BUNNY_REGISTRY_CHILD") else {
        return false;
    };
    let store = Store::open(Path::new(&std::env::var("BUNNY_CHILD_STORE").unwrap())).unwrap();
    let reference = std::env::var("BUNNY_CHILD_REF").unwrap();
    let work = Path::new(&std::env::var("BUNNY_CHILD_WORK").unwrap()).to_path_buf();
    let opts = RegistryOptions {
        progress: std::sync::Arc::new(StallMidway),
        ..opts(&work)
    };
    match action.as_str() {
        "push" => {
            registry::push(&store, "big:1", &reference, &opts).unwrap();
        }
        "pull" => {
            registry::pull(&store, &reference, &PlatformWanted::host(), &opts).unwrap();
        }
        other => panic!("unknown child action {other}"),
    }
    true
}

fn spawn_child(test: &str, action: &str, store: &Path, reference: &str, work: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("BUNNY_REGISTRY_CHILD", action)
        .env("BUNNY_CHILD_STORE", store)
        .env("BUNNY_CHILD_REF", reference)
        .env("BUNNY_CHILD_WORK", work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until `progress()` passes `threshold` bytes, then SIGKILLs the child.
fn kill_when(mut child: Child, what: &str, threshold: u64, progress: impl Fn() -> u64) {
    // Generous: the child stalls mid-blob and waits to be killed.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the {what} finished ({status}) before it could be interrupted");
        }
        let n = progress();
        if n >= threshold {
            child.kill().unwrap();
            let status = child.wait().unwrap();
            assert!(!status.success(), "the {what} was killed mid-way");
            eprintln!("killed the {what} after {n} bytes");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the {what} made no progress in 300 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[test]
fn kill_during_push_then_push_again() {
    if child_work() {
        return;
    }
    let reg = Registry::start_http();
    let work = tempfile::tempdir().unwrap();
    let store_dir = work.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    let sample = build_sample(&store, &work.path().join("src"), &random_bytes(BIG));
    store.tag("big:1", &sample.manifest).unwrap();
    let dest = format!("{}/big/image:1", reg.host());

    let child = spawn_child(
        "kill_during_push_then_push_again",
        "push",
        &store_dir,
        &dest,
        work.path(),
    );
    kill_when(child, "push", 2 * 1024 * 1024, || {
        reg.partial_upload_bytes()
    });

    // Nothing is tagged at the registry: the manifest goes last.
    let skopeo = require_tool("skopeo");
    let out = common::output(
        Command::new(&skopeo)
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{dest}")),
    );
    assert!(
        !out.status.success(),
        "the tag must not exist after an interrupted push"
    );

    let res = registry::push(&store, "big:1", &dest, &opts(work.path())).unwrap();
    assert_eq!(res.digest, sample.manifest.digest().to_string());
    // skopeo copies the whole image back, checking every blob's digest.
    let back = work.path().join("back");
    run(Command::new(&skopeo)
        .args([
            "copy",
            "--preserve-digests",
            "--dest-oci-accept-uncompressed-layers",
            "--src-tls-verify=false",
        ])
        .arg(format!("docker://{dest}"))
        .arg(format!("oci:{}:t", back.display())));
    let big = sample.layers[0].descriptor.digest().to_string();
    let copied = std::fs::read(
        back.join("blobs/sha256")
            .join(big.trim_start_matches("sha256:")),
    )
    .unwrap();
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&copied))),
        big
    );
    assert_eq!(store.verify().unwrap(), Vec::<String>::new());
}

#[test]
fn kill_during_pull_then_pull_again() {
    if child_work() {
        return;
    }
    let reg = Registry::start_http();
    let work = tempfile::tempdir().unwrap();
    let src = Store::open(&work.path().join("src-store")).unwrap();
    let sample = build_sample(&src, &work.path().join("src"), &random_bytes(BIG));
    src.tag("big:1", &sample.manifest).unwrap();
    let reference = format!("{}/big/pull:1", reg.host());
    registry::push(&src, "big:1", &reference, &opts(work.path())).unwrap();

    let store_dir = work.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    let child = spawn_child(
        "kill_during_pull_then_pull_again",
        "pull",
        &store_dir,
        &reference,
        work.path(),
    );
    let tmp = store.tmp_dir();
    kill_when(child, "pull", 2 * 1024 * 1024, || dir_bytes(&tmp));

    let big = sample.layers[0].descriptor.digest().to_string();
    assert!(
        !store.has_blob(&big),
        "a partial blob must never appear under its digest"
    );
    assert!(
        store.resolve(&reference).is_err(),
        "nothing is named after an interrupted pull"
    );
    assert_eq!(store.verify().unwrap(), Vec::<String>::new());

    let res = registry::pull(
        &store,
        &reference,
        &PlatformWanted::host(),
        &opts(work.path()),
    )
    .unwrap();
    assert_eq!(res.manifest.digest(), sample.manifest.digest());
    assert!(store.has_blob(&big));
    assert_eq!(store.verify().unwrap(), Vec::<String>::new());
}
