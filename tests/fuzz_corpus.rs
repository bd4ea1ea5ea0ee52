//! Replays every checked-in fuzz corpus file (fuzz/corpus/<target>/) through
//! the same harness the fuzz targets use (fuzz/src/lib.rs), on the stable
//! toolchain: a regression in any parser that the fuzzer once found, or that
//! a hostile seed covers, fails here. For the unpacker the harness also
//! asserts that nothing appears outside the target directory.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::fs;
use std::panic;
use std::path::PathBuf;

fn replay(target: &str) {
    assert!(
        harness::TARGETS.contains(&target),
        "unknown target {target}"
    );
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "{}: only {} corpus files; the seeds are missing (fuzz/seeds/make_seeds.py)",
        dir.display(),
        files.len()
    );
    let base = tempfile::tempdir().unwrap();
    let mut failed = Vec::new();
    for f in &files {
        let data = fs::read(f).unwrap();
        let result = panic::catch_unwind(|| harness::run(target, &data, base.path()));
        if result.is_err() {
            failed.push(f.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: these inputs panicked: {failed:#?}"
    );
}

#[test]
fn bunnyfile_corpus() {
    replay("bunnyfile");
}

#[test]
fn containerfile_corpus() {
    replay("containerfile");
}

#[test]
fn unpack_corpus() {
    replay("unpack");
}

#[test]
fn manifest_corpus() {
    replay("manifest");
}

#[test]
fn catalogue_corpus() {
    replay("catalogue");
}

/// The outside-the-target check is not vacuous: a file beside the scratch
/// directory (as an escaping entry would leave) makes the harness panic.
#[test]
fn unpack_check_sees_a_stray_file() {
    let base = tempfile::tempdir().unwrap();
    fs::write(base.path().join("escaped"), b"x").unwrap();
    let tar =
        fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/unpack/simple.tar"))
            .unwrap();
    let result = panic::catch_unwind(|| harness::unpack(&tar, base.path()));
    assert!(
        result.is_err(),
        "a stray file beside the target went unnoticed"
    );
}
