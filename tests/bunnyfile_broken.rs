//! Every broken BunnyFile fixture fails with the expected diagnostic: exact
//! `line:col`, a piece of the message and a piece of the help.

use std::path::{Path, PathBuf};

use bunny::bunnyfile::{self, BunnyFileError, Severity};

const DIR: &str = "tests/fixtures/bunnyfiles/broken";

struct Expect {
    file: &'static str,
    line: usize,
    col: usize,
    message: &'static str,
    help: &'static str,
}

const fn e(
    file: &'static str,
    line: usize,
    col: usize,
    message: &'static str,
    help: &'static str,
) -> Expect {
    Expect {
        file,
        line,
        col,
        message,
        help,
    }
}

const EXPECTED: &[Expect] = &[
    e(
        "unknown-key",
        6,
        3,
        "unknown key `inclde` in `rootfs`; did you mean `include`?",
        "valid keys in `rootfs`: `from`, `path`, `type`, `include`",
    ),
    e(
        "missing-version",
        2,
        1,
        "`version` is missing",
        "add `version: 0.1`",
    ),
    e(
        "newer-version",
        1,
        10,
        "version `v0.2` is newer than this bunny supports (0.1)",
        "use version 0.1 or earlier",
    ),
    e(
        "bad-version",
        1,
        10,
        "cannot read `not.a.version` as a BunnyFile version",
        "write `version: 0.1`",
    ),
    e(
        "bad-monitor",
        4,
        12,
        "unknown monitor `kvm`",
        "`qemu`, `firecracker`, `hvt`, `spt`, `cloud-hypervisor` or `hedge`",
    ),
    e(
        "missing-monitor",
        2,
        1,
        "`monitor` in `platforms` is missing",
        "add `monitor: NAME`",
    ),
    e(
        "bad-arch",
        5,
        17,
        "unknown architecture `riscv64`",
        "`x86`, `x86_64` or `amd64`",
    ),
    e(
        "freebsd-initrd",
        6,
        9,
        "framework `freebsd` does not support rootfs type `initrd`",
        "use `type: block` or `type: raw`",
    ),
    e(
        "unikraft-block",
        7,
        9,
        "framework `unikraft` does not support rootfs type `block`",
        "use `type: initrd` or `type: raw`",
    ),
    e(
        "rumprun-firecracker",
        4,
        12,
        "framework `rumprun` does not run on monitor `firecracker`",
        "use one of `hvt`, `spt` or `qemu`",
    ),
    e(
        "scratch-path",
        6,
        9,
        "`rootfs.path` names a prebuilt rootfs file, but `from` is `scratch`",
        "write `from: local`",
    ),
    e(
        "raw-path",
        7,
        9,
        "`rootfs.path` cannot be combined with `type: raw`",
        "remove `path`",
    ),
    e(
        "local-raw",
        7,
        9,
        "a `raw` rootfs cannot come `from: local`",
        "use `from: scratch` with `include`",
    ),
    e(
        "local-without-path",
        6,
        9,
        "`rootfs.from: local` needs `path`",
        "add `path: FILE`",
    ),
    e(
        "image-initrd-no-path",
        7,
        9,
        "that is a `raw` rootfs, not `initrd`",
        "or write `type: raw`",
    ),
    e(
        "kernel-missing-path",
        5,
        1,
        "`path` in `kernel` is missing; it is required",
        "add `path: FILE`",
    ),
    e(
        "kernel-from-path",
        6,
        9,
        "`kernel.from: ./build/kernel` is not `local` or an image reference: it looks like a path",
        "write `local` for the build context",
    ),
    e(
        "no-kernel-no-app",
        1,
        1,
        "neither `kernel` nor `app` is given",
        "add `kernel:` with `from` and `path`",
    ),
    e(
        "app-no-branch",
        5,
        1,
        "`branch` in `app` is required when `from` is a repository",
        "add `branch: NAME`",
    ),
    e(
        "bad-env",
        10,
        5,
        "`1PATH` is not a valid environment variable name",
        "starts with a letter or `_`",
    ),
    e(
        "env-no-equals",
        9,
        5,
        "environment entry `HOME` has no `=`",
        "write `KEY=VALUE`",
    ),
    e(
        "bad-include",
        8,
        7,
        "include entry `:/etc/passwd` has no source",
        "write `SOURCE:DESTINATION`",
    ),
    e(
        "include-dotdot",
        7,
        7,
        "include destination `../../etc/chttp` is not allowed: it contains `..`",
        "write an absolute path inside the rootfs",
    ),
    e(
        "include-into-local",
        8,
        3,
        "adding files to an existing rootfs file is not supported yet",
        "use `from: scratch`",
    ),
    e(
        "duplicate-key",
        5,
        3,
        "duplicate key `monitor` in `platforms` (first written at 4:3)",
        "keep only one",
    ),
    e(
        "wrong-type",
        9,
        3,
        "`cmd` expects a list of strings, found a mapping",
        "write `cmd: [",
    ),
    e(
        "cmd-string",
        8,
        6,
        "`cmd` expects a list of strings, found a string",
        "`cmdline:`",
    ),
    e(
        "anchor-bomb",
        7,
        10,
        "expands to more than 100000 YAML nodes",
        "write the values out",
    ),
    e(
        "deep-nesting",
        2,
        75,
        "YAML nesting deeper than 64 levels",
        "flatten the structure",
    ),
    e(
        "containerfile",
        4,
        1,
        "this is a Containerfile (it starts with `FROM`), not a BunnyFile",
        "`bunny build` reads Containerfiles too",
    ),
    e(
        "unknown-tag",
        3,
        14,
        "unsupported YAML tag `!custom`",
        "remove the tag",
    ),
    e(
        "invalid-yaml",
        4,
        11,
        "invalid YAML: mapping values are not allowed",
        "check the indentation",
    ),
    e(
        "two-documents",
        8,
        1,
        "a BunnyFile holds one YAML document",
        "remove the `---` separator",
    ),
];

fn fixture(name: &str) -> PathBuf {
    Path::new(DIR).join(format!("{name}.bunnyfile"))
}

#[test]
fn every_broken_fixture_fails_where_expected() {
    let mut failures = Vec::new();
    for exp in EXPECTED {
        let path = fixture(exp.file);
        let diags = match bunnyfile::load(&path) {
            Ok(_) => {
                failures.push(format!("{}: parsed without error", exp.file));
                continue;
            }
            Err(BunnyFileError::Invalid(d)) => d,
            Err(other) => {
                failures.push(format!("{}: unexpected error {other}", exp.file));
                continue;
            }
        };
        let found = diags.iter().any(|d| {
            d.severity == Severity::Error
                && d.file == path.display().to_string()
                && d.pos.line == exp.line
                && d.pos.col == exp.col
                && d.message.contains(exp.message)
                && d.help.as_deref().is_some_and(|h| h.contains(exp.help))
        });
        if !found {
            let got: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
            failures.push(format!(
                "{}: expected {}:{} `{}` / help `{}`, got:\n{}",
                exp.file,
                exp.line,
                exp.col,
                exp.message,
                exp.help,
                got.join("\n")
            ));
        }
        // Every error tells the user what to write instead.
        for d in &diags {
            assert!(d.help.is_some(), "{}: no help in {d}", exp.file);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_broken_fixture_is_in_the_table() {
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(DIR).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        if !EXPECTED.iter().any(|e| e.file == stem) {
            missing.push(stem);
        }
    }
    assert!(
        missing.is_empty(),
        "fixtures without expectations: {missing:?}"
    );
    assert!(EXPECTED.len() >= 15);
}

#[test]
fn display_is_file_line_col_severity_message_and_help() {
    let err = bunnyfile::load(&fixture("unknown-key")).unwrap_err();
    let text = err.to_string();
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "{}:6:3: error: unknown key `inclde` in `rootfs`; did you mean `include`?",
            fixture("unknown-key").display()
        )
    );
    assert_eq!(
        text.lines().nth(1).unwrap(),
        "  help: valid keys in `rootfs`: `from`, `path`, `type`, `include`"
    );
}

#[test]
fn independent_errors_are_all_reported() {
    let text = "\
version: 0.9
platforms:
  framework: unikraft
  monitor: kvm
rootfs:
  tpye: initrd
kernel:
  from: local
envs:
  - 1A=b
";
    let err = bunnyfile::parse("multi", text).unwrap_err();
    let d = err.diagnostics();
    let at: Vec<(usize, usize)> = d.iter().map(|d| (d.pos.line, d.pos.col)).collect();
    assert_eq!(at, vec![(1, 10), (4, 12), (6, 3), (7, 1), (10, 5)], "{err}");
    assert!(d[2].message.contains("did you mean `type`?"), "{err}");
}
