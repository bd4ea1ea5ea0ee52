//! The frontend's own image: FROM scratch, the static `bunny-frontend` binary
//! as entrypoint, an empty /tmp (the frontend builds an initrd in a scratch
//! directory), and the label that lets BuildKit run it without a network.
//! A BunnyFile describes unikernel images, not plain container images, so
//! this small assembler (bunny's own layer and image writers) stands in for
//! a Dockerfile; `bunny push` ships the result.

use std::collections::BTreeMap;
use std::path::Path;

use bunny::layers::store::Store;
use bunny::oci::image::{assemble, ImageConfig, ImageSpec};
use bunny::oci::layer::{write_layer, CompressionChoice, LayerContent, LayerEntry, LayerOptions};
use bunny::platform::Arch;

use crate::error::FrontendError;

/// Where the binary lives in the image.
pub const BINARY_PATH: &str = "/bunny-frontend";
/// BuildKit runs a frontend without network only if its image says it may.
pub const NETWORK_NONE_LABEL: &str = "moby.buildkit.frontend.network.none";

/// Writes the frontend image for `binary` into `store`, tags it `tag`, and
/// returns the manifest digest.
pub fn build_image(
    store: &Store,
    binary: &Path,
    tag: &str,
    epoch: u64,
) -> Result<String, FrontendError> {
    let wrap = |e: &dyn std::error::Error| FrontendError::Io {
        context: format!("writing the frontend image {tag}"),
        source: std::io::Error::other(crate::gateway::chain(e)),
    };
    let layer = write_layer(
        &[
            LayerEntry {
                path: "/tmp".into(),
                content: LayerContent::Dir,
                mode: 0o1777,
            },
            LayerEntry {
                path: BINARY_PATH.into(),
                content: LayerContent::File(binary.to_path_buf()),
                mode: 0o755,
            },
        ],
        &LayerOptions {
            mtime: epoch,
            compression: CompressionChoice::Auto,
        },
        store,
    )
    .map_err(|e| wrap(&e))?;
    let mut labels = BTreeMap::new();
    labels.insert(NETWORK_NONE_LABEL.to_string(), "true".to_string());
    let spec = ImageSpec {
        layers: vec![layer],
        config: ImageConfig {
            os: "linux".into(),
            architecture: Arch::Amd64,
            cmd: Vec::new(),
            entrypoint: vec![BINARY_PATH.to_string()],
            env: vec!["TMPDIR=/tmp".to_string()],
            labels,
            created_epoch: epoch,
        },
        annotations: BTreeMap::new(),
    };
    let manifest = assemble(&spec, store).map_err(|e| wrap(&e))?;
    store.tag(tag, &manifest).map_err(|e| wrap(&e))?;
    Ok(manifest.digest().to_string())
}
