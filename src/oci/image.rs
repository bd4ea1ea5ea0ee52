//! Image assembly: config and manifest blobs from layers already in the store.
//!
//! Both documents are serialised with sorted keys and contain nothing from
//! the host (no hostnames, no build time beyond `created_epoch`), so the
//! manifest digest depends only on the inputs.

use std::collections::{BTreeMap, HashMap};

use oci_spec::image::{
    ConfigBuilder, Descriptor, HistoryBuilder, ImageConfigurationBuilder, ImageManifestBuilder,
    MediaType, Os, PlatformBuilder, RootFsBuilder,
};

use super::error::OciError;
use super::layer::Layer;
use crate::layers::store::{canonical_json, Store};
use crate::platform::Arch;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    pub os: String,
    pub architecture: Arch,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// `WorkingDir` and `User`: docker, ctr and nerdctl put them in the
    /// runtime spec's process, and urunc hands them to urunit.
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// SOURCE_DATE_EPOCH: `created` of the image and of every history entry.
    pub created_epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Bottom first.
    pub layers: Vec<Layer>,
    pub config: ImageConfig,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
}

/// The string `history[].created_by` carries; constant so images built on
/// different machines match.
pub const CREATED_BY: &str = "bunny";

pub fn oci_arch(a: Arch) -> oci_spec::image::Arch {
    match a {
        Arch::Amd64 => oci_spec::image::Arch::Amd64,
        Arch::Arm64 => oci_spec::image::Arch::ARM64,
    }
}

fn spec_err(what: &str) -> impl FnOnce(oci_spec::OciSpecError) -> OciError + '_ {
    move |e| OciError::Spec {
        what: what.to_string(),
        message: e.to_string(),
    }
}

fn json_err(what: &str) -> impl FnOnce(serde_json::Error) -> OciError + '_ {
    move |source| OciError::Json {
        what: what.to_string(),
        source,
    }
}

/// Writes the config and manifest blobs and returns the manifest's
/// descriptor (with its platform, as an index entry wants it).
pub fn assemble(spec: &ImageSpec, store: &Store) -> Result<Descriptor, OciError> {
    let c = &spec.config;
    let created = rfc3339(c.created_epoch);
    let mut runtime = ConfigBuilder::default();
    if !c.env.is_empty() {
        runtime = runtime.env(c.env.clone());
    }
    if !c.entrypoint.is_empty() {
        runtime = runtime.entrypoint(c.entrypoint.clone());
    }
    if !c.cmd.is_empty() {
        runtime = runtime.cmd(c.cmd.clone());
    }
    if !c.labels.is_empty() {
        runtime = runtime.labels(c.labels.clone().into_iter().collect::<HashMap<_, _>>());
    }
    if let Some(w) = c.working_dir.as_ref().filter(|w| !w.is_empty()) {
        runtime = runtime.working_dir(w.clone());
    }
    if let Some(u) = c.user.as_ref().filter(|u| !u.is_empty()) {
        runtime = runtime.user(u.clone());
    }
    let runtime = runtime.build().map_err(spec_err("image config"))?;
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(
            spec.layers
                .iter()
                .map(|l| l.diff_id.clone())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(spec_err("image rootfs"))?;
    let history = spec
        .layers
        .iter()
        .map(|_| {
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(CREATED_BY)
                .build()
                .map_err(spec_err("image history"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let os = Os::from(c.os.as_str());
    let config = ImageConfigurationBuilder::default()
        .created(created.clone())
        .architecture(oci_arch(c.architecture))
        .os(os.clone())
        .config(runtime)
        .rootfs(rootfs)
        .history(history)
        .build()
        .map_err(spec_err("image config"))?;
    let config_bytes = canonical_json(&config).map_err(json_err("image config"))?;
    let config_desc = store.put_bytes(MediaType::ImageConfig.as_ref(), &config_bytes)?;

    let mut manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(
            spec.layers
                .iter()
                .map(|l| l.descriptor.clone())
                .collect::<Vec<_>>(),
        );
    if !spec.annotations.is_empty() {
        manifest = manifest.annotations(
            spec.annotations
                .clone()
                .into_iter()
                .collect::<HashMap<_, _>>(),
        );
    }
    let manifest = manifest.build().map_err(spec_err("image manifest"))?;
    let manifest_bytes = canonical_json(&manifest).map_err(json_err("image manifest"))?;
    let mut desc = store.put_bytes(MediaType::ImageManifest.as_ref(), &manifest_bytes)?;
    let platform = PlatformBuilder::default()
        .architecture(oci_arch(c.architecture))
        .os(os)
        .build()
        .map_err(spec_err("image platform"))?;
    desc.set_platform(Some(platform));
    Ok(desc)
}

/// Formats seconds since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339(epoch: u64) -> String {
    let days = epoch / 86_400;
    let secs = epoch % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm, for days after 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
