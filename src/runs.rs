//! The runs `bunny run` started, kept under `ROOT/runs/ID/` so that `bunny
//! ps`, `logs`, `stop` and `rm` in other bunny processes find them.
//!
//! Each run has a directory holding `state.json` (written whole, through a
//! rename), the guest's console (`console.log`, detached runs) and the
//! run's side files. The process that supervises the monitor (the `bunny
//! run` itself, or its detached copy) is recorded with its start time, so
//! a pid the kernel has since given to another process is not taken for it.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The file, beside `runs/`, that serializes creating and removing runs
/// (so two runs cannot take one name).
const LOCK_FILE: &str = "runs.lock";
const STATE_FILE: &str = "state.json";
/// The guest's console of a detached run.
pub const CONSOLE_LOG: &str = "console.log";

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a run's state ({detail})")]
    BadState { path: PathBuf, detail: String },
    #[error("the name `{name}` is already used by run {id}; choose another with --name, or remove it with `bunny rm {name}`")]
    NameTaken { name: String, id: String },
    #[error("the name `{name}` is not valid: use letters, digits, `_`, `.` and `-`, starting with a letter or digit, at most 64 characters")]
    BadName { name: String },
    #[error("no run `{0}`; `bunny ps -a` lists them")]
    NotFound(String),
    #[error("`{prefix}` names more than one run ({ids}); give more of the id or the name")]
    Ambiguous { prefix: String, ids: String },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RunsError {
    let path = path.to_path_buf();
    move |source| RunsError::Io { what, path, source }
}

/// What the state file says about a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Registered; the monitor has not started yet.
    Created,
    Running,
    Exited,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    pub id: String,
    pub name: String,
    pub image: String,
    /// The guest's argv, for `ps`.
    pub command: Vec<String>,
    /// Seconds since the epoch.
    pub created: u64,
    pub status: Status,
    pub detached: bool,
    /// `--rm`: the supervisor removes the run when the guest stops.
    pub remove: bool,
    /// The process supervising the monitor, and its start time in clock
    /// ticks after boot (field 22 of /proc/PID/stat).
    pub supervisor_pid: Option<u32>,
    pub supervisor_start: Option<u64>,
    pub monitor_pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub finished: Option<u64>,
    #[serde(default)]
    pub ports: Vec<String>,
    /// The `bunny` command line that made the run (after the program
    /// name) and its working directory: `bunny start` runs it again.
    #[serde(default)]
    pub argv: Vec<String>,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// How many times `bunny start` has booted it again.
    #[serde(default)]
    pub restarts: u32,
}

/// A run's state as seen now, from its file and the process table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Running,
    Exited(Option<i32>),
    /// The state says the run is going, but its supervisor is gone: it was
    /// killed outright, or the host restarted.
    Stale,
}

impl RunState {
    pub fn liveness(&self) -> Liveness {
        match self.status {
            Status::Exited => Liveness::Exited(self.exit_code),
            Status::Created | Status::Running => match (self.supervisor_pid, self.supervisor_start)
            {
                (Some(pid), Some(start)) if process_start(pid) == Some(start) => Liveness::Running,
                _ => Liveness::Stale,
            },
        }
    }

    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

/// The runs under a bunny root.
pub struct Runs {
    root: PathBuf,
    dir: PathBuf,
}

/// Held while runs are created or removed.
pub struct RunsLock(#[allow(dead_code)] File);

impl Runs {
    pub fn open(root: &Path) -> Result<Runs, RunsError> {
        let dir = root.join("runs");
        fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        Ok(Runs {
            root: root.to_path_buf(),
            dir,
        })
    }

    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn lock(&self) -> Result<RunsLock, RunsError> {
        let path = self.root.join(LOCK_FILE);
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        fs4::fs_std::FileExt::lock_exclusive(&f).map_err(io("locking", &path))?;
        Ok(RunsLock(f))
    }

    /// Every run with a readable state, oldest first. Directories without
    /// one (a run being created, or left by an older bunny) are skipped.
    pub fn list(&self) -> Result<Vec<RunState>, RunsError> {
        Ok(self.scan()?.0)
    }

    /// The runs, and the errors of state files that cannot be read (so one
    /// damaged run does not hide the others).
    pub fn scan(&self) -> Result<(Vec<RunState>, Vec<RunsError>), RunsError> {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(io("reading", &self.dir))?;
        for e in entries {
            let e = e.map_err(io("reading", &self.dir))?;
            let path = e.path().join(STATE_FILE);
            match read_state(&path) {
                Ok(s) => out.push(s),
                Err(RunsError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue
                }
                Err(e) => damaged.push(e),
            }
        }
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok((out, damaged))
    }

    /// A run by name, full id or unique id prefix.
    pub fn find(&self, key: &str) -> Result<RunState, RunsError> {
        let all = self.list()?;
        if let Some(s) = all.iter().find(|s| s.name == key || s.id == key) {
            return Ok(s.clone());
        }
        let hits: Vec<&RunState> = if key.is_empty() {
            Vec::new()
        } else {
            all.iter().filter(|s| s.id.starts_with(key)).collect()
        };
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(RunsError::NotFound(key.to_string())),
            many => Err(RunsError::Ambiguous {
                prefix: key.to_string(),
                ids: many
                    .iter()
                    .map(|s| s.short_id().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Registers a new run (its directory and state) under a fresh id; the
    /// name must be free. `name` None: one made from the image and the id.
    pub fn create(&self, mut state: RunState, name: Option<&str>) -> Result<RunState, RunsError> {
        let _lock = self.lock()?;
        let taken = self.list()?;
        let id = loop {
            let id = new_id()?;
            if !self.dir.join(&id).exists() {
                break id;
            }
        };
        let name = match name {
            Some(n) => {
                check_name(n)?;
                n.to_string()
            }
            None => default_name(&state.image, &id),
        };
        if let Some(other) = taken.iter().find(|s| s.name == name) {
            return Err(RunsError::NameTaken {
                name,
                id: other.short_id().to_string(),
            });
        }
        state.id = id;
        state.name = name;
        let dir = self.dir.join(&state.id);
        fs::create_dir(&dir).map_err(io("creating", &dir))?;
        self.save(&state)?;
        Ok(state)
    }

    /// Writes `state` whole: a reader never sees half a file.
    pub fn save(&self, state: &RunState) -> Result<(), RunsError> {
        let dir = self.dir.join(&state.id);
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(format!(".{STATE_FILE}.{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| RunsError::BadState {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let mut f = File::create(&tmp).map_err(io("writing", &tmp))?;
        f.write_all(&bytes).map_err(io("writing", &tmp))?;
        fs::rename(&tmp, &path).map_err(io("writing", &path))
    }

    /// Re-reads a run's state (None once it has been removed).
    pub fn reload(&self, id: &str) -> Result<Option<RunState>, RunsError> {
        match read_state(&self.dir.join(id).join(STATE_FILE)) {
            Ok(s) => Ok(Some(s)),
            Err(RunsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Removes a run's directory (state, console, side files).
    pub fn remove(&self, id: &str) -> Result<(), RunsError> {
        let _lock = self.lock()?;
        let dir = self.dir.join(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("removing", &dir)(e)),
        }
    }
}

fn read_state(path: &Path) -> Result<RunState, RunsError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io("reading", path))?;
    serde_json::from_slice(&bytes).map_err(|e| RunsError::BadState {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// Docker's rule for names, which scripts written for it expect.
fn check_name(name: &str) -> Result<(), RunsError> {
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(RunsError::BadName {
            name: name.to_string(),
        })
    }
}

/// `hello-3fa2c1` for image `registry/x/hello:1`.
fn default_name(image: &str, id: &str) -> String {
    let base = image.rsplit('/').next().unwrap_or(image);
    let base = base.split([':', '@']).next().unwrap_or(base);
    let mut clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    clean = clean.trim_matches('-').to_string();
    if clean.is_empty() {
        clean.push_str("run");
    }
    format!("{clean}-{}", &id[..6])
}

fn new_id() -> Result<String, RunsError> {
    let path = Path::new("/dev/urandom");
    let mut b = [0u8; 16];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io("reading", path))?;
    Ok(hex::encode(b))
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// When process `pid` started (clock ticks after boot), or None if there
/// is no such process.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold blanks and parentheses: count
    // fields from the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22. A zombie has
    // exited already: it is no supervisor.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(22 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(image: &str) -> RunState {
        RunState {
            id: String::new(),
            name: String::new(),
            image: image.into(),
            command: vec!["/init".into()],
            created: now(),
            status: Status::Created,
            detached: true,
            remove: false,
            supervisor_pid: None,
            supervisor_start: None,
            monitor_pid: None,
            exit_code: None,
            finished: None,
            ports: Vec::new(),
            argv: Vec::new(),
            cwd: None,
            restarts: 0,
        }
    }

    #[test]
    fn names_are_unique_and_found_by_name_or_id_prefix() {
        let d = tempfile::tempdir().unwrap();
        let runs = Runs::open(d.path()).unwrap();
        let a = runs.create(state("hello:1"), Some("web")).unwrap();
        assert_eq!(a.name, "web");
        assert_eq!(a.id.len(), 32);
        let e = runs.create(state("hello:1"), Some("web")).unwrap_err();
        assert!(matches!(e, RunsError::NameTaken { .. }), "{e}");
        let b = runs.create(state("reg.example/x/hello:1"), None).unwrap();
        assert!(b.name.starts_with("hello-"), "{}", b.name);
        assert_eq!(runs.find("web").unwrap().id, a.id);
        assert_eq!(runs.find(&b.id[..10]).unwrap().id, b.id);
        assert!(matches!(runs.find("nosuch"), Err(RunsError::NotFound(_))));
        assert!(matches!(runs.find(""), Err(RunsError::NotFound(_))));
        for bad in ["-x", "a b", "a/b", "", &"x".repeat(65)] {
            assert!(
                matches!(
                    runs.create(state("i"), Some(bad)),
                    Err(RunsError::BadName { .. })
                ),
                "{bad}"
            );
        }
        runs.remove(&a.id).unwrap();
        assert!(runs.reload(&a.id).unwrap().is_none());
        // The name is free again.
        runs.create(state("hello:1"), Some("web")).unwrap();
    }

    #[test]
    fn a_run_whose_supervisor_is_gone_is_stale() {
        let d = tempfile::tempdir().unwrap();
        let runs = Runs::open(d.path()).unwrap();
        let mut s = runs.create(state("hello:1"), None).unwrap();
        s.status = Status::Running;
        s.supervisor_pid = Some(std::process::id());
        s.supervisor_start = process_start(std::process::id());
        assert!(s.supervisor_start.is_some());
        assert_eq!(s.liveness(), Liveness::Running);
        // Same pid, another start time: the pid was given to someone else.
        s.supervisor_start = s.supervisor_start.map(|t| t + 1);
        assert_eq!(s.liveness(), Liveness::Stale);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        s.supervisor_pid = Some(pid);
        s.supervisor_start = Some(0);
        assert_eq!(s.liveness(), Liveness::Stale);
        s.status = Status::Exited;
        s.exit_code = Some(3);
        assert_eq!(s.liveness(), Liveness::Exited(Some(3)));
    }

    #[test]
    fn a_damaged_state_is_an_error_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let runs = Runs::open(d.path()).unwrap();
        let s = runs.create(state("hello:1"), None).unwrap();
        fs::write(runs.dir_of(&s.id).join(STATE_FILE), b"{").unwrap();
        let other = runs.create(state("hello:1"), None).unwrap();
        let (ok, damaged) = runs.scan().unwrap();
        assert_eq!(ok, vec![other]);
        let e = damaged[0].to_string();
        assert!(e.contains(&s.id) && e.contains("state"), "{e}");
    }
}
