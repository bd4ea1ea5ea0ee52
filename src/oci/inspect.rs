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
    pub size: u64,
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
        let (files, found) = list_layer(store, &digest, &media_type)?;
        if let Some(bytes) = found {
            urunc_json = Some(decode_urunc_json(&bytes)?);
        }
        layers.push(LayerReport {
            digest,
            size: layer.size(),
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

fn list_layer(
    store: &Store,
    digest: &str,
    media_type: &str,
) -> Result<(Vec<String>, Option<Vec<u8>>), OciError> {
    let path = store.blob_path(digest)?;
    let mut archive = tar::Archive::new(open_layer(store, digest, media_type)?);
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
    Ok((files, urunc_json))
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
        Ok(())
    }
}
