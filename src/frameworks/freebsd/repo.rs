//! A client for FreeBSD's binary package repositories (what `pkg` reads):
//! the catalogue `packagesite.pkg` (older: `packagesite.txz`) is a tar
//! holding `packagesite.yaml`, one JSON object per line and package (`name`,
//! `origin`, `version`, `deps: {NAME: {origin, version}}`, `repopath` or
//! `path`, `sum` = sha256 of the `.pkg` file, `pkgsize`, ...). Packages are
//! fetched by `repopath` below the repository URL, checked against `sum` and
//! kept in bunny's content-addressed store.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::archive;
use super::FreeBsdError;
use crate::bunnyfile::PackageReq;
use crate::layers::store::{Store, StoreError};

/// Media type bunny records for downloaded packages (never pushed).
pub const PKG_MEDIA_TYPE: &str = "application/vnd.freebsd.pkg";
/// The catalogue files a repository may hold, newest form first.
pub const CATALOGUES: &[&str] = &["packagesite.pkg", "packagesite.txz"];

/// One package as the catalogue lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueEntry {
    pub name: String,
    pub origin: String,
    pub version: String,
    /// Below the repository URL, e.g. `All/iperf3-3.17.1.pkg`.
    pub path: String,
    /// sha256 of the `.pkg` file, hex.
    pub sum: String,
    pub size: Option<u64>,
    /// Names of the packages this one needs.
    pub deps: Vec<String>,
}

#[derive(Deserialize)]
struct RawEntry {
    name: String,
    #[serde(default)]
    origin: String,
    version: String,
    #[serde(default)]
    repopath: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    sum: Option<String>,
    #[serde(default)]
    pkgsize: Option<u64>,
    #[serde(default)]
    deps: BTreeMap<String, serde_json::Value>,
}

/// A repository's catalogue, by package name.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    pub url: String,
    pub packages: BTreeMap<String, CatalogueEntry>,
}

impl Catalogue {
    /// Parses `packagesite.yaml` (one JSON object per line; blank lines are
    /// skipped). A line that is not a package names its number.
    pub fn parse<R: BufRead>(url: &str, reader: R) -> Result<Catalogue, FreeBsdError> {
        let mut packages = BTreeMap::new();
        for (n, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| FreeBsdError::io(&format!("reading {url}"), e))?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| FreeBsdError::Catalogue {
                url: url.to_string(),
                line: n + 1,
                message,
            };
            let raw: RawEntry = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            let path = raw
                .repopath
                .or(raw.path)
                .ok_or_else(|| bad(format!("package `{}` has no repopath", raw.name)))?;
            if path.starts_with('/') || path.split('/').any(|c| c == "..") {
                return Err(bad(format!(
                    "package `{}` has the path `{path}`, which leaves the repository",
                    raw.name
                )));
            }
            let sum = raw
                .sum
                .as_deref()
                .map(|s| s.rsplit('$').next().unwrap_or(s).to_ascii_lowercase())
                .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| bad(format!("package `{}` has no sha256 `sum`", raw.name)))?;
            packages.insert(
                raw.name.clone(),
                CatalogueEntry {
                    name: raw.name,
                    origin: raw.origin,
                    version: raw.version,
                    path,
                    sum,
                    size: raw.pkgsize,
                    deps: raw.deps.into_keys().collect(),
                },
            );
        }
        Ok(Catalogue {
            url: url.to_string(),
            packages,
        })
    }

    /// Every package `wanted` needs, dependencies included, sorted by name.
    /// A wanted version that the catalogue does not have, or a dependency it
    /// does not list, is an error naming the package (and who needs it).
    pub fn resolve(&self, wanted: &[PackageReq]) -> Result<Vec<&CatalogueEntry>, FreeBsdError> {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut queue: VecDeque<(&str, Option<&str>)> = VecDeque::new();
        for req in wanted {
            let entry =
                self.packages
                    .get(&req.name)
                    .ok_or_else(|| FreeBsdError::MissingPackage {
                        name: req.name.clone(),
                        needed_by: None,
                        url: self.url.clone(),
                    })?;
            if let Some(v) = req.version.as_deref().filter(|v| *v != entry.version) {
                return Err(FreeBsdError::Version {
                    name: req.name.clone(),
                    wanted: v.to_string(),
                    available: entry.version.clone(),
                    url: self.url.clone(),
                });
            }
            queue.push_back((&entry.name, None));
        }
        while let Some((name, needed_by)) = queue.pop_front() {
            let entry = self
                .packages
                .get(name)
                .ok_or_else(|| FreeBsdError::MissingPackage {
                    name: name.to_string(),
                    needed_by: needed_by.map(str::to_string),
                    url: self.url.clone(),
                })?;
            if !seen.insert(&entry.name) {
                continue;
            }
            for dep in &entry.deps {
                queue.push_back((dep, Some(&entry.name)));
            }
        }
        Ok(seen
            .into_iter()
            .filter_map(|n| self.packages.get(n))
            .collect())
    }
}

/// Fetches repository files over http(s) or from `file://` URLs.
pub struct Fetcher {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Fetcher {
    pub fn new() -> Result<Fetcher, FreeBsdError> {
        // reqwest is built without a default TLS crypto backend; ring is
        // installed process-wide (a second install is harmless).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| FreeBsdError::io("starting the HTTP client", e))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("bunny/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(TIMEOUT)
            .read_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| FreeBsdError::Http {
                url: String::new(),
                message: e.to_string(),
            })?;
        Ok(Fetcher { rt, http })
    }

    /// Streams `url` into `out`; `Ok(false)` when the server has no such
    /// file. Never more than `limit` bytes: an announced Content-Length
    /// over it is refused unread, a longer body is cut off before the byte
    /// past it is written. A mirror that answers slowly gets TIMEOUT, then
    /// must keep sending at MIN_BYTES_PER_SEC: only received bytes buy time.
    pub fn get(&self, url: &str, out: &mut dyn Write, limit: u64) -> Result<bool, FreeBsdError> {
        let too_long = |n: u64| FreeBsdError::Http {
            url: url.to_string(),
            message: format!("more than the {limit} bytes expected (at least {n}); refused"),
        };
        if let Some(path) = url.strip_prefix("file://") {
            return match File::open(path) {
                Ok(f) => {
                    let n = io::copy(&mut f.take(limit.saturating_add(1)), out)
                        .map_err(|e| FreeBsdError::io(&format!("reading {url}"), e))?;
                    if n > limit {
                        return Err(too_long(n));
                    }
                    Ok(true)
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(FreeBsdError::io(&format!("reading {url}"), e)),
            };
        }
        let http_err = |e: reqwest::Error| FreeBsdError::Http {
            url: url.to_string(),
            message: e.to_string(),
        };
        self.rt.block_on(async {
            let start = tokio::time::Instant::now();
            let stalled = |got: u64| FreeBsdError::Http {
                url: url.to_string(),
                message: format!(
                    "timed out: {got} bytes after {:?}, slower than {} KiB/s",
                    start.elapsed(),
                    MIN_BYTES_PER_SEC / 1024
                ),
            };
            let mut resp = tokio::time::timeout(TIMEOUT, self.http.get(url).send())
                .await
                .map_err(|_| stalled(0))?
                .map_err(http_err)?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok(false);
            }
            if !resp.status().is_success() {
                return Err(FreeBsdError::Http {
                    url: url.to_string(),
                    message: format!("the server answered {}", resp.status()),
                });
            }
            if let Some(n) = resp.content_length().filter(|n| *n > limit) {
                return Err(too_long(n));
            }
            let mut got = 0u64;
            loop {
                let due = start
                    + TIMEOUT
                    + Duration::from_secs_f64(got as f64 / MIN_BYTES_PER_SEC as f64);
                let chunk = tokio::time::timeout_at(due, resp.chunk())
                    .await
                    .map_err(|_| stalled(got))?
                    .map_err(http_err)?;
                let Some(chunk) = chunk else { break };
                if got + chunk.len() as u64 > limit {
                    return Err(too_long(got + chunk.len() as u64));
                }
                out.write_all(&chunk)
                    .map_err(|e| FreeBsdError::io(&format!("saving {url}"), e))?;
                got += chunk.len() as u64;
            }
            Ok(true)
        })
    }
}

/// How long a mirror may stay silent, and the rate it must keep after that.
const TIMEOUT: Duration = Duration::from_secs(60);
const MIN_BYTES_PER_SEC: u64 = 64 * 1024;
/// A catalogue (packagesite.pkg) is some MiB; anything near this is not one.
const MAX_CATALOGUE_BYTES: u64 = 256 << 20;

fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Downloads the repository's catalogue into the store and parses it.
pub fn fetch_catalogue(
    fetcher: &Fetcher,
    store: &Store,
    url: &str,
) -> Result<Catalogue, FreeBsdError> {
    for name in CATALOGUES {
        let file_url = join_url(url, name);
        let mut w = store
            .blob_writer()
            .map_err(FreeBsdError::store(&file_url))?;
        if !fetcher.get(&file_url, &mut w, MAX_CATALOGUE_BYTES)? {
            continue;
        }
        let desc = w
            .commit("application/vnd.freebsd.packagesite")
            .map_err(FreeBsdError::store(&file_url))?;
        let blob = store
            .open_blob(desc.digest().as_ref())
            .map_err(FreeBsdError::store(&file_url))?;
        let yaml = archive::read_member(blob, "packagesite.yaml", &file_url)?.ok_or_else(|| {
            FreeBsdError::Catalogue {
                url: file_url.clone(),
                line: 0,
                message: "the archive holds no packagesite.yaml".into(),
            }
        })?;
        return Catalogue::parse(&file_url, io::Cursor::new(yaml));
    }
    Err(FreeBsdError::Http {
        url: url.to_string(),
        message: format!(
            "the repository has no catalogue ({}); check the url and the ABI",
            CATALOGUES.join(", ")
        ),
    })
}

/// The package's file in the store, downloaded unless the store already
/// has a blob with the catalogue's sha256. A download whose sha256 differs
/// from the catalogue's is refused, naming the package.
pub fn fetch_package(
    fetcher: &Fetcher,
    store: &Store,
    url: &str,
    entry: &CatalogueEntry,
) -> Result<PathBuf, FreeBsdError> {
    let digest = format!("sha256:{}", entry.sum);
    let file_url = join_url(url, &entry.path);
    if !store.has_blob(&digest) {
        let mut w = store
            .blob_writer()
            .map_err(FreeBsdError::store(&file_url))?;
        // The catalogue's size bounds the download; without one, a
        // package may be as large as a catalogue.
        let limit = entry.size.unwrap_or(MAX_CATALOGUE_BYTES);
        if !fetcher.get(&file_url, &mut w, limit)? {
            return Err(FreeBsdError::Http {
                url: file_url,
                message: format!(
                    "package `{}` is in the catalogue but not on the server",
                    entry.name
                ),
            });
        }
        // Checked before the store takes it: a corrupted package never
        // enters the store, not even under its own digest.
        w.commit_verified(PKG_MEDIA_TYPE, &digest, entry.size, &file_url)
            .map_err(|e| match e {
                StoreError::Mismatch { actual, .. } => FreeBsdError::Checksum {
                    name: entry.name.clone(),
                    version: entry.version.clone(),
                    url: file_url.clone(),
                    expected: entry.sum.clone(),
                    actual,
                },
                other => FreeBsdError::store(&file_url)(other),
            })?;
    }
    store
        .blob_path(&digest)
        .map_err(FreeBsdError::store(&file_url))
}
