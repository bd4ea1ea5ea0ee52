//! Registry credentials the way Docker keeps them: `config.json` in
//! `$DOCKER_CONFIG` (default `~/.docker`) with `auths` (base64
//! `user:password` or an `identitytoken`), `credHelpers` per host and a
//! default `credsStore`, the latter two being `docker-credential-NAME`
//! programs spoken to over stdin/stdout.
//!
//! Secrets live only in [`Credentials`], whose `Debug` is redacted; no error
//! built here quotes a secret (helper output is never echoed back).

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::error::{io_err, RegistryError};

/// The key Docker uses for Docker Hub in `auths`.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// What authenticates a user: a password, or an OAuth2 refresh token that a
/// registry handed out at login (Docker's `identitytoken`).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Password(String),
    IdentityToken(String),
}

/// A user name and its secret. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub secret: Secret,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.secret {
            Secret::Password(_) => "password",
            Secret::IdentityToken(_) => "identity token",
        };
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &format_args!("<redacted {kind}>"))
            .finish()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where `login` put the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredIn {
    ConfigFile(PathBuf),
    Helper(String),
}

impl fmt::Display for StoredIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoredIn::ConfigFile(p) => write!(f, "{}", p.display()),
            StoredIn::Helper(h) => write!(f, "credential helper docker-credential-{h}"),
        }
    }
}

/// `dir` if given, else `$DOCKER_CONFIG`, else `~/.docker`.
pub fn docker_config_dir(dir: Option<&Path>) -> PathBuf {
    if let Some(d) = dir {
        return d.to_path_buf();
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    home.join(".docker")
}

/// The `auths` key Docker uses for a registry host.
pub fn auth_key(host: &str) -> String {
    if is_docker_hub(host) {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        host.to_string()
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// `https://host/v1/` and `host` both name `host`, as Docker reads them.
fn normalize_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    if is_docker_hub(k) {
        "docker.io".to_string()
    } else {
        k.to_string()
    }
}

fn read_config(path: &Path) -> Result<Map<String, Value>, RegistryError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(RegistryError::DockerConfig {
            path: path.to_path_buf(),
            message: "the top level is not a JSON object".into(),
        }),
        Err(e) => Err(RegistryError::DockerConfig {
            path: path.to_path_buf(),
            message: format!("not valid JSON ({e})"),
        }),
    }
}

fn helper_for(config: &Map<String, Value>, host: &str) -> Option<String> {
    let wanted = normalize_key(host);
    if let Some(Value::Object(helpers)) = config.get("credHelpers") {
        for (k, v) in helpers {
            if normalize_key(k) == wanted {
                if let Some(h) = v.as_str().filter(|h| !h.is_empty()) {
                    return Some(h.to_string());
                }
            }
        }
    }
    config
        .get("credsStore")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

/// Finds credentials for `host` (`host[:port]`), or `None` for anonymous access.
pub fn lookup(config_dir: &Path, host: &str) -> Result<Option<Credentials>, RegistryError> {
    let path = config_dir.join("config.json");
    let config = read_config(&path)?;
    if let Some(helper) = helper_for(&config, host) {
        return helper_get(&helper, host);
    }
    let wanted = normalize_key(host);
    let Some(Value::Object(auths)) = config.get("auths") else {
        return Ok(None);
    };
    // Exact key first, then any spelling of the same host (`https://host/v2/`).
    let entry = auths.get(&auth_key(host)).or_else(|| {
        auths
            .iter()
            .find(|(k, _)| normalize_key(k) == wanted)
            .map(|(_, v)| v)
    });
    let Some(Value::Object(entry)) = entry else {
        return Ok(None);
    };
    let bad = |message: &str| RegistryError::DockerConfig {
        path: path.clone(),
        message: format!("auths entry for {host}: {message}"),
    };
    if let Some(token) = entry
        .get("identitytoken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        let username = entry
            .get("username")
            .and_then(Value::as_str)
            .unwrap_or("<token>")
            .to_string();
        return Ok(Some(Credentials {
            username,
            secret: Secret::IdentityToken(token.to_string()),
        }));
    }
    if let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("`auth` is not valid base64"))?;
        let text = String::from_utf8(decoded).map_err(|_| bad("`auth` is not UTF-8"))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| bad("`auth` does not decode to `user:password`"))?;
        return Ok(Some(Credentials {
            username: user.to_string(),
            secret: Secret::Password(pass.to_string()),
        }));
    }
    if let (Some(u), Some(p)) = (
        entry.get("username").and_then(Value::as_str),
        entry.get("password").and_then(Value::as_str),
    ) {
        return Ok(Some(Credentials {
            username: u.to_string(),
            secret: Secret::Password(p.to_string()),
        }));
    }
    Ok(None)
}

fn run_helper(
    helper: &str,
    action: &'static str,
    host: &str,
    input: &[u8],
) -> Result<(bool, Vec<u8>, String), RegistryError> {
    let program = format!("docker-credential-{helper}");
    let fail = |message: String| RegistryError::CredentialHelper {
        helper: helper.to_string(),
        action,
        host: host.to_string(),
        message,
    };
    let verb = match action {
        "read" => "get",
        "store" => "store",
        _ => "erase",
    };
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(format!(
                "cannot run `{program}` ({e}); is it installed and in PATH?"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| fail(format!("cannot write to `{program}`: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("`{program}` did not finish: {e}")))?;
    // Helpers report errors on stdout; that text never contains the secret
    // of a failed request, but it is shortened and kept to one line anyway.
    let mut msg = String::from_utf8_lossy(if out.stderr.is_empty() {
        &out.stdout
    } else {
        &out.stderr
    })
    .lines()
    .next()
    .unwrap_or("")
    .trim()
    .to_string();
    msg.truncate(200);
    Ok((out.status.success(), out.stdout, msg))
}

fn helper_server_url(host: &str) -> String {
    if is_docker_hub(host) {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        host.to_string()
    }
}

fn helper_get(helper: &str, host: &str) -> Result<Option<Credentials>, RegistryError> {
    let (ok, stdout, msg) = run_helper(helper, "read", host, helper_server_url(host).as_bytes())?;
    if !ok {
        if msg.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(RegistryError::CredentialHelper {
            helper: helper.to_string(),
            action: "read",
            host: host.to_string(),
            message: format!("it exited with an error: {msg}"),
        });
    }
    let v: Value =
        serde_json::from_slice(&stdout).map_err(|_| RegistryError::CredentialHelper {
            helper: helper.to_string(),
            action: "read",
            host: host.to_string(),
            message: "its output is not the expected JSON object".into(),
        })?;
    let user = v.get("Username").and_then(Value::as_str).unwrap_or("");
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or("");
    if secret.is_empty() {
        return Ok(None);
    }
    let secret = if user == "<token>" {
        Secret::IdentityToken(secret.to_string())
    } else {
        Secret::Password(secret.to_string())
    };
    Ok(Some(Credentials {
        username: user.to_string(),
        secret,
    }))
}

fn write_config(path: &Path, config: &Map<String, Value>) -> Result<(), RegistryError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(config.clone())).map_err(|e| {
        RegistryError::DockerConfig {
            path: path.to_path_buf(),
            message: format!("cannot serialise: {e}"),
        }
    })?;
    bytes.push(b'\n');
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(io_err("create temp file in", dir))?;
    // Like Docker: the file holds secrets, so only the owner reads it.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io_err("set permissions of", tmp.path()))?;
    tmp.write_all(&bytes).map_err(io_err("write", tmp.path()))?;
    tmp.as_file().sync_all().map_err(io_err("sync", path))?;
    tmp.persist(path).map_err(|e| RegistryError::Io {
        action: "replace",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Saves verified credentials: into the credential helper if one is
/// configured for `host`, else as base64 `user:password` under `auths`.
pub fn store(
    config_dir: &Path,
    host: &str,
    username: &str,
    password: &str,
) -> Result<StoredIn, RegistryError> {
    let path = config_dir.join("config.json");
    let mut config = read_config(&path)?;
    let key = auth_key(host);
    if let Some(helper) = helper_for(&config, host) {
        let input = serde_json::json!({
            "ServerURL": helper_server_url(host),
            "Username": username,
            "Secret": password,
        })
        .to_string();
        let (ok, _, msg) = run_helper(&helper, "store", host, input.as_bytes())?;
        if !ok {
            return Err(RegistryError::CredentialHelper {
                helper,
                action: "store",
                host: host.to_string(),
                message: format!("it exited with an error: {msg}"),
            });
        }
        // Docker leaves an empty marker in `auths` so tools list the login.
        let auths = config
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(a) = auths {
            a.insert(key, Value::Object(Map::new()));
        }
        write_config(&path, &config)?;
        return Ok(StoredIn::Helper(helper));
    }
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    if let Value::Object(a) = auths {
        let wanted = normalize_key(host);
        a.retain(|k, _| normalize_key(k) != wanted);
        a.insert(key, serde_json::json!({ "auth": encoded }));
    }
    write_config(&path, &config)?;
    Ok(StoredIn::ConfigFile(path))
}

/// Forgets the credentials for `host`; `false` if there were none.
pub fn remove(config_dir: &Path, host: &str) -> Result<bool, RegistryError> {
    let path = config_dir.join("config.json");
    let mut config = read_config(&path)?;
    let mut removed = false;
    if let Some(helper) = helper_for(&config, host) {
        let (ok, _, msg) = run_helper(&helper, "erase", host, helper_server_url(host).as_bytes())?;
        if ok {
            removed = true;
        } else if !msg.to_ascii_lowercase().contains("not found") {
            return Err(RegistryError::CredentialHelper {
                helper,
                action: "erase",
                host: host.to_string(),
                message: format!("it exited with an error: {msg}"),
            });
        }
    }
    if let Some(Value::Object(a)) = config.get_mut("auths") {
        let wanted = normalize_key(host);
        let before = a.len();
        a.retain(|k, _| normalize_key(k) != wanted);
        if a.len() != before {
            removed = true;
            write_config(&path, &config)?;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let c = Credentials {
            username: "u".into(),
            secret: Secret::Password("hunter2".into()),
        };
        let s = format!("{c:?} {:?}", c.secret);
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("\"u\""), "{s}");
    }

    #[test]
    fn store_lookup_remove_round_trip_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"https://other.example/v1/":{"auth":"YTpi"}},"psFormat":"x"}"#,
        )
        .unwrap();
        store(dir.path(), "127.0.0.1:5000", "user", "p:ss").unwrap();
        let c = lookup(dir.path(), "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(c.username, "user");
        assert_eq!(c.secret, Secret::Password("p:ss".into()));
        // `https://HOST/...` keys name the same host, as Docker reads them.
        let o = lookup(dir.path(), "other.example").unwrap().unwrap();
        assert_eq!(
            (o.username.as_str(), o.secret),
            ("a", Secret::Password("b".into()))
        );
        let text = fs::read_to_string(dir.path().join("config.json")).unwrap();
        assert!(text.contains("psFormat"), "other keys are kept: {text}");
        let mode = fs::metadata(dir.path().join("config.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(remove(dir.path(), "127.0.0.1:5000").unwrap());
        assert!(!remove(dir.path(), "127.0.0.1:5000").unwrap());
        assert!(lookup(dir.path(), "127.0.0.1:5000").unwrap().is_none());
        assert_eq!(auth_key("docker.io"), DOCKER_HUB_AUTH_KEY);
    }

    #[test]
    fn identity_token_and_bad_entries() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"r.example":{"identitytoken":"tok"},"bad.example":{"auth":"!!"}}}"#,
        )
        .unwrap();
        let c = lookup(dir.path(), "r.example").unwrap().unwrap();
        assert_eq!(c.secret, Secret::IdentityToken("tok".into()));
        let err = lookup(dir.path(), "bad.example").unwrap_err().to_string();
        assert!(err.contains("not valid base64"), "{err}");
        assert!(lookup(dir.path(), "none.example").unwrap().is_none());
    }
}
