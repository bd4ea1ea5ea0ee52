//! Hostile inputs: every case must end in a clear error and a
//! non-zero exit, never a panic, and write nothing outside its target.
//! The BunnyFile, context and layer cases use real files; the registry cases
//! talk to `server::Hostile`, a small HTTP server in this test that stands in
//! for a misbehaving registry (no real registry can be made to lie about a
//! digest or trickle bytes on cue).

mod cases_context;
mod cases_layers;
mod cases_registry;
mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// What a hostile case must end in.
pub struct Refusal {
    pub out: Output,
}

impl Refusal {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// Non-zero exit, no panic, and the error says `needle`.
    pub fn says(&self, needle: &str) -> &Self {
        let err = self.stderr();
        assert!(
            !self.out.status.success(),
            "expected a refusal mentioning `{needle}`, but it succeeded:\n{err}"
        );
        assert!(
            !err.contains("panicked") && self.out.status.code().is_some(),
            "a panic or a signal instead of an error:\n{err}"
        );
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "the error does not mention `{needle}`:\n{err}"
        );
        self
    }
}

pub fn bunny(root: &Path, args: &[&str]) -> Refusal {
    let out = Command::new(env!("CARGO_BIN_EXE_bunny"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .env("DOCKER_CONFIG", root.join("docker-config"))
        .stdin(Stdio::null())
        .output()
        .expect("running bunny");
    Refusal { out }
}

/// A temp dir with a `target` inside, and a way to prove nothing landed next
/// to it.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Sandbox {
        Sandbox::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Lists everything under the sandbox except `allowed` subtrees.
    pub fn assert_nothing_outside(&self, allowed: &[&str], forbidden: &[&str]) {
        for name in forbidden {
            let p = self.dir.path().join(name);
            assert!(
                p.symlink_metadata().is_err(),
                "{} was written outside the target",
                p.display()
            );
        }
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                allowed.contains(&name.as_str()),
                "unexpected `{name}` beside the target"
            );
        }
    }
}
