//! A validated BunnyFile as the build model, with Go bunny's meanings: a file
//! Go bunny builds must give an image urunc treats the same way.

use crate::model::{KernelSpec, RootfsSpec, Spec};
use crate::platform::RootfsType;

use super::{BunnyFile, Source};

/// The rootfs type of `bf`: as written; else `app`'s default when it builds
/// an app (bunny's extension), else Go bunny's (raw, initrd for unikraft).
pub fn rootfs_type(bf: &BunnyFile) -> RootfsType {
    let framework = crate::frameworks::resolve(&bf.platforms.framework.value);
    let default = if bf.app.is_some() {
        framework.app_rootfs_type()
    } else {
        framework.default_rootfs_type()
    };
    bf.rootfs.kind_or(default)
}

/// Go bunny's command line rule: with no `cmd`, `cmdline` split at spaces is
/// the `cmd`; `com.urunc.unikernel.cmdline` is `cmd` joined by spaces (so a
/// `cmdline` next to a `cmd` is ignored, and the entrypoint is not part of
/// it: urunc puts the process's arguments first when it has them).
pub fn command(bf: &BunnyFile) -> (Vec<String>, Option<String>) {
    let cmd: Vec<String> = if bf.cmd.is_empty() {
        bf.cmdline
            .as_ref()
            .map(|c| c.value.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    } else {
        bf.cmd.iter().map(|c| c.value.clone()).collect()
    };
    let cmdline = (!cmd.is_empty()).then(|| cmd.join(" "));
    (cmd, cmdline)
}

/// The build model of a validated BunnyFile read from `origin`.
pub fn to_spec(bf: &BunnyFile, origin: &str) -> Spec {
    let kernel = match (&bf.kernel, &bf.kernel_source) {
        (_, Some(ks)) => KernelSpec::Source(Box::new(ks.clone())),
        (Some(k), None) => KernelSpec::File {
            from: k.from.value.clone(),
            path: k.path.value.clone(),
            pos: k.path.pos,
        },
        // The validator requires `kernel` or `app`; the planner refuses an
        // app-less spec it is handed anyway.
        (None, None) => KernelSpec::App,
    };
    let (cmd, cmdline) = command(bf);
    let mut entrypoint: Vec<String> = bf.entrypoint.iter().map(|e| e.value.clone()).collect();
    let program = app_program(bf);
    if entrypoint.is_empty() {
        if let Some(p) = &program {
            entrypoint.push(p.clone());
        }
    }
    Spec {
        origin: origin.to_string(),
        framework: bf.platforms.framework.value.clone(),
        unikernel_version: bf.platforms.version.as_ref().map(|v| v.value.clone()),
        monitor: bf.platforms.monitor.value,
        architecture: bf.platforms.architecture.value,
        kernel,
        rootfs: RootfsSpec {
            from: bf.rootfs.from.value.clone(),
            path: bf.rootfs.path.as_ref().map(|p| (p.value.clone(), p.pos)),
            kind: rootfs_type(bf),
            include: bf.rootfs.include.clone(),
        },
        app: bf.app.clone(),
        cmd: (!cmd.is_empty()).then_some(cmd),
        entrypoint: (!entrypoint.is_empty()).then_some(entrypoint),
        env: bf.envs.iter().map(|e| e.value.clone()).collect(),
        cmdline,
        labels: Default::default(),
        workdir: None,
        user: None,
        init: program.is_some(),
        inherit: None,
    }
}

/// Where the app's program is when the guest runs it under bunny-init: a
/// source-built `app` gets a rootfs cut to what it uses (the program, its
/// libraries, the init), unless it asks for a shell or the rootfs is a
/// prebuilt file the init cannot join.
pub fn app_program(bf: &BunnyFile) -> Option<String> {
    let app = bf.app.as_ref().filter(|a| !a.shell)?;
    if bf.rootfs.path.is_some() || bf.rootfs.from.value == Source::Local {
        return None;
    }
    crate::frameworks::resolve(&bf.platforms.framework.value).app_program(&app.name.value)
}

/// Whether the rootfs is built from files (and so takes the `type`), as
/// opposed to a prebuilt file or nothing.
pub fn rootfs_from_files(bf: &BunnyFile) -> bool {
    bf.rootfs.path.is_none()
        && match &bf.rootfs.from.value {
            Source::Local => false,
            Source::Scratch => !bf.rootfs.include.is_empty(),
            Source::Image(_) => true,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Spec {
        let parsed = crate::bunnyfile::parse("BunnyFile", text).unwrap();
        to_spec(&parsed.bunnyfile, "BunnyFile")
    }

    const HEAD: &str =
        "version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\n  architecture: x86_64\n";

    #[test]
    fn a_linux_app_runs_under_bunny_init_unless_it_keeps_a_shell() {
        let cut = spec(&format!(
            "{HEAD}app:\n  name: srv\n  from: local\ncmd: [\"80\"]\n"
        ));
        assert!(cut.init);
        assert_eq!(cut.entrypoint, Some(vec!["/bin/srv".to_string()]));
        assert_eq!(cut.cmd, Some(vec!["80".to_string()]));

        let own = spec(&format!(
            "{HEAD}app:\n  name: srv\n  from: local\nentrypoint: [\"/bin/srv\", \"-v\"]\n"
        ));
        assert!(own.init);
        assert_eq!(own.entrypoint, Some(vec!["/bin/srv".into(), "-v".into()]));

        let shell = spec(&format!(
            "{HEAD}app:\n  name: srv\n  from: local\n  shell: true\nentrypoint: [\"/init\"]\n"
        ));
        assert!(!shell.init);
        assert_eq!(shell.entrypoint, Some(vec!["/init".to_string()]));

        let kernel_only = spec(&format!("{HEAD}kernel:\n  from: local\n  path: k\n"));
        assert!(!kernel_only.init);
    }

    #[test]
    fn app_shell_takes_a_boolean() {
        let err = crate::bunnyfile::parse(
            "BunnyFile",
            &format!("{HEAD}app:\n  name: srv\n  from: local\n  shell: maybe\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("expects true or false"), "{err}");
    }
}
