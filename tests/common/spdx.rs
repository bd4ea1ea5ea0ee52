//! Reading bunny's SPDX SBOMs back in tests.

use serde_json::Value;

/// Each SPDX package of `sbom` as (name, versionInfo, where it came from):
/// a layer's reference is in `sourceInfo` ("resolved from REF", since SPDX
/// wants a URL as the download location), anything else gives its
/// `downloadLocation`.
pub fn package_rows(sbom: &Value) -> Vec<(String, String, String)> {
    sbom["packages"]
        .as_array()
        .expect("an SPDX document has packages")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["versionInfo"].as_str().unwrap().to_string(),
                p["sourceInfo"]
                    .as_str()
                    .and_then(|s| s.strip_prefix("resolved from "))
                    .unwrap_or_else(|| p["downloadLocation"].as_str().unwrap())
                    .to_string(),
            )
        })
        .collect()
}
