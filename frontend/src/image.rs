//! The frontend's own image: FROM scratch, the static `bunny-frontend` binary
//! as entrypoint, the static `bunny-init` (Containerfile builds put it in
//! linux guests), an empty /tmp (the pack step's scratch space), and the
//! label that lets BuildKit run it without a network. The tools image the
//! pack step runs in (when it needs mke2fs, makefs or busybox) can be baked
//! in as `BUNNY_TOOLS_IMAGE` in the image's Env.
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
pub const BINARY_NAME: &str = "bunny-frontend";
/// bunny-init, beside it.
pub const INIT_NAME: &str = "bunny-init";
/// BuildKit runs a frontend without network only if its image says it may.
pub const NETWORK_NONE_LABEL: &str = "moby.buildkit.frontend.network.none";

/// Writes the frontend image for `binary` into `store`, tags it `tag`, and
/// returns the manifest digest.
/// What goes into the frontend image.
#[derive(Debug, Clone)]
pub struct ImageInputs<'a> {
    pub binary: &'a Path,
    /// The static bunny-init; without it, Containerfile builds of linux
    /// guests fail in the pack step with a clear error.
    pub init: Option<&'a Path>,
    /// The default tools image (`BUNNY_TOOLS_IMAGE`).
    pub tools_image: Option<&'a str>,
}

pub fn build_image(
    store: &Store,
    inputs: &ImageInputs,
    tag: &str,
    epoch: u64,
) -> Result<String, FrontendError> {
    let wrap = |e: &dyn std::error::Error| FrontendError::Io {
        context: format!("writing the frontend image {tag}"),
        source: std::io::Error::other(crate::gateway::chain(e)),
    };
    let mut entries = vec![
        LayerEntry {
            path: "/tmp".into(),
            content: LayerContent::Dir,
            mode: 0o1777,
        },
        LayerEntry {
            path: BINARY_PATH.into(),
            content: LayerContent::File(inputs.binary.to_path_buf()),
            mode: 0o755,
        },
    ];
    if let Some(init) = inputs.init {
        entries.push(LayerEntry {
            path: format!("/{INIT_NAME}"),
            content: LayerContent::File(init.to_path_buf()),
            mode: 0o755,
        });
    }
    let layer = write_layer(
        &entries,
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
            env: std::iter::once("TMPDIR=/tmp".to_string())
                .chain(
                    inputs
                        .tools_image
                        .map(|t| format!("{}={t}", crate::translate::TOOLS_ARG)),
                )
                .collect(),
            labels,
            working_dir: None,
            user: None,
            created_epoch: epoch,
        },
        annotations: BTreeMap::new(),
    };
    let manifest = assemble(&spec, store).map_err(|e| wrap(&e))?;
    store.tag(tag, &manifest).map_err(|e| wrap(&e))?;
    Ok(manifest.digest().to_string())
}
