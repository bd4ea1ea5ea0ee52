//! bunny-init outside a guest (not PID 1): it runs the app with its args and
//! env, joins urunc's quoted arguments, applies urunit's configuration
//! (env, workdir), reaps orphans and exits with the app's status.

#[path = "init_helper.rs"]
mod init_helper;

use std::process::Command;

#[test]
fn runs_the_app_reaps_orphans_and_keeps_its_status() {
    let init = init_helper::static_init();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("urunit.conf");
    std::fs::write(
        &conf,
        format!(
            "UES\nPATH=/bin:/usr/bin\nGREETING=hello world\nUEE\nUCS\nUID: {}\nGID: {}\nWD: {}\nUCE\n",
            own_uid(),
            own_gid(),
            dir.path().display()
        ),
    )
    .unwrap();
    // The orphan `sleep` is re-parented to bunny-init (a subreaper), which
    // must reap it and log it.
    let out = Command::new(&init)
        .args([
            "sh",
            "-c",
            "'echo",
            "arg=$0",
            "pwd=$(pwd)",
            "greeting=$GREETING;",
            "(sleep",
            "0.1",
            "&);",
            "sleep",
            "0.5;",
            "exit",
            "7'",
            "first",
        ])
        .env("URUNIT_CONFIG", &conf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "arg=first pwd={} greeting=hello world",
            dir.path().canonicalize().unwrap().display()
        )),
        "{stdout}\n{stderr}"
    );
    assert!(stderr.contains("bunny-init: reaped pid"), "{stderr}");
    assert!(stderr.contains("exited with status 7"), "{stderr}");
}

#[test]
fn a_missing_program_is_127() {
    let init = init_helper::static_init();
    let out = Command::new(&init)
        .arg("/nonexistent/app")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
}

fn own_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap()
}

fn own_gid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::gid(&m))
        .unwrap()
}
