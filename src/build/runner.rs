//! One build step under an OCI runtime.
//!
//! The container sees the image's rootfs (unpacked once, never written), the
//! step's sources read-only at `/src`, its output directory read-write at
//! `/out`, a tmpfs at `/tmp`, the step's other read-only directories (a
//! sysroot) where it names them, and nothing of the host's network: it gets a new
//! network namespace, in which only `lo` exists, unless the step asks for the
//! network. It runs as root in the container with no capabilities and
//! `noNewPrivileges`.
//!
//! Writable view of the rootfs: as root, an overlayfs (lower: the cached
//! rootfs, upper: a temp dir thrown away after the step) costs about 1 ms;
//! copying a 250 MB toolchain rootfs costs seconds per step, so without root
//! (no overlay mount) the rootfs is mounted read-only instead, and steps write
//! only to `/out` and `/tmp`.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use oci_spec::runtime::{
    Capabilities, LinuxCapabilitiesBuilder, LinuxNamespaceType, Mount, MountBuilder, Spec,
};

use super::{io_ctx, BuildError};
use crate::pipeline::Progress;

/// How many of a failing step's last output lines its error carries.
pub const TAIL_LINES: usize = 20;

/// One command in one image.
#[derive(Debug, Clone)]
pub struct Step {
    /// Shown as `[name]` before every output line.
    pub name: String,
    /// The image's unpacked rootfs (see [`super::rootfs::unpacked_rootfs`]).
    pub rootfs: PathBuf,
    pub command: Vec<String>,
    /// `KEY=VALUE`; PATH defaults to the usual one when not given.
    pub env: Vec<String>,
    pub workdir: String,
    /// Mounted read-only at `/src`.
    pub source: PathBuf,
    /// Give the step the host's network (default: none).
    pub network: bool,
    /// (where the step sees it, host directory), mounted read-only.
    pub mounts: Vec<(String, PathBuf)>,
}

/// What ran.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    /// Whether the rootfs was an overlay (else read-only).
    pub overlay: bool,
}

/// The OCI runtime to run steps with.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// `runc` (found in PATH) by default.
    pub program: PathBuf,
    /// Scratch space for bundles, overlay dirs and the runtime's state; on the
    /// store's filesystem so nothing crosses filesystems.
    pub work_dir: PathBuf,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

impl Runtime {
    /// Runs `step` with `out` (an existing directory) mounted at `/out`.
    pub fn run(
        &self,
        step: &Step,
        out: &Path,
        progress: &dyn Progress,
    ) -> Result<StepOutcome, BuildError> {
        fs::create_dir_all(&self.work_dir)
            .map_err(io_ctx(format!("creating {}", self.work_dir.display())))?;
        // runc refuses a rootfs path through a symlink, and the overlay's
        // merged directory is made here: a store reached through a symlink
        // must not fail every step.
        let work_dir = fs::canonicalize(&self.work_dir)
            .map_err(io_ctx(format!("resolving {}", self.work_dir.display())))?;
        let scratch = tempfile::Builder::new()
            .prefix("step-")
            .tempdir_in(&work_dir)
            .map_err(io_ctx(format!(
                "creating a temp dir in {}",
                self.work_dir.display()
            )))?;
        let bundle = scratch.path().join("bundle");
        let state = scratch.path().join("state");
        for d in [&bundle, &state] {
            fs::create_dir_all(d).map_err(io_ctx(format!("creating {}", d.display())))?;
        }
        // The runtime resolves relative mount sources against the bundle.
        let abs =
            |p: &Path| fs::canonicalize(p).map_err(io_ctx(format!("resolving {}", p.display())));
        let step = &Step {
            rootfs: abs(&step.rootfs)?,
            source: abs(&step.source)?,
            mounts: step
                .mounts
                .iter()
                .map(|(target, dir)| Ok((target.clone(), abs(dir)?)))
                .collect::<Result<_, BuildError>>()?,
            ..step.clone()
        };
        let out = &abs(out)?;
        let overlay = Overlay::mount(&step.rootfs, scratch.path());
        let (root, writable) = match &overlay {
            Some(o) => (o.merged.clone(), true),
            None => (step.rootfs.clone(), false),
        };
        let spec = spec_for(step, &root, writable, out)?;
        let config = bundle.join("config.json");
        spec.save(&config)
            .map_err(|e| BuildError::Spec(format!("{}: {e}", config.display())))?;

        let id = format!(
            "bunny-build-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let mut child = Command::new(&self.program)
            .arg("--root")
            .arg(&state)
            .arg("run")
            .arg("--bundle")
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| BuildError::RuntimeStart {
                step: step.name.clone(),
                runtime: self.program.display().to_string(),
                source,
            })?;
        let (status, last_lines) = wait_logged(&mut child, &step.name, TAIL_LINES, progress)
            .map_err(io_ctx(format!("waiting for `{}`", self.program.display())))?;
        // The runtime's state for a finished `run` is gone already; a killed
        // runtime may leave it, and the scratch dir's removal takes it along.
        drop(overlay);
        if status.success() {
            return Ok(StepOutcome { overlay: writable });
        }
        Err(BuildError::StepFailed {
            step: step.name.clone(),
            command: shell_words(&step.command),
            status: status.to_string(),
            last_lines,
        })
    }
}

/// Waits for `child`, its stdout and stderr lines going to `progress` under
/// `name` as they come; returns its status and its last `keep` lines (what
/// an error shows of a failed build).
pub(crate) fn wait_logged(
    child: &mut std::process::Child,
    name: &str,
    keep: usize,
    progress: &dyn Progress,
) -> std::io::Result<(std::process::ExitStatus, Vec<String>)> {
    let tail = Mutex::new(VecDeque::with_capacity(keep));
    let pipes: Vec<Box<dyn Read + Send>> = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    let status = std::thread::scope(|s| {
        for pipe in pipes {
            let tail = &tail;
            s.spawn(move || stream_lines(pipe, name, keep, tail, progress));
        }
        child.wait()
    })?;
    let last = tail
        .into_inner()
        .map(|t| t.into_iter().collect())
        .unwrap_or_default();
    Ok((status, last))
}

fn stream_lines(
    pipe: Box<dyn Read + Send>,
    step: &str,
    keep: usize,
    tail: &Mutex<VecDeque<String>>,
    progress: &dyn Progress,
) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                progress.log(step, line);
                if let Ok(mut t) = tail.lock() {
                    if t.len() == keep {
                        t.pop_front();
                    }
                    t.push_back(line.to_string());
                }
            }
        }
    }
}

/// A command as one could paste it into a shell.
pub fn shell_words(cmd: &[String]) -> String {
    cmd.iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn bind(dest: &str, source: &Path, readonly: bool) -> Result<Mount, BuildError> {
    let mut options = vec!["rbind".to_string(), "nosuid".into(), "nodev".into()];
    options.push(if readonly { "ro" } else { "rw" }.into());
    MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(options)
        .build()
        .map_err(|e| BuildError::Spec(e.to_string()))
}

/// A step's extra mount must not hide what the executor mounts nor leave
/// the container's tree.
fn check_mount_target(target: &str) -> Result<(), BuildError> {
    let path = Path::new(target);
    let clean = path.is_absolute()
        && path
            .components()
            .skip(1)
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    let first = path.components().nth(1);
    let reserved = ["src", "out", "tmp", "proc", "dev", "sys"]
        .iter()
        .any(|r| first == Some(std::path::Component::Normal(r.as_ref())));
    if !clean || first.is_none() || reserved {
        return Err(BuildError::Spec(format!(
            "a step cannot mount a layer at `{target}` (an absolute path outside /src, /out, /tmp, /proc, /dev and /sys)"
        )));
    }
    Ok(())
}

/// The step's runtime config: oci-spec's defaults (namespaces, /proc, /dev,
/// masked paths) narrowed down.
pub fn spec_for(step: &Step, root: &Path, writable: bool, out: &Path) -> Result<Spec, BuildError> {
    let mut spec = Spec::default();
    spec.set_hostname(Some("bunny-build".into()));
    let mut r = spec.root().clone().unwrap_or_default();
    r.set_path(root.to_path_buf());
    r.set_readonly(Some(!writable));
    spec.set_root(Some(r));

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(
        MountBuilder::default()
            .destination("/tmp")
            .typ("tmpfs")
            .source("tmpfs")
            .options(vec![
                "nosuid".to_string(),
                "nodev".into(),
                "mode=1777".into(),
            ])
            .build()
            .map_err(|e| BuildError::Spec(e.to_string()))?,
    );
    mounts.push(bind("/src", &step.source, true)?);
    mounts.push(bind("/out", out, false)?);
    for (target, dir) in &step.mounts {
        check_mount_target(target)?;
        mounts.push(bind(target, dir, true)?);
    }
    spec.set_mounts(Some(mounts));

    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(step.command.clone()));
    let mut env = step.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(&step.workdir));
    process.set_no_new_privileges(Some(true));
    process.set_terminal(Some(false));
    // A compiler needs no capability: root in the container owns every file
    // it writes. Empty sets keep a step from mounting, tracing or chowning.
    let none = Capabilities::new();
    process.set_capabilities(Some(
        LinuxCapabilitiesBuilder::default()
            .bounding(none.clone())
            .effective(none.clone())
            .permitted(none.clone())
            .inheritable(none.clone())
            .ambient(none)
            .build()
            .map_err(|e| BuildError::Spec(e.to_string()))?,
    ));
    spec.set_process(Some(process));

    if step.network {
        if let Some(linux) = spec.linux_mut() {
            if let Some(ns) = linux.namespaces_mut() {
                ns.retain(|n| n.typ() != LinuxNamespaceType::Network);
            }
        }
    }
    Ok(spec)
}

/// An overlay over a read-only rootfs, unmounted on drop.
struct Overlay {
    merged: PathBuf,
}

impl Overlay {
    /// Mounts an overlay in `scratch`, or returns None when this process
    /// cannot (not root, no overlayfs, a path overlayfs options cannot hold).
    fn mount(lower: &Path, scratch: &Path) -> Option<Overlay> {
        if !is_root() {
            return None;
        }
        let upper = scratch.join("upper");
        let work = scratch.join("work");
        let merged = scratch.join("merged");
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d).ok()?;
        }
        let paths = [lower, &upper, &work];
        let strs: Vec<&str> = paths.iter().filter_map(|p| p.to_str()).collect();
        if strs.len() != 3 || strs.iter().any(|s| s.contains([',', ':'])) {
            return None;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            strs[0], strs[1], strs[2]
        );
        let ok = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(&merged)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(Overlay { merged })
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        // Lazy: a runtime that died may still hold the mount for a moment.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.merged)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    // /proc/self/status's Uid line: real, effective, saved, fs.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(network: bool) -> Step {
        Step {
            name: "t".into(),
            rootfs: "/r".into(),
            command: vec!["make".into(), "a b".into()],
            env: vec![],
            workdir: "/src".into(),
            source: "/ctx".into(),
            network,
            mounts: vec![("/sysroot".into(), "/base".into())],
        }
    }

    #[test]
    fn spec_isolates_by_default() {
        let spec = spec_for(&step(false), Path::new("/r"), false, Path::new("/o")).unwrap();
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        let mounts = spec.mounts().clone().unwrap();
        let src = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/src"))
            .unwrap();
        assert!(src.options().as_ref().unwrap().contains(&"ro".to_string()));
        let sysroot = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/sysroot"))
            .unwrap();
        assert_eq!(sysroot.source().as_deref(), Some(Path::new("/base")));
        assert!(sysroot
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_string()));
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.no_new_privileges(), Some(true));
        assert!(p
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .as_ref()
            .unwrap()
            .is_empty());

        let spec = spec_for(&step(true), Path::new("/r"), true, Path::new("/o")).unwrap();
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
    }

    #[test]
    fn layer_mounts_stay_out_of_the_executors_own() {
        for bad in [
            "/src",
            "/out/x",
            "/tmp",
            "sysroot",
            "/a/../src",
            "/",
            "/proc/x",
        ] {
            let mut s = step(false);
            s.mounts = vec![(bad.into(), "/base".into())];
            assert!(
                spec_for(&s, Path::new("/r"), false, Path::new("/o")).is_err(),
                "{bad}"
            );
        }
        let mut s = step(false);
        s.mounts = vec![("/usr/local/sysroot".into(), "/base".into())];
        assert!(spec_for(&s, Path::new("/r"), false, Path::new("/o")).is_ok());
    }

    #[test]
    fn commands_print_quoted() {
        assert_eq!(shell_words(&step(false).command), "make 'a b'");
    }
}
