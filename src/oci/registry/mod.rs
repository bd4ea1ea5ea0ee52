//! bunny as a registry client: push images from the local store, pull them
//! into it, log in and out.
//!
//! The HTTP side is oci-client (blob HEAD, cross-repository mount, streamed
//! monolithic upload, streamed download, token auth, extra CAs); its async
//! calls run on a small current-thread runtime so this API stays blocking.
//! Blobs are streamed from and into the store's files, never held whole.
//! Plain reqwest is used only where oci-client has no call: the `/v2/`
//! probe that picks HTTPS or HTTP and reports TLS problems precisely, login
//! verification, and the identity-token exchange.

pub mod auth;
pub mod error;
mod session;
mod sources;

use std::collections::BTreeSet;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::errors::OciDistributionError;
use oci_client::Reference;
use oci_spec::image::{Descriptor, ImageManifest, PlatformBuilder};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

pub use auth::{Credentials, Secret, StoredIn};
pub use error::RegistryError;
pub use session::DEFAULT_CERTS_DIR;

use crate::layers::store::{canonical_json, descriptor, Store, REF_NAME};
use crate::platform::Arch;
use session::Session;
use sources::Sources;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ACCEPTED_MANIFESTS: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];
/// Manifests are small documents; anything bigger is refused rather than
/// held in memory.
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
const CHUNK: usize = 256 * 1024;

/// How a blob was dealt with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Sent to the registry.
    Uploaded,
    /// Fetched into the store.
    Downloaded,
    /// The registry already had it (push).
    Exists,
    /// The registry linked it from another repository (push).
    Mounted,
    /// The store already had it (pull).
    Cached,
}

impl fmt::Display for BlobOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlobOutcome::Uploaded => "pushed",
            BlobOutcome::Downloaded => "pulled",
            BlobOutcome::Exists => "already exists",
            BlobOutcome::Mounted => "mounted from another repository",
            BlobOutcome::Cached => "already in the store",
        })
    }
}

/// Transfer events, for progress bars or plain log lines.
pub trait TransferProgress: Send + Sync {
    /// `what` is `config`, `layer`, `manifest` or `index`.
    fn blob_started(&self, digest: &str, size: u64, what: &str);
    /// `bytes` is the total transferred so far for this blob.
    fn blob_progress(&self, digest: &str, bytes: u64);
    fn blob_done(&self, digest: &str, outcome: BlobOutcome);
    fn message(&self, msg: &str);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl TransferProgress for NoProgress {
    fn blob_started(&self, _: &str, _: u64, _: &str) {}
    fn blob_progress(&self, _: &str, _: u64) {}
    fn blob_done(&self, _: &str, _: BlobOutcome) {}
    fn message(&self, _: &str) {}
}

/// Settings for talking to registries, mirroring Docker's.
#[derive(Clone)]
pub struct RegistryOptions {
    /// `host[:port]` allowed over plain HTTP (and, over HTTPS, with an
    /// unverified certificate, as Docker does). Loopback hosts may always
    /// use plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Root of Docker's `certs.d` layout (`HOST[:PORT]/ca.crt`); default
    /// [`DEFAULT_CERTS_DIR`].
    pub certs_dir: Option<PathBuf>,
    /// Directory holding `config.json`; default `$DOCKER_CONFIG` or `~/.docker`.
    pub docker_config: Option<PathBuf>,
    pub progress: Arc<dyn TransferProgress>,
    /// Connect and read timeout of each request.
    pub timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_registries: Vec::new(),
            certs_dir: None,
            docker_config: None,
            progress: Arc::new(NoProgress),
            timeout: Duration::from_secs(60),
        }
    }
}

impl fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("insecure_registries", &self.insecure_registries)
            .field("certs_dir", &self.certs_dir)
            .field("docker_config", &self.docker_config)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The platform to pick from an image index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformWanted {
    pub arch: Arch,
    /// `None` accepts any OS (preferring `linux`); Unikraft images use the
    /// monitor's name as their OS.
    pub os: Option<String>,
}

impl PlatformWanted {
    pub fn host() -> PlatformWanted {
        PlatformWanted {
            arch: Arch::host(),
            os: None,
        }
    }

    /// `os/arch` (`linux/amd64`) or just `arch`.
    pub fn parse(s: &str) -> Option<PlatformWanted> {
        let (os, arch) = match s.split_once('/') {
            Some((os, arch)) => (Some(os.to_string()), arch),
            None => (None, s),
        };
        let arch = arch.split('/').next().unwrap_or(arch);
        let arch = match arch {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        };
        Some(PlatformWanted {
            arch: Arch::parse(arch)?,
            os: os.filter(|o| !o.is_empty()),
        })
    }
}

impl fmt::Display for PlatformWanted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.os {
            Some(os) => write!(f, "{os}/{}", self.arch.as_str()),
            None => write!(f, "*/{}", self.arch.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PushResult {
    /// The full destination, `host/repo:tag`.
    pub name: String,
    pub digest: String,
    pub descriptor: Descriptor,
    /// Blobs sent (mounted ones included: the registry had to link them).
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub skipped: usize,
}

#[derive(Debug, Clone)]
pub struct PullResult {
    /// The name the image has in the store now.
    pub name: String,
    pub manifest: Descriptor,
    pub downloaded: usize,
    pub cached: usize,
}

/// Parses `[registry/]repository[:tag][@digest]` by docker's rules.
/// Written here rather than through `Reference::from_str`: that parser
/// compiles a large regex on first use, which was most of the CPU time of a
/// push that has nothing to upload.
fn parse_ref(reference: &str) -> Result<Reference, RegistryError> {
    let bad = |reason: &str| RegistryError::InvalidReference {
        reference: reference.to_string(),
        reason: reason.to_string(),
    };
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if let Some(d) = digest {
        let hex = d
            .strip_prefix("sha256:")
            .ok_or_else(|| bad("digests are sha256:<64 hex digits>"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad("digests are sha256:<64 lower-case hex digits>"));
        }
    }
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], Some(&name[slash + i + 1..])),
        None => (name, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && !t.starts_with(['.', '-'])
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(bad(
                "tags are up to 128 of [A-Za-z0-9_.-], not starting with . or -",
            ));
        }
    }
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ if name.contains('/') => ("docker.io".to_string(), name.to_string()),
        _ => ("docker.io".to_string(), format!("library/{name}")),
    };
    if registry.is_empty() || repository.is_empty() {
        return Err(bad("a reference needs a repository name"));
    }
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(bad("repository names must be lower case"));
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
    };
    if !repository.split('/').all(component_ok) {
        return Err(bad(
            "repository path components are [a-z0-9] separated by `.`, `_` or `-`",
        ));
    }
    Ok(match (tag, digest) {
        (Some(t), Some(d)) => {
            Reference::with_tag_and_digest(registry, repository, t.to_string(), d.to_string())
        }
        (None, Some(d)) => Reference::with_digest(registry, repository, d.to_string()),
        (t, None) => Reference::with_tag(registry, repository, t.unwrap_or("latest").to_string()),
    })
}

/// The name a pulled image gets in the store: what the user typed, with
/// `:latest` added when neither a tag nor a digest was given.
fn store_name(reference: &str, r: &Reference) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if r.digest().is_some() || last.contains(':') {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    }
}

fn media_type_of(bytes: &[u8], fallback: Option<&str>) -> String {
    let v: Option<Value> = serde_json::from_slice(bytes).ok();
    if let Some(mt) = v
        .as_ref()
        .and_then(|v| v.get("mediaType"))
        .and_then(Value::as_str)
    {
        return mt.to_string();
    }
    if let Some(f) = fallback {
        return f.to_string();
    }
    if v.as_ref().and_then(|v| v.get("manifests")).is_some() {
        OCI_INDEX.to_string()
    } else {
        OCI_MANIFEST.to_string()
    }
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

fn spec_error(host: &str, what: &str, e: impl fmt::Display) -> RegistryError {
    RegistryError::Protocol {
        host: host.to_string(),
        message: format!("{what} is not a valid OCI document: {e}"),
    }
}

/// The store descriptor as it goes into metadata and indexes: no store-only
/// name annotation.
fn public_descriptor(desc: &Descriptor) -> Descriptor {
    let mut d = desc.clone();
    if let Some(mut a) = d.annotations().clone() {
        a.remove(REF_NAME);
        d.set_annotations(if a.is_empty() { None } else { Some(a) });
    }
    d
}

struct Pusher<'a> {
    store: &'a Store,
    session: &'a Session,
    dest: Reference,
    opts: &'a RegistryOptions,
    sources: Sources,
    uploaded: usize,
    skipped: usize,
    pushed: BTreeSet<String>,
}

impl<'a> Pusher<'a> {
    fn new(
        store: &'a Store,
        session: &'a Session,
        dest: Reference,
        opts: &'a RegistryOptions,
    ) -> Pusher<'a> {
        Pusher {
            store,
            session,
            dest,
            opts,
            sources: Sources::new(store.root()),
            uploaded: 0,
            skipped: 0,
            pushed: BTreeSet::new(),
        }
    }

    fn err(&self, e: OciDistributionError, operation: &str, missing: &str) -> RegistryError {
        self.session
            .map_err(e, self.dest.repository(), operation, missing)
    }

    /// Pushes every blob the manifest (or index) refers to, children first.
    /// Returns the manifest bytes and media type; the manifest itself is
    /// not pushed here.
    fn push_tree(&mut self, desc: &Descriptor) -> Result<(Vec<u8>, String), RegistryError> {
        let digest = desc.digest().to_string();
        let bytes = self.store.read_blob(&digest)?;
        let media_type = media_type_of(&bytes, Some(desc.media_type().to_string().as_str()));
        if is_index(&media_type) {
            let index: oci_spec::image::ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| spec_error(&self.session.host, &format!("index {digest}"), e))?;
            for child in index.manifests() {
                let (child_bytes, child_type) = self.push_tree(child)?;
                self.push_manifest(child.digest().as_ref(), child_bytes, &child_type, None)?;
            }
        } else {
            let manifest: ImageManifest = serde_json::from_slice(&bytes)
                .map_err(|e| spec_error(&self.session.host, &format!("manifest {digest}"), e))?;
            let config = manifest.config();
            let mut blobs = vec![(config.digest().to_string(), config.size(), "config")];
            for layer in manifest.layers() {
                blobs.push((layer.digest().to_string(), layer.size(), "layer"));
            }
            self.push_blobs(blobs)?;
        }
        Ok((bytes, media_type))
    }

    /// Pushes a manifest's blobs, several at a time: each is a HEAD, maybe a
    /// mount, maybe an upload, and the round trips overlap (as skopeo's do).
    fn push_blobs(&mut self, blobs: Vec<(String, u64, &str)>) -> Result<(), RegistryError> {
        use futures_util::stream::{self, StreamExt};
        let todo: Vec<(String, u64, &str)> = blobs
            .into_iter()
            .filter(|(d, _, _)| self.pushed.insert(d.clone()))
            .collect();
        let progress = self.opts.progress.clone();
        for (digest, size, what) in &todo {
            progress.blob_started(digest, *size, what);
        }
        let this = &*self;
        let results: Vec<(String, Result<BlobOutcome, RegistryError>)> = self.session.block_on(
            stream::iter(todo.iter().map(|(digest, size, _)| async move {
                (digest.clone(), this.push_blob_inner(digest, *size).await)
            }))
            .buffer_unordered(PUSH_CONCURRENCY)
            .collect(),
        );
        for (digest, outcome) in results {
            let outcome = outcome?;
            match outcome {
                BlobOutcome::Exists => self.skipped += 1,
                _ => self.uploaded += 1,
            }
            progress.blob_done(&digest, outcome);
        }
        Ok(())
    }

    async fn push_blob_inner(&self, digest: &str, size: u64) -> Result<BlobOutcome, RegistryError> {
        let session = self.session;
        let missing = format!("repository `{}`", self.dest.repository());
        let exists = session
            .client
            .blob_exists(&self.dest, digest)
            .await
            .map_err(|e| self.err(e, &format!("checking blob {digest}"), &missing))?;
        if exists {
            return Ok(BlobOutcome::Exists);
        }
        for from in self
            .sources
            .candidates(digest, &session.host, self.dest.repository())
        {
            let source = Reference::with_digest(
                self.dest.registry().to_string(),
                from.clone(),
                digest.to_string(),
            );
            // A refused mount (the registry may answer 202 and open an
            // upload instead, or the source may be gone) just means upload.
            if session
                .client
                .mount_blob(&self.dest, &source, digest)
                .await
                .is_ok()
            {
                return Ok(BlobOutcome::Mounted);
            }
        }
        let path = self.store.blob_path(digest)?;
        let file = std::fs::File::open(&path).map_err(error::io_err("open blob", &path))?;
        let stream = file_stream(file, digest.to_string(), self.opts.progress.clone());
        session
            .client
            .push_blob_stream(&self.dest, stream, digest, Some(size))
            .await
            .map_err(|e| self.err(e, &format!("uploading blob {digest}"), &missing))?;
        Ok(BlobOutcome::Uploaded)
    }

    /// PUTs a manifest under `tag`, or under its digest when `tag` is `None`.
    fn push_manifest(
        &mut self,
        digest: &str,
        bytes: Vec<u8>,
        media_type: &str,
        tag: Option<&str>,
    ) -> Result<(), RegistryError> {
        let target = match tag {
            Some(t) => Reference::with_tag(
                self.dest.registry().to_string(),
                self.dest.repository().to_string(),
                t.to_string(),
            ),
            None => self.dest.clone_with_digest(digest.to_string()),
        };
        let what = if is_index(media_type) {
            "index"
        } else {
            "manifest"
        };
        let size = bytes.len() as u64;
        self.opts.progress.blob_started(digest, size, what);
        let content_type = reqwest::header::HeaderValue::from_str(media_type).map_err(|_| {
            RegistryError::Protocol {
                host: self.session.host.clone(),
                message: format!("media type `{media_type}` cannot be sent as a header"),
            }
        })?;
        let session = self.session;
        session
            .block_on(
                session
                    .client
                    .push_manifest_raw(&target, bytes, content_type),
            )
            .map_err(|e| {
                self.err(
                    e,
                    &format!("pushing {what} {digest}"),
                    &format!("repository `{}`", self.dest.repository()),
                )
            })?;
        self.opts.progress.blob_progress(digest, size);
        self.opts.progress.blob_done(digest, BlobOutcome::Uploaded);
        self.pushed.insert(digest.to_string());
        Ok(())
    }

    fn record(&self) {
        let digests: Vec<String> = self.pushed.iter().cloned().collect();
        // The record only enables later mounts; failing to write it must
        // not fail a push that succeeded.
        if let Err(e) = self
            .sources
            .record(&digests, &self.session.host, self.dest.repository())
        {
            self.opts
                .progress
                .message(&format!("note: could not record blob locations: {e}"));
        }
    }
}

/// The tag to push to: the destination's tag (`latest` if none). A
/// destination by digest is pushed by digest.
fn dest_tag(dest: &Reference) -> Option<String> {
    if dest.digest().is_some() && dest.tag().is_none() {
        None
    } else {
        Some(dest.tag().unwrap_or("latest").to_string())
    }
}

/// Uploads the image `local_name` from the store to `destination`
/// (`host/repo[:tag]`): blobs the registry lacks (checked with HEAD, mounted
/// from another repository of the same registry when possible), the
/// manifest last, so the tag never names an incomplete image.
/// The slowest download a pull accepts, on top of the request timeout.
const MIN_BYTES_PER_SEC: u64 = 64 * 1024;

/// Blobs in flight at once during a push.
const PUSH_CONCURRENCY: usize = 4;

pub fn push(
    store: &Store,
    local_name: &str,
    destination: &str,
    opts: &RegistryOptions,
) -> Result<PushResult, RegistryError> {
    let dest = parse_ref(destination)?;
    let desc = store.resolve(local_name)?;
    // An image built with attestations goes out as the index that carries
    // them (as buildx pushes it), the image manifest unchanged inside.
    let desc = crate::oci::attest::attached(store, desc.digest().as_ref()).unwrap_or(desc);
    let session = Session::connect(dest.resolve_registry(), dest.repository(), true, opts, true)?;
    let mut p = Pusher::new(store, &session, dest.clone(), opts);
    let digest = desc.digest().to_string();
    let (bytes, media_type) = p.push_tree(&desc)?;
    let tag = dest_tag(&dest);
    p.push_manifest(&digest, bytes, &media_type, tag.as_deref())?;
    p.record();
    opts.progress
        .message(&format!("pushed {} as {digest}", dest.whole()));
    Ok(PushResult {
        name: dest.whole(),
        digest,
        descriptor: public_descriptor(&desc),
        uploaded: p.uploaded,
        skipped: p.skipped,
    })
}

/// The platform an image manifest is for, from its config.
fn platform_of(store: &Store, manifest: &Descriptor) -> Result<(String, String), RegistryError> {
    if let Some(p) = manifest.platform() {
        return Ok((p.os().to_string(), p.architecture().to_string()));
    }
    let bytes = store.read_blob(manifest.digest().as_ref())?;
    let m: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| {
        spec_error(
            "(local store)",
            &format!("manifest {}", manifest.digest()),
            e,
        )
    })?;
    let (os, arch) = config_platform(store, m.config().digest().as_ref(), "(local store)")?;
    let unknown = |v: Option<String>| v.unwrap_or_else(|| "unknown".into());
    Ok((unknown(os), unknown(arch)))
}

/// `os` and `architecture` of an image config in the store; `host` names
/// where it came from in errors.
fn config_platform(
    store: &Store,
    config_digest: &str,
    host: &str,
) -> Result<(Option<String>, Option<String>), RegistryError> {
    let cfg: Value = serde_json::from_slice(&store.read_blob(config_digest)?)
        .map_err(|e| spec_error(host, "image config", e))?;
    let field = |k: &str| cfg.get(k).and_then(Value::as_str).map(str::to_string);
    Ok((field("os"), field("architecture")))
}

/// Pushes several single-platform images from the store as one OCI image
/// index under `destination`. The index is also kept in the store (as an
/// unnamed blob) so it can be pushed again byte for byte.
pub fn push_index(
    store: &Store,
    local_names: &[String],
    destination: &str,
    opts: &RegistryOptions,
) -> Result<PushResult, RegistryError> {
    let dest = parse_ref(destination)?;
    let session = Session::connect(dest.resolve_registry(), dest.repository(), true, opts, true)?;
    let mut p = Pusher::new(store, &session, dest.clone(), opts);
    let mut entries = Vec::new();
    for name in local_names {
        let desc = store.resolve(name)?;
        let (os, arch) = platform_of(store, &desc)?;
        let digest = desc.digest().to_string();
        let (bytes, media_type) = p.push_tree(&desc)?;
        p.push_manifest(&digest, bytes, &media_type, None)?;
        let mut entry = descriptor(&media_type, desc.size(), &digest)?;
        let platform = PlatformBuilder::default()
            .os(oci_spec::image::Os::from(os.as_str()))
            .architecture(oci_spec::image::Arch::from(arch.as_str()))
            .build()
            .map_err(|e| spec_error(&session.host, "platform", e))?;
        entry.set_platform(Some(platform));
        entries.push(entry);
    }
    let mut index = oci_spec::image::ImageIndex::default();
    index.set_schema_version(2);
    index.set_media_type(Some(oci_spec::image::MediaType::ImageIndex));
    index.set_manifests(entries);
    let bytes = canonical_json(&index).map_err(|e| spec_error(&session.host, "image index", e))?;
    let desc = store.put_bytes(OCI_INDEX, &bytes)?;
    let digest = desc.digest().to_string();
    let tag = dest_tag(&dest);
    p.push_manifest(&digest, bytes, OCI_INDEX, tag.as_deref())?;
    p.record();
    opts.progress
        .message(&format!("pushed index {} as {digest}", dest.whole()));
    Ok(PushResult {
        name: dest.whole(),
        digest,
        descriptor: desc,
        uploaded: p.uploaded,
        skipped: p.skipped,
    })
}

/// Writes buildx-style push metadata: `image.name`,
/// `containerimage.digest` and `containerimage.descriptor`.
pub fn write_metadata(path: &Path, result: &PushResult) -> Result<(), RegistryError> {
    let descriptor = serde_json::to_value(&result.descriptor).map_err(|e| RegistryError::Io {
        action: "serialise metadata for",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    let doc = serde_json::json!({
        "image.name": result.name,
        "containerimage.digest": result.digest,
        "containerimage.descriptor": descriptor,
    });
    let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|e| RegistryError::Io {
        action: "serialise metadata for",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    bytes.push(b'\n');
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(error::io_err("create temp file in", dir))?;
    tmp.write_all(&bytes)
        .map_err(error::io_err("write", tmp.path()))?;
    tmp.persist(path).map_err(|e| RegistryError::Io {
        action: "write",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Reads the store file in chunks as the request body goes out.
fn file_stream(
    file: std::fs::File,
    digest: String,
    progress: Arc<dyn TransferProgress>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, OciDistributionError>> + Send + 'static {
    futures_util::stream::unfold(Some((file, 0u64)), move |state| {
        let progress = progress.clone();
        let digest = digest.clone();
        async move {
            let (mut file, sent) = state?;
            let mut buf = vec![0u8; CHUNK];
            // Local-disk reads are short; doing them inline on the
            // single-threaded runtime keeps this simple.
            match file.read(&mut buf) {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    let sent = sent + n as u64;
                    progress.blob_progress(&digest, sent);
                    Some((Ok(bytes::Bytes::from(buf)), Some((file, sent))))
                }
                Err(e) => Some((Err(OciDistributionError::IoError(e)), None)),
            }
        }
    })
}

#[derive(serde::Deserialize)]
struct IndexDoc {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(serde::Deserialize)]
struct IndexEntry {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    platform: Option<PlatformDoc>,
}

#[derive(serde::Deserialize)]
struct PlatformDoc {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

/// What `pull` makes of a manifest response before fetching anything else.
#[derive(Debug)]
pub enum ManifestDoc {
    /// An image index (OCI or Docker list): the `(digest, mediaType)` of the
    /// entry `pull` fetches for the platform, if any matches, and the
    /// platforms it offers (`os/arch`), for the error when none does.
    Index {
        child: Option<(String, Option<String>)>,
        available: Vec<String>,
    },
    Manifest(Box<ImageManifest>),
}

/// Parses a manifest or index: the media type is sniffed from the document
/// (else `declared`, the index entry's), an index is read leniently and its
/// entry for `platform` chosen. `pull` reads every registry answer through
/// this; the fuzz targets and `tests/fuzz_corpus.rs` drive it directly.
pub fn parse_manifest_or_index(
    bytes: &[u8],
    declared: Option<&str>,
    platform: &PlatformWanted,
) -> Result<ManifestDoc, serde_json::Error> {
    if is_index(&media_type_of(bytes, declared)) {
        let index: IndexDoc = serde_json::from_slice(bytes)?;
        let child = choose_platform(&index.manifests, platform)
            .map(|e| (e.digest.clone(), e.media_type.clone()));
        let available = index
            .manifests
            .iter()
            .map(|e| match &e.platform {
                Some(p) => format!("{}/{}", p.os, p.architecture),
                None => "(no platform)".into(),
            })
            .collect();
        return Ok(ManifestDoc::Index { child, available });
    }
    serde_json::from_slice(bytes).map(|m| ManifestDoc::Manifest(Box::new(m)))
}

fn choose_platform<'a>(entries: &'a [IndexEntry], want: &PlatformWanted) -> Option<&'a IndexEntry> {
    let arch = want.arch.as_str();
    let matching = |e: &&IndexEntry| {
        e.platform.as_ref().is_some_and(|p| {
            p.architecture == arch && want.os.as_ref().is_none_or(|os| &p.os == os)
        })
    };
    let candidates: Vec<&IndexEntry> = entries.iter().filter(matching).collect();
    candidates
        .iter()
        .find(|e| e.platform.as_ref().is_some_and(|p| p.os == "linux"))
        .or_else(|| candidates.first())
        .copied()
}

struct Puller<'a> {
    store: &'a Store,
    session: &'a Session,
    r: Reference,
    opts: &'a RegistryOptions,
    downloaded: usize,
    cached: usize,
}

impl Puller<'_> {
    /// The config and layers `m` names, each fetched unless the store has
    /// it and verified against its digest; `what` names the layers in
    /// progress and errors.
    fn pull_manifest_blobs(&mut self, m: &ImageManifest, what: &str) -> Result<(), RegistryError> {
        let config = m.config();
        self.pull_blob(
            config.digest().as_ref(),
            config.size(),
            config.media_type().as_ref(),
            "config",
        )?;
        for l in m.layers() {
            self.pull_blob(l.digest().as_ref(), l.size(), l.media_type().as_ref(), what)?;
        }
        Ok(())
    }

    /// Stores a manifest or index as fetched, refusing bytes whose digest
    /// is not the one they were fetched by.
    fn store_verified(
        &self,
        media_type: &str,
        bytes: &[u8],
        digest: &str,
    ) -> Result<Descriptor, RegistryError> {
        let desc = self.store.put_bytes(media_type, bytes)?;
        if desc.digest().to_string() != digest {
            return Err(RegistryError::DigestMismatch {
                host: self.session.host.clone(),
                expected: digest.to_string(),
                actual: desc.digest().to_string(),
            });
        }
        Ok(desc)
    }

    fn fetch_manifest(&self, r: &Reference) -> Result<(Vec<u8>, String), RegistryError> {
        let session = self.session;
        let what = match (r.digest(), r.tag()) {
            (Some(d), _) => format!("manifest {d} in repository `{}`", r.repository()),
            (None, t) => format!(
                "tag `{}` in repository `{}`",
                t.unwrap_or("latest"),
                r.repository()
            ),
        };
        // A manifest is small: a registry that takes longer than the timeout
        // for all of it is trickling, whatever each read does.
        let (bytes, header_digest) = session
            // The timer must be made inside the runtime, hence the async block.
            .block_on(async {
                tokio::time::timeout(
                    self.opts.timeout,
                    session.get_manifest(r, ACCEPTED_MANIFESTS, MAX_MANIFEST_BYTES, &what),
                )
                .await
            })
            .map_err(|_| RegistryError::Timeout {
                host: session.host.clone(),
                operation: format!(
                    "fetching {what} (no complete answer in {:?})",
                    self.opts.timeout
                ),
            })??;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        // Asked for by digest, it must be that digest; a digest header that
        // disagrees with the body is a lie either way.
        let claimed = r.digest().map(str::to_string).or(header_digest);
        if let Some(claimed) = claimed.filter(|c| c.starts_with("sha256:") && *c != digest) {
            return Err(RegistryError::DigestMismatch {
                host: session.host.clone(),
                expected: claimed,
                actual: digest,
            });
        }
        Ok((bytes, digest))
    }

    fn pull_blob(
        &mut self,
        digest: &str,
        size: u64,
        media_type: &str,
        what: &str,
    ) -> Result<(), RegistryError> {
        let progress = self.opts.progress.clone();
        progress.blob_started(digest, size, what);
        if self.store.has_blob(digest) {
            self.cached += 1;
            progress.blob_done(digest, BlobOutcome::Cached);
            return Ok(());
        }
        crate::layers::store::digest_hex(digest)?;
        let session = self.session;
        let host = session.host.clone();
        let missing = format!("blob {digest} in repository `{}`", self.r.repository());
        let mut writer = self.store.blob_writer()?;
        let tmp = self.store.tmp_dir();
        let timeout = self.opts.timeout;
        let too_long = |n: u64, when: &str| {
            RegistryError::Protocol {
            host: host.clone(),
            message: format!(
                "blob {digest} is {when} {n} bytes, but the manifest declares {size}; refused, nothing stored"
            ),
        }
        };
        let result: Result<(), RegistryError> = session.block_on(async {
            let start = tokio::time::Instant::now();
            let mut stream = tokio::time::timeout(
                timeout,
                session.client.pull_blob_stream(&self.r, digest),
            )
            .await
            .map_err(|_| RegistryError::Timeout {
                host: host.clone(),
                operation: format!("fetching blob {digest} (no answer in {timeout:?})"),
            })?
            .map_err(|e| {
                session.map_err(e, self.r.repository(), &format!("fetching blob {digest}"), &missing)
            })?;
            if let Some(n) = stream.content_length.filter(|n| *n > size) {
                return Err(too_long(n, "announced as"));
            }
            let mut got = 0u64;
            loop {
                // After the first `timeout`, bytes must keep arriving at
                // MIN_BYTES_PER_SEC on average: the next chunk is due by a
                // time that only received bytes move on, so neither the
                // declared size nor a byte now and then extends it.
                let due = start
                    + timeout
                    + Duration::from_secs_f64(got as f64 / MIN_BYTES_PER_SEC as f64);
                let next = tokio::time::timeout_at(due, stream.next())
                    .await
                    .map_err(|_| RegistryError::Timeout {
                        host: host.clone(),
                        operation: format!(
                            "fetching blob {digest} ({got} of {size} bytes after {:?}, slower than {} KiB/s)",
                            start.elapsed(),
                            MIN_BYTES_PER_SEC / 1024
                        ),
                    })?;
                let Some(chunk) = next else { break };
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        let actual = writer.digest();
                        if actual != digest && got >= size {
                            return Err(RegistryError::DigestMismatch {
                                host: host.clone(),
                                expected: digest.to_string(),
                                actual,
                            });
                        }
                        return Err(RegistryError::Protocol {
                            host: host.clone(),
                            message: format!(
                                "download of blob {digest} broke off after {got} of {size} bytes: {}",
                                error::chain_text(&e)
                            ),
                        });
                    }
                };
                // Cut off the moment it is longer than declared: not one
                // byte past the declared size reaches the disk.
                if got + chunk.len() as u64 > size {
                    return Err(too_long(got + chunk.len() as u64, "at least"));
                }
                writer
                    .write_all(&chunk)
                    .map_err(error::io_err("write blob into", &tmp))?;
                got += chunk.len() as u64;
                progress.blob_progress(digest, got);
            }
            Ok(())
        });
        result?;
        let actual = writer.digest();
        if actual != digest {
            // Dropping the writer deletes its temp file: nothing is stored.
            return Err(RegistryError::DigestMismatch {
                host,
                expected: digest.to_string(),
                actual,
            });
        }
        if writer.size() != size {
            return Err(RegistryError::Protocol {
                host,
                message: format!(
                    "blob {digest} is {} bytes but the manifest says {size}",
                    writer.size()
                ),
            });
        }
        writer.commit(media_type)?;
        self.downloaded += 1;
        progress.blob_done(digest, BlobOutcome::Downloaded);
        Ok(())
    }
}

/// Fetches `reference` (`host/repo[:tag]` or `host/repo@sha256:...`) into the
/// store, picking `platform` from an image index. Blobs the store has are
/// not fetched again; every blob is verified against its digest before it
/// is stored; the manifest is stored last and then named `reference`.
pub fn pull(
    store: &Store,
    reference: &str,
    platform: &PlatformWanted,
    opts: &RegistryOptions,
) -> Result<PullResult, RegistryError> {
    let r = parse_ref(reference)?;
    let session = Session::connect(r.resolve_registry(), r.repository(), false, opts, true)?;
    let mut p = Puller {
        store,
        session: &session,
        r: r.clone(),
        opts,
        downloaded: 0,
        cached: 0,
    };
    let (bytes, digest) = p.fetch_manifest(&r)?;
    // An index may carry the image's attestations beside it (BuildKit's
    // layout, which `bunny build --push` writes); kept for them below.
    let top = (bytes.clone(), digest.clone());
    let parse = |bytes: &[u8], declared: Option<&str>, digest: &str, what: &str| {
        parse_manifest_or_index(bytes, declared, platform)
            .map_err(|e| spec_error(&session.host, &format!("{what} {digest}"), e))
    };
    // The manifest, its bytes and digest as fetched, and its media type.
    let (manifest, bytes, digest, media_type) =
        match parse(&bytes, None, &digest, "manifest or index")? {
            ManifestDoc::Manifest(m) => {
                let media_type = media_type_of(&bytes, None);
                (*m, bytes, digest, media_type)
            }
            ManifestDoc::Index {
                child: None,
                available,
            } => {
                return Err(RegistryError::NoPlatform {
                    reference: reference.to_string(),
                    wanted: platform.to_string(),
                    available: crate::summarize(&available, "entry", "entries"),
                });
            }
            ManifestDoc::Index {
                child: Some((child_digest, child_type)),
                ..
            } => {
                let child = r.clone_with_digest(child_digest);
                let (bytes, digest) = p.fetch_manifest(&child)?;
                match parse(&bytes, child_type.as_deref(), &digest, "manifest")? {
                    ManifestDoc::Manifest(m) => {
                        let media_type = media_type_of(&bytes, child_type.as_deref());
                        (*m, bytes, digest, media_type)
                    }
                    ManifestDoc::Index { .. } => {
                        return Err(RegistryError::Protocol {
                            host: session.host.clone(),
                            message: format!(
                        "index entry {digest} is itself an index; nested indexes are not supported"
                    ),
                        })
                    }
                }
            }
        };
    let config = manifest.config();
    p.pull_manifest_blobs(&manifest, "layer")?;
    let mut desc = p.store_verified(&media_type, &bytes, &digest)?;
    if let (Some(os), Some(arch)) = config_platform(store, config.digest().as_ref(), &session.host)?
    {
        if let Ok(pl) = PlatformBuilder::default()
            .os(oci_spec::image::Os::from(os.as_str()))
            .architecture(oci_spec::image::Arch::from(arch.as_str()))
            .build()
        {
            desc.set_platform(Some(pl));
        }
    }
    if top.1 != digest {
        if let Err(e) = keep_attestations(&mut p, &top.0, &top.1, &digest) {
            opts.progress.message(&format!(
                "note: the image's attestations were not kept: {e}"
            ));
        }
    }
    let name = store_name(reference, &r);
    store.tag(&name, &desc)?;
    let mut blobs: Vec<String> = vec![digest.clone(), config.digest().to_string()];
    blobs.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
    if let Err(e) = Sources::new(store.root()).record(&blobs, &session.host, r.repository()) {
        opts.progress
            .message(&format!("note: could not record blob locations: {e}"));
    }
    opts.progress.message(&format!("pulled {name} ({digest})"));
    Ok(PullResult {
        name,
        manifest: desc,
        downloaded: p.downloaded,
        cached: p.cached,
    })
}

/// Fetches the attestation manifests `index` holds for `manifest_digest`
/// (an SBOM, a provenance) with their blobs, stores the index, and records
/// it as the image's attestations, as `bunny build` does for its own: so
/// `bunny inspect` shows them and a later push carries them again. An index
/// without any is left alone.
fn keep_attestations(
    p: &mut Puller,
    index_bytes: &[u8],
    index_digest: &str,
    manifest_digest: &str,
) -> Result<(), RegistryError> {
    use crate::oci::attest::{ATTESTATION_MANIFEST, REFERENCE_DIGEST, REFERENCE_TYPE};
    let host = p.session.host.clone();
    let index: oci_spec::image::ImageIndex =
        serde_json::from_slice(index_bytes).map_err(|e| RegistryError::Protocol {
            host: host.clone(),
            message: format!("index {index_digest}: {e}"),
        })?;
    let mut kept = 0;
    for d in index.manifests() {
        let ann = d.annotations().clone().unwrap_or_default();
        if ann.get(REFERENCE_TYPE).map(String::as_str) != Some(ATTESTATION_MANIFEST)
            || ann.get(REFERENCE_DIGEST).map(String::as_str) != Some(manifest_digest)
        {
            continue;
        }
        let (bytes, digest) = p.fetch_manifest(&p.r.clone_with_digest(d.digest().to_string()))?;
        let m: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
                host: host.clone(),
                message: format!("attestation manifest {digest}: {e}"),
            })?;
        p.pull_manifest_blobs(&m, "attestation")?;
        p.store_verified(
            &media_type_of(&bytes, Some(d.media_type().as_ref())),
            &bytes,
            &digest,
        )?;
        kept += 1;
    }
    if kept == 0 {
        return Ok(());
    }
    let desc = p.store_verified(&media_type_of(index_bytes, None), index_bytes, index_digest)?;
    crate::oci::attest::record(p.store, manifest_digest, Some(&desc)).map_err(|e| {
        RegistryError::Protocol {
            host,
            message: format!("recording the attestations: {e}"),
        }
    })
}

/// `https://host/` or `host` -> `host`; Docker Hub's names -> `docker.io`.
pub fn normalize_host(host: &str) -> String {
    let h = host
        .strip_prefix("https://")
        .or_else(|| host.strip_prefix("http://"))
        .unwrap_or(host);
    let h = h.split('/').next().unwrap_or(h);
    match h {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

/// Checks `username`/`password` against the registry, then saves them the
/// way `docker login` does (credential helper, else `config.json`).
pub fn login(
    host: &str,
    username: &str,
    password: &str,
    opts: &RegistryOptions,
) -> Result<StoredIn, RegistryError> {
    let host = normalize_host(host);
    let api_host = if host == "docker.io" {
        "index.docker.io".to_string()
    } else {
        host.clone()
    };
    let session = Session::connect(&api_host, "", false, opts, false)?;
    if !session.check_login(username, password)? {
        return Err(RegistryError::LoginRejected { host });
    }
    let dir = auth::docker_config_dir(opts.docker_config.as_deref());
    auth::store(&dir, &host, username, password)
}

/// Forgets the stored credentials for `host`; `false` if there were none.
pub fn logout(host: &str, opts: &RegistryOptions) -> Result<bool, RegistryError> {
    let host = normalize_host(host);
    let dir = auth::docker_config_dir(opts.docker_config.as_deref());
    auth::remove(&dir, &host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_like_docker() {
        let r = parse_ref("hello").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("docker.io", "library/hello", Some("latest"))
        );
        let r = parse_ref("127.0.0.1:5000/a/b:1.0").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("127.0.0.1:5000", "a/b", Some("1.0"))
        );
        let r = parse_ref("localhost/x").unwrap();
        assert_eq!((r.registry(), r.repository()), ("localhost", "x"));
        let r = parse_ref("user/app:v2").unwrap();
        assert_eq!((r.registry(), r.repository()), ("docker.io", "user/app"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse_ref(&format!("reg.io/x@{d}")).unwrap();
        assert_eq!(r.digest(), Some(d.as_str()));
        for bad in [
            "",
            "Upper/Case",
            "x:",
            "x:-t",
            "reg.io/x@sha256:zz",
            "a//b",
            "x@md5:00",
            "reg.io/",
        ] {
            assert!(parse_ref(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn platform_parse_and_choice() {
        let p = PlatformWanted::parse("linux/amd64").unwrap();
        assert_eq!(p.os.as_deref(), Some("linux"));
        assert_eq!(p.arch, Arch::Amd64);
        assert_eq!(PlatformWanted::parse("arm64").unwrap().os, None);
        assert!(PlatformWanted::parse("linux/s390x").is_none());
        let doc: IndexDoc = serde_json::from_str(
            r#"{"manifests":[
              {"digest":"sha256:a","platform":{"architecture":"amd64","os":"qemu"}},
              {"digest":"sha256:b","platform":{"architecture":"amd64","os":"linux"}},
              {"digest":"sha256:c","platform":{"architecture":"arm64","os":"linux"}}]}"#,
        )
        .unwrap();
        let any = PlatformWanted {
            arch: Arch::Amd64,
            os: None,
        };
        assert_eq!(
            choose_platform(&doc.manifests, &any).unwrap().digest,
            "sha256:b"
        );
        let qemu = PlatformWanted {
            arch: Arch::Amd64,
            os: Some("qemu".into()),
        };
        assert_eq!(
            choose_platform(&doc.manifests, &qemu).unwrap().digest,
            "sha256:a"
        );
        let fc = PlatformWanted {
            arch: Arch::Arm64,
            os: Some("firecracker".into()),
        };
        assert!(choose_platform(&doc.manifests, &fc).is_none());
    }

    #[test]
    fn names_in_the_store() {
        let r = parse_ref("127.0.0.1:5000/a/b").unwrap();
        assert_eq!(
            store_name("127.0.0.1:5000/a/b", &r),
            "127.0.0.1:5000/a/b:latest"
        );
        let r = parse_ref("127.0.0.1:5000/a/b:1").unwrap();
        assert_eq!(
            store_name("127.0.0.1:5000/a/b:1", &r),
            "127.0.0.1:5000/a/b:1"
        );
        let d = format!("127.0.0.1:5000/a@sha256:{}", "0".repeat(64));
        let r = parse_ref(&d).unwrap();
        assert_eq!(store_name(&d, &r), d);
        assert_eq!(normalize_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_host("localhost:5000"), "localhost:5000");
    }
}
