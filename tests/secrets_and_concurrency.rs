//! No credential ever leaves the credential store (logs, errors,
//! metadata, images), and two builds sharing one store both succeed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine;
use common::registry::{Registry, TlsAuth};

const USER: &str = "bunny-ci";
const PASSWORD: &str = "S3cr3t-Pa55w0rd-never-printed";

fn bunny(
    root: &Path,
    docker_config: &Path,
    certs: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    use std::io::Write;
    let mut child = common::bunny(root)
        .args(args)
        .env("DOCKER_CONFIG", docker_config)
        .env("BUNNY_CERTS_DIR", certs)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running bunny");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Every form the secret could leak in.
fn secret_forms() -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![
        PASSWORD.to_string(),
        b64.encode(format!("{USER}:{PASSWORD}")),
        b64.encode(PASSWORD),
    ]
}

fn assert_clean(what: &str, bytes: &[u8]) {
    assert!(!holds_secret(bytes), "the credential leaked into {what}");
}

/// Whether the secret is in `bytes`, or in what they decompress to: image
/// layers are gzip or zstd, and a gzipped initrd may sit inside one.
fn holds_secret(bytes: &[u8]) -> bool {
    expanded(bytes, 3).iter().any(|b| {
        let text = String::from_utf8_lossy(b);
        secret_forms().iter().any(|s| text.contains(s))
    })
}

/// `bytes`, and each gzip or zstd stream in them decompressed, `depth` deep.
fn expanded(bytes: &[u8], depth: u32) -> Vec<Vec<u8>> {
    use std::io::Read;
    let mut out = vec![bytes.to_vec()];
    if depth == 0 {
        return out;
    }
    let mut inner = Vec::new();
    let ok = if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut inner)
            .is_ok()
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::read::Decoder::new(bytes)
            .and_then(|mut d| d.read_to_end(&mut inner))
            .is_ok()
    } else {
        false
    };
    if ok {
        out.extend(expanded(&inner, depth - 1));
    }
    // Tar members (an initrd in a layer) are searched in place: a gzipped
    // member starts at a 512-byte boundary.
    for off in (512..bytes.len()).step_by(512) {
        if bytes[off..].starts_with(&[0x1f, 0x8b]) {
            let mut member = Vec::new();
            if flate2::read::GzDecoder::new(&bytes[off..])
                .read_to_end(&mut member)
                .is_ok()
            {
                out.extend(expanded(&member, depth - 1));
            }
        }
    }
    out
}

#[test]
fn the_scan_finds_a_secret_in_a_compressed_layer() {
    use std::io::Write;
    let mut tar = tar::Builder::new(Vec::new());
    let data = format!("password={PASSWORD}\n");
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "etc/app.conf", data.as_bytes())
        .unwrap();
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let layer = gz.finish().unwrap();
    assert!(!String::from_utf8_lossy(&layer).contains(PASSWORD));
    assert!(holds_secret(&layer), "a gzip layer hid the secret");
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    assert!(holds_secret(&zst), "a zstd layer hid the secret");
}

fn assert_tree_clean(dir: &Path) {
    for entry in walk(dir) {
        if entry.is_file() {
            assert_clean(
                &entry.display().to_string(),
                &std::fs::read(&entry).unwrap(),
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn no_credential_in_outputs_errors_metadata_or_images() {
    let reg = Registry::start_tls(TlsAuth {
        user: USER,
        password: PASSWORD,
    });
    let host = reg.host();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let config = work.path().join("docker");
    let certs = work.path().join("certs.d");
    reg.trust_in(&certs);
    let mut outputs: Vec<(String, Output)> = Vec::new();

    // A wrong password, then the right one.
    let wrong = bunny(
        &root,
        &config,
        &certs,
        &["login", "-u", USER, "--password-stdin", &host],
        Some("nope\n"),
    );
    assert!(!wrong.status.success());
    outputs.push(("failed login".into(), wrong));
    let login = bunny(
        &root,
        &config,
        &certs,
        &["login", "-u", USER, "--password-stdin", &host],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    outputs.push(("login".into(), login));

    // Build, push with plain progress and a metadata file, then pull back.
    let reference = format!("{host}/secret/hello:1");
    let meta = work.path().join("meta.json");
    let built = bunny(
        &root,
        &config,
        &certs,
        &[
            "build",
            "--progress=plain",
            "-t",
            &reference,
            "--push",
            "--metadata-file",
            meta.to_str().unwrap(),
            common::hello_linux().to_str().unwrap(),
        ],
        None,
    );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    outputs.push(("build --push".into(), built));
    let other = work.path().join("store2");
    let pulled = bunny(
        &other,
        &config,
        &certs,
        &["pull", "--progress=plain", &reference],
        None,
    );
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    outputs.push(("pull".into(), pulled));
    // An error path with credentials in play: a tag that is not there.
    let missing = bunny(
        &other,
        &config,
        &certs,
        &["pull", &format!("{host}/secret/hello:nope")],
        None,
    );
    assert!(!missing.status.success());
    outputs.push(("failed pull".into(), missing));

    for (what, out) in &outputs {
        assert_clean(&format!("{what} stdout"), &out.stdout);
        assert_clean(&format!("{what} stderr"), &out.stderr);
    }
    assert_clean("the metadata file", &std::fs::read(&meta).unwrap());
    // The images, the store's own files and the registry's copy.
    assert_tree_clean(&root);
    assert_tree_clean(&other);
    assert_tree_clean(&reg.dir().join("data"));
    // And it is in the credential store, where it belongs.
    let cfg = std::fs::read_to_string(config.join("config.json")).unwrap();
    assert!(cfg.contains(&host), "login stored nothing: {cfg}");
}

#[test]
fn two_builds_on_one_store_both_succeed() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let none = work.path().join("none");
    let ctx = common::hello_linux();
    let spawn = |tag: &str, extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bunny"));
        cmd.arg("--root")
            .arg(&root)
            .args(["build", "--progress=plain", "-t", tag]);
        cmd.args(extra)
            .arg(&ctx)
            .env("DOCKER_CONFIG", &none)
            .env_remove("SOURCE_DATE_EPOCH");
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The same image twice and a different one, all at once.
    let a = spawn("one:1", &[]);
    let b = spawn("two:1", &[]);
    let c = spawn("three:1", &["--compression", "none"]);
    let mut digests = Vec::new();
    for (name, child) in [("one", a), ("two", b), ("three", c)] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        digests.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    for d in &digests {
        // Two empty outputs would compare equal: each must be a digest.
        let hex = d.strip_prefix("sha256:").unwrap_or_default();
        assert!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "a build printed no digest: {d:?}"
        );
    }
    assert_eq!(digests[0], digests[1], "the same inputs, the same image");
    let images = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .arg("--root")
        .arg(&root)
        .args(["images", "--quiet"])
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&images.stdout);
    for n in ["one:1", "two:1", "three:1"] {
        assert!(names.contains(n), "{n} missing from {names}");
    }
    let verify = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .arg("--root")
        .arg(&root)
        .args(["store", "verify"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
