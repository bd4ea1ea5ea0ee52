//! bunny's BuildKit frontend under a real BuildKit (the one inside
//! dockerd 20.10). The frontend binary is built static, packed into a
//! FROM-scratch image by `bunny-frontend image`, pushed with `bunny push` to a
//! local registry, and named by a `#syntax=` line; `docker build` must give
//! the same kernel, initrd and /urunc.json as `bunny build`, the urunc keys as
//! image labels, and a broken BunnyFile's line:column in its output. With the
//! linux toolchain, kernel and tools images (scripts/toolchain-image.sh)
//! pushed too, an `app` built from source by exec ops, a block rootfs and a
//! Containerfile must also come out byte for byte as `bunny build` makes them.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::frontend::{
    context, copy_dir, push_frontend, push_layout, same_files, static_frontend, text, toolchains,
    unpack_tar, with_syntax, BUNNYFILE, ROOT,
};
use common::registry::Registry;
use common::{bunny, output, run, Dockerd, DockerdOptions};

fn docker_build(d: &Dockerd, ctx: &Path, file: &str, extra: &[&str]) -> std::process::Output {
    let mut c = d.docker();
    c.current_dir(ctx)
        .env("DOCKER_BUILDKIT", "1")
        .args(["build", "--progress", "plain", "-f", file])
        .args(extra)
        .arg(".");
    output(&mut c)
}

#[test]
fn docker_build_through_the_bunny_frontend_matches_bunny_build() {
    common::require_tool("cpio");
    let bin = static_frontend();
    let reg = Registry::start_http();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let frontend = format!("{}/bunny-frontend:test", reg.host());

    push_frontend(&bin, &store, &frontend, None);

    let ctx = work.path().join("ctx");
    context(&ctx);
    fs::write(
        ctx.join("BunnyFile.docker"),
        format!("#syntax={frontend}\n{BUNNYFILE}"),
    )
    .unwrap();

    let d = Dockerd::start_with(DockerdOptions {
        insecure_registries: vec![reg.host()],
        ..Default::default()
    });

    // 1. --output type=tar: the files.
    let out_tar = work.path().join("out.tar");
    let o = docker_build(
        &d,
        &ctx,
        "BunnyFile.docker",
        &["--output", &format!("type=tar,dest={}", out_tar.display())],
    );
    assert!(
        o.status.success(),
        "docker build failed:\n{}\ndockerd log:\n{}",
        text(&o),
        d.log()
    );
    let via_docker = work.path().join("via-docker");
    unpack_tar(&out_tar, &via_docker);

    // The same BunnyFile through `bunny build`.
    let via_bunny = work.path().join("via-bunny");
    run(bunny(&store)
        .args(["build", "--progress", "plain", "-f"])
        .arg(ctx.join("BunnyFile"))
        .arg("-o")
        .arg(format!("type=local,dest={}", via_bunny.display()))
        .arg(&ctx));
    for f in [".boot/kernel", ".boot/rootfs", "urunc.json"] {
        let a = fs::read(via_docker.join(f))
            .unwrap_or_else(|e| panic!("{f} missing from docker's output: {e}"));
        let b = fs::read(via_bunny.join(f))
            .unwrap_or_else(|e| panic!("{f} missing from bunny's output: {e}"));
        assert_eq!(a.len(), b.len(), "{f}: sizes differ");
        assert!(
            a == b,
            "{f}: contents differ between docker build and bunny build"
        );
    }
    assert_eq!(
        fs::read(via_docker.join(".boot/kernel")).unwrap(),
        fs::read(ctx.join("kernel")).unwrap()
    );
    let urunc: serde_json::Value =
        serde_json::from_slice(&fs::read(via_docker.join("urunc.json")).unwrap()).unwrap();
    use base64::Engine as _;
    let decode = |k: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(
                    urunc[k]
                        .as_str()
                        .unwrap_or_else(|| panic!("{k} missing: {urunc}")),
                )
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(decode("com.urunc.unikernel.cmdline"), "console=ttyS0 quiet");
    assert_eq!(decode("com.urunc.unikernel.initrd"), "/.boot/rootfs");
    assert_eq!(decode("com.urunc.unikernel.binary"), "/.boot/kernel");
    assert_eq!(decode("com.urunc.unikernel.hypervisor"), "qemu");
    // The initrd holds the included files.
    let cpio = run(Command::new("sh").arg("-c").arg(format!(
        "cpio -it < {}",
        via_docker.join(".boot/rootfs").display()
    )));
    for name in ["init", "etc/motd", "etc/sub/deep"] {
        assert!(
            cpio.lines().any(|l| l.trim_start_matches("./") == name),
            "{name} not in the initrd:\n{cpio}"
        );
    }

    // 2. -t: an image whose config carries the urunc keys as labels.
    let o = docker_build(&d, &ctx, "BunnyFile.docker", &["-t", "bunny-fe-test:1"]);
    assert!(
        o.status.success(),
        "docker build -t failed:\n{}\ndockerd log:\n{}",
        text(&o),
        d.log()
    );
    let inspect = run(d.docker().args(["image", "inspect", "bunny-fe-test:1"]));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let config = &inspect[0]["Config"];
    let bunny_inspect = run(bunny(&store).args(["inspect"]).arg(
        run(bunny(&store)
            .args([
                "build",
                "--progress",
                "plain",
                "-t",
                "bunny-fe-test:bunny",
                "-f",
            ])
            .arg(ctx.join("BunnyFile"))
            .arg(&ctx))
        .trim(),
    ));
    for (k, v) in urunc.as_object().unwrap() {
        let plain = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            config["Labels"][k].as_str(),
            Some(plain.as_str()),
            "label {k}: {config}"
        );
        assert!(
            bunny_inspect.contains(k),
            "bunny's image lacks {k}: {bunny_inspect}"
        );
    }
    assert_eq!(config["Entrypoint"], serde_json::json!(["/init"]));
    assert!(
        config["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hello"),
        "{config}"
    );

    // 3. A broken BunnyFile: bunny's own line:column reaches docker's output,
    // with the code InvalidArgument (docker 20.10 prints no source snippet).
    let broken = BUNNYFILE.replace("monitor: qemu", "monitor: qemuu");
    fs::write(ctx.join("Broken"), &broken).unwrap();
    fs::write(
        ctx.join("Broken.docker"),
        format!("#syntax={frontend}\n{broken}"),
    )
    .unwrap();
    let check = output(
        bunny(&store)
            .args(["build", "--check", "-f", "Broken"])
            .current_dir(&ctx),
    );
    assert!(!check.status.success());
    let diag = String::from_utf8_lossy(&check.stderr)
        .lines()
        .next()
        .unwrap()
        .to_string();
    // "Broken:L:C: error: MESSAGE": the docker copy has one more line on top.
    let mut parts = diag.splitn(4, ':');
    let (_, line, col, rest) = (
        parts.next(),
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let line: usize = line.parse().unwrap();
    let o = docker_build(
        &d,
        &ctx,
        "Broken.docker",
        &[
            "--output",
            &format!("type=tar,dest={}", work.path().join("bad.tar").display()),
        ],
    );
    assert!(
        !o.status.success(),
        "a broken BunnyFile built:\n{}",
        text(&o)
    );
    let expected = format!(
        "code = InvalidArgument desc = Broken.docker:{}:{col}:{rest}",
        line + 1
    );
    assert!(
        text(&o).contains(&expected),
        "docker's output lacks `{expected}`:\n{}",
        text(&o)
    );

    // 4. A missing include: NotFound, at its line, and the final error says
    // which path is missing (not that a process exited 1).
    let missing = BUNNYFILE.replace("rootfs/etc:/etc", "rootfs/nope:/etc");
    fs::write(
        ctx.join("Missing.docker"),
        format!("#syntax={frontend}\n{missing}"),
    )
    .unwrap();
    let o = docker_build(
        &d,
        &ctx,
        "Missing.docker",
        &[
            "--output",
            &format!("type=tar,dest={}", work.path().join("bad.tar").display()),
        ],
    );
    assert!(!o.status.success(), "built with a missing include");
    let out = text(&o);
    let last = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    let at = missing
        .lines()
        .position(|l| l.contains("rootfs/nope"))
        .unwrap()
        + 2;
    assert!(
        last.contains("code = NotFound")
            && last.contains(&format!(
                "Missing.docker:{at}:7: error: include `rootfs/nope` is not in the build context"
            )),
        "{out}"
    );
}

#[test]
fn llb_output_is_a_reproducible_definition() {
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    context(&ctx);
    // Always through cargo: a stale binary would test old code (cargo's
    // lock makes a parallel test's build wait, not race).
    let bin = static_frontend();
    let llb_with = |c: &Path, image: Option<&str>| {
        let mut cmd = bunny(&work.path().join("store"));
        cmd.env("BUNNY_FRONTEND", &bin)
            .env_remove("BUNNY_FRONTEND_IMAGE")
            .args(["build", "--llb", "-f"])
            .arg(c.join("BunnyFile"))
            .arg(c);
        if let Some(i) = image {
            cmd.env("BUNNY_FRONTEND_IMAGE", i);
        }
        output(&mut cmd)
    };
    let llb = |c: &Path| {
        let o = llb_with(c, Some("registry.example/bunny-frontend:1"));
        assert!(o.status.success(), "{}", text(&o));
        o.stdout
    };
    // The build runs from the frontend image: without one, a clear error.
    let o = llb_with(&ctx, None);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--frontend-image") && text(&o).contains("BUNNY_FRONTEND_IMAGE"),
        "{}",
        text(&o)
    );
    let a = llb(&ctx);
    let other = work.path().join("other");
    context(&other);
    assert!(
        a == llb(&other),
        "the same BunnyFile and files gave different LLB"
    );
    let has = |needle: &[u8]| a.windows(needle.len()).any(|w| w == needle);
    for s in [
        "local://context",
        "docker-image://registry.example/bunny-frontend:1",
        "/.bunny/bin/bunny-frontend",
        "pack.json",
        "rootfs/etc",
        "llb.customname",
    ] {
        assert!(has(s.as_bytes()), "LLB lacks {s}");
    }
    // The files travel as files, not inside the definition.
    assert!(!has(b"hello from the frontend"));
    // A different BunnyFile changes the definition.
    fs::write(other.join("BunnyFile"), BUNNYFILE.replace("quiet", "loud")).unwrap();
    assert!(a != llb(&other));

    // A Containerfile: its kernel image (`--toolchain linux.kernel=`) is
    // mounted into the pack op, and bunny-init comes from the frontend image.
    fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY rootfs/ /\nCMD [\"/init\"]\n",
    )
    .unwrap();
    let o = output(
        bunny(&work.path().join("store"))
            .env("BUNNY_FRONTEND", &bin)
            .env("BUNNY_FRONTEND_IMAGE", "registry.example/bunny-frontend:1")
            .args([
                "build",
                "--llb",
                "--toolchain",
                "linux.kernel=registry.example/linux-kernel:7",
                "-f",
            ])
            .arg(ctx.join("Containerfile"))
            .arg(&ctx),
    );
    assert!(o.status.success(), "{}", text(&o));
    let has = |needle: &[u8]| o.stdout.windows(needle.len()).any(|w| w == needle);
    for s in [
        "docker-image://registry.example/linux-kernel:7",
        "/.bunny/kernel",
        "/.bunny/bin/bunny-init",
        "local://context",
    ] {
        assert!(has(s.as_bytes()), "Containerfile LLB lacks {s}");
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn exec_ops_build_apps_block_rootfs_and_containerfiles_as_bunny_build_does() {
    common::require_tool("skopeo");
    let bin = static_frontend();
    let layout = toolchains();
    let reg = Registry::start_http();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let host = reg.host();
    let tools = format!("{host}/bunny-tools:bookworm");
    let toolchain = format!("{host}/linux-toolchain:gcc-bookworm");
    let kernel = format!("{host}/linux-kernel:bookworm");
    push_layout(&layout, "tools-bookworm", &tools);
    push_layout(&layout, "gcc-bookworm", &toolchain);
    push_layout(&layout, "kernel-bookworm", &kernel);
    // The tools image is baked into the frontend image's Env.
    let frontend = format!("{host}/bunny-frontend:exec");
    push_frontend(&bin, &store, &frontend, Some(&tools));
    let d = Dockerd::start_with(DockerdOptions {
        insecure_registries: vec![host.clone()],
        ..Default::default()
    });
    let layers_arg = format!("BUNNY_TOOLCHAIN=linux.toolchain={toolchain} linux.kernel={kernel}");
    let local_toolchain = [
        "--toolchain".to_string(),
        format!("linux=oci:{}:gcc-bookworm", layout.display()),
        "--toolchain".to_string(),
        format!("linux.kernel=oci:{}:kernel-bookworm", layout.display()),
    ];
    let both = |name: &str, ctx: &Path, file: &str, docker_extra: &[&str]| -> (PathBuf, PathBuf) {
        with_syntax(ctx, file, &frontend, &format!("{file}.docker"));
        let tar = work.path().join(format!("{name}.tar"));
        let t = Instant::now();
        let mut extra = vec![
            "--output".to_string(),
            format!("type=tar,dest={}", tar.display()),
        ];
        extra.extend(docker_extra.iter().map(|s| s.to_string()));
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let o = docker_build(&d, ctx, &format!("{file}.docker"), &extra);
        assert!(
            o.status.success(),
            "{name}: docker build failed:\n{}\ndockerd log:\n{}",
            text(&o),
            d.log()
        );
        eprintln!("{name}: docker build {:?}", t.elapsed());
        // bunny's build ran inside BuildKit, as the pack step.
        assert!(
            text(&o).contains(&format!("[bunny] pack {file}.docker")),
            "{name}: no pack step in docker's output:\n{}",
            text(&o)
        );
        if name == "app" || name == "git" {
            // `make` ran as its own exec op in the toolchain image.
            assert!(
                text(&o).contains("[bunny] make hello-server"),
                "no make step in docker's output:\n{}",
                text(&o)
            );
        }
        let via_docker = work.path().join(format!("{name}-docker"));
        unpack_tar(&tar, &via_docker);
        let via_bunny = work.path().join(format!("{name}-bunny"));
        run(bunny(&store)
            .args(["build", "--progress", "plain", "-f"])
            .arg(ctx.join(file))
            .args(&local_toolchain)
            .arg("-o")
            .arg(format!("type=local,dest={}", via_bunny.display()))
            .arg(ctx));
        (via_docker, via_bunny)
    };

    // 1. An app built from source: `make` runs as an exec op in the
    // toolchain image, the pack step in the tools image.
    let app_ctx = work.path().join("app");
    copy_dir(&Path::new(ROOT).join("examples/hello-linux-src"), &app_ctx);
    let (docker_out, bunny_out) = both("app", &app_ctx, "BunnyFile", &["--build-arg", &layers_arg]);
    same_files(
        &docker_out,
        &bunny_out,
        &[".boot/kernel", ".boot/rootfs", "urunc.json"],
    );
    let cpio = run(Command::new("sh").arg("-c").arg(format!(
        "cpio -it < {}",
        docker_out.join(".boot/rootfs").display()
    )));
    assert!(
        cpio.lines()
            .any(|l| l.trim_start_matches("./") == "bin/hello-server"),
        "the built app is not in the initrd:\n{cpio}"
    );
    assert_eq!(
        fs::read(docker_out.join(".boot/kernel")).unwrap(),
        fs::read(
            layout
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("linux-kernel/vmlinuz")
        )
        .unwrap(),
        "the kernel is not the kernel layer's"
    );

    // 1a. A compile error: docker shows the step and the compiler's message,
    // and the build fails.
    let broken_ctx = work.path().join("broken-app");
    copy_dir(&app_ctx, &broken_ctx);
    let c = fs::read_to_string(broken_ctx.join("hello.c")).unwrap();
    fs::write(broken_ctx.join("hello.c"), format!("{c}\nint broken( {{\n")).unwrap();
    with_syntax(&broken_ctx, "BunnyFile", &frontend, "BunnyFile.docker");
    let o = docker_build(
        &d,
        &broken_ctx,
        "BunnyFile.docker",
        &[
            "--build-arg",
            &layers_arg,
            "--output",
            &format!("type=tar,dest={}", work.path().join("broken.tar").display()),
        ],
    );
    assert!(!o.status.success(), "a broken app built:\n{}", text(&o));
    // A failed step keeps BuildKit's own code; the file is not at fault.
    assert!(!text(&o).contains("code = InvalidArgument"), "{}", text(&o));
    for needle in ["[bunny] make hello-server", "hello.c", "error"] {
        assert!(
            text(&o).contains(needle),
            "docker's output lacks `{needle}`:\n{}",
            text(&o)
        );
    }

    // 1c. bunny.lock beside the file pins a layer by digest: the locked
    // digest is pulled, and one the registry lacks fails the build.
    let pinned_ctx = work.path().join("pinned-app");
    copy_dir(&app_ctx, &pinned_ctx);
    let inspect = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{toolchain}"),
    ]));
    let toolchain_digest = serde_json::from_str::<serde_json::Value>(&inspect).unwrap()["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    let lock = |digest: &str| {
        serde_json::json!({"version": 1, "layers": {
            "linux.toolchain": {"reference": toolchain, "digest": digest}}})
        .to_string()
    };
    fs::write(pinned_ctx.join("bunny.lock"), lock(&toolchain_digest)).unwrap();
    with_syntax(&pinned_ctx, "BunnyFile", &frontend, "BunnyFile.docker");
    let pinned_build = |name: &str| {
        docker_build(
            &d,
            &pinned_ctx,
            "BunnyFile.docker",
            &[
                "--build-arg",
                &layers_arg,
                "--output",
                &format!("type=tar,dest={}", work.path().join(name).display()),
            ],
        )
    };
    let o = pinned_build("pinned.tar");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{toolchain}@{toolchain_digest}")),
        "the locked digest was not used:\n{}",
        text(&o)
    );
    let missing = format!("sha256:{}", "0".repeat(64));
    fs::write(pinned_ctx.join("bunny.lock"), lock(&missing)).unwrap();
    let o = pinned_build("pinned-missing.tar");
    assert!(
        !o.status.success(),
        "built with a digest the registry lacks"
    );
    assert!(text(&o).contains(&missing), "{}", text(&o));

    // 1b. The same app from a git remote over HTTP (busybox httpd serving a
    // bare repository): BuildKit fetches it, `bunny build` clones it.
    let repo = work.path().join("git/src");
    copy_dir(&Path::new(ROOT).join("examples/hello-linux-src"), &repo);
    fs::remove_file(repo.join("BunnyFile")).unwrap();
    let git = |dir: &Path, args: &[&str]| {
        run(Command::new(common::require_tool("git"))
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .args(args));
    };
    git(&repo, &["init", "-q", "-b", "demo"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "sources"]);
    let served = work.path().join("git/www");
    fs::create_dir_all(&served).unwrap();
    git(
        &served,
        &["clone", "-q", "--bare", repo.to_str().unwrap(), "hello.git"],
    );
    git(&served.join("hello.git"), &["update-server-info"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _httpd = KillOnDrop(
        Command::new(common::require_tool("busybox"))
            .args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
            .arg(&served)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    let git_ctx = work.path().join("git/ctx");
    fs::create_dir_all(&git_ctx).unwrap();
    fs::write(
        git_ctx.join("BunnyFile"),
        fs::read_to_string(app_ctx.join("BunnyFile"))
            .unwrap()
            .replace(
                "  from: local",
                &format!("  from: http://127.0.0.1:{port}/hello.git\n  branch: demo"),
            ),
    )
    .unwrap();
    let (git_docker, git_bunny) = both("git", &git_ctx, "BunnyFile", &["--build-arg", &layers_arg]);
    same_files(
        &git_docker,
        &git_bunny,
        &[".boot/kernel", ".boot/rootfs", "urunc.json"],
    );
    // The same sources from git as from the context: the same image.
    same_files(
        &git_docker,
        &docker_out,
        &[".boot/kernel", ".boot/rootfs", "urunc.json"],
    );

    // 2. A block rootfs written from the context (mke2fs in the tools image).
    let block_ctx = work.path().join("block");
    context(&block_ctx);
    fs::write(
        block_ctx.join("BunnyFile"),
        BUNNYFILE.replace("type: initrd", "type: block"),
    )
    .unwrap();
    let (docker_out, bunny_out) = both("block", &block_ctx, "BunnyFile", &[]);
    same_files(
        &docker_out,
        &bunny_out,
        &[".boot/kernel", ".boot/rootfs", "urunc.json"],
    );
    let fsck = output(
        Command::new("e2fsck")
            .args(["-fn"])
            .arg(docker_out.join(".boot/rootfs")),
    );
    assert!(fsck.status.success(), "{}", text(&fsck));

    // 3. A Containerfile: bunny-init from the frontend image, the kernel
    // from the kernel layer, the files as an initrd (bunny's opt-in; Go
    // bunny's default keeps them in the layers).
    let cf_ctx = work.path().join("cf");
    context(&cf_ctx);
    fs::write(
        cf_ctx.join("Containerfile"),
        "FROM scratch\nCOPY rootfs/ /\nLABEL bunny.rootfs=initrd\nLABEL com.urunc.unikernel.cmdline=\"console=ttyS0\"\nENV GREETING=hello\nWORKDIR /etc\nCMD [\"/init\"]\n",
    )
    .unwrap();
    let (docker_out, bunny_out) = both(
        "containerfile",
        &cf_ctx,
        "Containerfile",
        &["--build-arg", &layers_arg],
    );
    same_files(
        &docker_out,
        &bunny_out,
        &[".boot/kernel", ".boot/rootfs", "urunc.json"],
    );
    let o = docker_build(
        &d,
        &cf_ctx,
        "Containerfile.docker",
        &["--build-arg", &layers_arg, "-t", "bunny-cf:1"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let inspect: serde_json::Value =
        serde_json::from_str(&run(d.docker().args(["image", "inspect", "bunny-cf:1"]))).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/urunit"]),
        "{config}"
    );
    assert_eq!(config["Cmd"], serde_json::json!(["/init"]), "{config}");
    assert_eq!(
        config["Labels"]["com.urunc.unikernel.initrd"].as_str(),
        Some("/.boot/rootfs"),
        "{config}"
    );
    assert!(
        config["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hello"),
        "{config}"
    );

    // 4. `FROM IMAGE` inherits the image's config (Env, Labels, ...), as
    // BuildKit resolves it, the same way `bunny build` does from its store.
    let base = format!("{host}/bunny-base:1");
    let base_ctx = work.path().join("base");
    context(&base_ctx);
    fs::write(
        base_ctx.join("BunnyFile"),
        BUNNYFILE
            .replace("type: initrd", "type: raw")
            .replace("GREETING=hello", "BASE=1"),
    )
    .unwrap();
    run(bunny(&store)
        .args(["build", "--progress", "plain", "-t", &base])
        .arg(&base_ctx));
    run(bunny(&store).args(["push", &base, "--progress", "plain"]));
    fs::write(
        cf_ctx.join("FromBase"),
        format!("FROM {base}\nCOPY rootfs/etc/motd /etc/motd2\nENV X=2\n"),
    )
    .unwrap();
    with_syntax(&cf_ctx, "FromBase", &frontend, "FromBase.docker");
    let o = docker_build(&d, &cf_ctx, "FromBase.docker", &["-t", "bunny-from-base:1"]);
    assert!(o.status.success(), "{}\n{}", text(&o), d.log());
    let inspect: serde_json::Value = serde_json::from_str(&run(d.docker().args([
        "image",
        "inspect",
        "bunny-from-base:1",
    ])))
    .unwrap();
    let docker_config = &inspect[0]["Config"];
    let digest = run(bunny(&store)
        .args(["build", "--progress", "plain", "-t", "from-base:1", "-f"])
        .arg(cf_ctx.join("FromBase"))
        .arg(&cf_ctx));
    let ours: serde_json::Value = serde_json::from_str(&run(bunny(&store).args([
        "inspect",
        "--json",
        digest.trim(),
    ])))
    .unwrap();
    let ours = &ours["config"];
    assert!(
        ours["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "BASE=1"),
        "bunny build did not inherit the base's Env: {ours}"
    );
    assert_eq!(docker_config["Env"], ours["env"], "{docker_config}");
    assert_eq!(docker_config["Labels"], ours["labels"], "{docker_config}");
    assert_eq!(
        docker_config["Entrypoint"], ours["entrypoint"],
        "{docker_config}"
    );

    // 5. Without a tools image, a block rootfs says what to pass.
    let plain = format!("{host}/bunny-frontend:plain");
    push_frontend(&bin, &store, &plain, None);
    with_syntax(&block_ctx, "BunnyFile", &plain, "NoTools.docker");
    let o = docker_build(
        &d,
        &block_ctx,
        "NoTools.docker",
        &[
            "--output",
            &format!("type=tar,dest={}", work.path().join("x.tar").display()),
        ],
    );
    assert!(!o.status.success());
    eprintln!("without a tools image:\n{}", text(&o));
    assert!(
        text(&o).contains("BUNNY_TOOLS_IMAGE"),
        "no hint about the tools image:\n{}",
        text(&o)
    );
}
