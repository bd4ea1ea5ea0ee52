//! The container's cgroup: the monitor runs in the cgroup the engine names
//! (`linux.cgroupsPath`), with the spec's memory and pids limits, so the
//! engine's accounting, limits and OOM handling cover the whole VM, as they
//! would cover runc's process.
//!
//! cgroupfs paths only (there is no systemd to ask for a scope): a
//! `slice:prefix:name` path of the systemd driver is laid out the way
//! systemd itself would (`a-b.slice` under `a.slice`). Both cgroup v2 and
//! v1 (with the hybrid `unified` mount) hierarchies are handled.

use std::path::{Path, PathBuf};

use super::error::OciError;
use super::spec::Spec;

const ROOT: &str = "/sys/fs/cgroup";
/// Room for the monitor beside the guest's RAM (which is the spec's memory
/// limit): qemu under TCG measured 209 MB RSS for a 128 MiB hello-linux
/// guest, 232 MB for a 512 MiB one; KVM needs less. Without it the monitor
/// is OOM-killed as soon as the guest touches its memory.
pub const MONITOR_OVERHEAD: u64 = 256 << 20;
/// v1 hierarchies the monitor joins. cpuset is left out: a new cpuset
/// cgroup has no cpus until someone gives it some.
const V1_CONTROLLERS: &[&str] = &[
    "memory", "cpu", "cpuacct", "pids", "blkio", "devices", "freezer",
];

/// The cgroupsPath as a path under each hierarchy.
pub fn relative_path(cgroups_path: Option<&str>, id: &str) -> PathBuf {
    let raw = cgroups_path.map(str::trim).filter(|p| !p.is_empty());
    let rel = match raw {
        None => format!("bunny-runtime/{id}"),
        Some(p) if !p.starts_with('/') && p.matches(':').count() == 2 => {
            // systemd driver: "slice:prefix:name" -> slice dirs + prefix-name.scope
            let mut it = p.splitn(3, ':');
            let (slice, prefix, name) = (
                it.next().unwrap_or(""),
                it.next().unwrap_or(""),
                it.next().unwrap_or(""),
            );
            let mut dirs = expand_slice(if slice.is_empty() {
                "system.slice"
            } else {
                slice
            });
            dirs.push(if prefix.is_empty() {
                format!("{name}.scope")
            } else {
                format!("{prefix}-{name}.scope")
            });
            dirs.join("/")
        }
        Some(p) => p.trim_start_matches('/').to_string(),
    };
    // Never out of the hierarchy.
    rel.split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
        .collect()
}

/// `a-b-c.slice` -> `a.slice/a-b.slice/a-b-c.slice` (`-.slice`: the root).
fn expand_slice(slice: &str) -> Vec<String> {
    let stem = slice.strip_suffix(".slice").unwrap_or(slice);
    if stem.is_empty() || stem == "-" {
        return Vec::new();
    }
    let parts: Vec<&str> = stem.split('-').collect();
    (1..=parts.len())
        .map(|n| format!("{}.slice", parts[..n].join("-")))
        .collect()
}

fn write(path: &Path, value: &str) -> Result<(), OciError> {
    std::fs::write(path, value).map_err(|e| OciError::io("cannot write the cgroup file", path, e))
}

/// Puts `pid` into the container's cgroup, creating it with the spec's
/// limits. Returns the directories made (one per hierarchy), for [`remove`].
pub fn join(spec: &Spec, id: &str, pid: i32) -> Result<Vec<PathBuf>, OciError> {
    join_under(Path::new(ROOT), spec, id, pid)
}

fn join_under(root: &Path, spec: &Spec, id: &str, pid: i32) -> Result<Vec<PathBuf>, OciError> {
    let rel = relative_path(spec.cgroups_path(), id);
    let memory = spec
        .memory_limit_bytes()
        .map(|m| m.saturating_add(MONITOR_OVERHEAD));
    let pids = spec.pids_limit();
    let mut made = Vec::new();
    let mkdir = |dir: &Path| {
        std::fs::create_dir_all(dir).map_err(|e| OciError::io("cannot create the cgroup", dir, e))
    };
    if root.join("cgroup.controllers").is_file() {
        // v2: controllers must be enabled in every ancestor first.
        let dir = root.join(&rel);
        mkdir(&dir)?;
        let mut wanted = Vec::new();
        if memory.is_some() {
            wanted.push("+memory");
        }
        if pids.is_some() {
            wanted.push("+pids");
        }
        if !wanted.is_empty() {
            let mut at = root.to_path_buf();
            for comp in rel.components() {
                // Best effort: a parent may refuse a controller it lacks,
                // and then the limit write below says so.
                let _ = std::fs::write(at.join("cgroup.subtree_control"), wanted.join(" "));
                at.push(comp);
            }
        }
        if let Some(m) = memory {
            write(&dir.join("memory.max"), &m.to_string())?;
        }
        if let Some(p) = pids {
            write(&dir.join("pids.max"), &p.to_string())?;
        }
        write(&dir.join("cgroup.procs"), &pid.to_string())?;
        made.push(dir);
        return Ok(made);
    }
    for ctrl in V1_CONTROLLERS {
        let base = root.join(ctrl);
        // cpu and cpuacct are often one hierarchy under two names.
        let real = std::fs::canonicalize(&base).unwrap_or(base.clone());
        if !base.is_dir() || made.iter().any(|d: &PathBuf| d.starts_with(&real)) {
            continue;
        }
        let dir = real.join(&rel);
        mkdir(&dir)?;
        if *ctrl == "memory" {
            if let Some(m) = memory {
                write(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
            }
        }
        if *ctrl == "pids" {
            if let Some(p) = pids {
                write(&dir.join("pids.max"), &p.to_string())?;
            }
        }
        write(&dir.join("cgroup.procs"), &pid.to_string())?;
        made.push(dir);
    }
    // Hybrid hosts also have a v2 hierarchy with no controllers; systemd and
    // engines track processes there.
    let unified = root.join("unified");
    if unified.join("cgroup.procs").is_file() {
        let dir = unified.join(&rel);
        mkdir(&dir)?;
        write(&dir.join("cgroup.procs"), &pid.to_string())?;
        made.push(dir);
    }
    Ok(made)
}

/// The live pids in the container's cgroup (`ps`), from its first
/// hierarchy; zombies waiting to be reaped are not listed.
pub fn pids(dirs: &[PathBuf]) -> Option<Vec<i32>> {
    let dir = dirs.first()?;
    let text = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    let zombie = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
    };
    Some(
        text.lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|p| !zombie(*p))
            .collect(),
    )
}

/// Removes the container's cgroups once their processes are gone. A cgroup
/// is busy for a moment after its last process exits, hence the retries.
pub fn remove(dirs: &[PathBuf]) -> Result<(), OciError> {
    for dir in dirs {
        let mut tries = 0;
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if tries < 100 => {
                    let _ = e;
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(OciError::io("cannot remove the cgroup", dir, e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_paths_map_like_runc() {
        assert_eq!(
            relative_path(Some("/default/web1"), "web1"),
            PathBuf::from("default/web1")
        );
        assert_eq!(relative_path(None, "x"), PathBuf::from("bunny-runtime/x"));
        assert_eq!(
            relative_path(Some("kubepods-burstable-pod12.slice:cri-containerd:abc"), "abc"),
            PathBuf::from(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice/cri-containerd-abc.scope"
            )
        );
        assert_eq!(
            relative_path(Some("/../../etc"), "x"),
            PathBuf::from("etc"),
            "a path never leaves the hierarchy"
        );
    }

    #[test]
    fn v2_limits_and_membership_are_written() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "memory pids").unwrap();
        let spec: Spec = serde_json::from_str(
            r#"{"linux":{"cgroupsPath":"/k8s/c1","resources":{"memory":{"limit":134217728},"pids":{"limit":64}}}}"#,
        )
        .unwrap();
        let made = join_under(root.path(), &spec, "c1", 4242).unwrap();
        let dir = root.path().join("k8s/c1");
        assert_eq!(made, vec![dir.clone()]);
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(
            read("memory.max"),
            (134217728 + MONITOR_OVERHEAD).to_string()
        );
        assert_eq!(read("pids.max"), "64");
        assert_eq!(read("cgroup.procs"), "4242");
        assert_eq!(
            std::fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap(),
            "+memory +pids"
        );
    }
}
