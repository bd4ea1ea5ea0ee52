//! `bunny run`: boots an image with the embedded runtime, reading urunc's
//! settings exactly as urunc does (annotations, else /urunc.json).

use std::collections::BTreeMap;
use std::io::BufReader;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use bunny_runtime::{Accel, HostNet, Hypervisor, NetSpec, PortForward, RunSpec, RuntimeError};
use clap::{Args, ValueEnum};
use oci_spec::image::{Descriptor, ImageConfiguration};

use crate::layers::store::Store;

#[derive(Debug, Args)]
#[command(
    about = "Boot an image under qemu, firecracker or solo5",
    after_help = "Examples:\n  \
        bunny run --rm -p 18080:80 hello-linux:latest\n  \
        sudo bunny run --rm -p 8080:80 httpd-rumprun    # spt: a tap in the run's own netns\n  \
        bunny run --rm --tap bunny0 -p 8080:80 httpd-rumprun\n  \
        bunny run --rm -e GREETING=hi hello-linux once\n  \
        bunny run --rm --accel tcg ./out/hello-oci"
)]
pub struct RunArgs {
    /// Remove the run's directory when the guest stops.
    #[arg(long)]
    rm: bool,
    /// Forward a host port to the guest: [IP:]HOST:GUEST[/udp]; repeatable.
    #[arg(short = 'p', long = "publish", value_name = "HOST:GUEST")]
    publish: Vec<String>,
    /// Give the guest this existing tap device instead of a network of its
    /// own (needed by solo5, firecracker and cloud-hypervisor when not root:
    /// as root, bunny makes a tap in a network namespace of the run's own).
    #[arg(long, value_name = "NAME")]
    tap: Option<String>,
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

pub fn run(args: RunArgs, globals: &super::Globals) -> anyhow::Result<ExitCode> {
    let (store, manifest_desc) = locate(&args, &globals.root)?;
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
    let runs = globals.root.join("runs");
    std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    let run_dir = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&runs)
        .with_context(|| format!("creating a run directory in {}", runs.display()))?;
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
            let own = run_dir.path().join("block.img");
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
    spec.work_dir = Some(run_dir.path().to_path_buf());
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

    let status = bunny_runtime::boot(&spec)?;
    drop(host_side);
    if args.rm {
        run_dir
            .close()
            .with_context(|| format!("removing the run directory under {}", runs.display()))?;
    } else {
        let kept = run_dir.keep();
        eprintln!("bunny: the run's files are kept in {}", kept.display());
    }
    Ok(ExitCode::from(status.clamp(0, 255) as u8))
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
