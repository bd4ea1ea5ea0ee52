//! One connection setup to one registry host: TLS roots from docker's
//! `certs.d`, the scheme (HTTPS, or plain HTTP where allowed), credentials,
//! and a current-thread tokio runtime that runs oci-client's async calls
//! inside bunny's blocking API.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use reqwest::StatusCode;

use super::auth::{self, Credentials, Secret};
use super::error::{chain_text, short_body, RegistryError};
use super::RegistryOptions;

/// Docker's default for per-registry CA files.
pub const DEFAULT_CERTS_DIR: &str = "/etc/docker/certs.d";

pub(crate) struct Session {
    pub host: String,
    pub client: Client,
    http: reqwest::Client,
    scheme: &'static str,
    pub has_credentials: bool,
    /// What oci-client was given, for the requests bunny makes itself.
    auth: RegistryAuth,
    /// The registry asked for HTTP Basic (not a token) at `/v2/`.
    basic_challenge: bool,
    /// The user named this registry with `--insecure-registry`.
    explicit_insecure: bool,
    /// Which CA files were used, phrased for a TLS error.
    ca_hint: String,
    rt: tokio::runtime::Runtime,
}

/// A CA file and its PEM bytes.
struct CaFile {
    path: PathBuf,
    pem: Vec<u8>,
}

/// Is this host allowed over plain HTTP? Listed ones, and loopback as
/// Docker does.
fn http_allowed(host: &str, opts: &RegistryOptions) -> bool {
    if opts.insecure_registries.iter().any(|h| h == host) {
        return true;
    }
    let name = host_name(host);
    name == "localhost" || name.starts_with("127.") || name == "::1" || name == "[::1]"
}

/// `host` without `:port`, keeping IPv6 brackets intact.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split(']')
            .next()
            .map_or(host, |h| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn certs_dir(opts: &RegistryOptions) -> PathBuf {
    opts.certs_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CERTS_DIR))
}

/// `certs.d/HOST[:PORT]/*.crt`, sorted, as Docker loads them.
fn load_cas(host: &str, opts: &RegistryOptions) -> Result<Vec<CaFile>, RegistryError> {
    let dir = certs_dir(opts).join(host);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(RegistryError::Io {
                action: "read directory",
                path: dir,
                source: e,
            })
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let pem = fs::read(&path).map_err(super::error::io_err("read CA file", &path))?;
        // Parse now so a broken file is named here rather than surfacing
        // as a vague handshake failure later.
        if reqwest::Certificate::from_pem(&pem).is_err() {
            return Err(RegistryError::Tls {
                host: host.to_string(),
                detail: format!("{} is not a PEM certificate", path.display()),
                ca: "replace it with the registry's CA certificate in PEM form".into(),
            });
        }
        out.push(CaFile { path, pem });
    }
    Ok(out)
}

fn ca_text(host: &str, cas: &[CaFile], opts: &RegistryOptions) -> String {
    let expected = certs_dir(opts).join(host).join("ca.crt");
    if cas.is_empty() {
        format!(
            "only the system CAs were tried, as there is no {}; put the registry's CA certificate there (or pass --insecure-registry {host} if it is meant to be plain HTTP)",
            expected.display()
        )
    } else {
        let list: Vec<String> = cas.iter().map(|c| c.path.display().to_string()).collect();
        format!(
            "CA tried: {} (plus the system CAs); check that it is the CA that signed the registry's certificate and that the certificate names {}",
            list.join(", "),
            host_name(host)
        )
    }
}

fn install_crypto_provider() {
    // reqwest is built without a default TLS crypto backend (to avoid the
    // aws-lc C build); ring is installed process-wide once. A second call
    // (or another library having done it) is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

enum Probe {
    Answered(reqwest::Response),
    NotTls,
    BadCert(String),
}

impl Session {
    pub fn connect(
        host: &str,
        repository: &str,
        push: bool,
        opts: &RegistryOptions,
        use_credentials: bool,
    ) -> Result<Session, RegistryError> {
        install_crypto_provider();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RegistryError::Runtime)?;
        let cas = load_cas(host, opts)?;
        let ca_hint = ca_text(host, &cas, opts);
        let explicit_insecure = opts.insecure_registries.iter().any(|h| h == host);
        let mut http = build_http(&cas, false, opts)?;
        let mut scheme = "https";
        let mut accept_invalid = false;
        let first = rt.block_on(probe(&http, "https", host, opts.timeout));
        let resp = match first {
            Ok(Probe::Answered(r)) => r,
            Ok(Probe::NotTls) if http_allowed(host, opts) => {
                scheme = "http";
                match rt.block_on(probe(&http, "http", host, opts.timeout)) {
                    Ok(Probe::Answered(r)) => r,
                    Ok(_) => {
                        return Err(RegistryError::Protocol {
                            host: host.into(),
                            message: "neither HTTPS nor plain HTTP gave a usable answer at /v2/"
                                .into(),
                        })
                    }
                    Err(e) => return Err(map_reqwest(host, "connecting", &e, &ca_hint)),
                }
            }
            Ok(Probe::NotTls) => {
                return Err(RegistryError::Tls {
                    host: host.into(),
                    detail: "the server does not speak TLS (it looks like plain HTTP)".into(),
                    ca: format!(
                    "if this registry is meant to be plain HTTP, pass --insecure-registry {host}"
                ),
                })
            }
            Ok(Probe::BadCert(detail)) if explicit_insecure => {
                // Docker skips verification for registries the user listed
                // as insecure; do the same rather than refuse.
                let _ = detail;
                accept_invalid = true;
                http = build_http(&cas, true, opts)?;
                match rt.block_on(probe(&http, "https", host, opts.timeout)) {
                    Ok(Probe::Answered(r)) => r,
                    Ok(_) => {
                        return Err(RegistryError::Protocol {
                            host: host.into(),
                            message:
                                "the TLS connection failed even without certificate verification"
                                    .into(),
                        })
                    }
                    Err(e) => return Err(map_reqwest(host, "connecting", &e, &ca_hint)),
                }
            }
            Ok(Probe::BadCert(detail)) => {
                return Err(RegistryError::Tls {
                    host: host.into(),
                    detail,
                    ca: ca_text(host, &cas, opts),
                })
            }
            Err(e) => return Err(map_reqwest(host, "connecting", &e, &ca_hint)),
        };
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        drop(resp);

        let config_dir = auth::docker_config_dir(opts.docker_config.as_deref());
        let creds = if use_credentials {
            auth::lookup(&config_dir, host)?
        } else {
            None
        };
        let has_credentials = creds.is_some();
        if has_credentials {
            if let Some((realm, _)) = challenge.as_deref().and_then(parse_bearer) {
                clear_text_allowed(host, scheme, &realm, explicit_insecure)?;
            }
        }
        let registry_auth = match creds {
            None => RegistryAuth::Anonymous,
            Some(Credentials {
                username,
                secret: Secret::Password(p),
            }) => RegistryAuth::Basic(username, p),
            Some(Credentials {
                secret: Secret::IdentityToken(token),
                ..
            }) => {
                let scope = if push {
                    format!("repository:{repository}:pull,push")
                } else {
                    format!("repository:{repository}:pull")
                };
                let access = rt.block_on(exchange_identity_token(
                    &http,
                    host,
                    challenge.as_deref(),
                    &token,
                    &scope,
                    &ca_hint,
                ))?;
                RegistryAuth::Bearer(access)
            }
        };

        let certs: Vec<Certificate> = cas
            .iter()
            .map(|c| Certificate {
                encoding: CertificateEncoding::Pem,
                data: c.pem.clone(),
            })
            .collect();
        let config = ClientConfig {
            protocol: if scheme == "http" {
                ClientProtocol::HttpsExcept(vec![host.to_string()])
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: accept_invalid,
            // One POST and one streaming PUT per blob: the blob is read from
            // the store file as the request body goes out, never held whole.
            use_monolithic_push: true,
            extra_root_certificates: certs,
            platform_resolver: None,
            read_timeout: Some(opts.timeout),
            connect_timeout: Some(opts.timeout),
            ..ClientConfig::default()
        };
        // `Client::new` silently falls back to defaults on a bad config
        // (dropping our CAs); `try_from` reports it.
        let client = Client::try_from(config).map_err(|e| RegistryError::Tls {
            host: host.into(),
            detail: chain_text(&e),
            ca: ca_text(host, &cas, opts),
        })?;
        rt.block_on(client.store_auth_if_needed(host, &registry_auth));
        let basic_challenge = challenge
            .as_deref()
            .is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("basic"));
        Ok(Session {
            host: host.to_string(),
            client,
            http,
            scheme,
            has_credentials,
            auth: registry_auth,
            basic_challenge,
            explicit_insecure,
            ca_hint,
            rt,
        })
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Maps an oci-client error to what the user needs to know.
    /// `operation` says what was being done, `missing` what a 404 means.
    pub fn map_err(
        &self,
        e: OciDistributionError,
        repository: &str,
        operation: &str,
        missing: &str,
    ) -> RegistryError {
        let by_status = |status: u16, message: String| {
            self.status_error(status, message, repository, operation, missing)
        };
        match e {
            OciDistributionError::RequestError(re) => {
                if let Some(status) = re.status() {
                    return by_status(status.as_u16(), status.to_string());
                }
                map_reqwest(&self.host, operation, &re, &self.ca_hint)
            }
            OciDistributionError::UnauthorizedError { .. } => by_status(401, String::new()),
            OciDistributionError::AuthenticationFailure(reason) => RegistryError::Unauthorized {
                host: self.host.clone(),
                repository: repository.to_string(),
                detail: format!(
                    "{}; the token service said: {}",
                    self.auth_detail(),
                    short_body(&reason)
                ),
            },
            OciDistributionError::ServerError { code, message, .. } => {
                by_status(code, short_body(&message))
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<String> = envelope
                    .errors
                    .iter()
                    .map(|e| format!("{:?}", e.code).to_ascii_uppercase())
                    .collect();
                let message = envelope
                    .errors
                    .iter()
                    .map(|e| format!("{:?}: {}", e.code, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                let status = if codes.iter().any(|c| c == "UNAUTHORIZED") {
                    401
                } else if codes.iter().any(|c| c == "DENIED") {
                    403
                } else if codes.iter().any(|c| c.ends_with("UNKNOWN")) {
                    404
                } else {
                    400
                };
                by_status(status, message)
            }
            OciDistributionError::ImageManifestNotFoundError(_) => by_status(404, String::new()),
            OciDistributionError::DigestError(d) => RegistryError::Protocol {
                host: self.host.clone(),
                message: format!("{operation}: {d}"),
            },
            other => RegistryError::Protocol {
                host: self.host.clone(),
                message: format!("{operation}: {}", chain_text(&other)),
            },
        }
    }

    /// What an HTTP error status means for the user.
    pub fn status_error(
        &self,
        status: u16,
        message: String,
        repository: &str,
        operation: &str,
        missing: &str,
    ) -> RegistryError {
        let host = self.host.clone();
        match status {
            401 => RegistryError::Unauthorized {
                host,
                repository: repository.to_string(),
                detail: self.auth_detail(),
            },
            403 => RegistryError::Forbidden {
                host,
                repository: repository.to_string(),
            },
            404 => RegistryError::NotFound {
                host,
                what: missing.to_string(),
            },
            s if s >= 500 => RegistryError::Server {
                host,
                status: s,
                operation: operation.to_string(),
                message,
            },
            s => RegistryError::Rejected {
                host,
                status: s,
                operation: operation.to_string(),
                message,
            },
        }
    }

    /// GETs a manifest or index by tag or digest, never holding more than
    /// `limit` bytes: an announced Content-Length over it is refused before
    /// the body is read, and a body without one is cut off as soon as it
    /// passes it. oci-client reads the whole body first, so this request
    /// is made here, with the token oci-client negotiated.
    /// Returns the body and the `Docker-Content-Digest` header, if any.
    pub async fn get_manifest(
        &self,
        r: &oci_client::Reference,
        accept: &[&str],
        limit: usize,
        what: &str,
    ) -> Result<(Vec<u8>, Option<String>), RegistryError> {
        let operation = format!("fetching {what}");
        let repository = r.repository();
        let token = self
            .client
            .auth(r, &self.auth, oci_client::RegistryOperation::Pull)
            .await
            .map_err(|e| self.map_err(e, repository, &operation, what))?;
        let reference = match (r.digest(), r.tag()) {
            (Some(d), _) => d.to_string(),
            (None, t) => t.unwrap_or("latest").to_string(),
        };
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base_url());
        let mut req = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, accept.join(", "));
        req = match (token, &self.auth) {
            (Some(t), _) => req.bearer_auth(t),
            (None, RegistryAuth::Basic(user, pass)) if self.basic_challenge => {
                req.basic_auth(user, Some(pass))
            }
            (None, RegistryAuth::Bearer(t)) => req.bearer_auth(t),
            _ => req,
        };
        let mut resp = req
            .send()
            .await
            .map_err(|e| map_reqwest(&self.host, &operation, &e, &self.ca_hint))?;
        let status = resp.status();
        let too_large = |n: String| RegistryError::Protocol {
            host: self.host.clone(),
            message: format!(
                "{what} is {n} bytes, more than a manifest can sensibly be (the limit is {limit})"
            ),
        };
        if !status.is_success() {
            // The registry's own message, but never more than a page of it.
            let mut body = Vec::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                body.extend_from_slice(&chunk);
                if body.len() > 64 * 1024 {
                    break;
                }
            }
            return Err(self.status_error(
                status.as_u16(),
                short_body(&String::from_utf8_lossy(&body)),
                repository,
                &operation,
                what,
            ));
        }
        if let Some(n) = resp.content_length().filter(|n| *n > limit as u64) {
            return Err(too_large(n.to_string()));
        }
        let header_digest = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        loop {
            let chunk = resp
                .chunk()
                .await
                .map_err(|e| map_reqwest(&self.host, &operation, &e, &self.ca_hint))?;
            let Some(chunk) = chunk else { break };
            if body.len() + chunk.len() > limit {
                return Err(too_large(format!("more than {}", body.len() + chunk.len())));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, header_digest))
    }

    fn auth_detail(&self) -> String {
        if self.has_credentials {
            "; the stored credentials were not accepted".into()
        } else {
            "; no credentials are stored for it".into()
        }
    }

    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }

    /// GET /v2/ with the given user and password: `Ok(true)` when accepted.
    /// Follows a Bearer challenge to its token service as `docker login`
    /// does; oci-client swallows auth failures, so this uses reqwest.
    pub fn check_login(&self, username: &str, password: &str) -> Result<bool, RegistryError> {
        let url = format!("{}/v2/", self.base_url());
        let host = self.host.clone();
        self.rt.block_on(async {
            let anon = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| map_reqwest(&host, "login", &e, &self.ca_hint))?;
            let challenge = anon
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if anon.status().is_success() && challenge.is_none() {
                // The registry needs no login; Docker stores the
                // credentials anyway.
                return Ok(true);
            }
            let bearer = challenge.as_deref().and_then(parse_bearer);
            if let Some((realm, _)) = &bearer {
                clear_text_allowed(&host, self.scheme, realm, self.explicit_insecure)?;
            }
            let resp = match bearer {
                Some((realm, service)) => {
                    let mut req = self
                        .http
                        .get(&realm)
                        .basic_auth(username, Some(password))
                        .query(&[("account", username)]);
                    if let Some(s) = service {
                        req = req.query(&[("service", s)]);
                    }
                    req.send().await
                }
                None => {
                    self.http
                        .get(&url)
                        .basic_auth(username, Some(password))
                        .send()
                        .await
                }
            }
            .map_err(|e| map_reqwest(&host, "login", &e, &self.ca_hint))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(true);
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Ok(false);
            }
            let body = resp.text().await.unwrap_or_default();
            Err(if status.is_server_error() {
                RegistryError::Server {
                    host: host.clone(),
                    status: status.as_u16(),
                    operation: "login".into(),
                    message: short_body(&body),
                }
            } else {
                RegistryError::Rejected {
                    host: host.clone(),
                    status: status.as_u16(),
                    operation: "login".into(),
                    message: short_body(&body),
                }
            })
        })
    }
}

fn build_http(
    cas: &[CaFile],
    accept_invalid: bool,
    opts: &RegistryOptions,
) -> Result<reqwest::Client, RegistryError> {
    let mut certs = Vec::new();
    for c in cas {
        certs.push(
            reqwest::Certificate::from_pem(&c.pem).map_err(|e| RegistryError::Tls {
                host: String::new(),
                detail: format!("{}: {e}", c.path.display()),
                ca: "replace it with the registry's CA certificate in PEM form".into(),
            })?,
        );
    }
    reqwest::Client::builder()
        .tls_certs_merge(certs)
        .tls_danger_accept_invalid_certs(accept_invalid)
        .connect_timeout(opts.timeout)
        .read_timeout(opts.timeout)
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| RegistryError::Protocol {
            host: String::new(),
            message: format!("cannot set up the HTTP client: {}", chain_text(&e)),
        })
}

async fn probe(
    http: &reqwest::Client,
    scheme: &str,
    host: &str,
    timeout: Duration,
) -> Result<Probe, reqwest::Error> {
    let url = format!("{scheme}://{host}/v2/");
    match http.get(&url).timeout(timeout).send().await {
        Ok(r) => Ok(Probe::Answered(r)),
        Err(e) => {
            let text = chain_text(&e);
            if scheme == "https"
                && (text.contains("InvalidContentType") || text.contains("corrupt message"))
            {
                Ok(Probe::NotTls)
            } else if scheme == "https"
                && (text.contains("certificate") || text.contains("UnknownIssuer"))
            {
                Ok(Probe::BadCert(tls_detail(&text)))
            } else {
                Err(e)
            }
        }
    }
}

/// The useful tail of a rustls error chain (`invalid peer certificate: UnknownIssuer`).
fn tls_detail(text: &str) -> String {
    match text.find("invalid peer certificate") {
        Some(i) => text[i..].to_string(),
        None => text.to_string(),
    }
}

fn map_reqwest(host: &str, operation: &str, e: &reqwest::Error, ca_hint: &str) -> RegistryError {
    let text = chain_text(e);
    if e.is_timeout() {
        return RegistryError::Timeout {
            host: host.into(),
            operation: operation.into(),
        };
    }
    if text.contains("certificate") || text.contains("UnknownIssuer") {
        return RegistryError::Tls {
            host: host.into(),
            detail: tls_detail(&text),
            ca: ca_hint.to_string(),
        };
    }
    if e.is_connect() {
        return RegistryError::Connect {
            host: host.into(),
            detail: text,
        };
    }
    RegistryError::Protocol {
        host: host.into(),
        message: format!("{operation}: {text}"),
    }
}

/// Credentials travel in clear text only where the user accepted plain
/// HTTP: to a registry reached over it (named insecure, or loopback as
/// Docker allows), or to the token service of a registry named with
/// `--insecure-registry`. An HTTPS registry whose challenge names a
/// plain-HTTP realm would otherwise have the password sent there in clear.
fn clear_text_allowed(
    host: &str,
    scheme: &str,
    realm: &str,
    explicit_insecure: bool,
) -> Result<(), RegistryError> {
    let plain = realm
        .trim_start()
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("http://"));
    if plain && scheme == "https" && !explicit_insecure {
        return Err(RegistryError::Protocol {
            host: host.to_string(),
            message: format!(
                "its token service {realm} is plain HTTP; bunny will not send credentials there in clear text (pass --insecure-registry {host} if that is really wanted)"
            ),
        });
    }
    Ok(())
}

/// `Bearer realm="...",service="..."` -> (realm, service).
fn parse_bearer(header: &str) -> Option<(String, Option<String>)> {
    let rest = header
        .trim()
        .strip_prefix("Bearer ")
        .or_else(|| header.trim().strip_prefix("bearer "))?;
    let mut realm = None;
    let mut service = None;
    for part in split_params(rest) {
        if let Some((k, v)) = part.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "realm" => realm = Some(v),
                "service" => service = Some(v),
                _ => {}
            }
        }
    }
    realm.map(|r| (r, service))
}

/// Splits `a="x,y",b=z` on commas outside quotes.
fn split_params(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// Trades Docker's `identitytoken` (an OAuth2 refresh token) for an access
/// token; oci-client only knows passwords and ready-made bearer tokens.
async fn exchange_identity_token(
    http: &reqwest::Client,
    host: &str,
    challenge: Option<&str>,
    refresh_token: &str,
    scope: &str,
    ca_hint: &str,
) -> Result<String, RegistryError> {
    let Some((realm, service)) = challenge.and_then(parse_bearer) else {
        return Err(RegistryError::Protocol {
            host: host.into(),
            message: "the stored login is an identity token, but the registry does not offer token authentication; run `bunny login` again".into(),
        });
    };
    let mut form = vec![
        ("grant_type", "refresh_token".to_string()),
        ("refresh_token", refresh_token.to_string()),
        ("client_id", "bunny".to_string()),
        ("scope", scope.to_string()),
    ];
    if let Some(s) = service {
        form.push(("service", s));
    }
    let resp = http
        .post(&realm)
        .form(&form)
        .send()
        .await
        .map_err(|e| map_reqwest(host, "token exchange", &e, ca_hint))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(RegistryError::Unauthorized {
            host: host.into(),
            repository: scope.to_string(),
            detail: format!("; the token service refused the stored identity token ({status})"),
        });
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|_| RegistryError::Protocol {
            host: host.into(),
            message: "the token service answered with something other than JSON".into(),
        })?;
    v.get("access_token")
        .or_else(|| v.get("token"))
        .and_then(|t| t.as_str())
        .map(str::to_string)
        .ok_or_else(|| RegistryError::Protocol {
            host: host.into(),
            message: "the token service's answer has no access_token".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let (realm, service) = parse_bearer(
            r#"Bearer realm="https://auth.example/token",service="reg,istry",scope="x""#,
        )
        .unwrap();
        assert_eq!(realm, "https://auth.example/token");
        assert_eq!(service.as_deref(), Some("reg,istry"));
        assert!(parse_bearer(r#"Basic realm="x""#).is_none());
    }

    #[test]
    fn loopback_and_listed_hosts_may_use_http() {
        let mut opts = RegistryOptions::default();
        assert!(http_allowed("127.0.0.1:5000", &opts));
        assert!(http_allowed("localhost", &opts));
        assert!(!http_allowed("registry.example:5000", &opts));
        opts.insecure_registries
            .push("registry.example:5000".into());
        assert!(http_allowed("registry.example:5000", &opts));
        assert_eq!(host_name("[::1]:5000"), "[::1]");
    }
}
