//! A registry with TLS (a test CA) and htpasswd login: certs.d CAs, login,
//! logout, the 401/TLS errors with their hints, and no secret anywhere.

mod common;

use std::fs;
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bunny::layers::store::Store;
use bunny::oci::registry::{
    self, BlobOutcome, PlatformWanted, RegistryError, RegistryOptions, StoredIn, TransferProgress,
};
use common::image::{build_sample, random_bytes};
use common::registry::{make_ca, Registry, TlsAuth};
use common::{require_tool, run};

const USER: &str = "bunnyuser";
const PASSWORD: &str = "S3cret-Pa55word-xyzzy";

/// Keeps every message the library reports, to search them for secrets.
#[derive(Default)]
struct Messages(Mutex<Vec<String>>);

impl TransferProgress for Messages {
    fn blob_started(&self, d: &str, s: u64, w: &str) {
        self.0.lock().unwrap().push(format!("start {d} {s} {w}"));
    }
    fn blob_progress(&self, _: &str, _: u64) {}
    fn blob_done(&self, d: &str, o: BlobOutcome) {
        self.0.lock().unwrap().push(format!("done {d} {o}"));
    }
    fn message(&self, m: &str) {
        self.0.lock().unwrap().push(m.to_string());
    }
}

#[test]
fn tls_login_push_pull_logout_and_errors() {
    let reg = Registry::start_tls(TlsAuth {
        user: USER,
        password: PASSWORD,
    });
    let host = reg.host();
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let sample = build_sample(&store, &work.path().join("src"), &random_bytes(100 * 1024));
    store.tag("app:1", &sample.manifest).unwrap();
    let dest = format!("{host}/private/app:1");
    let certs = work.path().join("certs.d");
    let docker_config = work.path().join("docker");
    let messages = Arc::new(Messages::default());
    let opts = RegistryOptions {
        certs_dir: Some(certs.clone()),
        docker_config: Some(docker_config.clone()),
        progress: messages.clone(),
        ..RegistryOptions::default()
    };
    let mut seen: Vec<String> = Vec::new();
    let mut keep = |e: &RegistryError| {
        seen.push(e.to_string());
        seen.push(format!("{e:?}"));
    };

    // No CA for this host: the TLS error says which CA file was expected.
    let err = registry::push(&store, "app:1", &dest, &opts).unwrap_err();
    keep(&err);
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
    let msg = err.to_string();
    let expected_ca = certs.join(&host).join("ca.crt");
    assert!(msg.contains(&expected_ca.display().to_string()), "{msg}");

    // A CA that did not sign the registry's certificate is named as tried.
    let other_ca_dir = work.path().join("other-ca");
    fs::create_dir_all(&other_ca_dir).unwrap();
    let (other_ca, _, _) = make_ca(&other_ca_dir, "other");
    fs::create_dir_all(certs.join(&host)).unwrap();
    fs::copy(&other_ca, &expected_ca).unwrap();
    let err = registry::push(&store, "app:1", &dest, &opts).unwrap_err();
    keep(&err);
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
    assert!(
        msg.contains("CA tried") && msg.contains(&expected_ca.display().to_string()),
        "{msg}"
    );

    // The right CA, but not logged in: 401 with the `bunny login` hint.
    fs::copy(reg.ca.as_ref().unwrap(), &expected_ca).unwrap();
    let err = registry::push(&store, "app:1", &dest, &opts).unwrap_err();
    keep(&err);
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("run `bunny login {host}`")),
        "{err}"
    );

    // Wrong password: refused, nothing written.
    let err = registry::login(&host, USER, "not-the-password", &opts).unwrap_err();
    keep(&err);
    assert!(
        matches!(err, RegistryError::LoginRejected { .. }),
        "{err:?}"
    );
    assert!(!docker_config.join("config.json").exists());

    // Right password: stored like docker does.
    let stored = registry::login(&host, USER, PASSWORD, &opts).unwrap();
    assert_eq!(
        stored,
        StoredIn::ConfigFile(docker_config.join("config.json"))
    );
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(docker_config.join("config.json")).unwrap()).unwrap();
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    assert_eq!(config["auths"][&host]["auth"], expected);

    // Now push and pull work; skopeo with the same CA and password agrees.
    let pushed = registry::push(&store, "app:1", &dest, &opts).unwrap();
    let cert_dir = reg.skopeo_cert_dir();
    let raw = run(Command::new(require_tool("skopeo"))
        .args(["inspect", "--raw", "--creds", &format!("{USER}:{PASSWORD}")])
        .arg("--cert-dir")
        .arg(&cert_dir)
        .arg(format!("docker://{dest}")));
    assert_eq!(raw.as_bytes(), store.read_blob(&pushed.digest).unwrap());
    let other = Store::open(&work.path().join("other")).unwrap();
    let pulled = registry::pull(&other, &dest, &PlatformWanted::host(), &opts).unwrap();
    assert_eq!(pulled.manifest.digest().to_string(), pushed.digest);
    assert_eq!(other.verify().unwrap(), Vec::<String>::new());

    // Stored credentials the registry no longer accepts: 401, still the hint.
    let bad = serde_json::json!({"auths": {&host: {"auth": base64::engine::general_purpose::STANDARD.encode(format!("{USER}:wrong"))}}});
    let bad_dir = work.path().join("bad-docker");
    fs::create_dir_all(&bad_dir).unwrap();
    fs::write(bad_dir.join("config.json"), bad.to_string()).unwrap();
    let bad_opts = RegistryOptions {
        docker_config: Some(bad_dir),
        ..opts.clone()
    };
    let err = registry::pull(&other, &dest, &PlatformWanted::host(), &bad_opts).unwrap_err();
    keep(&err);
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("stored credentials were not accepted"),
        "{err}"
    );

    // Logout forgets them; a second logout says there was nothing.
    assert!(registry::logout(&host, &opts).unwrap());
    assert!(!registry::logout(&host, &opts).unwrap());
    let err = registry::pull(&other, &dest, &PlatformWanted::host(), &opts).unwrap_err();
    keep(&err);
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    let text = fs::read_to_string(docker_config.join("config.json")).unwrap();
    assert!(!text.contains(&expected), "{text}");

    // The password appears in no error, debug output or progress message.
    seen.extend(messages.0.lock().unwrap().iter().cloned());
    seen.push(format!("{opts:?}"));
    let creds = registry::auth::lookup(&bad_opts.docker_config.clone().unwrap(), &host).unwrap();
    seen.push(format!("{creds:?}"));
    if std::env::var_os("BUNNY_SHOW_ERRORS").is_some() {
        for s in &seen {
            eprintln!("{s}");
        }
    }
    for s in &seen {
        assert!(
            !s.contains(PASSWORD) && !s.contains(&expected),
            "secret leaked: {s}"
        );
    }
    assert!(seen.len() > 10);
}

#[test]
fn localhost_is_reached_over_plain_http_like_docker_does() {
    // Loopback names may use plain HTTP without --insecure-registry (the
    // rule for other hosts is covered by the library's unit tests, as a
    // non-loopback address cannot be relied on in a test sandbox).
    let reg = Registry::start_http();
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let sample = build_sample(&store, &work.path().join("src"), &random_bytes(10 * 1024));
    store.tag("a:1", &sample.manifest).unwrap();
    let opts = RegistryOptions {
        docker_config: Some(work.path().join("d")),
        certs_dir: Some(work.path().join("c")),
        ..RegistryOptions::default()
    };
    let via_localhost = format!("localhost:{}/x/a:1", reg.port);
    registry::push(&store, "a:1", &via_localhost, &opts).unwrap();
    let raw = run(Command::new(require_tool("skopeo"))
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/x/a:1", reg.host())));
    assert_eq!(
        raw.as_bytes(),
        store.read_blob(sample.manifest.digest().as_ref()).unwrap()
    );
}

/// A plain-HTTP token service that answers every request with a token and
/// keeps each request's bytes, to see what a client sent it.
fn clear_text_realm() -> (String, Arc<Mutex<Vec<u8>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let realm = format!("http://{}/token", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut buf = [0u8; 8192];
            let n = conn.read(&mut buf).unwrap_or(0);
            keep.lock().unwrap().extend_from_slice(&buf[..n]);
            let body = r#"{"token":"t","access_token":"t"}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (realm, seen)
}

/// An HTTPS registry whose challenge sends logins to a plain-HTTP token
/// service: the password must not go there unless the user named the
/// registry insecure. The last step shows the check can see a leak.
#[test]
fn credentials_never_go_to_a_plain_http_token_service() {
    let (realm, seen) = clear_text_realm();
    let reg = Registry::start_tls_token(&realm);
    let host = reg.host();
    let work = tempfile::tempdir().unwrap();
    let certs = work.path().join("certs.d");
    reg.trust_in(&certs);
    let docker_config = work.path().join("docker");
    let opts = RegistryOptions {
        certs_dir: Some(certs),
        docker_config: Some(docker_config.clone()),
        ..RegistryOptions::default()
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let leaked = |seen: &Arc<Mutex<Vec<u8>>>| {
        let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
        text.contains(PASSWORD) || text.contains(&b64)
    };

    let err = registry::login(&host, USER, PASSWORD, &opts).unwrap_err();
    assert!(err.to_string().contains("plain HTTP"), "{err}");
    assert!(!leaked(&seen), "login sent the password to {realm}");

    // Stored credentials (as another tool would leave them) are not sent
    // by a pull either.
    fs::create_dir_all(&docker_config).unwrap();
    fs::write(
        docker_config.join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{"auth":"{b64}"}}}}}}"#),
    )
    .unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let err = registry::pull(
        &store,
        &format!("{host}/private/app:1"),
        &PlatformWanted::host(),
        &opts,
    )
    .unwrap_err();
    assert!(err.to_string().contains("plain HTTP"), "{err}");
    assert!(!leaked(&seen), "a pull sent the password to {realm}");

    // Named insecure, the registry's token service gets the login.
    let insecure = RegistryOptions {
        insecure_registries: vec![host.clone()],
        ..opts
    };
    let _ = registry::login(&host, USER, PASSWORD, &insecure);
    assert!(
        leaked(&seen),
        "the token service saw no login even when allowed, so this test could not see a leak"
    );
}
