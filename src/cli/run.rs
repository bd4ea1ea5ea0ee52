//! `bunny run`: boots an image with the embedded runtime, reading urunc's
//! settings exactly as urunc does (annotations, else /urunc.json).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context};
use bunny_runtime::{Accel, HostNet, Hypervisor, NetSpec, PortForward, RunSpec, RuntimeError};
use clap::{Args, ValueEnum};
use oci_spec::image::{Descriptor, ImageConfiguration};

use crate::layers::store::Store;
use crate::runs::{process_start, RunState, Runs, Status, CONSOLE_LOG};

#[derive(Debug, Args)]
#[command(
    about = "Boot an image under qemu, firecracker or solo5",
    after_help = "Examples:\n  \
        bunny run --rm -p 18080:80 hello-linux:latest\n  \
        bunny run -d --name web -p 18080:80 hello-linux   # then: bunny ps, logs -f web, stop web, rm web\n  \
        sudo bunny run --rm -p 8080:80 httpd-rumprun    # spt: a tap in the run's own netns\n  \
        bunny run --rm --tap bunny0 -p 8080:80 httpd-rumprun\n  \
        bunny run --rm -e GREETING=hi hello-linux once\n  \
        bunny run --rm --accel tcg ./out/hello-oci"
)]
pub struct RunArgs {
    /// Remove the run (its state and files) when the guest stops.
    #[arg(long)]
    rm: bool,
    /// Run in the background: print the run's id and return once the
    /// monitor runs; the console goes to `bunny logs`.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Name the run (for ps, logs, stop, rm); default: IMAGE-XXXXXX.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Forward a host port to the guest: [IP:]HOST:GUEST[/udp]; repeatable.
    #[arg(short = 'p', long = "publish", value_name = "HOST:GUEST")]
    publish: Vec<String>,
    /// Give the guest this existing tap device instead of a network of its
    /// own (needed by solo5, firecracker and cloud-hypervisor when not root:
    /// as root, bunny makes a tap in a network namespace of the run's own).
    #[arg(long, value_name = "NAME")]
    tap: Option<String>,
    /// Attach a volume: HOST_DIR:GUEST_PATH[:ro|rw|keep][,size=N] (the
    /// directory goes in as a disk image and the guest's changes come back
    /// when it stops; with `keep` they stay in the image, kept with the
    /// run for `bunny start`, and the directory is left as it was) or
    /// IMAGE_FILE:GUEST_PATH[:ro] (ext2/3/4, written in place); repeatable
    /// (rumprun: one).
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:OPTS]")]
    volume: Vec<String>,
    /// Set an environment variable in the guest; repeatable.
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = bunny_runtime::DEFAULT_MEMORY_MB)]
    memory: u64,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// Use this monitor instead of the image's `hypervisor`.
    #[arg(long, value_name = "MONITOR")]
    monitor: Option<String>,
    /// Hardware acceleration: auto uses KVM only where it really works.
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelArg,
    /// The image: a name in the local store, an OCI layout directory
    /// (optionally DIR:TAG), or a registry reference (pulled).
    image: String,
    #[command(flatten)]
    registry: super::transfer::RegistryFlags,
    /// Arguments for the guest's application (replace the image's Cmd).
    args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

/// Set in the detached copy of `bunny run -d`: the id of the run it
/// supervises, and the descriptor on which it reports the start.
const DETACHED_RUN_ENV: &str = "BUNNY_DETACHED_RUN";
const READY_FD_ENV: &str = "BUNNY_DETACHED_READY_FD";

pub fn run(args: RunArgs, globals: &super::Globals) -> anyhow::Result<ExitCode> {
    // A mistyped -v is said before any image is looked for or pulled.
    for v in &args.volume {
        crate::volumes::parse(v)?;
    }
    let runs = Runs::open(&globals.root)?;
    match std::env::var(DETACHED_RUN_ENV) {
        Ok(id) => {
            // The detached supervisor: its stdout and stderr are the run's
            // console log.
            let state = runs
                .reload(&id)?
                .with_context(|| format!("run {id} was removed before it started"))?;
            let ready = std::env::var(READY_FD_ENV)
                .ok()
                .and_then(|fd| fd.parse::<RawFd>().ok())
                .map(|fd| {
                    // Not for the monitor: the parent waits for this pipe
                    // to close when we fail.
                    // SAFETY: fcntl on a descriptor number has no memory
                    // effects; the parent handed us this one, open and ours.
                    unsafe {
                        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                        File::from_raw_fd(fd)
                    }
                });
            std::env::remove_var(DETACHED_RUN_ENV);
            std::env::remove_var(READY_FD_ENV);
            supervise(args, globals, &runs, state, ready)
        }
        Err(_) if args.detach => detach(args, globals, &runs),
        Err(_) => {
            let mut state = new_state(&args, false);
            state.supervisor_pid = Some(std::process::id());
            state.supervisor_start = process_start(std::process::id());
            let state = runs.create(state, args.name.as_deref())?;
            supervise(args, globals, &runs, state, None)
        }
    }
}

fn new_state(args: &RunArgs, detached: bool) -> RunState {
    RunState {
        id: String::new(),
        name: String::new(),
        image: args.image.clone(),
        command: args.args.clone(),
        created: crate::runs::now(),
        status: Status::Created,
        detached,
        remove: args.rm,
        supervisor_pid: None,
        supervisor_start: None,
        monitor_pid: None,
        exit_code: None,
        finished: None,
        ports: args.publish.clone(),
        // Kept only when every word is text: `bunny start` must give the
        // same command line, not an approximation of it.
        argv: std::env::args_os()
            .skip(1)
            .map(|a| a.into_string().ok())
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default(),
        cwd: std::env::current_dir().ok(),
        restarts: 0,
    }
}

/// `bunny run -d`: finds the image (pulling it if need be), registers the
/// run, and starts a copy of this command in a session of its own, with
/// the console going to the run's log; returns once the monitor runs.
fn detach(args: RunArgs, globals: &super::Globals, runs: &Runs) -> anyhow::Result<ExitCode> {
    // Here, so that a missing image or a pull's progress reaches the user.
    locate(&args, &globals.root)?;
    let state = runs.create(new_state(&args, true), args.name.as_deref())?;
    let dir = runs.dir_of(&state.id);
    let log_path = dir.join(CONSOLE_LOG);
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let started = spawn_supervisor(&state.id, &argv, None, None, &log_path);
    match started {
        Ok(()) => {
            outln!("{}", state.id)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // Nothing ran: the name is free again.
            let _ = runs.remove(&state.id);
            Err(e)
        }
    }
}

/// Starts `bunny ARGV` (a `bunny run` command line) as the detached
/// supervisor of run `id`, in a session of its own, its output going to
/// `log_path`; returns once it reports the monitor running, or with the
/// error that stopped it. `cwd` and `root`: where the command line was
/// first given, for `bunny start` (None: this process's own).
pub(crate) fn spawn_supervisor(
    id: &str,
    argv: &[std::ffi::OsString],
    cwd: Option<&Path>,
    root: Option<&Path>,
    log_path: &Path,
) -> anyhow::Result<()> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("making a pipe");
    }
    // SAFETY: pipe2 just opened both; each is owned once.
    let (mut rd, wr) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    let wfd = wr.as_raw_fd();
    let exe = std::env::current_exe().context("finding bunny's own executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(argv)
        .env(DETACHED_RUN_ENV, id)
        .env(READY_FD_ENV, wfd.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("sharing the console log")?)
        .stderr(log);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    if let Some(root) = root {
        // A `--root` on the recorded command line still wins, as it did
        // the first time.
        cmd.env("BUNNY_ROOT", root);
    }
    // SAFETY: setsid and fcntl are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the terminal's session: its hangup and ^C are not
            // the run's.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The child keeps the pipe's write end across exec.
            if libc::fcntl(wfd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the detached supervisor")?;
    drop(wr);
    // One line: "started", or "error: ..."; nothing if it died.
    let mut report = String::new();
    let _ = BufReader::new(&mut rd).read_line(&mut report);
    if report.starts_with("started") {
        // Reaped by init once we exit; nothing waits for it here.
        drop(child);
        return Ok(());
    }
    let status = child.wait().ok();
    let said = report
        .trim()
        .strip_prefix("error: ")
        .unwrap_or(report.trim());
    let said = if said.is_empty() {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "the supervisor ended ({}) before the monitor started: {}",
            status.map_or("?".into(), |s| s.to_string()),
            tail.join("\n")
        )
    } else {
        said.to_string()
    };
    bail!("{said}")
}

/// Boots the run and supervises it to the end, keeping its state current;
/// `ready` (detached runs) hears "started" once the monitor runs, or the
/// error that stopped it.
fn supervise(
    args: RunArgs,
    globals: &super::Globals,
    runs: &Runs,
    mut state: RunState,
    mut ready: Option<File>,
) -> anyhow::Result<ExitCode> {
    state.status = Status::Running;
    state.supervisor_pid = Some(std::process::id());
    state.supervisor_start = process_start(std::process::id());
    runs.save(&state)?;
    let run_dir = runs.dir_of(&state.id);
    let mut started = |pid: u32| {
        state.monitor_pid = Some(pid);
        // A state that cannot be written leaves the run without `ps`; the
        // guest still runs, so this is only said.
        if let Err(e) = runs.save(&state) {
            eprintln!("bunny: {}", crate::error_chain(&e));
        }
        if let Some(mut r) = ready.take() {
            let _ = r.write_all(b"started\n");
        }
    };
    let result = boot_run(&args, globals, &run_dir, &mut started);
    if let Err(e) = &result {
        if let Some(mut r) = ready.take() {
            let _ = writeln!(r, "error: {}", super::chain(e));
        }
    }
    // `bunny rm -f` may have removed the run meanwhile: then there is
    // nothing left to record.
    let Some(mut state) = runs.reload(&state.id)? else {
        return result.map(exit_code);
    };
    // A volume that could not be written back leaves its image here: the
    // run stays (even with --rm) so the data is not lost with it.
    let volume_kept = result.is_err() && has_volume_image(&run_dir);
    if result.is_err() && state.monitor_pid.is_none() && state.restarts == 0
        || args.rm && !volume_kept
    {
        // Nothing ran (the error says why), or --rm: no run to keep. A run
        // `bunny start` failed to boot again stays what it was.
        runs.remove(&state.id)
            .with_context(|| format!("removing run {}", state.name))?;
        return result.map(exit_code);
    }
    state.status = Status::Exited;
    // docker's status for a run that failed after its start.
    state.exit_code = Some(*result.as_ref().unwrap_or(&125));
    state.finished = Some(crate::runs::now());
    runs.save(&state)?;
    if !state.detached && result.is_ok() {
        eprintln!(
            "bunny: run {} ({}) stopped; its files are kept in {} (`bunny rm {}` removes them)",
            state.name,
            state.short_id(),
            run_dir.display(),
            state.name
        );
    }
    result.map(exit_code)
}

fn has_volume_image(run_dir: &Path) -> bool {
    std::fs::read_dir(run_dir).is_ok_and(|d| {
        d.flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("vol") && n.ends_with(".img")
        })
    })
}

fn exit_code(status: i32) -> ExitCode {
    ExitCode::from(status.clamp(0, 255) as u8)
}

/// Everything from the image to the guest's exit status.
fn boot_run(
    args: &RunArgs,
    globals: &super::Globals,
    run_dir: &Path,
    started: &mut dyn FnMut(u32),
) -> anyhow::Result<i32> {
    let (store, manifest_desc) = locate(args, &globals.root)?;
    let manifest = super::images::read_manifest(&store, &manifest_desc)?;
    let config: ImageConfiguration = {
        let f = store.open_blob(manifest.config().digest().as_ref())?;
        ImageConfiguration::from_reader(BufReader::new(f))
            .with_context(|| format!("reading image config {}", manifest.config().digest()))?
    };

    // The image is unpacked once per manifest digest and used in place: the
    // monitor reads the kernel and initrd straight from that cache, and qemu
    // opens its disks with snapshot=on so no run changes them. Each run gets
    // only a small work directory for side files.
    let shared = crate::layers::image_fs::unpacked_image(
        &store,
        &manifest_desc,
        &globals.root.join("rootfs"),
    )
    .with_context(|| format!("unpacking {} for the run", args.image))?;
    let annotations: BTreeMap<String, String> = manifest
        .annotations()
        .as_ref()
        .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let uk = bunny_runtime::read_config(&annotations, &shared)
        .with_context(|| format!("`{}` is not an image urunc can boot", args.image))?;
    let monitor = match &args.monitor {
        Some(m) => Some(Hypervisor::parse(m).with_context(|| {
            format!("--monitor `{m}`: use qemu, firecracker, hvt, spt or cloud-hypervisor")
        })?),
        None => None,
    };
    // Only qemu can overlay a shared disk; other monitors get a private copy
    // of the disk (the kernel and the rest are read from the shared image).
    let block_copy = match &uk.block {
        Some(block) if monitor.unwrap_or(uk.hypervisor) != Hypervisor::Qemu => {
            let image_disk = bunny_runtime::resolve_in_rootfs(
                &shared,
                block,
                "block image (com.urunc.unikernel.block)",
            )?;
            let own = run_dir.join("block.img");
            std::fs::copy(&image_disk, &own).with_context(|| {
                format!(
                    "copying the block image {} for the run",
                    image_disk.display()
                )
            })?;
            Some(own)
        }
        _ => None,
    };

    let mut spec = RunSpec::new(shared, uk);
    spec.work_dir = Some(run_dir.to_path_buf());
    spec.shared_image = block_copy.is_none();
    spec.block_copy = block_copy;
    spec.monitor = monitor;
    let cfg = config.config().as_ref();
    let mut argv: Vec<String> = cfg.and_then(|c| c.entrypoint().clone()).unwrap_or_default();
    if args.args.is_empty() {
        argv.extend(cfg.and_then(|c| c.cmd().clone()).unwrap_or_default());
    } else {
        argv.extend(args.args.iter().cloned());
    }
    spec.args = argv;
    let mut env: Vec<String> = cfg.and_then(|c| c.env().clone()).unwrap_or_default();
    for e in &args.env {
        if !e.contains('=') {
            bail!("-e `{e}`: write KEY=VALUE");
        }
        let key = e.split('=').next().unwrap_or("");
        env.retain(|old| old.split('=').next() != Some(key));
        env.push(e.clone());
    }
    spec.env = env;
    spec.memory_mb = args.memory;
    spec.cpus = args.cpus;
    spec.accel = match args.accel {
        AccelArg::Auto => Accel::Auto,
        AccelArg::Kvm => Accel::Kvm,
        AccelArg::Tcg => Accel::Tcg,
    };
    let forwards = args
        .publish
        .iter()
        .map(|p| bunny_runtime::parse_publish(p))
        .collect::<Result<Vec<_>, _>>()?;
    let host_side = guest_network(&mut spec, args.tap.as_deref(), forwards)?;
    let volumes = attach_volumes(&mut spec, &args.volume, run_dir, args.rm)?;

    let mut ran = false;
    let status = bunny_runtime::boot_notify(&spec, &mut |pid| {
        ran = true;
        started(pid)
    });
    drop(host_side);
    // The guest's changes go back to the directories even when the run
    // ended badly: they are the user's data.
    let mut kept = Vec::new();
    if ran {
        for v in volumes.iter().filter(|v| v.write_back) {
            bunny_runtime::timestamp("volume-write-back-start");
            let done = bunny_runtime::volume_image::write_back(&v.image, &v.arg.source);
            bunny_runtime::timestamp("volume-write-back-done");
            match done {
                Ok(()) => {
                    let _ = std::fs::remove_file(&v.image);
                }
                Err(e) => kept.push(format!(
                    "{} (its image is kept at {}): {}",
                    v.arg.source.display(),
                    v.image.display(),
                    crate::error_chain(&e)
                )),
            }
        }
    }
    // Read-only copies hold nothing of the guest's.
    for v in volumes
        .iter()
        .filter(|v| !v.write_back && !v.arg.keep && v.image != v.arg.source)
    {
        let _ = std::fs::remove_file(&v.image);
    }
    if ran {
        for v in volumes.iter().filter(|v| v.arg.keep) {
            eprintln!(
                "bunny: the guest's changes to {} are kept in {}, not in the directory; `bunny start` boots this run with them again",
                v.arg.target,
                v.image.display()
            );
        }
    }
    let status = status?;
    if !kept.is_empty() {
        bail!(
            "the guest stopped ({status}), but writing its volumes back failed: {}",
            kept.join("; ")
        );
    }
    Ok(status)
}

/// A volume of this run, and what to do with it when the guest stops.
struct RunVolume {
    arg: crate::volumes::VolumeArg,
    /// The disk the guest gets.
    image: PathBuf,
    write_back: bool,
    _lock: crate::volumes::VolumeLock,
}

/// Makes the disks for `-v` (images of directories in the run's
/// directory) and adds them to the spec.
fn attach_volumes(
    spec: &mut RunSpec,
    values: &[String],
    run_dir: &Path,
    remove: bool,
) -> anyhow::Result<Vec<RunVolume>> {
    use crate::volumes::{self, VolumeFs};
    let mut out = Vec::new();
    if values.is_empty() {
        return Ok(out);
    }
    let fs_type = match spec.config.unikernel_type {
        bunny_runtime::UnikernelType::Linux => VolumeFs::Ext4,
        bunny_runtime::UnikernelType::Rumprun => VolumeFs::Ext2,
        bunny_runtime::UnikernelType::FreeBsd => VolumeFs::Ufs2,
        other => bail!(
            "-v: volumes are for linux, rumprun and freebsd guests; this image is {}",
            other.as_str()
        ),
    };
    // solo5 has no read-only disk: a read-only volume is a copy there.
    let rumprun = fs_type == VolumeFs::Ext2;
    for (n, value) in values.iter().enumerate() {
        let arg = volumes::parse(value)?;
        let lock = volumes::lock(&arg.source)?;
        let image = run_dir.join(format!("vol{n}.img"));
        if arg.keep && remove {
            bail!("-v {value}: keep holds the guest's changes in the run's directory, which --rm removes; drop one of them");
        }
        if fs_type == VolumeFs::Ufs2 && arg.source_is_dir && !arg.keep && !arg.read_only {
            // Writing back needs a UFS2 reader on the host, which bunny
            // does not have: the user chooses what happens to the changes.
            bail!("-v {value}: a FreeBSD guest's changes cannot be written back into the directory (bunny writes UFS2 but does not read it back yet): add `:keep` (they stay in the run's image, for `bunny start`) or `:ro`");
        }
        let (image, write_back) = if arg.keep && image.exists() {
            // The image an earlier boot of this run kept: the guest goes
            // on from its own changes.
            (image, false)
        } else if arg.source_is_dir && image.exists() {
            // Only a write-back that failed leaves one: it holds the
            // guest's data, which a new image would throw away.
            bail!(
                "-v {value}: {} holds what an earlier boot of this run wrote and could not be written back; copy what you need out of it (debugfs -R 'rdump / DIR' {}) and remove it",
                image.display(),
                image.display()
            );
        } else if arg.source_is_dir {
            let t0 = std::time::Instant::now();
            bunny_runtime::timestamp("volume-image-start");
            volumes::make_image(
                &arg.source,
                &image,
                fs_type,
                arg.size,
                &bunny_runtime::volume_serial(n),
            )
            .with_context(|| format!("-v {value}: making its disk image"))?;
            bunny_runtime::timestamp("volume-image-done");
            if t0.elapsed() > std::time::Duration::from_secs(2) {
                eprintln!(
                    "bunny: -v {value}: its {} image took {:.1} s to make",
                    fs_type.as_str(),
                    t0.elapsed().as_secs_f64()
                );
            }
            (image, !arg.read_only && !arg.keep)
        } else if arg.read_only && rumprun {
            std::fs::copy(&arg.source, &image)
                .with_context(|| format!("-v {value}: copying the image for a read-only volume"))?;
            (image, false)
        } else {
            (arg.source.clone(), false)
        };
        spec.volumes.push(bunny_runtime::Volume {
            path: image.clone(),
            target: arg.target.clone(),
            read_only: arg.read_only && !rumprun,
        });
        out.push(RunVolume {
            arg,
            image,
            write_back,
            _lock: lock,
        });
    }
    Ok(out)
}

/// Gives the guest its network and returns what must live on the host side
/// while it runs (tap namespaces, port proxies). qemu has a network stack
/// of its own for port forwards; the other monitors get a tap, and the
/// forwards go through bunny's proxy.
fn guest_network(
    spec: &mut RunSpec,
    tap: Option<&str>,
    forwards: Vec<PortForward>,
) -> anyhow::Result<Option<HostNet>> {
    let hv = spec.monitor.unwrap_or(spec.config.hypervisor);
    let net = match tap {
        Some(tap) => HostNet::existing(tap, &forwards)?,
        None if hv == Hypervisor::Qemu => {
            // qemu (7.2, Debian 12's) refuses IPv6 host addresses in its
            // port forwards: those go to a loopback port of qemu's through
            // bunny's proxy instead, and the guest keeps qemu's network.
            let (v6, mut direct): (Vec<PortForward>, Vec<PortForward>) = forwards
                .into_iter()
                .partition(|f| f.host_ip.is_some_and(|ip| ip.is_ipv6()));
            let mut relayed = Vec::new();
            for f in v6 {
                let port = free_loopback_port(f.udp)
                    .context("finding a loopback port for an IPv6 publication")?;
                direct.push(PortForward {
                    host_ip: Some(Ipv4Addr::LOCALHOST.into()),
                    host_port: port,
                    ..f
                });
                relayed.push(PortForward {
                    guest_port: port,
                    ..f
                });
            }
            spec.net = NetSpec::User { forwards: direct };
            return Ok(if relayed.is_empty() {
                None
            } else {
                Some(HostNet::relay(Ipv4Addr::LOCALHOST, &relayed)?)
            });
        }
        None => match HostNet::private(hv.program(), &forwards) {
            Ok(net) => net,
            // Nothing was published: run without a NIC rather than refuse.
            Err(e @ RuntimeError::TapNeedsRoot { .. }) if forwards.is_empty() => {
                eprintln!("bunny: the guest gets no network: {e}");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        },
    };
    spec.net = net.net_spec();
    spec.netns = net.netns_fd();
    Ok(Some(net))
}

/// A loopback port free now, for qemu to listen on.
fn free_loopback_port(udp: bool) -> std::io::Result<u16> {
    let at = (Ipv4Addr::LOCALHOST, 0);
    if udp {
        Ok(std::net::UdpSocket::bind(at)?.local_addr()?.port())
    } else {
        Ok(std::net::TcpListener::bind(at)?.local_addr()?.port())
    }
}

/// Finds the image: an OCI layout directory (DIR or DIR:TAG), else a name or
/// digest in the local store.
fn locate(args: &RunArgs, root: &Path) -> anyhow::Result<(Store, Descriptor)> {
    let image = args.image.as_str();
    let (dir, tag) = match image.rsplit_once(':') {
        Some((d, t)) if Path::new(d).join("oci-layout").is_file() => (PathBuf::from(d), Some(t)),
        _ => (PathBuf::from(image), None),
    };
    let store =
        Store::open(root).with_context(|| format!("opening the store at {}", root.display()))?;
    if dir.join("oci-layout").is_file() {
        // Run from the store's verified copy, never from the layout's files.
        return Ok(crate::build::import_layout(&store, image, &dir, tag)?);
    }
    let name = if image.starts_with("sha256:") {
        image.to_string()
    } else {
        super::build::normalize_tag(image)
    };
    if let Ok(desc) = store.resolve(&name) {
        return Ok((store, desc));
    }
    // Not here: a registry reference is pulled, as `docker run` does.
    let opts = args
        .registry
        .options(super::transfer::renderer(super::ProgressMode::Auto));
    let pulled = crate::oci::registry::pull(
        &store,
        image,
        &crate::oci::registry::PlatformWanted::host(),
        &opts,
    )
    .with_context(|| {
        format!(
            "no image `{image}` in the local store, and pulling it failed; build it with `bunny build -t {image}` or check the reference"
        )
    })?;
    Ok((store, pulled.manifest))
}
