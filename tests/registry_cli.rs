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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bunny"));
    cmd.env("BUNNY_ROOT", root)
        .env("DOCKER_CONFIG", docker)
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
    fs::create_dir_all(certs.join(&host)).unwrap();
    fs::copy(reg.ca.as_ref().unwrap(), certs.join(&host).join("ca.crt")).unwrap();
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
