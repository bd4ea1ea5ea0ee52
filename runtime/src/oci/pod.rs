//! What Kubernetes (through CRI) adds to a container's spec, and the rules
//! bunny-runtime keeps for pods.
//!
//! A pod is a sandbox container (the pause process, which holds the pod's
//! namespaces) plus the workload containers that join them. The sandbox is
//! always runc's: it is never a unikernel, even when the pod's annotations
//! (which containerd copies onto every container of the pod, the sandbox
//! included, when `pod_annotations` lets them through) carry urunc's
//! settings. urunc itself has no such rule: it boots the pause container as
//! a unikernel when the pod carries its annotations.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::error::OciError;
use crate::config::{ANNOT_BINARY, ANNOT_HYPERVISOR, ANNOT_TYPE};

/// The annotation naming a container's role in its pod, per CRI
/// implementation, and the value that marks the sandbox.
const ROLE_KEYS: &[(&str, &str)] = &[
    // containerd's CRI plugin
    ("io.kubernetes.cri.container-type", "sandbox"),
    // CRI-O
    ("io.kubernetes.cri-o.ContainerType", "sandbox"),
    // dockershim / cri-dockerd
    ("io.kubernetes.docker.type", "podsandbox"),
];

/// Whether the spec is a pod's sandbox (pause) container.
pub fn is_sandbox(annotations: &BTreeMap<String, String>) -> bool {
    ROLE_KEYS
        .iter()
        .any(|(k, v)| annotations.get(*k).is_some_and(|a| a == v))
}

const URUNC_PREFIX: &str = "com.urunc.unikernel.";

/// Refuses a spec whose annotations carry some of urunc's settings but not
/// the three every unikernel needs: a pod asking for, say, only another
/// hypervisor would otherwise get the image's own settings without a word.
pub fn check_urunc_keys(annotations: &BTreeMap<String, String>) -> Result<(), OciError> {
    let given = |k: &str| annotations.get(k).is_some_and(|v| !v.is_empty());
    let present: Vec<String> = annotations
        .keys()
        .filter(|k| k.starts_with(URUNC_PREFIX) && given(k))
        .cloned()
        .collect();
    if present.is_empty() {
        return Ok(());
    }
    let missing: Vec<&'static str> = [ANNOT_TYPE, ANNOT_HYPERVISOR, ANNOT_BINARY]
        .into_iter()
        .filter(|k| !given(k))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(OciError::PartialUruncAnnotations {
        missing: missing.join(", "),
        present: present.join(", "),
    })
}

/// The annotation naming the pod a container belongs to, per CRI.
const SANDBOX_ID_KEYS: &[&str] = &[
    "io.kubernetes.cri.sandbox-id",
    "io.kubernetes.cri-o.SandboxID",
];

/// Refuses to boot a guest into a pod whose network an ordinary container
/// (a sidecar started before it) already uses: the guest would take the
/// pod's address from under it. The pod's sandbox process is found in the
/// runc state under `root` (the handler's runc and we share it); without
/// it, nothing is checked.
pub fn check_no_sidecar(
    annotations: &BTreeMap<String, String>,
    root: &Path,
    netns: &Path,
) -> Result<(), OciError> {
    let Some(sandbox) = SANDBOX_ID_KEYS
        .iter()
        .find_map(|k| annotations.get(*k))
        .filter(|id| super::state::check_id(id).is_ok())
    else {
        return Ok(());
    };
    let Some(sandbox_pid) = std::fs::read(root.join(sandbox).join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["init_process_pid"].as_i64())
    else {
        return Ok(());
    };
    let others = users_of_netns(netns, sandbox_pid);
    if others.is_empty() {
        return Ok(());
    }
    Err(OciError::Pod(format!(
        "a unikernel cannot start in this pod: another container already uses its network \
         (pid {}), and the guest would take the pod's address from it. One unikernel per \
         pod, and no container beside it that needs the network",
        others
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Processes in the network namespace at `netns`, other than the sandbox's
/// process and its children.
fn users_of_netns(netns: &Path, sandbox_pid: i64) -> Vec<i32> {
    let Ok(target) = std::fs::metadata(netns) else {
        return Vec::new();
    };
    let want = format!("net:[{}]", target.ino());
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if i64::from(pid) == sandbox_pid {
            continue;
        }
        let Ok(ns) = std::fs::read_link(e.path().join("ns/net")) else {
            continue;
        };
        if ns.as_os_str() != want.as_str() {
            continue;
        }
        // The 4th field of /proc/PID/stat, after the parenthesised name.
        let ppid = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|s| {
                let rest = s.rsplit_once(')')?.1.to_string();
                rest.split_whitespace().nth(1)?.parse::<i64>().ok()
            });
        if ppid == Some(sandbox_pid) {
            continue;
        }
        found.push(pid);
    }
    found.sort_unstable();
    found
}

/// The vCPUs a spec's CPU limit asks for: the CFS quota over its period
/// (what a Kubernetes `limits.cpu` becomes), rounded up, else the size of
/// its cpuset. None without a limit.
pub fn vcpus(quota: Option<i64>, period: Option<u64>, cpuset: Option<&str>) -> Option<u32> {
    if let (Some(q), Some(p)) = (quota, period) {
        if q > 0 && p > 0 {
            let n = (q as u64).div_ceil(p);
            return Some(u32::try_from(n).unwrap_or(u32::MAX));
        }
    }
    let set = cpuset?.trim();
    if set.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for part in set.split(',') {
        let part = part.trim();
        let count = match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?);
                b.checked_sub(a)? + 1
            }
            None => {
                part.parse::<u64>().ok()?;
                1
            }
        };
        n = n.saturating_add(count);
    }
    (n > 0).then(|| u32::try_from(n).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sandboxes_of_every_cri() {
        assert!(is_sandbox(&map(&[(
            "io.kubernetes.cri.container-type",
            "sandbox"
        )])));
        assert!(is_sandbox(&map(&[(
            "io.kubernetes.cri-o.ContainerType",
            "sandbox"
        )])));
        assert!(is_sandbox(&map(&[(
            "io.kubernetes.docker.type",
            "podsandbox"
        )])));
        assert!(!is_sandbox(&map(&[(
            "io.kubernetes.cri.container-type",
            "container"
        )])));
        assert!(!is_sandbox(&map(&[])));
    }

    #[test]
    fn a_partial_urunc_set_names_what_is_missing() {
        assert!(check_urunc_keys(&map(&[])).is_ok());
        assert!(check_urunc_keys(&map(&[("io.kubernetes.cri.container-type", "x")])).is_ok());
        assert!(check_urunc_keys(&map(&[
            (ANNOT_TYPE, "linux"),
            (ANNOT_HYPERVISOR, "qemu"),
            (ANNOT_BINARY, "/.boot/kernel"),
            ("com.urunc.unikernel.cmdline", "/init"),
        ]))
        .is_ok());
        let e = check_urunc_keys(&map(&[(ANNOT_HYPERVISOR, "qemu")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(ANNOT_TYPE) && e.contains(ANNOT_BINARY) && e.contains(ANNOT_HYPERVISOR),
            "{e}"
        );
        // An empty value counts as absent, as for urunc.
        let e = check_urunc_keys(&map(&[
            (ANNOT_TYPE, "linux"),
            (ANNOT_HYPERVISOR, "qemu"),
            (ANNOT_BINARY, ""),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains(&format!("missing {ANNOT_BINARY}")), "{e}");
    }

    #[test]
    fn cpu_limits_become_vcpus_rounded_up() {
        assert_eq!(vcpus(Some(150_000), Some(100_000), None), Some(2));
        assert_eq!(vcpus(Some(100_000), Some(100_000), None), Some(1));
        assert_eq!(vcpus(Some(50_000), Some(100_000), None), Some(1));
        assert_eq!(vcpus(Some(400_000), Some(100_000), Some("0")), Some(4));
        // No quota (-1 is "unlimited"): the cpuset decides.
        assert_eq!(vcpus(Some(-1), Some(100_000), Some("0-2,5")), Some(4));
        assert_eq!(vcpus(None, None, Some("3")), Some(1));
        assert_eq!(vcpus(None, Some(100_000), None), None);
        assert_eq!(vcpus(None, None, Some("")), None);
        assert_eq!(vcpus(None, None, Some("2-1")), None);
        assert_eq!(vcpus(None, None, Some("x")), None);
        assert_eq!(vcpus(Some(i64::MAX), Some(1), None), Some(u32::MAX));
    }
}
