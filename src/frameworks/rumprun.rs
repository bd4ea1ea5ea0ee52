//! Rumprun (NetBSD rump kernels): solo5 hvt/spt, or the hw platform on qemu.
//! Data is an ext2 block image the guest mounts at /data (or, `type: raw`,
//! the container rootfs handed over by devmapper); rumprun has no initrd.
//!
//! Building an `app` follows the Go bunny and its
//! `rumprun/tools` image: the app is compiled with the rumprun toolchain of
//! the platform the monitor needs, then `rumprun-bake` links it into a
//! unikernel. Two steps, both in the toolchain image:
//!
//! 1. `make NAME`: the sources are copied to a writable directory (`/src` is
//!    read-only) and built with `make`, or with `sh ./bunny-build.sh` when the
//!    sources hold one. When the sources have a directory named after the app
//!    (a package repository such as rumprun-packages, `name: nginx`), the
//!    build runs in it, as the Go bunny does. The program taken is `bin/NAME`,
//!    else `NAME`, else the only executable in `bin/`.
//! 2. `bake NAME`: `rumprun-bake CONFIG /out/kernel /src/NAME` with CONFIG
//!    `solo5_hvt`, `solo5_spt` or `hw_virtio`.
//!
//! The image's environment is not applied to steps, so each step sets PATH
//! (the platform's `bin` last, as the Go bunny does) and
//! `RUMPRUN_TOOLCHAIN_TUPLE` itself; the Makefile compiles with
//! `$(RUMPRUN_TOOLCHAIN_TUPLE)-gcc`.

use super::{
    AppInfo, AppPackage, Framework, FrameworkError, LayerDep, PackInputs, StepInput, StepSpec,
    Support,
};
use crate::layers::tree::Tree;
use crate::platform::{one_of, Arch, BlockFs, Monitor, RootfsType};

/// The Go bunny's toolchain image (`hops/rumprun.go`); `bunny.lock` pins the
/// digest `latest` resolved to.
pub const TOOLCHAIN: &str = "harbor.nbfc.io/nubificus/bunny/rumprun/tools:latest";

/// Where the bake step leaves the unikernel.
const KERNEL_OUT: &str = "kernel";

const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const BUILD_SCRIPT: &str = r#"set -e
rm -rf /tmp/build
cp -a /src/. /tmp/build
cd /tmp/build
if [ -d "$APP" ] && { [ -f "$APP/Makefile" ] || [ -f "$APP/bunny-build.sh" ]; }; then
  cd "$APP"
fi
if [ -f bunny-build.sh ]; then
  echo "+ sh ./bunny-build.sh"
  sh ./bunny-build.sh
else
  echo "+ make"
  make
fi
bin=
if [ -f "bin/$APP" ]; then
  bin="bin/$APP"
elif [ -f "$APP" ]; then
  bin="$APP"
elif [ -d bin ]; then
  found=$(find bin -maxdepth 1 -type f -perm -u+x | sort)
  if [ -n "$found" ] && [ "$(echo "$found" | wc -l)" -eq 1 ]; then
    bin="$found"
  fi
fi
[ -n "$bin" ] || {
  echo "the build left no program to bake: looked for bin/$APP, $APP (app.name) and a single executable in bin/" >&2
  exit 1
}
echo "+ install -m 0755 $bin /out/$APP"
install -m 0755 "$bin" "/out/$APP"
"#;

/// The rumprun platform a monitor boots, and `rumprun-bake`'s config for it.
pub fn bake_target(monitor: Monitor) -> Option<(&'static str, &'static str)> {
    match monitor {
        Monitor::Hvt => Some(("solo5", "solo5_hvt")),
        Monitor::Spt => Some(("solo5", "solo5_spt")),
        Monitor::Qemu => Some(("hw", "hw_virtio")),
        Monitor::Firecracker | Monitor::CloudHypervisor | Monitor::Hedge => None,
    }
}

/// `RUMPRUN_TOOLCHAIN_TUPLE` for an architecture.
pub fn toolchain_tuple(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64-rumprun-netbsd",
        Arch::Arm64 => "aarch64-rumprun-netbsd",
    }
}

const MONITORS: &[Monitor] = &[Monitor::Hvt, Monitor::Spt, Monitor::Qemu];

pub struct Rumprun;

impl Framework for Rumprun {
    fn name(&self) -> &str {
        "rumprun"
    }
    fn unikernel_type(&self) -> &str {
        "rumprun"
    }
    fn support(&self) -> Support {
        Support {
            monitors: MONITORS,
            architectures: &[Arch::Amd64, Arch::Arm64],
            rootfs_types: &[RootfsType::Block, RootfsType::Raw],
        }
    }
    fn app_rootfs_type(&self) -> RootfsType {
        RootfsType::Block
    }
    fn block_fs(&self) -> BlockFs {
        BlockFs::Ext2
    }
    fn block_mount_point(&self) -> &str {
        "/data"
    }

    fn layers(&self) -> &'static [LayerDep] {
        &[LayerDep {
            name: "toolchain",
            reference: TOOLCHAIN,
        }]
    }

    fn app_steps(&self, app: &AppInfo) -> Result<Vec<StepSpec>, FrameworkError> {
        let monitor = app.monitor.ok_or(FrameworkError::Unsupported {
            framework: "rumprun".into(),
            what: "build an `app` without knowing the monitor (it bakes the kernel for one)",
        })?;
        let (platform, config) = bake_target(monitor).ok_or_else(|| {
            FrameworkError::Build(format!(
                "rumprun does not run on monitor `{monitor}`; use {}",
                one_of(MONITORS)
            ))
        })?;
        let env = |extra: &[String]| -> Vec<String> {
            let mut env = vec![
                format!("PATH={BASE_PATH}:/rumprun/rumprun-{platform}/bin"),
                format!(
                    "RUMPRUN_TOOLCHAIN_TUPLE={}",
                    toolchain_tuple(app.architecture)
                ),
            ];
            env.extend_from_slice(extra);
            env
        };
        let make = format!("make {}", app.name);
        Ok(vec![
            StepSpec {
                name: make.clone(),
                image: "toolchain",
                input: StepInput::Source,
                command: vec!["sh".into(), "-c".into(), BUILD_SCRIPT.into()],
                env: env(&[format!("APP={}", app.name)]),
                workdir: "/src".into(),
                // rumprun-packages' Makefiles download the upstream sources
                // (nginx, pcre, openssl) while building.
                network: true,
                mounts: Vec::new(),
            },
            StepSpec {
                name: format!("bake {}", app.name),
                image: "toolchain",
                input: StepInput::Step(make),
                command: vec![
                    "rumprun-bake".into(),
                    config.into(),
                    format!("/out/{KERNEL_OUT}"),
                    format!("/src/{}", app.name),
                ],
                env: env(&[]),
                // rumprun-bake works in temp dirs; /tmp is the step's tmpfs.
                workdir: "/tmp".into(),
                network: false,
                mounts: Vec::new(),
            },
        ])
    }

    /// The baked unikernel is the kernel; the app brings no files of its own
    /// (its data is the BunnyFile's `rootfs.include`).
    fn package_app(&self, inputs: &PackInputs) -> Result<AppPackage, FrameworkError> {
        let kernel = inputs.output.join(KERNEL_OUT);
        if !kernel.is_file() {
            return Err(FrameworkError::Missing {
                what: "the baked rumprun unikernel",
                path: kernel,
                hint: "the bake step (rumprun-bake) must write /out/kernel",
            });
        }
        Ok(AppPackage {
            kernel,
            rootfs: Tree::new(),
            packages: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(monitor: Option<Monitor>, architecture: Arch) -> AppInfo {
        AppInfo {
            name: "nginx".into(),
            language: None,
            monitor,
            architecture,
            packages: Vec::new(),
            repository: None,
            shell: false,
        }
    }

    #[test]
    fn bake_follows_the_monitor() {
        for (monitor, platform, config) in [
            (Monitor::Hvt, "solo5", "solo5_hvt"),
            (Monitor::Spt, "solo5", "solo5_spt"),
            (Monitor::Qemu, "hw", "hw_virtio"),
        ] {
            let steps = Rumprun
                .app_steps(&info(Some(monitor), Arch::Amd64))
                .unwrap();
            assert_eq!(steps.len(), 2);
            assert_eq!(steps[0].name, "make nginx");
            assert_eq!(steps[1].input, StepInput::Step("make nginx".into()));
            assert_eq!(
                steps[1].command,
                ["rumprun-bake", config, "/out/kernel", "/src/nginx"]
            );
            for s in &steps {
                assert!(s
                    .env
                    .contains(&format!("PATH={BASE_PATH}:/rumprun/rumprun-{platform}/bin")));
                assert!(s
                    .env
                    .contains(&"RUMPRUN_TOOLCHAIN_TUPLE=x86_64-rumprun-netbsd".to_string()));
            }
        }
    }

    #[test]
    fn arm64_uses_the_aarch64_tuple() {
        let steps = Rumprun
            .app_steps(&info(Some(Monitor::Hvt), Arch::Arm64))
            .unwrap();
        assert!(steps[0]
            .env
            .contains(&"RUMPRUN_TOOLCHAIN_TUPLE=aarch64-rumprun-netbsd".to_string()));
    }

    #[test]
    fn unbootable_monitors_are_refused() {
        let err = Rumprun
            .app_steps(&info(Some(Monitor::Firecracker), Arch::Amd64))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`hvt`, `spt` or `qemu`"), "{err}");
        assert!(Rumprun.app_steps(&info(None, Arch::Amd64)).is_err());
    }
}
