//! bunny's BuildKit frontend under current BuildKit (`buildkitd` +
//! `buildctl`, v0.32 from scripts/setup.sh), as remote builders and
//! `docker buildx` run it; tests/frontend_buildkit.rs covers dockerd 20.10's
//! BuildKit 0.8. One daemon serves every test here (tests/common/buildkitd.rs).
//!
//! Every route a user takes must give the kernel, rootfs and urunc.json
//! `bunny build` gives, byte for byte: `gateway.v0 --opt source=`, the
//! `#syntax=` line, `bunny build --llb | buildctl build`, a push to a
//! registry; two clean builds of one input must give one image digest with
//! no build-arg; and errors must carry their gRPC code, the build file's
//! line (BuildKit prints it under the error) and the real cause.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::buildkitd::Buildkitd;
use common::frontend::{
    bunny_build_local, context, copy_dir, push_frontend, push_layout, same_files, static_frontend,
    text, toolchains, with_syntax, BUNNYFILE, ROOT,
};
use common::registry::Registry;
use common::{bunny, output, run};

const FILES: [&str; 3] = [".boot/kernel", ".boot/rootfs", "urunc.json"];

/// How a build names the frontend.
enum Route<'a> {
    /// `--frontend gateway.v0 --opt source=IMAGE`.
    Gateway(&'a str),
    /// `--frontend dockerfile.v0`: the file's `#syntax=` line names it.
    Syntax,
}

fn buildctl_build(
    bk: &Buildkitd,
    route: &Route,
    ctx: &Path,
    file: &str,
    extra: &[String],
) -> Output {
    let mut c = bk.buildctl();
    c.args(["build", "--progress", "plain"]);
    match route {
        Route::Gateway(image) => {
            c.args(["--frontend", "gateway.v0", "--opt"])
                .arg(format!("source={image}"));
        }
        Route::Syntax => {
            c.args(["--frontend", "dockerfile.v0"]);
        }
    }
    c.arg("--opt")
        .arg(format!("filename={file}"))
        .arg("--local")
        .arg(format!("context={}", ctx.display()))
        .arg("--local")
        .arg(format!("dockerfile={}", ctx.display()))
        .args(extra);
    let t = Instant::now();
    let o = output(&mut c);
    eprintln!("buildctl build {file}: {:?}", t.elapsed());
    o
}

fn must(o: Output, what: &str, bk: &Buildkitd) -> String {
    assert!(
        o.status.success(),
        "{what} failed:\n{}\nbuildkitd log:\n{}",
        text(&o),
        bk.log()
    );
    text(&o)
}

fn local_out(dest: &Path) -> Vec<String> {
    vec![
        "--output".into(),
        format!("type=local,dest={}", dest.display()),
    ]
}

/// The manifest digest a pushed build reports.
fn pushed(bk: &Buildkitd, route: &Route, ctx: &Path, file: &str, name: &str) -> (String, String) {
    let meta = ctx.join(format!("{}.meta.json", name.replace(['/', ':'], "_")));
    let o = buildctl_build(
        bk,
        route,
        ctx,
        file,
        &[
            "--output".into(),
            format!("type=image,name={name},push=true"),
            "--metadata-file".into(),
            meta.display().to_string(),
        ],
    );
    let log = must(o, "a pushed build", bk);
    let m: serde_json::Value = serde_json::from_slice(&fs::read(&meta).unwrap()).unwrap();
    (
        m["containerimage.digest"]
            .as_str()
            .unwrap_or_else(|| panic!("no digest in {m}"))
            .to_string(),
        log,
    )
}

fn skopeo_config(reference: &str) -> serde_json::Value {
    serde_json::from_str(&run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--config",
        &format!("docker://{reference}"),
    ])))
    .unwrap()
}

/// buildctl's last line: BuildKit's `error: failed to solve: ...` with the
/// frontend's message; the message itself may span lines (`help:`).
fn final_error(out: &str) -> String {
    let start = out
        .rfind("error: failed to solve")
        .unwrap_or_else(|| panic!("no final error in:\n{out}"));
    out[start..].to_string()
}

/// The source snippet BuildKit prints for an error's location: the marked
/// line (`>>>`) and the `FILE:LINE` heading above it.
fn marked_line(out: &str) -> (String, String) {
    let lines: Vec<&str> = out.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains(">>>"))
        .unwrap_or_else(|| panic!("no source snippet in:\n{out}"));
    let heading = lines[..i]
        .iter()
        .rev()
        .find(|l| !l.starts_with(' ') && !l.starts_with('-'))
        .unwrap_or(&"")
        .to_string();
    let marked = lines[i]
        .split(">>>")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    (heading, marked)
}

#[test]
fn buildctl_routes_give_bunny_builds_files_and_reproducible_digests() {
    common::require_tool("skopeo");
    let bk = Buildkitd::shared();
    eprintln!("BuildKit {}", bk.version());
    let bin = static_frontend();
    let reg = Registry::start_http();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let frontend = format!("{}/bunny-frontend:current", reg.host());
    push_frontend(&bin, &store, &frontend, None);
    let gateway = Route::Gateway(&frontend);

    let ctx = work.path().join("ctx");
    context(&ctx);
    let via_bunny = work.path().join("via-bunny");
    bunny_build_local(&store, &ctx, "BunnyFile", &[], &via_bunny);

    // 1. gateway.v0 with the frontend image as `source`.
    let out = work.path().join("gateway");
    must(
        buildctl_build(bk, &gateway, &ctx, "BunnyFile", &local_out(&out)),
        "gateway.v0",
        bk,
    );
    same_files(&out, &via_bunny, &FILES);

    // 1b. Go bunny's form: the file in the `context` input only, no
    // `dockerfile` input.
    let out = work.path().join("context-only");
    let o = bk
        .buildctl()
        .args(["build", "--progress", "plain", "--frontend", "gateway.v0"])
        .arg("--opt")
        .arg(format!("source={frontend}"))
        .args(["--opt", "filename=BunnyFile", "--local"])
        .arg(format!("context={}", ctx.display()))
        .args(local_out(&out))
        .output()
        .unwrap();
    must(o, "gateway.v0 with --local context only", bk);
    same_files(&out, &via_bunny, &FILES);

    // 2. The `#syntax=` line, through BuildKit's Dockerfile frontend.
    with_syntax(&ctx, "BunnyFile", &frontend, "BunnyFile.syntax");
    let out = work.path().join("syntax");
    let log = must(
        buildctl_build(
            bk,
            &Route::Syntax,
            &ctx,
            "BunnyFile.syntax",
            &local_out(&out),
        ),
        "#syntax=",
        bk,
    );
    assert!(log.contains("[bunny] pack BunnyFile.syntax"), "{log}");
    same_files(&out, &via_bunny, &FILES);

    // 3. `bunny build --llb | buildctl build`: no frontend in the loop.
    let llb = output(
        bunny(&store)
            .env("BUNNY_FRONTEND", &bin)
            .env("BUNNY_FRONTEND_IMAGE", &frontend)
            .args(["build", "--llb", "-f"])
            .arg(ctx.join("BunnyFile"))
            .arg(&ctx),
    );
    assert!(llb.status.success(), "{}", text(&llb));
    let llb_file = work.path().join("def.pb");
    fs::write(&llb_file, &llb.stdout).unwrap();
    let out = work.path().join("llb");
    let o = bk
        .buildctl()
        .args(["build", "--progress", "plain", "--local"])
        .arg(format!("context={}", ctx.display()))
        .args(local_out(&out))
        .stdin(Stdio::from(fs::File::open(&llb_file).unwrap()))
        .output()
        .unwrap();
    must(o, "--llb | buildctl build", bk);
    same_files(&out, &via_bunny, &FILES);

    // 4. A push to a registry: the urunc keys as labels and as manifest
    // annotations, the config dated by the epoch, not by the clock.
    let image = format!("{}/hello:1", reg.host());
    let (digest, _) = pushed(bk, &gateway, &ctx, "BunnyFile", &image);
    let raw: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{image}"),
    ])))
    .unwrap();
    let config = skopeo_config(&image);
    let urunc: serde_json::Value =
        serde_json::from_slice(&fs::read(via_bunny.join("urunc.json")).unwrap()).unwrap();
    use base64::Engine as _;
    for (k, v) in urunc.as_object().unwrap() {
        let plain = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            config["config"]["Labels"][k].as_str(),
            Some(plain.as_str()),
            "label {k}: {config}"
        );
        assert_eq!(
            raw["annotations"][k].as_str(),
            Some(plain.as_str()),
            "annotation {k}: {raw}"
        );
    }
    assert_eq!(config["created"], "1970-01-01T00:00:00Z", "{config}");
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{config}");
    assert_eq!(history[0]["created"], "1970-01-01T00:00:00Z", "{config}");
    assert!(digest.starts_with("sha256:"), "{digest}");

    // 5. Two clean builds of one input, seconds apart, no build-arg: one
    // digest. An input of its own, so no other build's cache answers, and
    // the cache pruned between the two, so the pack step runs both times.
    let repro = work.path().join("repro");
    context(&repro);
    fs::write(
        repro.join("BunnyFile"),
        BUNNYFILE.replace("quiet", "quiet repro"),
    )
    .unwrap();
    let mut digests = Vec::new();
    for i in 0..2 {
        run(bk.buildctl().args(["prune", "--all"]));
        let (d, log) = pushed(
            bk,
            &gateway,
            &repro,
            "BunnyFile",
            &format!("{}/repro:{i}", reg.host()),
        );
        // The pack step's own output: it ran, it was not a cache hit.
        assert!(log.contains("initrd:"), "build {i} did not pack:\n{log}");
        digests.push(d);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert_eq!(
        digests[0], digests[1],
        "two clean builds of one input gave two digests"
    );
    assert_ne!(digests[0], digest, "a different cmdline, the same digest");
}

#[test]
fn buildctl_errors_carry_code_line_and_cause() {
    let bk = Buildkitd::shared();
    let bin = static_frontend();
    let reg = Registry::start_http();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let frontend = format!("{}/bunny-frontend:errors", reg.host());
    push_frontend(&bin, &store, &frontend, None);
    let gateway = Route::Gateway(&frontend);
    let ctx = work.path().join("ctx");
    context(&ctx);
    let tar = [
        "--output".to_string(),
        "type=tar,dest=/dev/null".to_string(),
    ];

    // 1. A broken BunnyFile on the #syntax route: InvalidArgument, and the
    // snippet marks the line bunny names (one below the BunnyFile's own,
    // under the #syntax line), not the #syntax line.
    fs::write(
        ctx.join("Broken"),
        BUNNYFILE.replace("monitor: qemu", "monitor: qemuu"),
    )
    .unwrap();
    with_syntax(&ctx, "Broken", &frontend, "Broken.syntax");
    let check = output(
        bunny(&store)
            .args(["build", "--check", "-f", "Broken"])
            .current_dir(&ctx),
    );
    assert!(!check.status.success());
    let diag = String::from_utf8_lossy(&check.stderr).to_string();
    let line: usize = diag.split(':').nth(1).unwrap().parse().unwrap();
    let o = buildctl_build(bk, &Route::Syntax, &ctx, "Broken.syntax", &tar);
    assert!(!o.status.success(), "a broken BunnyFile built");
    let out = text(&o);
    let last = final_error(&out);
    assert!(last.contains("InvalidArgument"), "{out}");
    assert!(
        last.contains(&format!("Broken.syntax:{}:", line + 1)) && last.contains("qemuu"),
        "{out}"
    );
    let (heading, marked) = marked_line(&out);
    assert_eq!(heading, format!("Broken.syntax:{}", line + 1), "{out}");
    assert_eq!(marked, "monitor: qemuu", "{out}");

    // 2. A missing include: NotFound, its line marked, and the final error
    // says which path is missing (not that a process exited 1).
    fs::write(
        ctx.join("Missing"),
        BUNNYFILE.replace("rootfs/etc:/etc", "rootfs/nope:/etc"),
    )
    .unwrap();
    let o = buildctl_build(bk, &gateway, &ctx, "Missing", &tar);
    assert!(!o.status.success(), "built with a missing include");
    let out = text(&o);
    let last = final_error(&out);
    assert!(last.contains("NotFound"), "{out}");
    assert!(
        last.contains("include `rootfs/nope` is not in the build context"),
        "{out}"
    );
    let (heading, marked) = marked_line(&out);
    let want = BUNNYFILE
        .lines()
        .position(|l| l.contains("rootfs/etc:/etc"))
        .unwrap()
        + 1;
    assert_eq!(heading, format!("Missing:{want}"), "{out}");
    assert_eq!(marked, "- rootfs/nope:/etc", "{out}");

    // 3. A missing kernel file and a missing build file: NotFound too.
    fs::write(
        ctx.join("NoKernel"),
        BUNNYFILE.replace("path: kernel", "path: vmlinuz"),
    )
    .unwrap();
    let out = text(&buildctl_build(bk, &gateway, &ctx, "NoKernel", &tar));
    let last = final_error(&out);
    assert!(
        last.contains("NotFound") && last.contains("kernel `vmlinuz` is not in the build context"),
        "{out}"
    );
    let out = text(&buildctl_build(bk, &gateway, &ctx, "NoSuchFile", &tar));
    let last = final_error(&out);
    assert!(
        last.contains("NotFound") && last.contains("NoSuchFile"),
        "{out}"
    );

    // 4. An image that does not exist: NotFound at the line naming it.
    let nope = format!("{}/nope:1", reg.host());
    fs::write(
        ctx.join("NoImage"),
        format!("FROM scratch\nCOPY --from={nope} /x /x\nCOPY rootfs/ /\n"),
    )
    .unwrap();
    let out = text(&buildctl_build(bk, &gateway, &ctx, "NoImage", &tar));
    let last = final_error(&out);
    assert!(
        last.contains("NotFound")
            && last.contains(&format!("NoImage:2:1: error: image `{nope}` not found")),
        "{out}"
    );
    let (heading, marked) = marked_line(&out);
    assert_eq!(heading, "NoImage:2", "{out}");
    assert_eq!(marked, format!("COPY --from={nope} /x /x"), "{out}");

    // 5. A path an image lacks, found by the pack step: its own words are
    // the final error (not BuildKit's "process ... did not complete
    // successfully"), NotFound, at the include's line.
    fs::write(
        ctx.join("NoPathInImage"),
        BUNNYFILE.replace(
            "    - rootfs/etc:/etc\n",
            &format!("    - from: {frontend}\n      source: /nope\n      destination: /etc/nope\n"),
        ),
    )
    .unwrap();
    let out = text(&buildctl_build(bk, &gateway, &ctx, "NoPathInImage", &tar));
    let last = final_error(&out);
    assert!(
        last.contains("NotFound: NoPathInImage: include")
            && last.contains("/nope")
            && !last.contains("did not complete successfully"),
        "{out}"
    );
    let (heading, marked) = marked_line(&out);
    assert_eq!(heading, format!("NoPathInImage:{want}"), "{out}");
    assert_eq!(marked, format!("- from: {frontend}"), "{out}");
}

#[test]
fn buildctl_exec_ops_block_rootfs_containerfiles_and_locks_match_bunny_build() {
    common::require_tool("skopeo");
    let bk = Buildkitd::shared();
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
    let frontend = format!("{host}/bunny-frontend:exec");
    push_frontend(&bin, &store, &frontend, Some(&tools));
    let gateway = Route::Gateway(&frontend);
    let layers_arg = vec![
        "--opt".to_string(),
        format!("build-arg:BUNNY_TOOLCHAIN=linux.toolchain={toolchain} linux.kernel={kernel}"),
    ];
    let local_toolchain = [
        "--toolchain".to_string(),
        format!("linux=oci:{}:gcc-bookworm", layout.display()),
        "--toolchain".to_string(),
        format!("linux.kernel=oci:{}:kernel-bookworm", layout.display()),
    ];
    let both = |name: &str, ctx: &Path, file: &str, extra: &[String]| -> (PathBuf, PathBuf) {
        let via_bk = work.path().join(format!("{name}-buildkit"));
        let mut args = extra.to_vec();
        args.extend(local_out(&via_bk));
        let log = must(buildctl_build(bk, &gateway, ctx, file, &args), name, bk);
        assert!(log.contains(&format!("[bunny] pack {file}")), "{log}");
        let via_bunny = work.path().join(format!("{name}-bunny"));
        bunny_build_local(&store, ctx, file, &local_toolchain, &via_bunny);
        (via_bk, via_bunny)
    };

    // 1. An app built from source: `make` as an exec op in the toolchain
    // image, the pack step in the tools image.
    let app_ctx = work.path().join("app");
    copy_dir(&Path::new(ROOT).join("examples/hello-linux-src"), &app_ctx);
    let (a, b) = both("app", &app_ctx, "BunnyFile", &layers_arg);
    same_files(&a, &b, &FILES);

    // 1a. A compile error: the failed step keeps BuildKit's own code
    // (Unknown: no code prefix) and its output; the build fails.
    let broken = work.path().join("broken-app");
    copy_dir(&app_ctx, &broken);
    let c = fs::read_to_string(broken.join("hello.c")).unwrap();
    fs::write(broken.join("hello.c"), format!("{c}\nint broken( {{\n")).unwrap();
    let mut args = layers_arg.clone();
    args.extend([
        "--output".to_string(),
        "type=tar,dest=/dev/null".to_string(),
    ]);
    let o = buildctl_build(bk, &gateway, &broken, "BunnyFile", &args);
    assert!(!o.status.success(), "a broken app built");
    let out = text(&o);
    assert!(out.contains("[bunny] make hello-server"), "{out}");
    assert!(out.contains("hello.c") && out.contains("error"), "{out}");
    let last = final_error(&out);
    assert!(
        last.contains("did not complete successfully")
            && !last.contains("call failed")
            && !last.contains("InvalidArgument")
            && !last.contains("NotFound"),
        "{out}"
    );

    // 1b. bunny.lock pins the toolchain by digest; a digest the registry
    // lacks fails the build.
    let pinned = work.path().join("pinned");
    copy_dir(&app_ctx, &pinned);
    let inspect: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{toolchain}"),
    ])))
    .unwrap();
    let toolchain_digest = inspect["Digest"].as_str().unwrap().to_string();
    let lock = |digest: &str| {
        serde_json::json!({"version": 1, "layers": {
            "linux.toolchain": {"reference": toolchain, "digest": digest}}})
        .to_string()
    };
    fs::write(pinned.join("bunny.lock"), lock(&toolchain_digest)).unwrap();
    let log = must(
        buildctl_build(bk, &gateway, &pinned, "BunnyFile", &args),
        "a locked build",
        bk,
    );
    assert!(
        log.contains(&format!("{toolchain}@{toolchain_digest}")),
        "the locked digest was not used:\n{log}"
    );
    let missing = format!("sha256:{}", "0".repeat(64));
    fs::write(pinned.join("bunny.lock"), lock(&missing)).unwrap();
    let o = buildctl_build(bk, &gateway, &pinned, "BunnyFile", &args);
    assert!(
        !o.status.success(),
        "built with a digest the registry lacks"
    );
    assert!(text(&o).contains(&missing), "{}", text(&o));

    // 2. A block rootfs from the context (mke2fs in the tools image).
    let block = work.path().join("block");
    context(&block);
    fs::write(
        block.join("BunnyFile"),
        BUNNYFILE.replace("type: initrd", "type: block"),
    )
    .unwrap();
    let (a, b) = both("block", &block, "BunnyFile", &[]);
    same_files(&a, &b, &FILES);

    // 3. A Containerfile: bunny-init from the frontend image, the kernel
    // from the kernel layer, the files as an initrd (bunny's opt-in).
    let cf = work.path().join("cf");
    context(&cf);
    fs::write(
        cf.join("Containerfile"),
        "FROM scratch\nCOPY rootfs/ /\nLABEL bunny.rootfs=initrd\nLABEL com.urunc.unikernel.cmdline=\"console=ttyS0\"\nENV GREETING=hello\nCMD [\"/init\"]\n",
    )
    .unwrap();
    let (a, b) = both("containerfile", &cf, "Containerfile", &layers_arg);
    same_files(&a, &b, &FILES);

    // 4. `FROM IMAGE` inherits the image's config as BuildKit resolves it,
    // as `bunny build` does from its store; pushed, then read back.
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
        cf.join("FromBase"),
        format!("FROM {base}\nCOPY rootfs/etc/motd /etc/motd2\nENV X=2\n"),
    )
    .unwrap();
    let image = format!("{host}/from-base:1");
    pushed(bk, &gateway, &cf, "FromBase", &image);
    let theirs = skopeo_config(&image);
    let digest = run(bunny(&store)
        .args(["build", "--progress", "plain", "-t", "from-base:1", "-f"])
        .arg(cf.join("FromBase"))
        .arg(&cf));
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
    assert_eq!(theirs["config"]["Env"], ours["env"], "{theirs}");
    assert_eq!(theirs["config"]["Labels"], ours["labels"], "{theirs}");
    assert_eq!(
        theirs["config"]["Entrypoint"], ours["entrypoint"],
        "{theirs}"
    );
}

/// A buildkitd of its own, stopped with SIGTERM (it unmounts its
/// snapshots) when dropped.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// A client certificate signed by the CA `make_ca` wrote in `dir`.
fn client_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join("client.key");
    let csr = dir.join("client.csr");
    let crt = dir.join("client.crt");
    let ext = dir.join("client-ext.cnf");
    fs::write(&ext, "extendedKeyUsage=clientAuth\n").unwrap();
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=bunny test client",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(dir.join(format!("{name}-ca.crt")))
        .arg("-CAkey")
        .arg(dir.join(format!("{name}-ca.key")))
        .arg("-out")
        .arg(&crt)
        .arg("-extfile")
        .arg(&ext));
    (crt, key)
}

#[test]
fn a_remote_builder_over_tcp_with_mutual_tls_builds_and_pushes() {
    common::require_tool("openssl");
    let bin = static_frontend();
    let reg = Registry::start_http();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let frontend = format!("{}/bunny-frontend:remote", reg.host());
    push_frontend(&bin, &store, &frontend, None);
    let certs = work.path().join("certs");
    fs::create_dir_all(&certs).unwrap();
    let (ca, server_crt, server_key) = common::registry::make_ca(&certs, "bk");
    let (client_crt, client_key) = client_cert(&certs, "bk");

    // The builder, as on another machine: TCP, mutual TLS.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("tcp://127.0.0.1:{port}");
    let log = fs::File::create(work.path().join("buildkitd.log")).unwrap();
    let _daemon = Daemon(
        Command::new(common::require_tool("buildkitd"))
            .arg("--root")
            .arg(work.path().join("bk"))
            .args(["--addr", &addr, "--tlscacert"])
            .arg(&ca)
            .arg("--tlscert")
            .arg(&server_crt)
            .arg("--tlskey")
            .arg(&server_key)
            .env(
                "PATH",
                format!(
                    "/usr/sbin:/usr/bin:/sbin:/bin:{}",
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let client = || {
        let mut c = Command::new(common::require_tool("buildctl"));
        c.args(["--addr", &addr, "--tlscacert"])
            .arg(&ca)
            .arg("--tlscert")
            .arg(&client_crt)
            .arg("--tlskey")
            .arg(&client_key);
        c
    };
    let start = Instant::now();
    while !output(client().args(["debug", "workers"])).status.success() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "buildkitd over TLS did not come up:\n{}",
            fs::read_to_string(work.path().join("buildkitd.log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A client the CA did not sign is refused.
    let anonymous = output(
        Command::new(common::require_tool("buildctl"))
            .args(["--timeout", "5", "--addr", &addr, "--tlscacert"])
            .arg(&ca)
            .args(["debug", "workers"]),
    );
    assert!(
        !anonymous.status.success(),
        "a client without a certificate was served"
    );

    // The documented command: build a BunnyFile there, push the image.
    let ctx = work.path().join("ctx");
    context(&ctx);
    let image = format!("{}/remote:1", reg.host());
    let o = client()
        .args([
            "build",
            "--progress",
            "plain",
            "--frontend",
            "gateway.v0",
            "--opt",
        ])
        .arg(format!("source={frontend}"))
        .args(["--opt", "filename=BunnyFile", "--local"])
        .arg(format!("context={}", ctx.display()))
        .arg("--local")
        .arg(format!("dockerfile={}", ctx.display()))
        .arg("--output")
        .arg(format!("type=image,name={image},push=true"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // The pushed layer holds bunny build's files.
    let manifest: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{image}"),
    ])))
    .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let blob = output(Command::new("curl").args([
        "-fsS",
        &format!(
            "http://{}/v2/remote/blobs/{}",
            reg.host(),
            layers[0]["digest"].as_str().unwrap()
        ),
    ]));
    assert!(blob.status.success(), "{}", text(&blob));
    let pulled = work.path().join("pulled");
    tar::Archive::new(flate2::read::GzDecoder::new(&blob.stdout[..]))
        .unpack(&pulled)
        .unwrap();
    let via_bunny = work.path().join("via-bunny");
    bunny_build_local(&store, &ctx, "BunnyFile", &[], &via_bunny);
    same_files(&pulled, &via_bunny, &FILES);
}
