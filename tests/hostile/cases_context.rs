//! BunnyFiles and build contexts that try to escape or exhaust.

use std::path::Path;

use crate::{bunny, Sandbox};

const HEAD: &str = "version: v0.1\nplatforms:\n  framework: linux\n  monitor: qemu\nkernel:\n  from: local\n  path: vmlinuz\n";

fn context(sb: &Sandbox, rootfs: &str) -> std::path::PathBuf {
    let ctx = sb.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("vmlinuz"),
        b"a kernel stand-in: packaged, never booted",
    )
    .unwrap();
    std::fs::write(ctx.join("BunnyFile"), format!("{HEAD}{rootfs}")).unwrap();
    ctx
}

fn build(sb: &Sandbox, ctx: &Path) -> crate::Refusal {
    let store = sb.path().join("store");
    bunny(
        &store,
        &[
            "build",
            "--progress=plain",
            "-t",
            "hostile",
            ctx.to_str().unwrap(),
        ],
    )
}

fn assert_untagged(sb: &Sandbox) {
    let index = sb.path().join("store/index.json");
    if let Ok(text) = std::fs::read_to_string(index) {
        assert!(
            !text.contains("hostile"),
            "a refused build tagged an image: {text}"
        );
    }
}

#[test]
fn include_with_dotdot() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("secret"), b"outside").unwrap();
    let ctx = context(&sb, "rootfs:\n  include:\n    - ../secret:/s\n");
    build(&sb, &ctx).says("../secret");
    assert_untagged(&sb);
}

#[test]
fn include_with_an_absolute_path() {
    let sb = Sandbox::new();
    let ctx = context(&sb, "rootfs:\n  include:\n    - /etc/passwd:/p\n");
    build(&sb, &ctx).says("/etc/passwd");
    assert_untagged(&sb);
}

#[test]
fn context_symlink_to_etc() {
    let sb = Sandbox::new();
    let ctx = context(&sb, "rootfs:\n  include:\n    - etc:/etc\n");
    std::os::unix::fs::symlink("/etc", ctx.join("etc")).unwrap();
    build(&sb, &ctx).says("outside the build context");
    assert_untagged(&sb);
}

#[test]
fn symlink_inside_an_included_directory_pointing_out() {
    let sb = Sandbox::new();
    let ctx = context(&sb, "rootfs:\n  include:\n    - www:/www\n");
    std::fs::create_dir_all(ctx.join("www")).unwrap();
    std::os::unix::fs::symlink("../../../../../etc/shadow", ctx.join("www/shadow")).unwrap();
    build(&sb, &ctx)
        .says("www/shadow` -> `../../../../../etc/shadow` points outside the build cont");
    assert_untagged(&sb);
}

#[test]
fn kernel_path_through_a_symlink_out() {
    let sb = Sandbox::new();
    let ctx = context(&sb, "");
    std::fs::remove_file(ctx.join("vmlinuz")).unwrap();
    std::os::unix::fs::symlink("/boot/../etc/hostname", ctx.join("vmlinuz")).unwrap();
    build(&sb, &ctx).says("outside the build context");
    assert_untagged(&sb);
}

#[test]
fn a_fifo_in_the_context() {
    let sb = Sandbox::new();
    let ctx = context(&sb, "rootfs:\n  include:\n    - d:/d\n");
    std::fs::create_dir_all(ctx.join("d")).unwrap();
    let st = std::process::Command::new("mkfifo")
        .arg(ctx.join("d/pipe"))
        .status()
        .unwrap();
    assert!(st.success());
    build(&sb, &ctx)
        .says("d/pipe` is a fifo")
        .says("only files, directories and symlinks");
    assert_untagged(&sb);
}

#[test]
fn a_yaml_anchor_bomb() {
    let sb = Sandbox::new();
    let mut text = String::from("version: v0.1\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    let f = sb.path().join("BunnyFile");
    std::fs::write(&f, text).unwrap();
    let t0 = std::time::Instant::now();
    bunny(
        &sb.path().join("store"),
        &["build", "--check", "-f", f.to_str().unwrap()],
    )
    .says("alias");
    assert!(
        t0.elapsed().as_secs() < 10,
        "the bomb took {:?}",
        t0.elapsed()
    );
}

#[test]
fn very_deep_nesting() {
    let sb = Sandbox::new();
    let text = format!(
        "version: v0.1\nx: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let f = sb.path().join("BunnyFile");
    std::fs::write(&f, text).unwrap();
    bunny(
        &sb.path().join("store"),
        &["build", "--check", "-f", f.to_str().unwrap()],
    )
    .says("nests at most a few levels");
}

#[test]
fn a_million_entry_include_list() {
    let sb = Sandbox::new();
    let mut text = String::from(HEAD);
    text.push_str("rootfs:\n  include:\n");
    for i in 0..1_000_000 {
        text.push_str(&format!("    - f{i}:/f{i}\n"));
    }
    let f = sb.path().join("BunnyFile");
    std::fs::write(&f, text).unwrap();
    let t0 = std::time::Instant::now();
    bunny(
        &sb.path().join("store"),
        &["build", "--check", "-f", f.to_str().unwrap()],
    )
    .says("at most");
    assert!(t0.elapsed().as_secs() < 10, "took {:?}", t0.elapsed());
}

#[test]
fn binary_garbage_as_a_bunnyfile() {
    let sb = Sandbox::new();
    let f = sb.path().join("BunnyFile");
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&f, bytes).unwrap();
    bunny(
        &sb.path().join("store"),
        &["build", "--check", "-f", f.to_str().unwrap()],
    )
    .says("BunnyFile");
}

#[test]
fn an_initrd_member_past_cpio_newc_4gib_limit() {
    let sb = Sandbox::new();
    let ctx = context(
        &sb,
        "rootfs:\n  type: initrd\n  include:\n    - huge:/huge\n",
    );
    // Sparse: takes no disk, but its size is past what newc can record.
    let f = std::fs::File::create(ctx.join("huge")).unwrap();
    f.set_len(4 * 1024 * 1024 * 1024 + 1).unwrap();
    build(&sb, &ctx).says(
        "`huge` is 4294967297 bytes; the initrd (cpio newc) format stores files below 4 GiB only",
    );
    assert_untagged(&sb);
}
