//! Volumes from the OCI spec's mounts: a bind mount of a host directory
//! becomes a disk image of it (ext4 for Linux guests, ext2 for rumprun, as
//! `bunny run -v` makes them), written back into the directory when the
//! guest stops; a bind mount of a block device is passed to the guest as
//! it is. The mounts every engine adds for a process container (`/proc`,
//! `/dev`, `/sys`, `/etc/hosts`, `resolv.conf`, `hostname`, secrets and the
//! like) mean nothing to a guest kernel and are left out, as urunc does by
//! taking only bind mounts it can turn into disks.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::OciError;
use crate::{RunSpec, UnikernelType, Volume};

#[derive(Debug, Clone, Deserialize)]
pub struct Mount {
    pub destination: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub source: Option<PathBuf>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Deserialize)]
struct Mounts {
    #[serde(default)]
    mounts: Vec<Mount>,
}

/// Destinations an engine fills for every container (docker, containerd,
/// CRI-O, kubelet), under which nothing becomes a volume.
const ENGINE_PATHS: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/run/secrets",
    "/var/run/secrets",
    "/run/.containerenv",
];

fn engine_path(dest: &str) -> bool {
    let dest = dest.trim_end_matches('/');
    ENGINE_PATHS
        .iter()
        .any(|p| dest == *p || dest.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

impl Mount {
    fn is_bind(&self) -> bool {
        self.kind.as_deref() == Some("bind")
            || self.options.iter().any(|o| o == "bind" || o == "rbind")
    }

    fn read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

/// The spec's mounts that may be volumes: bind mounts of something other
/// than a plain file, at a destination no engine fills by itself.
pub fn candidates(bundle: &Path) -> Result<Vec<Mount>, OciError> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| OciError::BadSpec {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let m: Mounts = serde_json::from_slice(&text).map_err(|e| OciError::BadSpec {
        path,
        detail: e.to_string(),
    })?;
    Ok(m.mounts
        .into_iter()
        .filter(|m| m.is_bind() && !engine_path(&m.destination))
        .filter(|m| {
            m.source
                .as_deref()
                .and_then(|s| std::fs::metadata(s).ok())
                .is_some_and(|md| md.is_dir() || md.file_type().is_block_device())
        })
        .collect())
}

/// A directory's image, to be written back once the guest stops.
#[derive(Debug)]
pub struct WriteBack {
    pub image: PathBuf,
    pub dir: PathBuf,
}

/// Adds the mounts to `run` as volumes, making the directories' images in
/// `dir` (the container's state directory).
pub fn attach(run: &mut RunSpec, mounts: &[Mount], dir: &Path) -> Result<Vec<WriteBack>, OciError> {
    let mut back = Vec::new();
    if mounts.is_empty() {
        return Ok(back);
    }
    let bad = |m: &Mount, detail: String| OciError::Volume {
        destination: m.destination.clone(),
        detail,
    };
    let fs_type = match run.config.unikernel_type {
        UnikernelType::Linux => "ext4",
        UnikernelType::Rumprun => "ext2",
        other => {
            return Err(bad(
                &mounts[0],
                format!(
                    "bind mounts become disks for linux and rumprun guests; this one is {}",
                    other.as_str()
                ),
            ))
        }
    };
    for (n, m) in mounts.iter().enumerate() {
        let Some(source) = m.source.clone() else {
            continue;
        };
        let md = std::fs::metadata(&source)
            .map_err(|e| OciError::io("reading the mount source", &source, e))?;
        let path = if md.file_type().is_block_device() {
            source
        } else {
            let image = dir.join(format!("vol{n}.img"));
            let bytes =
                crate::volume_image::default_size(&source).map_err(|e| bad(m, e.to_string()))?;
            crate::volume_image::make_ext_image(&source, &image, fs_type, bytes)
                .map_err(|e| bad(m, e.to_string()))?;
            if !m.read_only() {
                back.push(WriteBack {
                    image: image.clone(),
                    dir: source,
                });
            }
            image
        };
        run.volumes.push(Volume {
            path,
            target: m.destination.trim_end_matches('/').to_string(),
            read_only: m.read_only(),
        });
    }
    Ok(back)
}

/// Puts the guest's changes back into the directories; an image that
/// cannot be written back is moved beside its directory (the state
/// directory goes with `delete`) and the error says where.
pub fn write_back(list: &[WriteBack]) -> Vec<String> {
    let mut errors = Vec::new();
    for w in list {
        match crate::volume_image::write_back(&w.image, &w.dir) {
            Ok(()) => {
                let _ = std::fs::remove_file(&w.image);
            }
            Err(e) => {
                let name = w
                    .dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "volume".into());
                let kept = w.dir.with_file_name(format!(".{name}.bunny-volume.img"));
                let at = if std::fs::rename(&w.image, &kept).is_ok() {
                    kept
                } else {
                    w.image.clone()
                };
                errors.push(format!(
                    "writing the guest's changes back into {} failed (its image is kept at {}): {e}",
                    w.dir.display(),
                    at.display()
                ));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bind_mounts_of_directories_and_devices_outside_the_engines_paths() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let file = d.path().join("hosts");
        std::fs::write(&file, "127.0.0.1 x\n").unwrap();
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"},
                {"destination": "/dev/shm", "type": "bind", "source": d.path()},
                {"destination": "/etc/hosts", "type": "bind", "source": file, "options": ["rbind", "ro"]},
                {"destination": "/etc/resolv.conf", "type": "bind", "source": d.path()},
                {"destination": "/var/run/secrets/kubernetes.io/serviceaccount", "type": "bind", "source": d.path()},
                {"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rw"]},
                {"destination": "/cfg/", "source": data, "options": ["rbind", "ro"]},
                {"destination": "/tmpfs", "type": "tmpfs", "source": "tmpfs"},
                {"destination": "/gone", "type": "bind", "source": d.path().join("nonexistent")},
                {"destination": "/blk", "type": "bind", "source": "/dev/loop-control"},
            ]
        });
        std::fs::write(d.path().join("config.json"), config.to_string()).unwrap();
        let got = candidates(d.path()).unwrap();
        let dests: Vec<&str> = got.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(dests, ["/data", "/cfg/"]);
        assert!(!got[0].read_only() && got[1].read_only());
    }
}
