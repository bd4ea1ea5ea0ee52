//! `bunny inspect`: what an image in the store carries, read back from the
//! blobs themselves (manifest, config, each layer's tar listing and the
//! decoded `/urunc.json`).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};

use oci_spec::image::ImageConfiguration;

use super::annotations::{decode_urunc_json, PREFIX};
use super::error::OciError;
use super::output::load_manifest;
use crate::layers::store::Store;

/// Larger `/urunc.json` files are not urunc's and are not read.
const MAX_URUNC_JSON: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigReport {
    pub digest: String,
    pub os: String,
    pub architecture: String,
    pub created: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerReport {
    pub digest: String,
    /// The blob's size (compressed, as the manifest says).
    pub size: u64,
    /// The size of the layer's tar, decompressed.
    pub uncompressed_size: u64,
    /// What the layer holds, from its files and the urunc keys: `kernel`,
    /// `rootfs (initrd)`, `rootfs (block)`, `urunc.json`, else `files`.
    pub role: String,
    pub media_type: String,
    /// Absolute paths in tar order; directories end with `/`.
    pub files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageReport {
    pub name: Option<String>,
    pub manifest_digest: String,
    /// The manifest's `com.urunc.unikernel.*` annotations.
    pub urunc: BTreeMap<String, String>,
    /// Every manifest annotation.
    pub annotations: BTreeMap<String, String>,
    pub config: ConfigReport,
    pub layers: Vec<LayerReport>,
    /// `/urunc.json` from the topmost layer that has one, values decoded.
    pub urunc_json: Option<BTreeMap<String, String>>,
}

pub fn inspect(store: &Store, reference: &str) -> Result<ImageReport, OciError> {
    let desc = store.resolve(reference)?;
    let manifest_digest = desc.digest().to_string();
    let name = if reference.starts_with("sha256:") {
        store
            .list()?
            .into_iter()
            .find(|(_, d)| d.digest() == desc.digest())
            .map(|(n, _)| n)
    } else {
        store
            .list()?
            .into_iter()
            .find(|(n, d)| {
                d.digest() == desc.digest()
                    && (n == reference || *n == format!("{reference}:latest"))
            })
            .map(|(n, _)| n)
    };
    let manifest = load_manifest(store, &desc)?;
    let annotations: BTreeMap<String, String> = manifest
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let urunc = annotations
        .iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    let config_digest = manifest.config().digest().to_string();
    let config_bytes = store.read_blob(&config_digest)?;
    let config: ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|source| OciError::Json {
            what: format!("image config {config_digest}"),
            source,
        })?;
    let runtime = config.config().clone().unwrap_or_default();
    let config = ConfigReport {
        digest: config_digest,
        os: config.os().to_string(),
        architecture: config.architecture().to_string(),
        created: config.created().clone(),
        entrypoint: runtime.entrypoint().clone().unwrap_or_default(),
        cmd: runtime.cmd().clone().unwrap_or_default(),
        env: runtime.env().clone().unwrap_or_default(),
        working_dir: runtime.working_dir().clone(),
        user: runtime.user().clone(),
        labels: runtime
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        diff_ids: config.rootfs().diff_ids().clone(),
    };

    let mut layers = Vec::new();
    let mut urunc_json = None;
    for layer in manifest.layers() {
        let digest = layer.digest().to_string();
        let media_type = layer.media_type().to_string();
        let Listing {
            files,
            urunc_json: found,
            size: uncompressed_size,
        } = list_layer(store, &digest, &media_type)?;
        if let Some(bytes) = found {
            urunc_json = Some(decode_urunc_json(&bytes)?);
        }
        layers.push(LayerReport {
            role: layer_role(&files, &urunc),
            digest,
            size: layer.size(),
            uncompressed_size,
            media_type,
            files,
        });
    }
    Ok(ImageReport {
        name,
        manifest_digest,
        urunc,
        annotations,
        config,
        layers,
        urunc_json,
    })
}

/// Opens a layer blob decompressed according to its media type.
pub fn open_layer(
    store: &Store,
    digest: &str,
    media_type: &str,
) -> Result<Box<dyn Read>, OciError> {
    let file = io::BufReader::new(store.open_blob(digest)?);
    if media_type.ends_with("+gzip") || media_type.ends_with(".tar.gzip") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(file)))
    } else if media_type.ends_with("+zstd") || media_type.ends_with(".tar.zstd") {
        let dec = zstd::stream::read::Decoder::with_buffer(file).map_err(OciError::io(
            "start zstd decoder for",
            store.blob_path(digest)?,
        ))?;
        Ok(Box::new(dec))
    } else if media_type.ends_with(".tar") || media_type.ends_with(".tar.diff") {
        Ok(Box::new(file))
    } else {
        Err(OciError::UnsupportedMediaType(media_type.to_string()))
    }
}

/// What a layer is for, from the paths the urunc keys name: the kernel
/// (`binary`), the rootfs file (`initrd` or `block`), `/urunc.json` alone, or
/// the guest's files.
fn layer_role(files: &[String], urunc: &BTreeMap<String, String>) -> String {
    let key = |k: &str| {
        urunc
            .get(&format!("{PREFIX}{k}"))
            .map(|p| format!("/{}", p.trim_start_matches('/')))
    };
    let holds = |p: &Option<String>| p.as_ref().is_some_and(|p| files.contains(p));
    if holds(&key("binary")) {
        return "kernel".into();
    }
    if holds(&key("initrd")) {
        return "rootfs (initrd)".into();
    }
    if holds(&key("block")) {
        return "rootfs (block)".into();
    }
    let regular: Vec<&String> = files.iter().filter(|f| !f.ends_with('/')).collect();
    if regular.len() == 1 && regular[0] == "/urunc.json" {
        return "urunc.json".into();
    }
    if urunc
        .get(&format!("{PREFIX}mountRootfs"))
        .map(String::as_str)
        == Some("true")
    {
        return "rootfs files".into();
    }
    "files".into()
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// What reading a layer through finds.
struct Listing {
    files: Vec<String>,
    urunc_json: Option<Vec<u8>>,
    /// The decompressed tar's size.
    size: u64,
}

fn list_layer(store: &Store, digest: &str, media_type: &str) -> Result<Listing, OciError> {
    let path = store.blob_path(digest)?;
    let mut archive = tar::Archive::new(Counted {
        inner: open_layer(store, digest, media_type)?,
        count: 0,
    });
    let mut files = Vec::new();
    let mut urunc_json = None;
    for entry in archive
        .entries()
        .map_err(OciError::io("read layer", &path))?
    {
        let mut entry = entry.map_err(OciError::io("read layer", &path))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let trimmed = raw.trim_start_matches("./").trim_start_matches('/');
        let trimmed = trimmed.trim_end_matches('/');
        let is_dir = entry.header().entry_type().is_dir();
        let shown = format!(
            "/{trimmed}{}",
            if is_dir && !trimmed.is_empty() {
                "/"
            } else {
                ""
            }
        );
        if trimmed == "urunc.json" && entry.header().entry_type().is_file() {
            let mut bytes = Vec::new();
            (&mut entry)
                .take(MAX_URUNC_JSON)
                .read_to_end(&mut bytes)
                .map_err(OciError::io("read urunc.json in layer", &path))?;
            urunc_json = Some(bytes);
        }
        files.push(shown);
    }
    // The tar's end (its zero blocks and any padding after them) counts too.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(OciError::io("read layer", &path))?;
    Ok(Listing {
        files,
        urunc_json,
        size: rest.count,
    })
}

impl ImageReport {
    /// Each layer's role and sizes, then the totals: the table `bunny build`
    /// prints and `bunny inspect` shows.
    pub fn size_table(&self) -> String {
        let mut out = String::from("Sizes (bytes):\n");
        out.push_str(&format!(
            "  {:<16} {:>12} {:>12}  {}\n",
            "LAYER", "COMPRESSED", "UNCOMPRESSED", "DIGEST"
        ));
        let (mut packed, mut unpacked) = (0u64, 0u64);
        for l in &self.layers {
            let hex = l.digest.rsplit(':').next().unwrap_or(&l.digest);
            out.push_str(&format!(
                "  {:<16} {:>12} {:>12}  {}\n",
                l.role,
                l.size,
                l.uncompressed_size,
                &hex[..hex.len().min(12)]
            ));
            packed += l.size;
            unpacked += l.uncompressed_size;
        }
        out.push_str(&format!(
            "  {:<16} {:>12} {:>12}\n",
            "total", packed, unpacked
        ));
        out
    }
}

impl fmt::Display for ImageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Name:      {}", self.name.as_deref().unwrap_or("<none>"))?;
        writeln!(f, "Manifest:  {}", self.manifest_digest)?;
        writeln!(f, "Config:    {}", self.config.digest)?;
        writeln!(
            f,
            "Platform:  {}/{}",
            self.config.os, self.config.architecture
        )?;
        if let Some(created) = &self.config.created {
            writeln!(f, "Created:   {created}")?;
        }
        if !self.config.entrypoint.is_empty() {
            writeln!(f, "Entrypoint: {:?}", self.config.entrypoint)?;
        }
        if !self.config.cmd.is_empty() {
            writeln!(f, "Cmd:       {:?}", self.config.cmd)?;
        }
        for e in &self.config.env {
            writeln!(f, "Env:       {e}")?;
        }
        if let Some(w) = &self.config.working_dir {
            writeln!(f, "WorkingDir: {w}")?;
        }
        if let Some(u) = &self.config.user {
            writeln!(f, "User:      {u}")?;
        }
        writeln!(f, "urunc (manifest annotations):")?;
        if self.urunc.is_empty() {
            writeln!(f, "  <none>")?;
        }
        for (k, v) in &self.urunc {
            writeln!(f, "  {k} = {v}")?;
        }
        writeln!(f, "urunc.json:")?;
        match &self.urunc_json {
            None => writeln!(f, "  <none>")?,
            Some(m) => {
                for (k, v) in m {
                    writeln!(f, "  {k} = {v}")?;
                }
            }
        }
        if !self.config.labels.is_empty() {
            writeln!(f, "Labels:")?;
            for (k, v) in &self.config.labels {
                writeln!(f, "  {k} = {v}")?;
            }
        }
        writeln!(f, "Layers:")?;
        for l in &self.layers {
            writeln!(f, "  {} ({} bytes, {})", l.digest, l.size, l.media_type)?;
            for file in &l.files {
                writeln!(f, "    {file}")?;
            }
        }
        write!(f, "{}", self.size_table())
    }
}
