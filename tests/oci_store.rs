//! The local store: concurrent tagging, atomic blobs, verification, lookups.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;

use bunny::layers::store::{Store, StoreError};
use common::image::{build_sample, random_bytes};
use common::{require_tool, run};
use sha2::Digest as _;

const CHILD_ENV: &str = "BUNNY_TEST_STORE_CHILD_ROOT";
const TAGS_PER_WORKER: usize = 40;

fn tag_many(root: &Path, prefix: &str) {
    let store = Store::open(root).unwrap();
    for i in 0..TAGS_PER_WORKER {
        let d = store
            .put_bytes(
                "application/vnd.oci.image.manifest.v1+json",
                format!("{{\"schemaVersion\":2,\"n\":\"{prefix}{i}\"}}").as_bytes(),
            )
            .unwrap();
        store.tag(&format!("{prefix}-{i}:latest"), &d).unwrap();
    }
}

/// Not a test of its own: the body of the child processes started by
/// `concurrent_tags_keep_index_valid` (ignored so a plain run skips it).
#[test]
#[ignore]
fn store_child_tagger() {
    if let (Some(root), Some(prefix)) = (
        std::env::var_os(CHILD_ENV),
        std::env::var_os("BUNNY_TEST_STORE_CHILD_PREFIX"),
    ) {
        tag_many(Path::new(&root), &prefix.to_string_lossy());
    }
}

#[test]
fn concurrent_tags_keep_index_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    Store::open(&root).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["proc-a", "proc-b"]
        .iter()
        .map(|prefix| {
            Command::new(&exe)
                .args(["store_child_tagger", "--exact", "--ignored", "--quiet"])
                .env(CHILD_ENV, &root)
                .env("BUNNY_TEST_STORE_CHILD_PREFIX", prefix)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let threads: Vec<_> = ["thread-a", "thread-b"]
        .iter()
        .map(|prefix| {
            let root = root.clone();
            std::thread::spawn(move || tag_many(&root, prefix))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for mut c in children {
        assert!(c.wait().unwrap().success(), "child tagger failed");
    }
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("index.json")).unwrap()).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(names.len(), 4 * TAGS_PER_WORKER, "lost tags: {names:?}");
    let store = Store::open(&root).unwrap();
    assert_eq!(store.list().unwrap().len(), 4 * TAGS_PER_WORKER);
    for prefix in ["proc-a", "proc-b", "thread-a", "thread-b"] {
        let d = store.resolve(&format!("{prefix}-7")).unwrap();
        let body = store.read_blob(d.digest().as_ref()).unwrap();
        assert!(String::from_utf8(body)
            .unwrap()
            .contains(&format!("{prefix}7")));
    }
    // Retagging replaces rather than duplicates.
    let d = store.resolve("thread-a-1:latest").unwrap();
    store.tag("thread-b-2:latest", &d).unwrap();
    assert_eq!(store.list().unwrap().len(), 4 * TAGS_PER_WORKER);
    assert_eq!(store.resolve("thread-b-2").unwrap().digest(), d.digest());
}

#[test]
fn abandoned_blob_writer_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let bytes = random_bytes(100_000);
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
    {
        let mut w = store.blob_writer().unwrap();
        w.write_all(&bytes).unwrap();
        assert_eq!(fs::read_dir(tmp.path().join("tmp")).unwrap().count(), 1);
    }
    assert!(!store.has_blob(&digest));
    assert_eq!(
        fs::read_dir(tmp.path().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(fs::read_dir(tmp.path().join("tmp")).unwrap().count(), 0);
    // Committing twice keeps one blob and no temp files.
    for _ in 0..2 {
        let mut w = store.blob_writer().unwrap();
        w.write_all(&bytes).unwrap();
        let d = w.commit("application/octet-stream").unwrap();
        assert_eq!(d.digest().to_string(), digest);
        assert_eq!(d.size(), bytes.len() as u64);
    }
    assert!(store.has_blob(&digest));
    assert_eq!(fs::read(store.blob_path(&digest).unwrap()).unwrap(), bytes);
    assert_eq!(fs::read_dir(tmp.path().join("tmp")).unwrap().count(), 0);
}

#[test]
fn verify_detects_corrupt_and_missing_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let s = build_sample(&store, &tmp.path().join("src"), &random_bytes(64 * 1024));
    store.tag("hello:latest", &s.manifest).unwrap();
    assert_eq!(store.verify().unwrap(), Vec::<String>::new());

    let victim = s.layers[1].descriptor.digest().to_string();
    let path = store.blob_path(&victim).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&path, bytes).unwrap();
    let problems = store.verify().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains(&victim) && problems[0].contains("corrupt"),
        "{problems:?}"
    );

    fs::remove_file(&path).unwrap();
    let problems = store.verify().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains(&victim) && problems[0].contains("missing"),
        "{problems:?}"
    );
}

#[test]
fn digests_and_names_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    for bad in [
        "sha256:../../../etc/passwd",
        "sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
        "sha512:0123",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef/x",
    ] {
        assert!(
            matches!(store.blob_path(bad), Err(StoreError::InvalidDigest(_))),
            "{bad} accepted"
        );
        assert!(!store.has_blob(bad));
    }
    let d = store
        .put_bytes(
            "application/vnd.oci.image.manifest.v1+json",
            br#"{"schemaVersion":2}"#,
        )
        .unwrap();
    store.tag("app:1.0", &d).unwrap();
    assert_eq!(store.resolve("app:1.0").unwrap().digest(), d.digest());
    assert_eq!(
        store.resolve(d.digest().as_ref()).unwrap().digest(),
        d.digest()
    );
    let err = store.resolve("app").unwrap_err().to_string();
    assert!(err.contains("`app`"), "{err}");
    assert!(store.tag("", &d).is_err());
    assert!(store.untag("app:1.0").unwrap());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn store_reopens_and_is_a_layout_skopeo_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("nested/store");
    Store::open(&root).unwrap();
    let layout = fs::read_to_string(root.join("oci-layout")).unwrap();
    assert_eq!(layout, r#"{"imageLayoutVersion":"1.0.0"}"#);
    // skopeo accepts the empty store as a layout (an unknown name, not a bad layout).
    let skopeo = require_tool("skopeo");
    let out = common::output(Command::new(&skopeo).args([
        "inspect",
        "--raw",
        &format!("oci:{}:nothing", root.display()),
    ]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing"), "{stderr}");
    Store::open(&root).unwrap();
}

/// Not a test of its own: prints `Store::default_root()` for
/// `default_root_follows_env`, which runs it with a controlled environment.
#[test]
#[ignore]
fn print_default_root() {
    if std::env::var_os("BUNNY_TEST_PRINT_ROOT").is_some() {
        println!("ROOT={}", Store::default_root().display());
    }
}

#[test]
fn default_root_follows_env() {
    let exe = std::env::current_exe().unwrap();
    let root_with = |vars: &[(&str, &str)]| {
        let mut cmd = Command::new(&exe);
        cmd.args([
            "print_default_root",
            "--exact",
            "--ignored",
            "--nocapture",
            "--quiet",
        ])
        .env("BUNNY_TEST_PRINT_ROOT", "1")
        .env_remove("BUNNY_ROOT")
        .env_remove("XDG_DATA_HOME");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = run(&mut cmd);
        out.lines()
            .find_map(|l| l.strip_prefix("ROOT="))
            .unwrap_or_else(|| panic!("no ROOT= line in {out}"))
            .to_string()
    };
    assert_eq!(
        root_with(&[
            ("BUNNY_ROOT", "/a"),
            ("XDG_DATA_HOME", "/b"),
            ("HOME", "/c")
        ]),
        "/a"
    );
    assert_eq!(
        root_with(&[("XDG_DATA_HOME", "/b"), ("HOME", "/c")]),
        "/b/bunny"
    );
    assert_eq!(root_with(&[("HOME", "/c")]), "/c/.local/share/bunny");
}

/// What a process killed mid-build leaves in `tmp/` is removed by the next
/// `Store::open`, but only once no live process holds its lock: a real
/// `flock(1)` process stands in for a running bunny, then is killed -9.
#[test]
fn stale_scratch_of_dead_processes_is_removed_live_scratch_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root).unwrap();
    let tmp = root.join("tmp");
    let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);

    // A scratch dir whose owner (another process) is alive.
    let held = tmp.join("scratch-build-held");
    fs::create_dir_all(&held).unwrap();
    let lock = held.join(".owner.lock");
    fs::write(&lock, "").unwrap();
    // `-o`: only flock itself holds the lock, not the command it runs.
    let mut owner = Command::new(require_tool("flock"))
        .args(["-x", "-o"])
        .arg(&lock)
        .args(["sleep", "120"])
        .process_group(0)
        .spawn()
        .unwrap();
    // Wait until flock holds it.
    let probe = fs::File::open(&lock).unwrap();
    let t = std::time::Instant::now();
    while fs4::fs_std::FileExt::try_lock_exclusive(&probe).unwrap() {
        fs4::fs_std::FileExt::unlock(&probe).unwrap();
        assert!(t.elapsed().as_secs() < 10, "flock never took the lock");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(probe);
    filetime::set_file_mtime(&held, old).unwrap();

    // This process's own live scratch.
    let mine = store.scratch("build").unwrap();
    fs::write(mine.path().join("rootfs.cpio"), b"x").unwrap();

    // Lockless scratch: fresh (its owner may be about to lock it) and old.
    let fresh = tmp.join("scratch-app-fresh");
    let abandoned = tmp.join("scratch-app-abandoned");
    fs::create_dir_all(&fresh).unwrap();
    fs::create_dir_all(&abandoned).unwrap();
    filetime::set_file_mtime(&abandoned, old).unwrap();
    // Blob temp files: an old unlocked one, and a build step's bundle dir,
    // which is never touched (it may hold mounts).
    let blob = tmp.join("blob-abandoned");
    fs::write(&blob, vec![0u8; 4096]).unwrap();
    filetime::set_file_mtime(&blob, old).unwrap();
    let step = tmp.join("step-xyz");
    fs::create_dir_all(&step).unwrap();
    filetime::set_file_mtime(&step, old).unwrap();

    let _ = Store::open(&root).unwrap();
    assert!(held.exists(), "removed scratch a live process holds");
    assert!(mine.path().exists(), "removed this process's own scratch");
    assert!(fresh.exists(), "removed a fresh scratch dir");
    assert!(step.exists(), "touched a step bundle");
    assert!(
        !abandoned.exists(),
        "kept an abandoned lockless scratch dir"
    );
    assert!(!blob.exists(), "kept an abandoned blob temp file");

    // The owner dies without cleaning up (kill -9, with its sleep).
    run(Command::new("kill").args(["-9", "--", &format!("-{}", owner.id())]));
    owner.wait().unwrap();
    let _ = Store::open(&root).unwrap();
    assert!(!held.exists(), "kept the scratch of a killed process");
    assert!(mine.path().exists());
    let path = mine.path().to_path_buf();
    drop(mine);
    assert!(!path.exists(), "a dropped scratch stays behind");
}
