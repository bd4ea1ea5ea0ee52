//! A real OCI registry per test: Debian's `docker-registry` (distribution
//! 2.8) on 127.0.0.1 at a free port, storage and logs under a temp dir,
//! optionally with TLS (a test CA made with `openssl`) and htpasswd login.
//! Stopped by PID when dropped.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{require_tool, run};

pub struct Registry {
    child: Child,
    dir: TempDir,
    pub port: u16,
    /// `Some` for a TLS registry: the CA certificate that signed it.
    pub ca: Option<PathBuf>,
}

pub struct TlsAuth<'a> {
    pub user: &'a str,
    pub password: &'a str,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

/// Makes a CA and a server certificate for localhost/127.0.0.1 in `dir`.
pub fn make_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = require_tool("openssl");
    let ca_key = dir.join(format!("{name}-ca.key"));
    let ca = dir.join(format!("{name}-ca.crt"));
    run(Command::new(&openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca)
        .args([
            "-days",
            "2",
            "-subj",
            &format!("/CN=bunny test CA {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]));
    let key = dir.join(format!("{name}-server.key"));
    let csr = dir.join(format!("{name}-server.csr"));
    let crt = dir.join(format!("{name}-server.crt"));
    run(Command::new(&openssl)
        .args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", "/CN=localhost"]));
    let ext = dir.join(format!("{name}-ext.cnf"));
    fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new(&openssl)
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-out")
        .arg(&crt)
        .arg("-extfile")
        .arg(&ext));
    (ca, crt, key)
}

impl Registry {
    pub fn start_http() -> Registry {
        Registry::start(None, None)
    }

    pub fn start_tls(auth: TlsAuth) -> Registry {
        Registry::start(Some(auth), None)
    }

    /// TLS, and token authentication whose challenge names `realm` as the
    /// token service (the token itself is never checked in these tests).
    pub fn start_tls_token(realm: &str) -> Registry {
        let unused = TlsAuth {
            user: "",
            password: "",
        };
        Registry::start(Some(unused), Some(realm))
    }

    fn start(tls: Option<TlsAuth>, token_realm: Option<&str>) -> Registry {
        let bin = require_tool("docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("reg")
            .tempdir()
            .expect("registry temp dir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        let mut ca = None;
        if let Some(auth) = tls {
            let (ca_crt, crt, key) = make_ca(dir.path(), "reg");
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                crt.display(),
                key.display()
            ));
            if let Some(realm) = token_realm {
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: bunny-test\n    issuer: bunny-test\n    rootcertbundle: {}\n",
                    ca_crt.display()
                ));
            } else {
                let htpasswd = require_tool("htpasswd");
                let line = run(Command::new(htpasswd).args(["-Bbn", auth.user, auth.password]));
                let file = dir.path().join("htpasswd");
                fs::write(&file, line.trim()).unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: bunny-test\n    path: {}\n",
                    file.display()
                ));
            }
            ca = Some(ca_crt);
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut reg = Registry {
            child,
            dir,
            port,
            ca,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = reg.child.try_wait() {
                panic!("docker-registry exited ({status}); its log:\n{}", reg.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {port} within 15 s; its log:\n{}",
                reg.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        reg
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Access-log lines of blob upload requests (POST/PATCH/PUT under
    /// `/v2/REPO/blobs/uploads`) for `repo`, in order.
    pub fn upload_requests(&self, repo: &str) -> Vec<String> {
        let prefix = format!("/v2/{repo}/blobs/uploads");
        self.log()
            .lines()
            .filter(|l| {
                ["\"POST ", "\"PATCH ", "\"PUT "]
                    .iter()
                    .any(|m| l.contains(&format!("{m}{prefix}")))
            })
            .map(str::to_string)
            .collect()
    }

    /// Bytes in upload sessions not yet completed (`_uploads/*/data`).
    pub fn partial_upload_bytes(&self) -> u64 {
        fn walk(p: &Path, total: &mut u64) {
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    let path = e.path();
                    if path.is_dir() {
                        walk(&path, total);
                    } else if path.file_name().is_some_and(|n| n == "data")
                        && path.to_string_lossy().contains("_uploads")
                    {
                        *total += e.metadata().map(|m| m.len()).unwrap_or(0);
                    }
                }
            }
        }
        let mut total = 0;
        walk(&self.dir.path().join("data"), &mut total);
        total
    }

    /// Trusts the registry's CA in `certs`, a certs.d directory laid out
    /// as Docker's (`certs/HOST/ca.crt`), as a machine would.
    pub fn trust_in(&self, certs: &Path) {
        let d = certs.join(self.host());
        fs::create_dir_all(&d).unwrap();
        fs::copy(self.ca.as_ref().expect("a TLS registry"), d.join("ca.crt")).unwrap();
    }

    /// A cert dir for skopeo holding only the CA (skopeo wants nothing else there).
    pub fn skopeo_cert_dir(&self) -> PathBuf {
        let d = self.dir.path().join("skopeo-certs");
        fs::create_dir_all(&d).unwrap();
        if let Some(ca) = &self.ca {
            fs::copy(ca, d.join("ca.crt")).unwrap();
        }
        d
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
