//! Kubernetes' way in, without a kubelet: containerd's CRI plugin driven by
//! `crictl`, pods on Debian's CNI bridge plugin, the runtime handler from
//! docs/kubernetes.md pointing at bunny-runtime. The pod's sandbox (pause)
//! goes to runc; hello-linux boots as the pod's container and answers HTTP
//! on the pod IP; exit statuses, a guest too small to boot, urunc settings
//! on the pod (whole and partial), CPU limits and the one-unikernel-per-pod
//! rule come through CRI as a user sees them; nothing is left behind.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::engines::{hello_archive, http_get, ok, runtime_binary, timed, Containerd};
use common::require_tool;
use sha2::{Digest, Sha256};

/// The pod network's subnet (10.213.X.0/24; X unique among the tests).
const SUBNET: u8 = 77;
const BRIDGE: &str = "bnycri77";
const PAUSE_IMAGE: &str = "registry.k8s.io/pause:bunny-test";
const HELLO_IMAGE: &str = "docker.io/library/hello:test";
const BOOT: Duration = Duration::from_secs(90);

/// Writes an OCI archive of `rootfs_files` (path in image, host file) with
/// `entrypoint`, named `name` for `ctr images import`.
fn oci_archive(dest: &Path, name: &str, files: &[(&str, &Path)], entrypoint: &[&str]) {
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |data: Vec<u8>| -> (String, usize) {
        let digest = format!("sha256:{:x}", Sha256::digest(&data));
        let size = data.len();
        blobs.push((digest.clone(), data));
        (digest, size)
    };
    let mut layer = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for (path, host) in files {
        let data = std::fs::read(host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_path_buf());
            parent = p.parent();
        }
        for d in std::mem::take(&mut dirs) {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            layer.append_data(&mut h, &d, std::io::empty()).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(data.len() as u64);
        layer.append_data(&mut h, path, data.as_slice()).unwrap();
    }
    let (layer_digest, layer_size) = add(layer.into_inner().unwrap());
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": entrypoint},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let (config_digest, config_size) = add(serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = add(serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": manifest_size,
                       "annotations": {"io.containerd.image.name": name}}],
    });
    let mut out = tar::Builder::new(std::fs::File::create(dest).unwrap());
    let mut entry = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        out.append_data(&mut h, path, data).unwrap();
    };
    for (digest, data) in &blobs {
        entry(
            &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
            data,
        );
    }
    entry("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    entry("index.json", &serde_json::to_vec(&index).unwrap());
    out.finish().unwrap();
}

/// containerd with its CRI plugin, its own root, state, sockets, CNI
/// config and IPAM store under a temp dir; the `bunny` handler as
/// docs/kubernetes.md gives it. Stopped by PID on drop, its bridge removed.
struct Cri {
    ctd: Containerd,
}

impl Cri {
    fn start() -> Cri {
        require_tool("runc");
        for plugin in ["bridge", "host-local"] {
            assert!(
                Path::new("/usr/lib/cni").join(plugin).is_file(),
                "/usr/lib/cni/{plugin} is missing: apt-get install containernetworking-plugins"
            );
        }
        let env = [("BUNNY_RUNTIME_ACCEL", "tcg".to_string())];
        let ctd = Containerd::start_cri(&env, |d| {
            std::fs::create_dir_all(d.join("cni")).unwrap();
            let cni = serde_json::json!({
                "cniVersion": "0.4.0", "name": "bunny-cri-test",
                "plugins": [{
                    "type": "bridge", "bridge": BRIDGE, "isGateway": true, "ipMasq": false,
                    "ipam": {"type": "host-local",
                             "ranges": [[{"subnet": format!("10.213.{SUBNET}.0/24")}]],
                             "routes": [{"dst": "0.0.0.0/0"}],
                             "dataDir": d.join("ipam")},
                }],
            });
            std::fs::write(
                d.join("cni/10-bunny.conflist"),
                serde_json::to_vec(&cni).unwrap(),
            )
            .unwrap();
            let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
            format!(
                r#"[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # runc cannot give the sandbox oom_score_adj -998 on these machines.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
  [{cri}.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [{cri}.containerd.runtimes.runc.options]
      Root = "{d}/runc"
  [{cri}.containerd.runtimes.bunny]
    runtime_type = "io.containerd.runc.v2"
    pod_annotations = ["com.urunc.unikernel.*"]
    container_annotations = ["com.urunc.unikernel.*"]
    [{cri}.containerd.runtimes.bunny.options]
      BinaryName = "{rt}"
      Root = "{d}/runc"
"#,
                d = d.display(),
                rt = runtime_binary().display(),
            )
        });
        let mut c = Cri { ctd };
        let t = Instant::now();
        loop {
            if let Some(s) = c.ctd.exited() {
                panic!("containerd exited ({s}); its log:\n{}", c.log());
            }
            if c.crictl()
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return c;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "containerd's CRI did not come up; its log:\n{}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn dir(&self) -> &Path {
        self.ctd.dir.path()
    }

    fn log(&self) -> String {
        self.ctd.log()
    }

    fn sock(&self) -> String {
        format!("unix://{}/c.sock", self.dir().display())
    }

    fn crictl(&self) -> Command {
        let mut c = Command::new("crictl");
        // An empty config file: nothing of the machine's /etc/crictl.yaml.
        let cfg = self.dir().join("crictl.yaml");
        if !cfg.exists() {
            std::fs::write(&cfg, "").unwrap();
        }
        c.arg("--config")
            .arg(cfg)
            .args(["--runtime-endpoint", &self.sock()])
            .args(["--image-endpoint", &self.sock()])
            .args(["--timeout", "60s"]);
        c
    }

    fn ctr(&self) -> Command {
        self.ctd.ctr()
    }

    /// Writes `value` as a JSON file for crictl and returns its path.
    fn json(&self, name: &str, value: serde_json::Value) -> PathBuf {
        let p = self.dir().join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(&serde_json::to_vec(&value).unwrap())
            .unwrap();
        p
    }

    fn pod(&self, name: &str, annotations: serde_json::Value) -> PathBuf {
        let logs = self.dir().join("logs").join(name);
        self.json(
            &format!("pod-{name}.json"),
            serde_json::json!({
                "metadata": {"name": name, "namespace": "default",
                             "uid": format!("{name}-uid"), "attempt": 0},
                "log_directory": logs,
                "annotations": annotations,
                "linux": {},
            }),
        )
    }

    fn crictl_ok(&self, args: &[&str]) -> String {
        ok(self.crictl().args(args), BOOT).trim().to_string()
    }

    /// runp + create + start; returns (pod id, container id).
    fn run_pod(&self, pod: &Path, container: &Path) -> (String, String) {
        let p = pod.to_str().unwrap();
        let pod_id = self.crictl_ok(&["runp", "--runtime", "bunny", p]);
        let cid = self.crictl_ok(&["create", &pod_id, container.to_str().unwrap(), p]);
        self.crictl_ok(&["start", &cid]);
        (pod_id, cid)
    }

    /// `crictl start` of a container created in `pod_id`; its failure text.
    fn start_fails(&self, pod_id: &str, pod: &Path, container: &Path) -> String {
        let cid = self.crictl_ok(&[
            "create",
            pod_id,
            container.to_str().unwrap(),
            pod.to_str().unwrap(),
        ]);
        let out = timed(self.crictl().args(["start", &cid]), BOOT);
        assert!(
            !out.status.success(),
            "{} started, but should not have",
            container.display()
        );
        self.crictl_ok(&["rm", &cid]);
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn inspect(&self, what: &str, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.crictl_ok(&[what, id])).unwrap()
    }

    /// Waits for the container to exit; returns its status block.
    fn wait_exited(&self, cid: &str) -> serde_json::Value {
        let t = Instant::now();
        loop {
            let st = self.inspect("inspect", cid)["status"].clone();
            if st["state"] == "CONTAINER_EXITED" {
                return st;
            }
            assert!(t.elapsed() < BOOT, "{cid} never exited: {st}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn teardown_pod(&self, pod_id: &str) {
        self.crictl_ok(&["stopp", pod_id]);
        self.crictl_ok(&["rmp", pod_id]);
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        // Whatever a failed test left: pods first (that frees their netns).
        let _ = self.crictl().args(["rmp", "--force", "--all"]).output();
        self.ctd.stop();
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
        // containerd leaves its snapshot mounts (none once pods are gone).
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir().join("root"))
            .output();
    }
}

/// Processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmd.contains(needle) {
            found.push((pid, cmd));
        }
    }
    found
}

/// The network namespace CRI made for the pod.
fn pod_netns(info: &serde_json::Value) -> String {
    info["info"]["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["type"] == "network"))
        .and_then(|n| n["path"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn crictl_runs_hello_linux_as_a_pod_through_containerds_cri() {
    require_tool("crictl");
    runtime_binary();
    let start = Instant::now();
    let cri = Cri::start();
    let d = cri.dir().to_path_buf();

    // Images: a pause of busybox (no registry here), and hello-linux.
    let pause = d.join("pause.tar");
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: apt-get install busybox-static"
    );
    oci_archive(
        &pause,
        PAUSE_IMAGE,
        &[("bin/busybox", busybox)],
        &["/bin/busybox", "sleep", "2147483647"],
    );
    let hello = hello_archive(&d, "oci-archive");
    for archive in [&pause, &hello] {
        ok(
            cri.ctr().args(["images", "import"]).arg(archive),
            Duration::from_secs(60),
        );
    }
    let _ = std::fs::remove_file(&hello);

    let urunc = serde_json::json!({
        "com.urunc.unikernel.unikernelType": "linux",
        "com.urunc.unikernel.hypervisor": "qemu",
        "com.urunc.unikernel.binary": "/.boot/kernel",
        "com.urunc.unikernel.initrd": "/.boot/rootfs",
    });
    let web = cri.json(
        "web.json",
        serde_json::json!({
            "metadata": {"name": "web"}, "image": {"image": HELLO_IMAGE},
            "log_path": "web.log",
            // 1.5 CPUs: two vCPUs.
            "linux": {"resources": {"memory_limit_in_bytes": 268435456,
                                    "cpu_period": 100000, "cpu_quota": 150000}},
        }),
    );

    // A pod carrying urunc's settings: its sandbox still runs under runc,
    // its container boots and answers on the pod IP.
    let t0 = Instant::now();
    let web_pod = cri.pod("web", urunc.clone());
    let (pod_id, cid) = cri.run_pod(&web_pod, &web);
    let podinfo = cri.inspect("inspectp", &pod_id);
    let ip = podinfo["status"]["network"]["ip"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        ip.starts_with(&format!("10.213.{SUBNET}.")),
        "pod IP {ip} is not on the bridge's subnet"
    );
    let mut netns = vec![pod_netns(&podinfo)];
    let runc_root = d.join("runc/k8s.io");
    let sandbox_state = ok(
        Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["state", &pod_id]),
        Duration::from_secs(10),
    );
    assert!(
        sandbox_state.contains("\"running\""),
        "runc does not run the sandbox: {sandbox_state}"
    );
    let body = loop {
        if let Some(b) = http_get(&format!("{ip}:80")) {
            break b;
        }
        assert!(
            t0.elapsed() < BOOT,
            "the pod never answered HTTP on {ip}; containerd log:\n{}",
            cri.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("crictl runp -> first HTTP answer: {:?}", t0.elapsed());
    assert!(body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"));
    assert!(body.contains("hello from bunny"), "{body}");
    let qemu = processes_with(&cid)
        .into_iter()
        .find(|(_, c)| c.contains("qemu-system"))
        .expect("no qemu runs the container");
    assert!(qemu.1.contains(" -smp 2 "), "cpu_quota 1.5: {}", qemu.1);
    assert!(qemu.1.contains(" -m 256 "), "{}", qemu.1);

    // A second unikernel in the pod is refused with a reason.
    let web2 = cri.json(
        "web2.json",
        serde_json::json!({"metadata": {"name": "web2"}, "image": {"image": HELLO_IMAGE},
                           "log_path": "web2.log"}),
    );
    let e = cri.start_fails(&pod_id, &web_pod, &web2);
    assert!(
        e.contains("a second unikernel cannot join"),
        "second unikernel: {e}"
    );
    // The first one still serves.
    assert!(http_get(&format!("{ip}:80")).is_some());

    // The console is the container's output (stdout and stderr alike).
    let out = timed(cri.crictl().args(["logs", &cid]), BOOT);
    let logs =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("hello-linux: init up"), "logs:\n{logs}");

    let t = Instant::now();
    cri.crictl_ok(&["stop", "--timeout", "30", &cid]);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "crictl stop took {:?}",
        t.elapsed()
    );
    let st = cri.wait_exited(&cid);
    assert_eq!(st["exitCode"], 143, "SIGTERM, forwarded to qemu: {st}");
    cri.crictl_ok(&["rm", &cid]);
    cri.teardown_pod(&pod_id);

    // Part of urunc's settings on a pod: the start fails naming the rest.
    let partial = cri.pod(
        "partial",
        serde_json::json!({"com.urunc.unikernel.hypervisor": "qemu"}),
    );
    let partial_id = cri.crictl_ok(&["runp", "--runtime", "bunny", partial.to_str().unwrap()]);
    netns.push(pod_netns(&cri.inspect("inspectp", &partial_id)));
    let e = cri.start_fails(&partial_id, &partial, &web);
    assert!(
        e.contains("missing com.urunc.unikernel.unikernelType, com.urunc.unikernel.binary"),
        "partial settings: {e}"
    );
    cri.teardown_pod(&partial_id);

    // A sidecar that started first keeps the pod's network: the guest that
    // would take its address is refused instead.
    let side = cri.json(
        "side.json",
        serde_json::json!({"metadata": {"name": "side"}, "image": {"image": PAUSE_IMAGE},
                           "command": ["/bin/busybox", "sleep", "60"], "log_path": "side.log"}),
    );
    let first = cri.pod("sidefirst", serde_json::json!({}));
    let (first_id, side_cid) = cri.run_pod(&first, &side);
    netns.push(pod_netns(&cri.inspect("inspectp", &first_id)));
    let e = cri.start_fails(&first_id, &first, &web);
    assert!(
        e.contains("another container already uses its network"),
        "guest after a sidecar: {e}"
    );
    cri.crictl_ok(&["stop", "--timeout", "0", &side_cid]);
    cri.crictl_ok(&["rm", &side_cid]);
    cri.teardown_pod(&first_id);

    // Exit statuses, through CRI: a guest exiting 3 is Error/3; one with too
    // little memory to boot is a failure, not "Completed" 0. Both boot at once.
    let exit3 = cri.json(
        "exit3.json",
        serde_json::json!({"metadata": {"name": "exit3"}, "image": {"image": HELLO_IMAGE},
                           "args": ["once", "3"], "log_path": "exit3.log"}),
    );
    let small = cri.json(
        "small.json",
        serde_json::json!({"metadata": {"name": "small"}, "image": {"image": HELLO_IMAGE},
                           "log_path": "small.log",
                           "linux": {"resources": {"memory_limit_in_bytes": 67108864}}}),
    );
    let exit_pod = cri.pod("exit3", serde_json::json!({}));
    let small_pod = cri.pod("small", serde_json::json!({}));
    let (exit_pod_id, exit_cid) = cri.run_pod(&exit_pod, &exit3);
    let (small_pod_id, small_cid) = cri.run_pod(&small_pod, &small);
    for id in [&exit_pod_id, &small_pod_id] {
        netns.push(pod_netns(&cri.inspect("inspectp", id)));
    }
    // An ordinary sidecar would find the pod's address taken by the guest.
    let e = cri.start_fails(&exit_pod_id, &exit_pod, &side);
    assert!(
        e.contains("an ordinary container (run by runc) cannot join"),
        "sidecar: {e}"
    );
    let st = cri.wait_exited(&exit_cid);
    assert_eq!(st["exitCode"], 3, "{st}");
    assert_eq!(st["reason"], "Error", "{st}");
    let st = cri.wait_exited(&small_cid);
    assert_eq!(
        st["exitCode"],
        bunny_runtime::GUEST_CRASHED,
        "a 64 MiB guest cannot boot: {st}"
    );
    assert_eq!(st["reason"], "Error", "{st}");
    for (pod, cid) in [(&exit_pod_id, &exit_cid), (&small_pod_id, &small_cid)] {
        cri.crictl_ok(&["rm", cid]);
        cri.teardown_pod(pod);
    }

    eprintln!("all pods done: {:?}", start.elapsed());

    // Nothing left behind: no qemu, no bunny state, no netns, no cgroup,
    // no port on the bridge.
    let left = processes_with(&d.display().to_string())
        .into_iter()
        .filter(|(_, c)| !c.starts_with("containerd "))
        .filter(|(_, c)| c.contains("qemu") || c.contains("bunny-runtime"))
        .collect::<Vec<_>>();
    assert!(left.is_empty(), "left running: {left:?}");
    for ns in &netns {
        assert!(!ns.is_empty() && !Path::new(ns).exists(), "netns {ns} left");
    }
    for id in [&cid, &exit_cid, &small_cid, &pod_id] {
        for ctl in ["memory", "pids", "cpu", "unified"] {
            let p = Path::new("/sys/fs/cgroup")
                .join(ctl)
                .join("k8s.io")
                .join(id);
            assert!(!p.exists(), "cgroup {} left", p.display());
        }
        assert!(!runc_root.join(id).exists(), "runtime state of {id} left");
    }
    let ports = ok(
        Command::new("ip").args(["-o", "link", "show", "master", BRIDGE]),
        Duration::from_secs(10),
    );
    assert!(ports.trim().is_empty(), "ports left on {BRIDGE}: {ports}");
    let taps = ok(
        Command::new("ip").args(["-o", "link", "show"]),
        Duration::from_secs(10),
    );
    assert!(
        !taps.contains("tap0_bunny"),
        "a tap in the host's namespace"
    );
}
