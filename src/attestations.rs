//! What a build's SBOM and provenance say, gathered from its plan and the
//! built app: the BunnyFile, the kernel, the framework's layers as
//! `bunny.lock` pins them, the app's sources, and the rootfs files. The
//! documents themselves are written by [`crate::oci::attest`].

use std::path::Path;

use crate::build::BuiltApp;
use crate::layers::tree::EntryKind;
use crate::oci::annotations::{KERNEL_PATH, ROOTFS_PATH};
use crate::oci::attest::{self, Inputs, LayerInput, PackageInput, RootfsFile, SourceInput, Wanted};
use crate::pipeline::{KernelInput, Plan, RootfsPlan};

#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("reading {path} for the SBOM/provenance: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> AttestError + '_ {
    move |source| AttestError::Read {
        path: path.display().to_string(),
        source,
    }
}

/// The build being described.
pub struct Described<'a> {
    pub plan: &'a Plan,
    pub app: Option<&'a BuiltApp>,
    /// The BunnyFile or Containerfile.
    pub file: &'a Path,
    pub context: &'a Path,
    /// `bunny.lock`, for the references the layers were resolved from.
    pub lock_file: Option<&'a Path>,
    pub epoch: u64,
}

/// Gathers the inputs. Rootfs files are hashed only for an SBOM (the
/// provenance names inputs, not outputs).
pub fn collect(d: &Described, wanted: Wanted) -> Result<Inputs, AttestError> {
    let plan = d.plan;
    let mut inputs = Inputs {
        platform: format!("linux/{}", crate::oci::image::oci_arch(plan.architecture)),
        framework: plan.framework.name().to_string(),
        monitor: plan.monitor.as_str().to_string(),
        epoch: d.epoch,
        ..Default::default()
    };
    if !wanted.any() {
        return Ok(inputs);
    }
    inputs.bunnyfile = Some(attest::file_input(d.file, d.context).map_err(read_err(d.file))?);
    match &plan.kernel {
        KernelInput::Local(k) => {
            inputs.kernel = Some((
                KERNEL_PATH.to_string(),
                attest::file_input(k, d.context).map_err(read_err(k))?,
            ));
        }
        KernelInput::InRootfs(p) => {
            let source = match &plan.rootfs {
                RootfsPlan::Initrd(t) | RootfsPlan::Block(t, _) | RootfsPlan::Raw(t) => {
                    match t.get(p.trim_start_matches('/')).map(|e| &e.kind) {
                        Some(EntryKind::File { source, .. }) => Some(source.clone()),
                        _ => None,
                    }
                }
                _ => None,
            };
            if let Some(s) = source {
                inputs.kernel = Some((
                    p.clone(),
                    attest::file_input(&s, d.context).map_err(read_err(&s))?,
                ));
            }
        }
        // prepare_app has built a kernel from sources by now (it is then
        // `Local`); an unprepared plan has nothing to name yet.
        KernelInput::App | KernelInput::Source(..) => {}
    }
    kernel_from_source(d, &mut inputs);
    if let Some(app) = d.app {
        let lock = d
            .lock_file
            .and_then(|p| crate::build::lock::LockFile::load(p).ok());
        for (key, digest) in &app.layers {
            let reference = lock
                .as_ref()
                .and_then(|l| l.layers.get(key))
                .map(|l| l.reference.clone())
                .unwrap_or_else(|| key.clone());
            inputs.layers.push(LayerInput {
                key: key.clone(),
                reference,
                digest: digest.clone(),
            });
        }
        inputs.steps.extend(app.steps.iter().cloned());
        inputs.packages = app
            .packages
            .iter()
            .map(|p| PackageInput {
                name: p.name.clone(),
                version: p.version.clone(),
                sha256: p.sha256.clone(),
                url: Some(p.url.clone()),
            })
            .collect();
        if let (Some((spec_app, _)), Some(dir)) = (&plan.app, &app.source_dir) {
            let from = spec_app.from.value.as_str();
            inputs.source = Some(if crate::build::app::is_git_url(from) {
                SourceInput::Git {
                    url: from.to_string(),
                    commit: attest::git_commit(dir),
                }
            } else {
                SourceInput::Tree {
                    name: if from == "local" {
                        attest::relative_name(dir, d.context)
                    } else {
                        from.to_string()
                    },
                    digest: attest::tree_digest(dir).map_err(read_err(dir))?,
                }
            });
        }
    }
    let kind = match &plan.rootfs {
        RootfsPlan::None => None,
        RootfsPlan::Initrd(_) => Some("initrd"),
        RootfsPlan::Block(..) => Some("block image"),
        RootfsPlan::Raw(_) => Some("raw files"),
        RootfsPlan::Prebuilt { .. } => Some("prebuilt file"),
    };
    inputs.steps.push("pack kernel layer".to_string());
    if let Some(k) = kind {
        inputs.steps.push(format!("pack rootfs ({k})"));
    }
    inputs.steps.push("pack urunc.json layer".to_string());
    if wanted.sbom {
        inputs.rootfs_files = rootfs_files(&plan.rootfs)?;
    }
    Ok(inputs)
}

/// A kernel built from sources is named by what bunny.lock pins for it (the
/// sources, the resolved config, the build image) when the lock's recorded
/// build is the very kernel this image carries, so a stale entry left by an
/// earlier BunnyFile never lands in the SBOM.
fn kernel_from_source(d: &Described, inputs: &mut Inputs) {
    let Some(lock) = d
        .lock_file
        .and_then(|p| crate::build::lock::LockFile::load(p).ok())
    else {
        return;
    };
    let Some((_, kernel)) = &inputs.kernel else {
        return;
    };
    let fw = &inputs.framework;
    let built = lock.layers.get(&format!("{fw}.kernel-build"));
    if built.is_none_or(|b| b.digest.trim_start_matches("sha256:") != kernel.sha256) {
        return;
    }
    for key in [
        format!("{fw}.kernel-source"),
        format!("{fw}.kernel-config"),
        format!("{fw}.kernel-build"),
        format!("{fw}.kernel-toolchain"),
    ] {
        if let Some(l) = lock.layers.get(&key) {
            inputs.layers.push(LayerInput {
                key,
                reference: l.reference.clone(),
                digest: l.digest.clone(),
            });
        }
    }
}

fn rootfs_files(rootfs: &RootfsPlan) -> Result<Vec<RootfsFile>, AttestError> {
    let mut out = Vec::new();
    match rootfs {
        RootfsPlan::None => {}
        RootfsPlan::Prebuilt { path, .. } => {
            let (sha256, sha1) = attest::file_digests(path).map_err(read_err(path))?;
            out.push(RootfsFile {
                path: ROOTFS_PATH.to_string(),
                sha256,
                sha1,
            });
        }
        RootfsPlan::Initrd(t) | RootfsPlan::Block(t, _) | RootfsPlan::Raw(t) => {
            for (path, entry) in t.iter() {
                if let EntryKind::File { source, .. } = &entry.kind {
                    let (sha256, sha1) = attest::file_digests(source).map_err(read_err(source))?;
                    out.push(RootfsFile {
                        path: format!("/{path}"),
                        sha256,
                        sha1,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
