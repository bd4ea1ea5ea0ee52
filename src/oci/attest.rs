//! SBOM and provenance for the images `bunny build` makes, attached the way
//! BuildKit stores attestations: an image index holding the image manifest
//! and, after it, an attestation manifest (platform `unknown/unknown`,
//! `vnd.docker.reference.type=attestation-manifest`,
//! `vnd.docker.reference.digest=<image manifest>`) whose layers are in-toto
//! statements (`application/vnd.in-toto+json`, each annotated with its
//! `in-toto.io/predicate-type`). Registries, skopeo and `docker buildx
//! imagetools` read that layout; runtimes skip the unknown platform.
//!
//! The image manifest is not touched, so its digest is the same with or
//! without attestations. Nothing here reads the clock or the host: times are
//! SOURCE_DATE_EPOCH's and paths are relative to the build context, so the
//! same inputs give the same index digest.
//!
//! In the store the image's name keeps naming the image manifest (run,
//! inspect and export read it as before); the index that carries the
//! attestations is recorded beside it under `attestations/<manifest hex>`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, MediaType, PlatformBuilder};
use serde_json::{json, Value};
use sha2::Digest as _;

use super::error::OciError;
use crate::layers::store::{canonical_json, digest_hex, Store};

pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";
/// BuildKit writes this statement type (also for SLSA v1 predicates); tools
/// that read BuildKit's attestations expect it.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v0.1";
pub const SPDX_PREDICATE: &str = "https://spdx.dev/Document";
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
pub const BUILD_TYPE: &str = "https://github.com/nubificus/bunny/build/v1";

/// Which attestations to attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wanted {
    pub sbom: bool,
    pub provenance: bool,
}

impl Wanted {
    pub fn any(&self) -> bool {
        self.sbom || self.provenance
    }
}

/// A file that went into the image or its build, by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInput {
    /// Relative to the build context when inside it, else the file name.
    pub name: String,
    pub sha256: String,
    pub sha1: String,
}

/// A framework layer (toolchain, kernel, base) as `bunny.lock` pins it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInput {
    /// `FRAMEWORK.LAYER`.
    pub key: String,
    /// The reference as given (default, config file or `--toolchain`).
    pub reference: String,
    /// The manifest digest it resolved to.
    pub digest: String,
}

/// Where the app's sources came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceInput {
    Git {
        url: String,
        commit: Option<String>,
    },
    /// A directory (of the context, or of an unpacked image): the digest of
    /// its files, see [`tree_digest`].
    Tree {
        name: String,
        digest: String,
    },
}

/// A binary package the app is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageInput {
    pub name: String,
    pub version: String,
    /// sha256 of the package file, hex.
    pub sha256: String,
    pub url: Option<String>,
}

/// One file of the guest's rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsFile {
    /// Absolute in the guest.
    pub path: String,
    pub sha256: String,
    pub sha1: String,
}

/// Everything the attestations say about a build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    /// `linux/amd64`.
    pub platform: String,
    pub framework: String,
    pub monitor: String,
    pub bunnyfile: Option<FileInput>,
    /// The kernel file packed (`path` is its path in the image).
    pub kernel: Option<(String, FileInput)>,
    pub layers: Vec<LayerInput>,
    pub source: Option<SourceInput>,
    pub packages: Vec<PackageInput>,
    /// Sorted by path.
    pub rootfs_files: Vec<RootfsFile>,
    /// The build steps, in order.
    pub steps: Vec<String>,
    pub epoch: u64,
}

/// sha256 and sha1 (hex) of a file, read once.
pub fn file_digests(path: &Path) -> io::Result<(String, String)> {
    let mut f = fs::File::open(path)?;
    let mut s256 = sha2::Sha256::new();
    let mut s1 = sha1::Sha1::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        s256.update(&buf[..n]);
        s1.update(&buf[..n]);
    }
    Ok((hex::encode(s256.finalize()), hex::encode(s1.finalize())))
}

/// A file input named relative to `context` (the file name when outside it).
pub fn file_input(path: &Path, context: &Path) -> io::Result<FileInput> {
    let (sha256, sha1) = file_digests(path)?;
    Ok(FileInput {
        name: relative_name(path, context),
        sha256,
        sha1,
    })
}

/// `path` relative to `context`; absolute host paths would make the
/// document depend on where the build ran.
pub fn relative_name(path: &Path, context: &Path) -> String {
    let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    match canon(path).strip_prefix(canon(context)) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        Ok(_) => ".".to_string(),
        Err(_) => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string()),
    }
}

/// The digest of a directory's contents: sha256 over the sorted lines
/// `kind mode path sha256-or-target`, `.git` left out (its packing differs
/// between clones of the same commit). Modification times are not part of
/// it, so a fresh checkout of the same sources has the same digest.
pub fn tree_digest(dir: &Path) -> io::Result<String> {
    let mut lines = Vec::new();
    walk(dir, dir, &mut lines)?;
    lines.sort();
    let mut h = sha2::Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name() == ".git" {
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let meta = fs::symlink_metadata(&path)?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path)?;
            out.push(format!("l {mode:o} {rel} {}", target.display()));
        } else if meta.is_dir() {
            out.push(format!("d {mode:o} {rel}"));
            walk(root, &path, out)?;
        } else if meta.is_file() {
            let (sha256, _) = file_digests(&path)?;
            out.push(format!("f {mode:o} {rel} {sha256}"));
        }
    }
    Ok(())
}

/// `git rev-parse HEAD` in `dir`, when it is a checkout.
pub fn git_commit(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && commit.len() >= 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(commit)
}

fn spdx_id(kind: &str, n: usize) -> String {
    format!("SPDXRef-{kind}-{n}")
}

fn checksums(sha256: &str, sha1: Option<&str>) -> Value {
    let mut v = vec![json!({"algorithm": "SHA256", "checksumValue": sha256})];
    if let Some(s) = sha1 {
        v.insert(0, json!({"algorithm": "SHA1", "checksumValue": s}));
    }
    Value::Array(v)
}

/// The hex part of `sha256:HEX` (the whole string when it has no prefix).
fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// An SPDX 2.3 document: the image, the kernel, the framework's layers,
/// the app's sources and packages, and every file of the rootfs.
pub fn spdx(manifest_digest: &str, name: &str, inputs: &Inputs) -> Value {
    let mut image = json!({
        "SPDXID": "SPDXRef-Image",
        "name": if name.is_empty() { "image" } else { name },
        "versionInfo": manifest_digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": !inputs.rootfs_files.is_empty(),
        "primaryPackagePurpose": "CONTAINER",
        "checksums": checksums(hex_of(manifest_digest), None),
    });
    if !inputs.rootfs_files.is_empty() {
        // A package that contains files must carry SPDX's verification
        // code: the sha1 of its files' sorted sha1s, concatenated.
        let mut sums: Vec<&str> = inputs
            .rootfs_files
            .iter()
            .map(|f| f.sha1.as_str())
            .collect();
        sums.sort_unstable();
        let code = hex::encode(sha1::Sha1::digest(sums.concat().as_bytes()));
        image["packageVerificationCode"] = json!({"packageVerificationCodeValue": code});
    }
    let mut packages = vec![image];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    let mut rel = |from: &str, kind: &str, to: &str| {
        relationships.push(json!({
            "spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to,
        }))
    };
    if let Some((path, k)) = &inputs.kernel {
        packages.push(json!({
            "SPDXID": "SPDXRef-Kernel",
            "name": "kernel",
            "versionInfo": format!("sha256:{}", k.sha256),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "OPERATING-SYSTEM",
            "checksums": checksums(&k.sha256, Some(&k.sha1)),
            "sourceInfo": format!("packed at {path} from {}", k.name),
        }));
        rel("SPDXRef-Image", "CONTAINS", "SPDXRef-Kernel");
    }
    for (n, l) in inputs.layers.iter().enumerate() {
        let id = spdx_id("Layer", n);
        // A kernel built from sources records its source archive, resolved
        // config and built kernel in the lock: files, not OCI images.
        let file = l.key.contains(".kernel-") && !l.key.ends_with(".kernel-toolchain");
        let mut package = json!({
            "SPDXID": id,
            "name": l.key,
            "versionInfo": l.digest,
            // SPDX wants a URL here, which an image reference is not: the
            // reference goes in sourceInfo and the purl.
            "downloadLocation": "NOASSERTION",
            "sourceInfo": format!("resolved from {}", l.reference),
            "filesAnalyzed": false,
            "primaryPackagePurpose": if !file { "CONTAINER" } else if l.key.ends_with(".kernel-source") { "SOURCE" } else { "FILE" },
            "checksums": checksums(hex_of(&l.digest), None),
        });
        if !file {
            package["externalRefs"] = json!([{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("pkg:oci/{}@{}", purl_name(&l.reference), l.digest.replace(':', "%3A")),
            }]);
        }
        packages.push(package);
        rel(&id, "BUILD_DEPENDENCY_OF", "SPDXRef-Image");
    }
    if let Some(src) = &inputs.source {
        let (location, version, sums) = match src {
            SourceInput::Git { url, commit } => (
                format!(
                    "git+{url}{}",
                    commit.as_ref().map(|c| format!("@{c}")).unwrap_or_default()
                ),
                commit.clone().unwrap_or_else(|| "NOASSERTION".into()),
                None,
            ),
            SourceInput::Tree { name, digest } => (
                "NOASSERTION".to_string(),
                digest.clone(),
                Some(checksums(hex_of(digest), None)).filter(|_| !name.is_empty()),
            ),
        };
        let mut p = json!({
            "SPDXID": "SPDXRef-Source",
            "name": match src { SourceInput::Git { url, .. } => url.clone(), SourceInput::Tree { name, .. } => name.clone() },
            "versionInfo": version,
            "downloadLocation": location,
            "filesAnalyzed": false,
            "primaryPackagePurpose": "SOURCE",
        });
        if let Some(s) = sums {
            p["checksums"] = s;
        }
        packages.push(p);
        rel("SPDXRef-Image", "GENERATED_FROM", "SPDXRef-Source");
    }
    for (n, p) in inputs.packages.iter().enumerate() {
        let id = spdx_id("Package", n);
        packages.push(json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": p.url.clone().unwrap_or_else(|| "NOASSERTION".into()),
            "filesAnalyzed": false,
            "primaryPackagePurpose": "APPLICATION",
            "checksums": checksums(&p.sha256, None),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("pkg:freebsd/{}@{}", p.name, p.version),
            }],
        }));
        rel("SPDXRef-Image", "CONTAINS", &id);
    }
    let files: Vec<Value> = inputs
        .rootfs_files
        .iter()
        .enumerate()
        .map(|(n, f)| {
            json!({
                "SPDXID": spdx_id("File", n),
                "fileName": format!(".{}", f.path),
                "checksums": checksums(&f.sha256, Some(&f.sha1)),
            })
        })
        .collect();
    for n in 0..files.len() {
        rel("SPDXRef-Image", "CONTAINS", &spdx_id("File", n));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": if name.is_empty() { "image".to_string() } else { name.to_string() },
        "documentNamespace": format!("https://github.com/nubificus/bunny/spdx/{}", hex_of(manifest_digest)),
        "creationInfo": {
            "created": super::image::rfc3339(inputs.epoch),
            "creators": [format!("Tool: bunny-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "files": files,
        "relationships": relationships,
    })
}

/// The repository part of a reference for a purl: `host/repo` without tag,
/// digest or `oci:` layout directory.
fn purl_name(reference: &str) -> String {
    let r = reference.split('@').next().unwrap_or(reference);
    if let Some(rest) = r.strip_prefix("oci:") {
        // oci:DIR:TAG names a local layout: only its tag means anything
        // off this machine.
        return rest.rsplit(':').next().unwrap_or(rest).to_string();
    }
    let slash = r.rfind('/').map(|i| i + 1).unwrap_or(0);
    match r[slash..].find(':') {
        Some(c) => r[..slash + c].to_string(),
        None => r.to_string(),
    }
}

/// A SLSA v1 provenance predicate (what buildx calls `mode=min`: inputs by
/// digest and the steps, no environment, no secrets, no times).
pub fn provenance(inputs: &Inputs) -> Value {
    let mut deps = Vec::new();
    if let Some(b) = &inputs.bunnyfile {
        deps.push(json!({"uri": b.name, "digest": {"sha256": b.sha256}, "name": "bunnyfile"}));
    }
    if let Some((path, k)) = &inputs.kernel {
        deps.push(json!({"uri": k.name, "digest": {"sha256": k.sha256}, "name": "kernel", "annotations": {"path": path}}));
    }
    for l in &inputs.layers {
        deps.push(json!({
            "uri": l.reference,
            "digest": {"sha256": hex_of(&l.digest)},
            "name": l.key,
        }));
    }
    match &inputs.source {
        Some(SourceInput::Git { url, commit }) => deps.push(json!({
            "uri": format!("git+{url}"),
            "digest": commit.as_ref().map(|c| json!({"gitCommit": c})).unwrap_or_else(|| json!({})),
            "name": "source",
        })),
        Some(SourceInput::Tree { name, digest }) => deps.push(json!({
            "uri": name,
            "digest": {"sha256": hex_of(digest)},
            "name": "source",
        })),
        None => {}
    }
    for p in &inputs.packages {
        deps.push(json!({
            "uri": format!("pkg:freebsd/{}@{}", p.name, p.version),
            "digest": {"sha256": p.sha256},
        }));
    }
    json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "bunnyfile": inputs.bunnyfile.as_ref().map(|b| json!({"path": b.name, "digest": {"sha256": b.sha256}})),
                "platform": inputs.platform,
            },
            "internalParameters": {
                "framework": inputs.framework,
                "monitor": inputs.monitor,
                "steps": inputs.steps,
                "sourceDateEpoch": inputs.epoch,
            },
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {
                "id": "https://github.com/nubificus/bunny",
                "version": {"bunny": env!("CARGO_PKG_VERSION")},
            },
            "metadata": {},
        },
    })
}

/// An in-toto statement about the image manifest.
pub fn statement(manifest_digest: &str, predicate_type: &str, predicate: Value) -> Value {
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "_", "digest": {"sha256": hex_of(manifest_digest)}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    })
}

fn json_err(what: &str) -> impl FnOnce(serde_json::Error) -> OciError + '_ {
    move |source| OciError::Json {
        what: what.to_string(),
        source,
    }
}

fn spec_err(what: &str) -> impl FnOnce(oci_spec::OciSpecError) -> OciError + '_ {
    move |e| OciError::Spec {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// Writes the statements, the attestation manifest and the index (image
/// manifest first, as BuildKit orders them) into the store, records the
/// index for the image and returns its descriptor.
pub fn attach(
    store: &Store,
    manifest: &Descriptor,
    statements: &[(String, Value)],
) -> Result<Descriptor, OciError> {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (predicate_type, statement) in statements {
        let bytes = canonical_json(statement).map_err(json_err("in-toto statement"))?;
        let mut d = store.put_bytes(IN_TOTO_MEDIA_TYPE, &bytes)?;
        d.set_annotations(Some(
            [(
                PREDICATE_TYPE_ANNOTATION.to_string(),
                predicate_type.clone(),
            )]
            .into_iter()
            .collect(),
        ));
        diff_ids.push(d.digest().to_string());
        layers.push(d);
    }
    let config = json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config_bytes = canonical_json(&config).map_err(json_err("attestation config"))?;
    let config_desc = store.put_bytes(MediaType::ImageConfig.as_ref(), &config_bytes)?;
    let att = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layers)
        .build()
        .map_err(spec_err("attestation manifest"))?;
    let att_bytes = canonical_json(&att).map_err(json_err("attestation manifest"))?;
    let mut att_desc = store.put_bytes(MediaType::ImageManifest.as_ref(), &att_bytes)?;
    att_desc.set_annotations(Some(
        [
            (REFERENCE_DIGEST.to_string(), manifest.digest().to_string()),
            (REFERENCE_TYPE.to_string(), ATTESTATION_MANIFEST.to_string()),
        ]
        .into_iter()
        .collect(),
    ));
    att_desc.set_platform(Some(
        PlatformBuilder::default()
            .architecture(oci_spec::image::Arch::Other("unknown".into()))
            .os(oci_spec::image::Os::Other("unknown".into()))
            .build()
            .map_err(spec_err("attestation platform"))?,
    ));
    let mut image = manifest.clone();
    image.set_annotations(None);
    let mut index = ImageIndex::default();
    index.set_schema_version(2);
    index.set_media_type(Some(MediaType::ImageIndex));
    index.set_manifests(vec![image, att_desc]);
    let index_bytes = canonical_json(&index).map_err(json_err("image index"))?;
    let index_desc = store.put_bytes(MediaType::ImageIndex.as_ref(), &index_bytes)?;
    record(store, manifest.digest().as_ref(), Some(&index_desc))?;
    Ok(index_desc)
}

fn record_path(store: &Store, manifest_digest: &str) -> Result<PathBuf, OciError> {
    Ok(store
        .root()
        .join("attestations")
        .join(digest_hex(manifest_digest)?))
}

/// Records (or, with None, forgets) the index carrying the image's
/// attestations.
pub fn record(
    store: &Store,
    manifest_digest: &str,
    index: Option<&Descriptor>,
) -> Result<(), OciError> {
    let path = record_path(store, manifest_digest)?;
    let Some(index) = index else {
        return match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(OciError::io("remove", &path)(e)),
            _ => Ok(()),
        };
    };
    let dir = store.root().join("attestations");
    fs::create_dir_all(&dir).map_err(OciError::io("create directory", &dir))?;
    let bytes = canonical_json(index).map_err(json_err("attestation record"))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(&dir).map_err(OciError::io("create temp file in", &dir))?;
    tmp.write_all(&bytes)
        .map_err(OciError::io("write", &path))?;
    tmp.persist(&path).map_err(|e| OciError::Io {
        action: "rename temp file to",
        path: path.clone(),
        source: e.error,
    })?;
    Ok(())
}

/// The index carrying the image's attestations, if the store has one whose
/// blobs are all present.
pub fn attached(store: &Store, manifest_digest: &str) -> Option<Descriptor> {
    let path = record_path(store, manifest_digest).ok()?;
    let bytes = fs::read(path).ok()?;
    let desc: Descriptor = serde_json::from_slice(&bytes).ok()?;
    store.has_blob(desc.digest().as_ref()).then_some(desc)
}

/// The attestations an index carries for `manifest_digest`: each statement
/// with its predicate type, in the order they were attached.
pub fn read(
    store: &Store,
    index: &Descriptor,
    manifest_digest: &str,
) -> Result<Vec<(String, Value)>, OciError> {
    let bytes = store.read_blob(index.digest().as_ref())?;
    let index: ImageIndex = serde_json::from_slice(&bytes).map_err(json_err("image index"))?;
    let mut out = Vec::new();
    for d in index.manifests() {
        let ann = d.annotations().clone().unwrap_or_default();
        if ann.get(REFERENCE_TYPE).map(String::as_str) != Some(ATTESTATION_MANIFEST)
            || ann.get(REFERENCE_DIGEST).map(String::as_str) != Some(manifest_digest)
        {
            continue;
        }
        let m = super::output::load_manifest(store, d)?;
        for l in m.layers() {
            if l.media_type().to_string() != IN_TOTO_MEDIA_TYPE {
                continue;
            }
            let blob = store.read_blob(l.digest().as_ref())?;
            let v: Value = serde_json::from_slice(&blob).map_err(json_err("in-toto statement"))?;
            let pt = v
                .get("predicateType")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            out.push((pt, v));
        }
    }
    Ok(out)
}

/// Builds the statements `wanted` asks for and attaches them; with none
/// wanted, forgets any earlier ones.
pub fn attest(
    store: &Store,
    manifest: &Descriptor,
    name: &str,
    inputs: &Inputs,
    wanted: Wanted,
) -> Result<Option<Descriptor>, OciError> {
    let digest = manifest.digest().to_string();
    if !wanted.any() {
        record(store, &digest, None)?;
        return Ok(None);
    }
    let mut statements = Vec::new();
    if wanted.sbom {
        statements.push((
            SPDX_PREDICATE.to_string(),
            statement(&digest, SPDX_PREDICATE, spdx(&digest, name, inputs)),
        ));
    }
    if wanted.provenance {
        statements.push((
            SLSA_PROVENANCE_V1.to_string(),
            statement(&digest, SLSA_PROVENANCE_V1, provenance(inputs)),
        ));
    }
    attach(store, manifest, &statements).map(Some)
}

/// A one-line summary per statement, for `bunny inspect`.
pub fn summary(statements: &[(String, Value)]) -> BTreeMap<String, String> {
    statements
        .iter()
        .map(|(pt, v)| {
            let p = &v["predicate"];
            let what = if pt == SPDX_PREDICATE {
                format!(
                    "SPDX {}: {} packages, {} files",
                    p["spdxVersion"].as_str().unwrap_or("?"),
                    p["packages"].as_array().map_or(0, Vec::len),
                    p["files"].as_array().map_or(0, Vec::len)
                )
            } else if pt == SLSA_PROVENANCE_V1 {
                format!(
                    "SLSA v1 provenance: {} resolved dependencies, {} steps",
                    p["buildDefinition"]["resolvedDependencies"]
                        .as_array()
                        .map_or(0, Vec::len),
                    p["buildDefinition"]["internalParameters"]["steps"]
                        .as_array()
                        .map_or(0, Vec::len)
                )
            } else {
                "unknown predicate".to_string()
            };
            (pt.clone(), what)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purl_names_drop_tags_digests_and_layout_dirs() {
        assert_eq!(purl_name("ghcr.io/a/b:1@sha256:00"), "ghcr.io/a/b");
        assert_eq!(purl_name("localhost:5000/x"), "localhost:5000/x");
        assert_eq!(purl_name("oci:/tmp/l:gcc-bookworm"), "gcc-bookworm");
    }

    #[test]
    fn tree_digest_ignores_times_and_git_but_not_content() {
        let a = tempfile::tempdir().unwrap();
        fs::write(a.path().join("x.c"), b"int main;").unwrap();
        let d1 = tree_digest(a.path()).unwrap();
        fs::create_dir(a.path().join(".git")).unwrap();
        fs::write(a.path().join(".git/HEAD"), b"ref").unwrap();
        filetime_touch(&a.path().join("x.c"));
        assert_eq!(tree_digest(a.path()).unwrap(), d1);
        fs::write(a.path().join("x.c"), b"int main2;").unwrap();
        assert_ne!(tree_digest(a.path()).unwrap(), d1);
    }

    fn sample() -> Inputs {
        Inputs {
            platform: "linux/amd64".into(),
            framework: "linux".into(),
            monitor: "qemu".into(),
            bunnyfile: Some(FileInput {
                name: "BunnyFile".into(),
                sha256: "b".repeat(64),
                sha1: "b".repeat(40),
            }),
            kernel: Some((
                KERNEL_IN_IMAGE.into(),
                FileInput {
                    name: "vmlinuz".into(),
                    sha256: "k".repeat(64),
                    sha1: "k".repeat(40),
                },
            )),
            layers: vec![LayerInput {
                key: "linux.toolchain".into(),
                reference: "example.org/gcc:12".into(),
                digest: format!("sha256:{}", "t".repeat(64)),
            }],
            source: Some(SourceInput::Git {
                url: "https://example.org/app.git".into(),
                commit: Some("c".repeat(40)),
            }),
            packages: vec![PackageInput {
                name: "iperf3".into(),
                version: "3.17.1".into(),
                sha256: "p".repeat(64),
                url: None,
            }],
            rootfs_files: vec![RootfsFile {
                path: "/bin/app".into(),
                sha256: "f".repeat(64),
                sha1: "f".repeat(40),
            }],
            steps: vec!["make".into()],
            epoch: 1_700_000_000,
        }
    }

    const KERNEL_IN_IMAGE: &str = "/.boot/kernel";

    #[test]
    fn spdx_relationships_point_the_right_way_at_elements_that_exist() {
        let doc = spdx(&format!("sha256:{}", "0".repeat(64)), "app:1", &sample());
        let mut ids: Vec<&str> = vec!["SPDXRef-DOCUMENT"];
        for p in doc["packages"].as_array().unwrap() {
            ids.push(p["SPDXID"].as_str().unwrap());
        }
        for f in doc["files"].as_array().unwrap() {
            ids.push(f["SPDXID"].as_str().unwrap());
        }
        let rels: Vec<(String, String, String)> = doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap().to_string();
                (
                    s("spdxElementId"),
                    s("relationshipType"),
                    s("relatedSpdxElement"),
                )
            })
            .collect();
        for (a, _, b) in &rels {
            assert!(
                ids.contains(&a.as_str()) && ids.contains(&b.as_str()),
                "{a} -> {b}"
            );
        }
        let has = |a: &str, t: &str, b: &str| {
            rels.contains(&(a.to_string(), t.to_string(), b.to_string()))
        };
        assert!(has("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image"));
        assert!(has(
            "SPDXRef-Layer-0",
            "BUILD_DEPENDENCY_OF",
            "SPDXRef-Image"
        ));
        assert!(has("SPDXRef-Image", "GENERATED_FROM", "SPDXRef-Source"));
        assert!(has("SPDXRef-Image", "CONTAINS", "SPDXRef-File-0"));
        assert!(has("SPDXRef-Image", "CONTAINS", "SPDXRef-Package-0"));
        assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        let source = &doc["packages"][3];
        assert_eq!(
            source["downloadLocation"],
            format!("git+https://example.org/app.git@{}", "c".repeat(40))
        );
    }

    #[test]
    fn provenance_names_every_input_by_digest() {
        let p = provenance(&sample());
        let deps = p["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        let uris: Vec<&str> = deps.iter().map(|d| d["uri"].as_str().unwrap()).collect();
        assert_eq!(
            uris,
            [
                "BunnyFile",
                "vmlinuz",
                "example.org/gcc:12",
                "git+https://example.org/app.git",
                "pkg:freebsd/iperf3@3.17.1"
            ]
        );
        assert_eq!(deps[3]["digest"]["gitCommit"], "c".repeat(40));
        assert_eq!(deps[2]["digest"]["sha256"], "t".repeat(64));
        assert_eq!(
            p["buildDefinition"]["internalParameters"]["steps"][0],
            "make"
        );
    }

    fn filetime_touch(p: &Path) {
        let f = fs::OpenOptions::new().write(true).open(p).unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    }
}
