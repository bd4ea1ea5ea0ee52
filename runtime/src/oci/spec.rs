//! The parts of an OCI runtime spec (config.json) this runtime reads.
//!
//! Only these fields are modelled, and leniently, so specs written by any
//! engine version (docker, containerd, CRI-O) parse.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::OciError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(default)]
    pub oci_version: String,
    #[serde(default)]
    pub process: Option<Process>,
    #[serde(default)]
    pub root: Option<Root>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub linux: Option<Linux>,
    #[serde(default)]
    pub hooks: Hooks,
    #[serde(default)]
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Process {
    #[serde(default)]
    pub terminal: bool,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Root {
    pub path: PathBuf,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    #[serde(default)]
    pub resources: Option<Resources>,
    #[serde(default)]
    pub cgroups_path: Option<String>,
    #[serde(default)]
    pub seccomp: Option<crate::seccomp::Profile>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub memory: Option<Limit>,
    #[serde(default)]
    pub pids: Option<Limit>,
    #[serde(default)]
    pub cpu: Option<Cpu>,
}

/// `linux.resources.cpu`: a CFS quota per period, or a cpuset.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Cpu {
    #[serde(default)]
    pub quota: Option<i64>,
    #[serde(default)]
    pub period: Option<u64>,
    #[serde(default)]
    pub cpus: Option<String>,
}

/// `{"limit": N}`, as memory and pids carry it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Limit {
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    #[serde(default)]
    pub prestart: Vec<Hook>,
    #[serde(default)]
    pub create_runtime: Vec<Hook>,
    #[serde(default)]
    pub poststart: Vec<Hook>,
    #[serde(default)]
    pub poststop: Vec<Hook>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Hook {
    pub path: PathBuf,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// Where the container's network namespace comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetNs {
    /// No network namespace in the spec: the host's. The guest gets no NIC,
    /// since rewiring the host's interfaces is never acceptable.
    Host,
    /// A namespace the engine or CNI prepared.
    Path(PathBuf),
    /// A fresh, empty one (as runc makes when no path is given).
    New,
}

impl Spec {
    pub fn load(bundle: &Path) -> Result<Spec, OciError> {
        let path = bundle.join("config.json");
        let file = std::fs::File::open(&path).map_err(|e| OciError::BadSpec {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| OciError::BadSpec {
            path,
            detail: e.to_string(),
        })
    }

    /// The rootfs as a host path: `root.path` is relative to the bundle.
    pub fn rootfs(&self, bundle: &Path) -> PathBuf {
        match &self.root {
            Some(r) if r.path.is_absolute() => r.path.clone(),
            Some(r) => bundle.join(&r.path),
            None => bundle.join("rootfs"),
        }
    }

    pub fn args(&self) -> Vec<String> {
        self.process
            .as_ref()
            .map(|p| p.args.clone())
            .unwrap_or_default()
    }

    pub fn env(&self) -> Vec<String> {
        self.process
            .as_ref()
            .map(|p| p.env.clone())
            .unwrap_or_default()
    }

    pub fn terminal(&self) -> bool {
        self.process.as_ref().is_some_and(|p| p.terminal)
    }

    /// `linux.cgroupsPath`, as the engine wrote it.
    pub fn cgroups_path(&self) -> Option<&str> {
        self.linux.as_ref()?.cgroups_path.as_deref()
    }

    /// A positive limit from `linux.resources`.
    fn limit(&self, pick: impl Fn(&Resources) -> Option<&Limit>) -> Option<u64> {
        let limit = pick(self.linux.as_ref()?.resources.as_ref()?)?.limit?;
        u64::try_from(limit).ok().filter(|n| *n > 0)
    }

    /// The memory limit in bytes, if the spec sets a positive one.
    pub fn memory_limit_bytes(&self) -> Option<u64> {
        self.limit(|r| r.memory.as_ref())
    }

    /// The pids limit, if the spec sets a positive one.
    pub fn pids_limit(&self) -> Option<u64> {
        self.limit(|r| r.pids.as_ref())
    }

    /// The `uts` and `ipc` namespaces the spec asks for: (kind, path to
    /// join, or None for a new one).
    pub fn other_namespaces(&self) -> Vec<(&str, Option<&Path>)> {
        self.linux
            .as_ref()
            .map(|l| {
                l.namespaces
                    .iter()
                    .filter(|n| n.kind == "uts" || n.kind == "ipc")
                    .map(|n| (n.kind.as_str(), n.path.as_deref()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `mount` and `pid` namespaces the spec asks for, as in
    /// [`Spec::other_namespaces`].
    pub fn monitor_namespaces(&self) -> Vec<(&str, Option<&Path>)> {
        self.linux
            .as_ref()
            .map(|l| {
                l.namespaces
                    .iter()
                    .filter(|n| n.kind == "mount" || n.kind == "pid")
                    .map(|n| {
                        let path = n.path.as_deref().filter(|p| !p.as_os_str().is_empty());
                        (n.kind.as_str(), path)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `linux.seccomp`, when the spec has one.
    pub fn seccomp(&self) -> Option<&crate::seccomp::Profile> {
        self.linux.as_ref()?.seccomp.as_ref()
    }

    /// The vCPUs the spec's CPU limit stands for (quota / period rounded
    /// up, else the cpuset's size), if it sets one.
    pub fn vcpus(&self) -> Option<u32> {
        let cpu = self.linux.as_ref()?.resources.as_ref()?.cpu.as_ref()?;
        super::pod::vcpus(cpu.quota, cpu.period, cpu.cpus.as_deref())
    }

    /// The memory limit in MiB (rounded up), if the spec sets a positive one.
    pub fn memory_mb(&self) -> Option<u64> {
        self.memory_limit_bytes().map(|b| b.div_ceil(1024 * 1024))
    }

    pub fn netns(&self) -> NetNs {
        let ns = self
            .linux
            .as_ref()
            .and_then(|l| l.namespaces.iter().find(|n| n.kind == "network"));
        match ns {
            None => NetNs::Host,
            Some(Namespace { path: Some(p), .. }) if !p.as_os_str().is_empty() => {
                NetNs::Path(p.clone())
            }
            Some(_) => NetNs::New,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_engines_write() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"ociVersion":"1.0.2-dev","process":{"terminal":false,"user":{"uid":0,"gid":0},
            "args":["/init","once"],"env":["PATH=/bin","GREETING=hello"],"cwd":"/"},
            "root":{"path":"rootfs","readonly":true},"hostname":"x",
            "annotations":{"a":"b"},
            "hooks":{"prestart":[{"path":"/bin/true","args":["true"]}]},
            "linux":{"resources":{"memory":{"limit":134217728},"devices":[]},
            "namespaces":[{"type":"pid"},{"type":"network","path":"/var/run/netns/x"}]}}"#,
        )
        .unwrap();
        let s = Spec::load(dir.path()).unwrap();
        assert_eq!(s.args(), ["/init", "once"]);
        assert_eq!(s.memory_mb(), Some(128));
        assert_eq!(s.netns(), NetNs::Path("/var/run/netns/x".into()));
        assert_eq!(s.rootfs(dir.path()), dir.path().join("rootfs"));
        assert_eq!(s.hooks.prestart.len(), 1);
        assert!(!s.terminal());
    }

    #[test]
    fn namespaces_decide_the_network() {
        let mut s = Spec::default();
        assert_eq!(s.netns(), NetNs::Host);
        s.linux = Some(Linux {
            namespaces: vec![Namespace {
                kind: "network".into(),
                path: None,
            }],
            resources: None,
            cgroups_path: None,
            seccomp: None,
        });
        assert_eq!(s.netns(), NetNs::New);
        assert_eq!(s.memory_mb(), None);
    }

    #[test]
    fn a_broken_spec_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = Spec::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
        std::fs::write(dir.path().join("config.json"), "{").unwrap();
        let e = Spec::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
    }
}
