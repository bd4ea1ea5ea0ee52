//! The registry verbs from the command line: `bunny login`, `push` (plain
//! progress, metadata file), `pull`, `logout`, against a TLS registry with
//! a password, and the password never appears in any output.

mod common;

use std::fs;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use bunny::layers::store::Store;
use common::image::{build_sample, random_bytes};
use common::registry::{Registry, TlsAuth};

const USER: &str = "cliuser";
const PASSWORD: &str = "Cli-Pa55word-plugh";

fn bunny(root: &std::path::Path, docker: &std::path::Path, certs: &std::path::Path) -> Command {
    let mut cmd = common::bunny(root);
    cmd.env("DOCKER_CONFIG", docker)
        .env("BUNNY_CERTS_DIR", certs);
    cmd
}

fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn login_push_pull_logout_from_the_command_line() {
    let reg = Registry::start_tls(TlsAuth {
        user: USER,
        password: PASSWORD,
    });
    let host = reg.host();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let store = Store::open(&root).unwrap();
    let sample = build_sample(&store, &work.path().join("src"), &random_bytes(50 * 1024));
    store.tag("cli:1", &sample.manifest).unwrap();
    let docker = work.path().join("docker");
    let certs = work.path().join("certs.d");
    reg.trust_in(&certs);
    let mut outputs = Vec::new();

    let bad = run_with_stdin(
        bunny(&root, &docker, &certs).args(["login", "-u", USER, "--password-stdin", &host]),
        "wrong-password\n",
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("rejected the user name or password"),
        "{}",
        text(&bad)
    );
    outputs.push(text(&bad));

    let dest = format!("{host}/cli/app:1");
    let denied = bunny(&root, &docker, &certs)
        .args(["push", "--progress", "plain", "cli:1", &dest])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!denied.status.success());
    assert!(
        text(&denied).contains(&format!("bunny login {host}")),
        "{}",
        text(&denied)
    );
    outputs.push(text(&denied));

    let good = run_with_stdin(
        bunny(&root, &docker, &certs).args(["login", "-u", USER, "--password-stdin", &host]),
        &format!("{PASSWORD}\n"),
    );
    assert!(good.status.success(), "{}", text(&good));
    outputs.push(text(&good));

    let meta = work.path().join("meta.json");
    let pushed = bunny(&root, &docker, &certs)
        .args(["push", "--progress", "plain", "--metadata-file"])
        .arg(&meta)
        .args(["cli:1", &dest])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(pushed.status.success(), "{}", text(&pushed));
    let digest = sample.manifest.digest().to_string();
    assert_eq!(
        String::from_utf8_lossy(&pushed.stdout).trim(),
        format!("{dest}@{digest}")
    );
    let stderr = String::from_utf8_lossy(&pushed.stderr);
    assert_eq!(stderr.matches(": pushed").count(), 5, "{stderr}");
    outputs.push(text(&pushed));
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&meta).unwrap()).unwrap();
    assert_eq!(v["containerimage.digest"], digest);

    let root2 = work.path().join("store2");
    let pulled = bunny(&root2, &docker, &certs)
        .args([
            "pull",
            "--progress",
            "plain",
            "--platform",
            "linux/amd64",
            &dest,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(pulled.status.success(), "{}", text(&pulled));
    assert_eq!(
        Store::open(&root2)
            .unwrap()
            .resolve(&dest)
            .unwrap()
            .digest()
            .to_string(),
        digest
    );
    outputs.push(text(&pulled));

    let out = bunny(&root, &docker, &certs)
        .args(["logout", &host])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    outputs.push(text(&out));
    let config = fs::read_to_string(docker.join("config.json")).unwrap();
    assert!(!config.contains(&host), "{config}");

    for o in &outputs {
        assert!(!o.contains(PASSWORD), "password in output: {o}");
    }
}

/// `credsStore` in config.json: login hands the password to
/// `docker-credential-NAME store`, push reads it back with `get`, logout
/// calls `erase`; config.json itself never holds the secret.
#[test]
fn credential_helper_is_used_for_login_push_and_logout() {
    let reg = Registry::start_tls(TlsAuth {
        user: USER,
        password: PASSWORD,
    });
    let host = reg.host();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let store = Store::open(&root).unwrap();
    let sample = build_sample(&store, &work.path().join("src"), &random_bytes(20 * 1024));
    store.tag("h:1", &sample.manifest).unwrap();
    let certs = work.path().join("certs.d");
    reg.trust_in(&certs);
    let docker = work.path().join("docker");
    fs::create_dir_all(&docker).unwrap();
    fs::write(docker.join("config.json"), r#"{"credsStore":"bunnytest"}"#).unwrap();
    let bin = work.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-bunnytest");
    let saved = work.path().join("helper-store.json");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\nf='{}'\ncase \"$1\" in\n  store) cat > \"$f\" ;;\n  get) read url; if [ -f \"$f\" ]; then cat \"$f\"; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n  erase) rm -f \"$f\" ;;\nesac\n",
            saved.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let login = run_with_stdin(
        bunny(&root, &docker, &certs).env("PATH", &path).args([
            "login",
            "-u",
            USER,
            "--password-stdin",
            &host,
        ]),
        PASSWORD,
    );
    assert!(login.status.success(), "{}", text(&login));
    assert!(
        text(&login).contains("docker-credential-bunnytest"),
        "{}",
        text(&login)
    );
    let saved_json: serde_json::Value = serde_json::from_slice(&fs::read(&saved).unwrap()).unwrap();
    assert_eq!(saved_json["Username"], USER);
    assert_eq!(saved_json["Secret"], PASSWORD);
    let config = fs::read_to_string(docker.join("config.json")).unwrap();
    assert!(
        !config.contains(PASSWORD) && !config.contains("\"auth\""),
        "{config}"
    );

    let dest = format!("{host}/helper/app:1");
    let push = bunny(&root, &docker, &certs)
        .env("PATH", &path)
        .args(["push", "--progress", "quiet", "h:1", &dest])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(push.status.success(), "{}", text(&push));

    let out = bunny(&root, &docker, &certs)
        .env("PATH", &path)
        .args(["logout", &host])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!saved.exists(), "logout erased the helper's entry");
    for o in [&login, &push, &out] {
        assert!(!text(o).contains(PASSWORD), "{}", text(o));
    }
}
