//! The Go bunny's own BunnyFiles (README, examples, tests) parse unchanged,
//! and the values land in the right fields; plus the behaviour around them
//! (syntax line, version spellings, defaults, warnings, I/O).

use std::path::{Path, PathBuf};

use bunny::bunnyfile::{self, BunnyFileError, Parsed, Pos, Severity, Source};
use bunny::platform::{Arch, Monitor, RootfsType};

fn fixture(dir: &str, name: &str) -> PathBuf {
    Path::new("tests/fixtures/bunnyfiles")
        .join(dir)
        .join(format!("{name}.bunnyfile"))
}

fn load_ok(dir: &str, name: &str) -> Parsed {
    match bunnyfile::load(&fixture(dir, name)) {
        Ok(p) => p,
        Err(e) => panic!("{dir}/{name} failed:\n{e}"),
    }
}

fn strings(v: &[bunnyfile::Spanned<String>]) -> Vec<&str> {
    v.iter().map(|s| s.value.as_str()).collect()
}

const SYNTAX: &str = "harbor.nbfc.io/nubificus/bunny:latest";

#[test]
fn every_go_bunny_fixture_parses_without_errors() {
    let dir = Path::new("tests/fixtures/bunnyfiles/go-bunny");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if let Err(e) = bunnyfile::load(&path) {
            panic!("{} failed:\n{e}", path.display());
        }
        count += 1;
    }
    assert!(count >= 8, "only {count} fixtures");
}

#[test]
fn redis_rumprun() {
    let p = load_ok("go-bunny", "redis-rumprun");
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let b = p.bunnyfile;
    assert_eq!(b.syntax.as_deref(), Some(SYNTAX));
    assert_eq!(b.version.value, "v0.1");
    assert_eq!(b.version.pos, Pos { line: 2, col: 10 });
    assert_eq!(b.platforms.framework.value, "rumprun");
    assert_eq!(b.platforms.monitor.value, Monitor::Hvt);
    assert_eq!(b.platforms.monitor.pos, Pos { line: 6, col: 12 });
    assert_eq!(b.platforms.architecture.value, Arch::Amd64);
    assert_eq!(b.platforms.version, None);
    assert_eq!(b.rootfs.from.value, Source::Scratch);
    assert_eq!(
        b.rootfs.kind.as_ref().map(|k| k.value),
        Some(RootfsType::Raw)
    );
    assert_eq!(b.rootfs.path, None);
    assert_eq!(b.rootfs.include.len(), 1);
    let inc = &b.rootfs.include[0];
    assert_eq!(inc.from, Source::Local);
    assert_eq!(inc.source, "conf/");
    assert_eq!(inc.destination, "/conf");
    assert_eq!(inc.pos, Pos { line: 13, col: 5 });
    let k = b.kernel.unwrap();
    assert_eq!(k.from.value, Source::Local);
    assert_eq!(k.path.value, "redis.hvt");
    assert!(b.app.is_none());
    assert_eq!(strings(&b.cmd), ["redis-server", "/data/conf/redis.conf"]);
    assert!(b.cmdline.is_none());
}

#[test]
fn nginx_unikraft_image_kernel_and_cmdline() {
    let b = load_ok("go-bunny", "nginx-unikraft").bunnyfile;
    assert_eq!(b.platforms.framework.value, "unikraft");
    assert_eq!(b.platforms.monitor.value, Monitor::Qemu);
    let k = b.kernel.unwrap();
    assert_eq!(
        k.from.value,
        Source::Image("unikraft.org/nginx:1.15".into())
    );
    assert_eq!(k.path.value, "/unikraft/bin/kernel");
    assert_eq!(b.cmdline.unwrap().value, "nginx -c /nginx/conf/nginx.conf");
    assert!(b.cmd.is_empty());
    // No rootfs section: scratch, nothing to include, type left to the framework.
    assert_eq!(b.rootfs.from.value, Source::Scratch);
    assert!(b.rootfs.include.is_empty());
    assert!(b.rootfs.kind.is_none());
}

#[test]
fn chttp_unikraft_scratch_include_and_framework_version() {
    let b = load_ok("go-bunny", "chttp-unikraft").bunnyfile;
    assert_eq!(b.platforms.version.unwrap().value, "0.18.0");
    assert_eq!(b.rootfs.from.value, Source::Scratch);
    assert!(b.rootfs.kind.is_none());
    assert_eq!(b.rootfs.include[0].source, "chttp");
    assert_eq!(b.rootfs.include[0].destination, "/chttp");
    assert_eq!(
        b.kernel.unwrap().from.value,
        Source::Image("unikraft.org/base:latest".into())
    );
    assert_eq!(strings(&b.cmd), ["/chttp"]);
}

#[test]
fn readme_httpc_local_rootfs_file() {
    for name in ["readme-httpc-unikraft", "readme-httpc-unikraft-cmdline"] {
        let b = load_ok("go-bunny", name).bunnyfile;
        assert_eq!(b.rootfs.from.value, Source::Local);
        assert_eq!(b.rootfs.path.unwrap().value, "initramfs-x86_64.cpio");
        assert_eq!(b.platforms.version.unwrap().value, "0.17.0");
        let k = b.kernel.unwrap();
        assert_eq!(
            (k.from.value, k.path.value.as_str()),
            (Source::Local, "kernel")
        );
    }
    let b = load_ok("go-bunny", "readme-httpc-unikraft-cmdline").bunnyfile;
    assert_eq!(b.cmdline.unwrap().value, "/server");
}

#[test]
fn readme_reference_with_trailing_comments() {
    let b = load_ok("go-bunny", "readme-reference").bunnyfile;
    // The directive's own trailing comment is not part of the image.
    assert_eq!(b.syntax.as_deref(), Some(SYNTAX));
    assert_eq!(b.platforms.version.unwrap().value, "v0.15.0");
    assert_eq!(b.rootfs.kind.unwrap().value, RootfsType::Initrd);
    assert_eq!(b.rootfs.include[0].source, "src");
    assert_eq!(b.rootfs.include[0].destination, "/dst");
    assert_eq!(strings(&b.envs), ["HOME=/home/ubuntu"]);
    assert_eq!(strings(&b.cmd), ["app"]);
    assert_eq!(strings(&b.entrypoint), ["init"]);
}

#[test]
fn rumprun_app_form() {
    let b = load_ok("go-bunny", "rumprun-app").bunnyfile;
    assert!(b.kernel.is_none());
    let app = b.app.unwrap();
    assert_eq!(app.name.value, "redis");
    assert_eq!(
        app.from.value,
        "https://github.com/cloudkernels/rumprun-packages.git"
    );
    assert_eq!(app.branch.unwrap().value, "master");
    assert_eq!(app.language.unwrap().value, "c");
    assert!(app.path.is_none());
    assert_eq!(app.pos, Pos { line: 9, col: 1 });
}

#[test]
fn go_test_file_float_version_and_unknown_framework_warning() {
    let p = load_ok("go-bunny", "go-test-minimal");
    assert_eq!(p.bunnyfile.syntax.as_deref(), Some("foo"));
    assert_eq!(p.bunnyfile.version.value, "0.1");
    assert_eq!(p.bunnyfile.cmdline.unwrap().value, "foo bar");
    // Accepted as Go accepts it; the prebuilt file without `type` is
    // pointed out (Go takes it to be raw).
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    assert!(p.warnings[1].message.contains("without `type`"));
    assert_eq!(p.warnings[1].pos, Pos { line: 12, col: 9 });
    let w = &p.warnings[0];
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(w.pos, Pos { line: 8, col: 14 });
    assert!(w.message.contains("packaged generically"), "{w}");
    assert!(w
        .to_string()
        .contains(":8:14: warning: unknown framework `foo`"));
}

#[test]
fn include_mappings_and_image_sources() {
    let b = load_ok("valid", "include-mappings").bunnyfile;
    let inc = &b.rootfs.include;
    assert_eq!(inc.len(), 4);
    assert_eq!(
        (
            inc[0].from.clone(),
            inc[0].source.as_str(),
            inc[0].destination.as_str()
        ),
        (Source::Local, "busybox", "/bin/busybox")
    );
    assert_eq!(
        (
            inc[1].from.clone(),
            inc[1].source.as_str(),
            inc[1].destination.as_str()
        ),
        (Source::Local, "etc/passwd", "/etc/passwd")
    );
    assert_eq!(
        inc[2].from,
        Source::Image("docker.io/library/alpine:3.20".into())
    );
    assert_eq!(inc[2].destination, "/etc/ssl/certs/ca-certificates.crt");
    // A bare entry copies to the same path, made absolute.
    assert_eq!(
        (inc[3].source.as_str(), inc[3].destination.as_str()),
        ("conf", "/conf")
    );
    assert_eq!(strings(&b.envs), ["PATH=/bin", "LANG=C.UTF-8"]);
    assert_eq!(strings(&b.entrypoint), ["/bin/busybox"]);
    assert_eq!(b.platforms.architecture.value, Arch::Amd64);
}

const MINIMAL: &str = "\
version: VERSION
platforms:
  framework: unikraft
  monitor: qemu
kernel:
  from: local
  path: kernel
";

#[test]
fn version_spellings() {
    for v in ["v0.1", "0.1", "'0.1'", "0.1.0", "0.0.9", "v0.1-rc1"] {
        let text = MINIMAL.replace("VERSION", v);
        if let Err(e) = bunnyfile::parse("v", &text) {
            panic!("version {v} refused:\n{e}");
        }
    }
    for v in ["0.2", "1.0", "v0.1.1", "999.99"] {
        let err = bunnyfile::parse("v", &MINIMAL.replace("VERSION", v)).unwrap_err();
        assert!(
            err.to_string().contains("use version 0.1 or earlier"),
            "{err}"
        );
    }
}

#[test]
fn architecture_defaults_to_host_and_normalises() {
    let b = bunnyfile::parse("a", &MINIMAL.replace("VERSION", "0.1"))
        .unwrap()
        .bunnyfile;
    assert_eq!(b.platforms.architecture.value, Arch::host());
    for (spelling, arch) in [
        ("x86_64", Arch::Amd64),
        ("amd64", Arch::Amd64),
        ("aarch64", Arch::Arm64),
        ("arm64", Arch::Arm64),
    ] {
        let text = MINIMAL.replace("VERSION", "0.1").replace(
            "monitor: qemu",
            &format!("monitor: qemu\n  architecture: {spelling}"),
        );
        let b = bunnyfile::parse("a", &text).unwrap().bunnyfile;
        assert_eq!(b.platforms.architecture.value, arch, "{spelling}");
    }
}

#[test]
fn spaced_syntax_directive_is_read() {
    let text = format!("# syntax = {SYNTAX}\n{}", MINIMAL.replace("VERSION", "0.1"));
    let b = bunnyfile::parse("s", &text).unwrap().bunnyfile;
    assert_eq!(b.syntax.as_deref(), Some(SYNTAX));
    let b = bunnyfile::parse("s", &MINIMAL.replace("VERSION", "0.1"))
        .unwrap()
        .bunnyfile;
    assert_eq!(b.syntax, None);
}

#[test]
fn misspelt_framework_warns_with_suggestion() {
    let text = MINIMAL
        .replace("VERSION", "0.1")
        .replace("unikraft", "rumpurn")
        .replace("qemu", "hvt");
    let p = bunnyfile::parse("f", &text).unwrap();
    assert_eq!(p.warnings.len(), 1);
    assert!(
        p.warnings[0].message.contains("did you mean `rumprun`?"),
        "{}",
        p.warnings[0]
    );
    assert!(p.warnings[0].message.contains("packaged generically"));
}

#[test]
fn misspelt_local_warns_that_it_is_an_image() {
    let text = MINIMAL
        .replace("VERSION", "0.1")
        .replace("from: local", "from: locl");
    let p = bunnyfile::parse("f", &text).unwrap();
    assert_eq!(
        p.bunnyfile.kernel.unwrap().from.value,
        Source::Image("locl".into())
    );
    assert!(p.warnings[0].message.contains("did you mean `local`?"));
}

#[test]
fn anchors_within_limits_are_expanded() {
    let text = "\
version: 0.1
platforms: &p
  framework: unikraft
  monitor: qemu
kernel:
  from: local
  path: kernel
cmd: &c [\"/server\", \"-p\"]
entrypoint: *c
";
    let b = bunnyfile::parse("a", text).unwrap().bunnyfile;
    assert_eq!(strings(&b.entrypoint), ["/server", "-p"]);
    // Values reached through an alias point at where they were written.
    assert_eq!(b.entrypoint[0].pos, Pos { line: 8, col: 10 });
}

#[test]
fn load_names_the_path_on_io_errors() {
    let missing = Path::new("tests/fixtures/bunnyfiles/does-not-exist.bunnyfile");
    let err = bunnyfile::load(missing).unwrap_err();
    assert!(matches!(err, BunnyFileError::Io { .. }));
    assert!(
        err.to_string().contains("does-not-exist.bunnyfile"),
        "{err}"
    );
}

#[test]
fn oversized_and_non_utf8_files_are_refused_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, "#".repeat(bunnyfile::MAX_FILE_BYTES + 10)).unwrap();
    let err = bunnyfile::load(&big).unwrap_err();
    let d = &err.diagnostics()[0];
    assert_eq!(d.pos, Pos { line: 1, col: 1 });
    assert!(d.message.contains("at most 1048576 bytes"), "{err}");

    let bad = dir.path().join("bad");
    std::fs::write(&bad, b"version: 0.1\nplatforms:\n  fr\xffamework: x\n").unwrap();
    let err = bunnyfile::load(&bad).unwrap_err();
    let d = &err.diagnostics()[0];
    assert_eq!(d.pos, Pos { line: 3, col: 5 });
    assert!(d.message.contains("not valid UTF-8"), "{err}");
}

#[test]
fn empty_file_says_what_to_write() {
    for text in ["", "\n\n", "# just a comment\n", "#syntax=foo\n"] {
        let err = bunnyfile::parse("e", text).unwrap_err();
        let d = &err.diagnostics()[0];
        assert_eq!(d.pos, Pos { line: 1, col: 1 }, "{text:?}");
        assert!(d.help.as_deref().unwrap().contains("version: 0.1"), "{err}");
    }
}

#[test]
fn image_rootfs_without_path_takes_includes_as_raw() {
    let text = "\
version: 0.1
platforms:
  framework: unikraft
  monitor: qemu
rootfs:
  from: docker.io/library/alpine:3.20
  include:
    - app:/app
kernel:
  from: local
  path: kernel
";
    let b = bunnyfile::parse("r", text).unwrap().bunnyfile;
    assert_eq!(
        b.rootfs.from.value,
        Source::Image("docker.io/library/alpine:3.20".into())
    );
    assert_eq!(b.rootfs.include[0].destination, "/app");
}

#[test]
fn bom_and_crlf_line_endings_are_accepted() {
    let text = format!(
        "\u{feff}#syntax={SYNTAX}\r\n{}",
        MINIMAL.replace("VERSION", "0.1").replace('\n', "\r\n")
    );
    let b = match bunnyfile::parse("crlf", &text) {
        Ok(p) => p.bunnyfile,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(b.syntax.as_deref(), Some(SYNTAX));
    assert_eq!(b.platforms.monitor.pos, Pos { line: 5, col: 12 });
    assert_eq!(b.kernel.unwrap().path.value, "kernel");
}
