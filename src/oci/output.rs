//! Writing an image out of the store: an OCI layout directory, an OCI
//! archive (that layout as a tar) or a Docker archive for `docker load`.
//!
//! Archives are streamed into a temp file beside the target and renamed
//! into place, so a failed export never leaves a truncated file under the
//! requested name. Archive entries are in a fixed order with fixed metadata,
//! so the same image gives the same archive bytes.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use tempfile::NamedTempFile;

use super::error::OciError;
use crate::layers::store::{
    canonical_json, digest_hex, empty_index, publish_mode, ref_name, Store, REF_NAME,
};

/// containerd's annotation for the full image name in an OCI layout.
pub const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    OciLayout { dir: PathBuf },
    OciArchive { file: PathBuf },
    DockerArchive { file: PathBuf },
}

/// A tag reference normalised the way Docker does it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host, `docker.io` for Docker Hub.
    pub domain: String,
    /// Repository path, with `library/` for official Docker Hub images.
    pub path: String,
    pub tag: String,
}

impl ImageRef {
    /// Parses `name[:tag]`; `hello` becomes `docker.io/library/hello:latest`.
    pub fn parse(reference: &str) -> Result<ImageRef, OciError> {
        let bad = |reason: &str| OciError::InvalidReference {
            reference: reference.to_string(),
            reason: reason.to_string(),
        };
        if reference.contains('@') {
            return Err(bad("digest references cannot name an image"));
        }
        let (name, tag) = match reference.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, t),
            _ => (reference, "latest"),
        };
        if tag.is_empty()
            || tag.len() > 128
            || tag.starts_with(['.', '-'])
            || !tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(bad(
                "the tag must be 1-128 of [A-Za-z0-9_.-], not starting with `.` or `-`",
            ));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let domain = if domain == "index.docker.io" {
            "docker.io".to_string()
        } else {
            domain
        };
        let path = if domain == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !path.split('/').all(component_ok) {
            return Err(bad(
                "repository path components must be lowercase letters, digits and `._-`",
            ));
        }
        if domain.is_empty()
            || !domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        {
            return Err(bad("invalid registry host"));
        }
        Ok(ImageRef {
            domain,
            path,
            tag: tag.to_string(),
        })
    }

    /// `docker.io/library/hello:latest`.
    pub fn full(&self) -> String {
        format!("{}/{}:{}", self.domain, self.path, self.tag)
    }

    /// The short form Docker shows and puts in `RepoTags`: `hello:latest`.
    pub fn familiar(&self) -> String {
        if self.domain == "docker.io" {
            let path = match self.path.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest,
                _ => &self.path,
            };
            format!("{path}:{}", self.tag)
        } else {
            self.full()
        }
    }
}

/// Writes the image `manifest` (and every blob it references) to `out`.
/// `manifest` may also be an image index (an image with its attestations):
/// the OCI outputs carry the whole index; a Docker archive, which `docker
/// load` reads only one image from, gets the image and not the attestations
/// (buildx's docker exporter drops them too).
pub fn export(
    store: &Store,
    manifest: &Descriptor,
    tags: &[String],
    out: &Output,
) -> Result<(), OciError> {
    let refs = tags
        .iter()
        .map(|t| ImageRef::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    let digests = blob_digests(store, manifest)?;
    match out {
        Output::OciLayout { dir } => export_layout(store, manifest, &digests, &refs, dir),
        Output::OciArchive { file } => write_archive(file, |tar| {
            oci_archive(store, manifest, &digests, &refs, tar)
        }),
        Output::DockerArchive { file } => {
            let image = load_manifest(store, &runnable_manifest(store, manifest)?)?;
            write_archive(file, |tar| docker_archive(store, &image, &refs, tar))
        }
    }
}

fn is_index(desc: &Descriptor) -> bool {
    matches!(desc.media_type(), oci_spec::image::MediaType::ImageIndex)
        || desc.media_type().to_string()
            == "application/vnd.docker.distribution.manifest.list.v2+json"
}

fn load_index(store: &Store, desc: &Descriptor) -> Result<ImageIndex, OciError> {
    let digest = desc.digest().to_string();
    serde_json::from_slice(&store.read_blob(&digest)?).map_err(|source| OciError::Json {
        what: format!("index {digest}"),
        source,
    })
}

/// The image an index holds for running: its first entry that is not an
/// attestation (platform `unknown/unknown`); `desc` itself if it is a
/// manifest.
pub(crate) fn runnable_manifest(store: &Store, desc: &Descriptor) -> Result<Descriptor, OciError> {
    if !is_index(desc) {
        return Ok(desc.clone());
    }
    load_index(store, desc)?
        .manifests()
        .iter()
        .find(|d| {
            d.platform()
                .as_ref()
                .is_none_or(|p| p.os().to_string() != "unknown")
        })
        .cloned()
        .ok_or_else(|| {
            OciError::UnsupportedMediaType(format!("index {} holds no image", desc.digest()))
        })
}
pub(crate) fn load_manifest(store: &Store, desc: &Descriptor) -> Result<ImageManifest, OciError> {
    let digest = desc.digest().to_string();
    let bytes = store.read_blob(&digest)?;
    serde_json::from_slice(&bytes).map_err(|source| OciError::Json {
        what: format!("manifest {digest}"),
        source,
    })
}

/// The manifest (or index), then for each image its manifest, config and
/// layers, each once, in a fixed order.
fn blob_digests(store: &Store, desc: &Descriptor) -> Result<Vec<String>, OciError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    collect_digests(store, desc, &mut seen, &mut out)?;
    Ok(out)
}

fn collect_digests(
    store: &Store,
    desc: &Descriptor,
    seen: &mut BTreeSet<String>,
    out: &mut Vec<String>,
) -> Result<(), OciError> {
    let mut add = |d: String| {
        if seen.insert(d.clone()) {
            out.push(d);
        }
    };
    add(desc.digest().to_string());
    if is_index(desc) {
        for child in load_index(store, desc)?.manifests() {
            collect_digests(store, child, seen, out)?;
        }
        return Ok(());
    }
    let image = load_manifest(store, desc)?;
    add(image.config().digest().to_string());
    for l in image.layers() {
        add(l.digest().to_string());
    }
    Ok(())
}

fn index_entries(manifest: &Descriptor, refs: &[ImageRef]) -> Vec<Descriptor> {
    if refs.is_empty() {
        let mut d = manifest.clone();
        d.set_annotations(None);
        return vec![d];
    }
    refs.iter()
        .map(|r| {
            let mut d = manifest.clone();
            d.set_annotations(Some(
                [
                    (REF_NAME.to_string(), r.tag.clone()),
                    (CONTAINERD_IMAGE_NAME.to_string(), r.full()),
                ]
                .into_iter()
                .collect(),
            ));
            d
        })
        .collect()
}

fn export_layout(
    store: &Store,
    manifest: &Descriptor,
    digests: &[String],
    refs: &[ImageRef],
    dir: &Path,
) -> Result<(), OciError> {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(OciError::io("create directory", &blobs))?;
    for digest in digests {
        let digest = digest.as_str();
        let src = store.blob_path(digest)?;
        let dst = blobs.join(digest_hex(digest)?);
        if dst.is_file() {
            continue;
        }
        if fs::hard_link(&src, &dst).is_ok() {
            continue;
        }
        // Different filesystem (or no link permission): copy via a temp file
        // so the digest name only ever holds the complete blob.
        let mut tmp =
            NamedTempFile::new_in(&blobs).map_err(OciError::io("create temp file in", &blobs))?;
        let mut from = store.open_blob(digest)?;
        io::copy(&mut from, &mut tmp).map_err(OciError::io("copy blob to", &dst))?;
        publish_mode(tmp.as_file(), &dst)?;
        tmp.as_file()
            .sync_all()
            .map_err(OciError::io("sync", &dst))?;
        tmp.persist(&dst).map_err(|e| OciError::Io {
            action: "rename blob to",
            path: dst.clone(),
            source: e.error,
        })?;
    }
    let layout = dir.join("oci-layout");
    write_file_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    // Add to an existing layout, replacing entries of the same names, the
    // way skopeo does when copying into an `oci:` directory.
    let index_path = dir.join("index.json");
    let mut index = match fs::read(&index_path) {
        Ok(bytes) => {
            serde_json::from_slice::<ImageIndex>(&bytes).map_err(|source| OciError::Json {
                what: index_path.display().to_string(),
                source,
            })?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => empty_index(),
        Err(e) => {
            return Err(OciError::Io {
                action: "read",
                path: index_path,
                source: e,
            })
        }
    };
    let new = index_entries(manifest, refs);
    let new_names: BTreeSet<Option<String>> = new
        .iter()
        .map(|d| ref_name(d).map(str::to_string))
        .collect();
    let mut manifests: Vec<Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| {
            let name = ref_name(d).map(str::to_string);
            (name.is_none() && d.digest() != manifest.digest())
                || (name.is_some() && !new_names.contains(&name))
        })
        .cloned()
        .collect();
    manifests.extend(new);
    index.set_manifests(manifests);
    let bytes = canonical_json(&index).map_err(|source| OciError::Json {
        what: index_path.display().to_string(),
        source,
    })?;
    write_file_atomic(&index_path, &bytes)
}

fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    let dir = parent_dir(path);
    let mut tmp = NamedTempFile::new_in(&dir).map_err(OciError::io("create temp file in", &dir))?;
    tmp.write_all(bytes).map_err(OciError::io("write", path))?;
    publish_mode(tmp.as_file(), path)?;
    tmp.as_file()
        .sync_all()
        .map_err(OciError::io("sync", path))?;
    tmp.persist(path).map_err(|e| OciError::Io {
        action: "rename temp file to",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

type Tar = tar::Builder<io::BufWriter<File>>;

fn write_archive(
    file: &Path,
    fill: impl FnOnce(&mut Tar) -> Result<(), OciError>,
) -> Result<(), OciError> {
    let dir = parent_dir(file);
    let tmp = NamedTempFile::new_in(&dir).map_err(OciError::io("create temp file in", &dir))?;
    let handle = tmp.reopen().map_err(OciError::io("open", tmp.path()))?;
    let mut tar = tar::Builder::new(io::BufWriter::with_capacity(256 * 1024, handle));
    fill(&mut tar)?;
    let buf = tar
        .into_inner()
        .map_err(OciError::io("finish archive", file))?;
    let handle = buf.into_inner().map_err(|e| OciError::Io {
        action: "flush archive",
        path: file.to_path_buf(),
        source: e.into_error(),
    })?;
    publish_mode(&handle, file)?;
    handle.sync_all().map_err(OciError::io("sync", file))?;
    tmp.persist(file).map_err(|e| OciError::Io {
        action: "rename archive to",
        path: file.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn add_dir(tar: &mut Tar, path: &str) -> Result<(), OciError> {
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut h, path, io::empty())
        .map_err(OciError::io("write archive entry", path))
}

fn add_bytes(tar: &mut Tar, path: &str, bytes: &[u8]) -> Result<(), OciError> {
    let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
    tar.append_data(&mut h, path, bytes)
        .map_err(OciError::io("write archive entry", path))
}

fn add_blob(tar: &mut Tar, store: &Store, digest: &str, path: &str) -> Result<(), OciError> {
    let file = store.open_blob(digest)?;
    let len = file
        .metadata()
        .map_err(OciError::io("stat", store.blob_path(digest)?))?
        .len();
    let mut h = header(tar::EntryType::Regular, 0o644, len);
    tar.append_data(&mut h, path, io::Read::take(file, len))
        .map_err(OciError::io("write archive entry", path))
}

fn oci_archive(
    store: &Store,
    manifest: &Descriptor,
    digests: &[String],
    refs: &[ImageRef],
    tar: &mut Tar,
) -> Result<(), OciError> {
    add_bytes(tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut index = empty_index();
    index.set_manifests(index_entries(manifest, refs));
    let index_bytes = canonical_json(&index).map_err(|source| OciError::Json {
        what: "index.json".to_string(),
        source,
    })?;
    add_bytes(tar, "index.json", &index_bytes)?;
    add_dir(tar, "blobs")?;
    add_dir(tar, "blobs/sha256")?;
    let mut digests = digests.to_vec();
    digests.sort();
    for digest in digests {
        let path = format!("blobs/sha256/{}", digest_hex(&digest)?);
        add_blob(tar, store, &digest, &path)?;
    }
    Ok(())
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

fn docker_archive(
    store: &Store,
    image: &ImageManifest,
    refs: &[ImageRef],
    tar: &mut Tar,
) -> Result<(), OciError> {
    let config_digest = image.config().digest().to_string();
    let config_path = format!("{}.json", digest_hex(&config_digest)?);
    let mut layer_paths = Vec::new();
    for layer in image.layers() {
        let digest = layer.digest().to_string();
        let media_type = layer.media_type().to_string();
        if media_type.contains("zstd") {
            // Docker 20.10's loader cannot decompress zstd; fail here rather
            // than produce an archive `docker load` rejects.
            return Err(OciError::UnsupportedMediaType(format!(
                "{media_type} (docker-archive output needs gzip or uncompressed layers)"
            )));
        }
        layer_paths.push((
            digest.clone(),
            format!("{}/layer.tar", digest_hex(&digest)?),
        ));
    }
    let mut repo_tags: Vec<String> = refs.iter().map(ImageRef::familiar).collect();
    repo_tags.dedup();
    let entry = DockerManifestEntry {
        config: config_path.clone(),
        repo_tags,
        layers: layer_paths.iter().map(|(_, p)| p.clone()).collect(),
    };
    let manifest_json = serde_json::to_vec(&[entry]).map_err(|source| OciError::Json {
        what: "docker manifest.json".to_string(),
        source,
    })?;
    add_blob(tar, store, &config_digest, &config_path)?;
    let mut written = BTreeSet::new();
    for (digest, path) in &layer_paths {
        if written.insert(digest.clone()) {
            let dir = path.trim_end_matches("/layer.tar");
            add_dir(tar, dir)?;
            add_blob(tar, store, digest, path)?;
        }
    }
    add_bytes(tar, "manifest.json", &manifest_json)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_like_docker() {
        let r = ImageRef::parse("hello").unwrap();
        assert_eq!(r.full(), "docker.io/library/hello:latest");
        assert_eq!(r.familiar(), "hello:latest");
        let r = ImageRef::parse("docker.io/library/hello:1.0").unwrap();
        assert_eq!(r.familiar(), "hello:1.0");
        let r = ImageRef::parse("me/app").unwrap();
        assert_eq!(r.full(), "docker.io/me/app:latest");
        assert_eq!(r.familiar(), "me/app:latest");
        let r = ImageRef::parse("localhost:5000/x/y:v2").unwrap();
        assert_eq!(r.full(), "localhost:5000/x/y:v2");
        assert_eq!(r.familiar(), "localhost:5000/x/y:v2");
        let r = ImageRef::parse("localhost:5000/x").unwrap();
        assert_eq!(r.tag, "latest");
        assert!(ImageRef::parse("Hello").is_err());
        assert!(ImageRef::parse("hello@sha256:00").is_err());
        assert!(ImageRef::parse("hello:").is_err());
    }
}
