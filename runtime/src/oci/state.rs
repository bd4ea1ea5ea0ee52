//! Per-container state under `--root`: one directory per container holding
//! our record (`bunny.json`), a lock file and, until `start`, the exec FIFO.
//! runc keeps `state.json` in the same layout, so the file name tells whose
//! container it is.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::OciError;
use super::net::NetSetup;
use super::spec::Hooks;

pub const RECORD: &str = "bunny.json";
pub const LOCK: &str = "bunny.lock";
pub const EXEC_FIFO: &str = "exec.fifo";
pub const OCI_VERSION: &str = "1.0.2";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub pid: i32,
    /// The pid's start time (clock ticks since boot), so a reused pid is
    /// never taken for the container.
    pub pid_start: u64,
    pub created: String,
    pub annotations: BTreeMap<String, String>,
    /// A namespace that outlives the container, where `delete` must undo
    /// the network rewiring.
    pub netns: Option<PathBuf>,
    pub net: Option<NetSetup>,
    pub hooks: Hooks,
    /// The cgroup directories the monitor runs in, removed by `delete`.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

/// The OCI runtime-spec state, as `runc state` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState<'a> {
    pub oci_version: &'static str,
    pub id: &'a str,
    pub status: &'static str,
    pub pid: i32,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    pub annotations: &'a BTreeMap<String, String>,
}

/// Container ids become directory names, so they are held to runc's rule.
pub fn check_id(id: &str) -> Result<(), OciError> {
    let bad = |reason| OciError::BadId {
        id: id.to_string(),
        reason,
    };
    if id.is_empty() || id == "." || id == ".." {
        return Err(bad("it is empty or a dot name"));
    }
    if id.len() > 1024 {
        return Err(bad("it is longer than 1024 bytes"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'))
    {
        return Err(bad("only letters, digits and _ + - . are allowed"));
    }
    Ok(())
}

pub fn container_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// Whether this runtime (rather than the runc fallback) owns `id`.
pub fn is_ours(root: &Path, id: &str) -> bool {
    check_id(id).is_ok() && container_dir(root, id).join(RECORD).is_file()
}

/// An exclusive flock on the container's lock file, released on drop.
pub struct Lock {
    _file: File,
}

pub fn lock(dir: &Path) -> Result<Lock, OciError> {
    let path = dir.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| OciError::io("cannot open the lock file", &path, e))?;
    loop {
        // SAFETY: the fd is owned by `file`, which outlives the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(Lock { _file: file });
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(OciError::io("cannot lock", &path, e));
        }
    }
}

impl Record {
    pub fn load(root: &Path, id: &str) -> Result<Record, OciError> {
        check_id(id)?;
        let path = container_dir(root, id).join(RECORD);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OciError::NotExist { id: id.to_string() })
            }
            Err(e) => return Err(OciError::io("cannot read container state", &path, e)),
        };
        serde_json::from_str(&text).map_err(|e| OciError::BadSpec {
            path,
            detail: format!("broken container state: {e}"),
        })
    }

    /// Written aside and renamed, so a reader never sees half a record.
    pub fn save(&self, root: &Path) -> Result<(), OciError> {
        let dir = container_dir(root, &self.id);
        let path = dir.join(RECORD);
        let tmp = dir.join(format!(".{RECORD}.tmp"));
        let body = serde_json::to_vec_pretty(self).map_err(|e| OciError::BadSpec {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        std::fs::write(&tmp, body)
            .map_err(|e| OciError::io("cannot write container state", &tmp, e))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| OciError::io("cannot write container state", &path, e))
    }

    pub fn alive(&self) -> bool {
        pid_alive(self.pid, self.pid_start)
    }

    pub fn status(&self, root: &Path) -> Status {
        if !self.alive() {
            Status::Stopped
        } else if container_dir(root, &self.id).join(EXEC_FIFO).exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    pub fn oci_state(&self, status: Status) -> OciState<'_> {
        OciState {
            oci_version: OCI_VERSION,
            id: &self.id,
            status: status.as_str(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            annotations: &self.annotations,
        }
    }
}

/// `(state, start time)` from /proc/PID/stat.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after
    // the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 of the whole line is the 20th after the name.
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

pub fn pid_start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, s)| s)
}

/// Alive means: the pid exists, is not a zombie (its parent may never reap
/// it) and is still the process we started.
pub fn pid_alive(pid: i32, start: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    matches!(proc_stat(pid), Some((state, s)) if s == start && state != 'Z' && state != 'X')
}

/// RFC 3339 UTC with nanoseconds, as Go's time.Time parses it.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs(), now.subsec_nanos())
}

pub fn rfc3339(secs: u64, nanos: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_767_225_599, 0), "2025-12-31T23:59:59.000000000Z");
    }

    #[test]
    fn ids() {
        assert!(check_id("abc-1_2.x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn liveness_follows_the_process() {
        let me = std::process::id() as i32;
        let start = pid_start_time(me).unwrap();
        assert!(pid_alive(me, start));
        assert!(!pid_alive(me, start + 1), "a reused pid is not ours");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let start = pid_start_time(pid).unwrap_or(0);
        // Unreaped, it is a zombie, which is not alive either.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!pid_alive(pid, start));
        child.wait().unwrap();
        assert!(!pid_alive(pid, start));
    }
}
