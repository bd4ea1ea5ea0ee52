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

    #[error("the spec's seccomp profile cannot be applied: {detail}")]
    Seccomp { detail: String },

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

    #[error("{monitor} has no user-mode network stack, so `bunny run` gives the guest a tap device in a network namespace of the run's own, and making one needs root. Run `bunny run` as root, or create a tap once and name it with --tap: sudo ip tuntap add dev bunny0 mode tap user $USER && sudo ip addr add 10.0.2.2/24 dev bunny0 && sudo ip link set bunny0 up, then `bunny run --tap bunny0 ...`")]
    TapNeedsRoot { monitor: String },

    #[error("--tap {tap}: {detail}; create it once with: sudo ip tuntap add dev {tap} mode tap user $USER && sudo ip addr add 10.0.2.2/24 dev {tap} && sudo ip link set {tap} up (the guest takes the next address, here 10.0.2.3)")]
    TapNotReady { tap: String, detail: String },

    #[error("cannot publish {addr}: {detail}")]
    Publish { addr: String, detail: String },

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

    #[error("{} is not a unikernel a Solo5 tender can run: {detail}", path.display())]
    BadUnikernel { path: PathBuf, detail: String },

    #[error("{} was built for {abi}, so it needs a tender of that ABI ({wanted}), but {found}; install the tender of the Solo5 release the unikernel was linked with (a Solo5 0.4 tender beside a newer one as solo5-spt-0.4 / solo5-hvt-0.4)", kernel.display())]
    TenderAbi {
        kernel: PathBuf,
        abi: &'static str,
        wanted: String,
        found: String,
    },

    #[error("while {program} was running: {detail}")]
    Supervise { program: String, detail: String },
}
