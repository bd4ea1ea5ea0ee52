use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("the image has no {key}: looked in the image annotations and in {}", urunc_json.display())]
    MissingKey {
        key: &'static str,
        urunc_json: PathBuf,
    },

    #[error("{key} is {value:?} in {source_name}, which is not one of: {expected}")]
    BadValue {
        key: &'static str,
        value: String,
        source_name: String,
        expected: &'static str,
    },

    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{} is not a flat JSON object of strings: {detail}", path.display())]
    BadUruncJson { path: PathBuf, detail: String },

    #[error("image path {path:?} ({what}) {reason}")]
    BadImagePath {
        what: &'static str,
        path: String,
        reason: String,
    },

    #[error("bad port publication {value:?}: {reason} (expected [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp|/udp])")]
    BadPublish { value: String, reason: String },

    #[error("{guest} on {monitor} is not supported: {reason}")]
    Unsupported {
        guest: &'static str,
        monitor: &'static str,
        reason: String,
    },

    #[error("cannot pass {what} {value:?} to a {guest} guest: {reason}")]
    Cmdline {
        guest: &'static str,
        what: String,
        value: String,
        reason: String,
    },

    #[error("{guest} needs the program to run: the image has no entrypoint/cmd and no com.urunc.unikernel.cmdline")]
    NoInit { guest: &'static str },

    #[error("{monitor} needs KVM, but {reason}")]
    NeedsKvm {
        monitor: &'static str,
        reason: String,
    },

    #[error("KVM was requested but is unusable on this host: {reason}; use TCG instead")]
    KvmUnusable { reason: String },

    #[error("{program} was not found on PATH; install {package}")]
    MonitorMissing {
        program: String,
        package: &'static str,
    },

    #[error("tap device {tap} does not exist and creating it needs root; create it once with: sudo ip tuntap add dev {tap} mode tap user {user} && sudo ip link set {tap} up")]
    TapMissing { tap: String, user: String },

    #[error("cannot set up tap device {tap}: {detail}")]
    TapSetup { tap: String, detail: String },

    #[error("cannot write {}: {source}", path.display())]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    #[error("while {program} was running: {detail}")]
    Supervise { program: String, detail: String },
}
