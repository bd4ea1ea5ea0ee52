//! Go bunny's command line works on bunny and on bunny-frontend: `-v`
//! prints the versions, `-f FILE --LLB` prints the same LLB as
//! `bunny build --llb`, and anything else of Go's form gets a clear error.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The frontend binary, current (built through cargo, shared with the
/// BuildKit tests).
fn frontend() -> PathBuf {
    common::frontend::static_frontend()
}

fn ok(o: Output) -> Vec<u8> {
    assert!(
        o.status.success(),
        "failed ({}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

#[test]
fn version_is_printed_as_go_bunny_prints_it() {
    for flag in ["-v", "--version"] {
        let out = ok(Command::new(env!("CARGO_BIN_EXE_bunny"))
            .arg(flag)
            .output()
            .unwrap());
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("bunny version:\t\t "), "{text}");
        assert_eq!(lines[1], "Hops API version:\t v0.1");
    }
}

#[test]
fn dash_f_llb_prints_what_build_llb_prints() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path();
    std::fs::write(ctx.join("kernel"), b"k").unwrap();
    std::fs::write(
        ctx.join("bunnyfile"),
        "version: v0.1\nplatforms:\n  framework: unikraft\n  monitor: qemu\nkernel:\n  from: local\n  path: kernel\ncmd: [\"hello\"]\n",
    )
    .unwrap();
    let bin = frontend();
    let run = |prog: &Path, args: &[&str]| {
        ok(Command::new(prog)
            .current_dir(ctx)
            .env("BUNNY_FRONTEND", &bin)
            .env("BUNNY_FRONTEND_IMAGE", "registry.example/bunny-frontend:1")
            .env("BUNNY_ROOT", tmp.path().join("store"))
            .args(args)
            .output()
            .unwrap())
    };
    let bunny = Path::new(env!("CARGO_BIN_EXE_bunny"));
    let go_form = run(bunny, &["-f", "bunnyfile", "--LLB"]);
    let verb = run(bunny, &["build", "--llb", "-f", "bunnyfile", "."]);
    let frontend_go_form = run(&bin, &["--LLB", "--file", "bunnyfile"]);
    assert!(go_form.len() > 100, "no LLB: {} bytes", go_form.len());
    assert_eq!(go_form, verb);
    assert_eq!(go_form, frontend_go_form);
    // The frontend image it names is the one given.
    let needle = b"registry.example/bunny-frontend:1";
    assert!(go_form.windows(needle.len()).any(|w| w == needle));
}

#[test]
fn go_forms_that_cannot_work_say_why() {
    let bunny = || Command::new(env!("CARGO_BIN_EXE_bunny"));
    let o = bunny().arg("--LLB").output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("add -f FILE"));
    let o = bunny()
        .args(["-f", "x", "--nope", "--LLB"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("`--nope`"));
}
