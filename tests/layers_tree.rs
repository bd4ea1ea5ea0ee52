//! Tree building: destination normalisation, context escapes, symlinks,
//! special files, implicit parents and ordering.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use bunny::layers::{EntryKind, LayerError, Tree};

fn write(path: &Path, data: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path();
    write(&c.join("app/bin/server"), "#!/bin/sh\n", 0o4755);
    write(&c.join("app/etc/conf"), "k=v\n", 0o600);
    write(&c.join("top.txt"), "top\n", 0o644);
    fs::create_dir_all(c.join("app/empty")).unwrap();
    symlink("bin/server", c.join("app/link-rel")).unwrap();
    symlink("../top.txt", c.join("app/link-up")).unwrap();
    dir
}

#[test]
fn normalises_destinations_and_creates_parents() {
    let ctx = context();
    let mut t = Tree::new();
    t.insert_file(
        "/usr//local/./bin/../etc/top",
        &ctx.path().join("top.txt"),
        0o640,
    )
    .unwrap();
    let paths: Vec<&str> = t.iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        ["usr", "usr/local", "usr/local/etc", "usr/local/etc/top"]
    );
    for p in ["usr", "usr/local", "usr/local/etc"] {
        let e = t.get(p).unwrap();
        assert_eq!(e.kind, EntryKind::Dir);
        assert_eq!(e.mode, 0o755);
    }
    let f = t.get("usr/local/etc/top").unwrap();
    assert_eq!(f.mode, 0o640);
    assert!(matches!(f.kind, EntryKind::File { size: 4, .. }));
    assert_eq!(t.content_size(), 4);
    assert_eq!(t.len(), 4);
}

#[test]
fn destination_escaping_root_is_rejected() {
    let mut t = Tree::new();
    for dst in ["../x", "/a/../../x", ".."] {
        match t.insert_dir(dst, 0o755) {
            Err(LayerError::EscapesRoot { path }) => assert_eq!(path, dst),
            other => panic!("{dst}: expected EscapesRoot, got {other:?}"),
        }
    }
    let err = t.insert_symlink("/../../etc/x", "y").unwrap_err();
    assert!(err.to_string().contains("/../../etc/x"), "{err}");
    assert!(t.is_empty());
}

#[test]
fn iteration_is_sorted_with_parents_first() {
    let mut t = Tree::new();
    t.insert_symlink("b/z", "target").unwrap();
    t.insert_dir("a-b", 0o700).unwrap();
    t.insert_dir("a/c", 0o755).unwrap();
    t.insert_dir("a", 0o711).unwrap();
    let paths: Vec<&str> = t.iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["a", "a-b", "a/c", "b", "b/z"]);
    // Re-inserting a directory updates its mode.
    assert_eq!(t.get("a").unwrap().mode, 0o711);
    for (i, (p, _)) in t.iter().enumerate() {
        if let Some((parent, _)) = p.rsplit_once('/') {
            let pos = t.iter().position(|(q, _)| q == parent).unwrap();
            assert!(pos < i, "{parent} after {p}");
        }
    }
}

#[test]
fn conflicts_are_errors() {
    let ctx = context();
    let mut t = Tree::new();
    t.insert_file("etc/passwd", &ctx.path().join("top.txt"), 0o644)
        .unwrap();
    let err = t.insert_dir("etc/passwd/x", 0o755).unwrap_err();
    assert!(matches!(err, LayerError::Conflict { .. }), "{err}");
    let err = t.insert_symlink("etc", "/x").unwrap_err();
    assert!(matches!(err, LayerError::Conflict { .. }), "{err}");
    // A file replaces a file (later layers win).
    t.insert_file("etc/passwd", &ctx.path().join("app/etc/conf"), 0o600)
        .unwrap();
    assert!(matches!(
        t.get("etc/passwd").unwrap().kind,
        EntryKind::File { size: 4, .. }
    ));
    let err = t.insert_file("x", ctx.path(), 0o644).unwrap_err();
    assert!(matches!(err, LayerError::NotAFile { .. }), "{err}");
}

#[test]
fn copies_a_directory_from_the_context() {
    let ctx = context();
    let mut t = Tree::new();
    t.add_from_context(ctx.path(), "app", "/opt/app").unwrap();
    t.add_from_context(ctx.path(), "./top.txt", "/etc/")
        .unwrap();
    t.add_from_context(ctx.path(), "top.txt", "/renamed")
        .unwrap();
    let got: Vec<(String, String)> = t
        .iter()
        .map(|(p, e)| {
            let k = match &e.kind {
                EntryKind::Dir => format!("dir {:o}", e.mode),
                EntryKind::File { size, .. } => format!("file {:o} {size}", e.mode),
                EntryKind::Symlink { target } => format!("link {target}"),
            };
            (p.to_string(), k)
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("etc", "dir 755"),
        ("etc/top.txt", "file 644 4"),
        ("opt", "dir 755"),
        ("opt/app", "dir 755"),
        ("opt/app/bin", "dir 755"),
        ("opt/app/bin/server", "file 4755 10"),
        ("opt/app/empty", "dir 755"),
        ("opt/app/etc", "dir 755"),
        ("opt/app/etc/conf", "file 600 4"),
        ("opt/app/link-rel", "link bin/server"),
        ("opt/app/link-up", "link ../top.txt"),
        ("renamed", "file 644 4"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(t.content_size(), 4 + 10 + 4 + 4);
}

#[test]
fn include_escapes_are_rejected_naming_the_entry() {
    let ctx = context();
    let c = ctx.path();
    symlink("/etc", c.join("host-etc")).unwrap();
    let mut t = Tree::new();
    for src in [
        "../x",
        "app/../../x",
        "/etc/passwd",
        "host-etc",
        "host-etc/passwd",
    ] {
        match t.add_from_context(c, src, "/dst") {
            Err(e @ LayerError::OutsideContext { .. }) => {
                assert!(e.to_string().contains(&format!("`{src}`")), "{e}")
            }
            other => panic!("{src}: expected OutsideContext, got {other:?}"),
        }
    }
    assert!(t.is_empty());
}

#[test]
fn symlink_inside_copied_dir_pointing_outside_is_rejected() {
    for target in ["/etc/passwd", "../../outside", "../.."] {
        let ctx = context();
        let c = ctx.path();
        symlink(target, c.join("app/bad")).unwrap();
        let mut t = Tree::new();
        match t.add_from_context(c, "app", "/") {
            Err(e @ LayerError::SymlinkEscape { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("`app`") && msg.contains(target), "{msg}");
            }
            other => panic!("{target}: expected SymlinkEscape, got {other:?}"),
        }
    }
}

#[test]
fn dangling_symlink_inside_context_is_kept() {
    let ctx = context();
    symlink("not-yet", ctx.path().join("app/later")).unwrap();
    let mut t = Tree::new();
    t.add_from_context(ctx.path(), "app", "/").unwrap();
    assert_eq!(
        t.get("later").unwrap().kind,
        EntryKind::Symlink {
            target: "not-yet".into()
        }
    );
}

#[test]
fn special_files_are_rejected_naming_the_path() {
    let ctx = context();
    let fifo = ctx.path().join("app/pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo (coreutils) must be installed");
    assert!(status.success());
    let mut t = Tree::new();
    let err = t.add_from_context(ctx.path(), "app", "/").unwrap_err();
    match &err {
        LayerError::UnsupportedFileType { path, kind, .. } => {
            assert_eq!(path, &fs::canonicalize(&fifo).unwrap());
            assert_eq!(*kind, "fifo");
        }
        other => panic!("expected UnsupportedFileType, got {other:?}"),
    }
    assert!(err.to_string().contains("pipe"));
    let err = t
        .add_from_context(ctx.path(), "app/pipe", "/p")
        .unwrap_err();
    assert!(
        matches!(err, LayerError::UnsupportedFileType { .. }),
        "{err}"
    );
}
