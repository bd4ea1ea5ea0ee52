//! The CI jobs of docs/ci.md, run as they are written. The test reads the
//! GitHub Actions workflow and the GitLab CI file out of the page and plays
//! the CI system: a git checkout per job, the secret in the environment, the
//! cache (restore before, save after), `$GITHUB_ENV`/`$GITHUB_OUTPUT`, job
//! outputs and GitLab's dotenv reports. The registry is a real one with TLS
//! and htpasswd on 127.0.0.1, which also serves the linux framework's
//! toolchain and kernel images the committed `bunny.lock` names.
//!
//! Only the install steps are not run (they download bunny from the
//! internet); the bunny under test is on PATH instead.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::registry::{Registry, TlsAuth};
use common::{require_tool, run, toolchains};
use saphyr_parser::{Event, Parser};
use sha2::{Digest, Sha256};

const USER: &str = "ci-bot";
const PASSWORD: &str = "ci-Secret-7f3e9a1c-never-logged";

// ---------------------------------------------------------------- YAML

/// A YAML node with every scalar as text and mappings in source order.
#[derive(Debug, Clone)]
enum Y {
    S(String),
    L(Vec<Y>),
    M(Vec<(String, Y)>),
}

impl Y {
    fn get(&self, key: &str) -> Option<&Y> {
        match self {
            Y::M(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    fn str(&self) -> &str {
        match self {
            Y::S(s) => s,
            other => panic!("expected a string, found {other:?}"),
        }
    }
    fn list(&self) -> &[Y] {
        match self {
            Y::L(l) => l,
            other => panic!("expected a list, found {other:?}"),
        }
    }
    fn map(&self) -> &[(String, Y)] {
        match self {
            Y::M(m) => m,
            other => panic!("expected a mapping, found {other:?}"),
        }
    }
}

fn parse_yaml(text: &str) -> Y {
    enum Frame {
        L(Vec<Y>),
        M(Vec<(String, Y)>, Option<String>),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut root = None;
    let mut parser = Parser::new_from_str(text);
    let push = |stack: &mut Vec<Frame>, root: &mut Option<Y>, node: Y| match stack.last_mut() {
        None => *root = Some(node),
        Some(Frame::L(l)) => l.push(node),
        Some(Frame::M(m, key)) => match key.take() {
            None => match node {
                Y::S(k) => *key = Some(k),
                other => panic!("non-scalar key {other:?}"),
            },
            Some(k) => m.push((k, node)),
        },
    };
    while let Some(next) = parser.next_event() {
        let (event, _) = next.expect("the YAML in docs/ci.md parses");
        match event {
            Event::Scalar(text, ..) => push(&mut stack, &mut root, Y::S(text.into_owned())),
            Event::SequenceStart(..) => stack.push(Frame::L(Vec::new())),
            Event::MappingStart(..) => stack.push(Frame::M(Vec::new(), None)),
            Event::SequenceEnd => {
                let Some(Frame::L(l)) = stack.pop() else {
                    panic!("unbalanced sequence")
                };
                push(&mut stack, &mut root, Y::L(l));
            }
            Event::MappingEnd => {
                let Some(Frame::M(m, _)) = stack.pop() else {
                    panic!("unbalanced mapping")
                };
                push(&mut stack, &mut root, Y::M(m));
            }
            Event::Alias(_) => panic!("docs/ci.md uses no aliases"),
            _ => {}
        }
    }
    root.expect("a YAML document")
}

/// The ```yaml blocks of docs/ci.md.
fn doc_yaml_blocks() -> Vec<String> {
    let page = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ci.md"))
        .expect("docs/ci.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in page.lines() {
        match &mut current {
            None if line.trim_end() == "```yaml" => current = Some(String::new()),
            Some(b) if line.trim_end() == "```" => {
                blocks.push(std::mem::take(b));
                current = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    blocks
}

// ------------------------------------------------------- the world

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Copies a directory tree, keeping modes and links (what a CI cache does
/// with its tarball).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    run(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to));
}

/// What the CI system around the jobs holds: the registry, the origin
/// repository, the settings a project admin makes, the bunny under test.
struct World {
    reg: Registry,
    dir: tempfile::TempDir,
    origin: PathBuf,
    sha: String,
    bin: PathBuf,
    certs: PathBuf,
}

impl World {
    fn new() -> World {
        let layout = toolchains();
        require_tool("runc");
        require_tool("git");
        require_tool("jq");
        let reg = Registry::start_tls(TlsAuth {
            user: USER,
            password: PASSWORD,
        });
        let host = reg.host();
        let dir = tempfile::tempdir().unwrap();

        // The runner trusts the registry's CA as a machine would
        // (certs.d); nothing in the jobs names it.
        let certs = dir.path().join("certs.d");
        reg.trust_in(&certs);

        // The project's mirror of the linux framework's layers.
        let skopeo = require_tool("skopeo");
        let mut locked = BTreeMap::new();
        for (key, tag, dest) in [
            (
                "linux.toolchain",
                "gcc-bookworm",
                "bunny/linux-toolchain:gcc-bookworm",
            ),
            (
                "linux.kernel",
                "kernel-bookworm",
                "bunny/linux-kernel:bookworm",
            ),
        ] {
            let digest_file = dir.path().join(format!("{tag}.digest"));
            run(Command::new(&skopeo)
                .args(["copy", "-q", "--dest-creds", &format!("{USER}:{PASSWORD}")])
                .arg("--dest-cert-dir")
                .arg(reg.skopeo_cert_dir())
                .arg("--digestfile")
                .arg(&digest_file)
                .arg(format!("oci:{}:{tag}", layout.display()))
                .arg(format!("docker://{host}/{dest}")));
            let digest = fs::read_to_string(&digest_file).unwrap().trim().to_string();
            locked.insert(
                key,
                serde_json::json!({"reference": format!("{host}/{dest}"), "digest": digest}),
            );
        }

        // The project: examples/hello-linux-src under hello/, its lock
        // naming the mirror, and the two CI files from docs/ci.md.
        let origin = dir.path().join("origin");
        let hello = origin.join("hello");
        fs::create_dir_all(&hello).unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-linux-src");
        for f in ["hello.c", "Makefile", "BunnyFile"] {
            fs::copy(example.join(f), hello.join(f)).unwrap();
        }
        let lock = serde_json::json!({"layers": locked, "version": 1});
        let mut lock_text = serde_json::to_string_pretty(&lock).unwrap();
        lock_text.push('\n');
        fs::write(hello.join("bunny.lock"), lock_text).unwrap();
        let blocks = doc_yaml_blocks();
        fs::create_dir_all(origin.join(".github/workflows")).unwrap();
        fs::write(origin.join(".github/workflows/bunny.yml"), &blocks[0]).unwrap();
        fs::write(origin.join(".gitlab-ci.yml"), &blocks[1]).unwrap();
        let git = |args: &[&str]| {
            run(Command::new("git")
                .args(args)
                .current_dir(&origin)
                .env("GIT_AUTHOR_NAME", "dev")
                .env("GIT_AUTHOR_EMAIL", "dev@example.com")
                .env("GIT_COMMITTER_NAME", "dev")
                .env("GIT_COMMITTER_EMAIL", "dev@example.com")
                .env("GIT_AUTHOR_DATE", "2026-01-02T03:04:05Z")
                .env("GIT_COMMITTER_DATE", "2026-01-02T03:04:05Z"))
        };
        git(&["init", "-q", "-b", "main"]);
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "hello"]);
        let sha = git(&["rev-parse", "HEAD"]).trim().to_string();

        // Only the bunny under test on PATH besides the system's tools.
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_bunny"), bin.join("bunny")).unwrap();
        World {
            reg,
            dir,
            origin,
            sha,
            bin,
            certs,
        }
    }

    /// A fresh runner: empty home, the bunny under test on PATH, nothing
    /// inherited from the test's own environment.
    fn runner_env(&self, home: &Path) -> BTreeMap<String, String> {
        fs::create_dir_all(home).unwrap();
        let mut env = BTreeMap::new();
        env.insert(
            "PATH".into(),
            format!(
                "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                self.bin.display()
            ),
        );
        env.insert("HOME".into(), home.display().to_string());
        env.insert("CI".into(), "true".into());
        env.insert("BUNNY_CERTS_DIR".into(), self.certs.display().to_string());
        env
    }

    fn clone_into(&self, workspace: &Path) {
        run(Command::new("git")
            .args(["clone", "-q"])
            .arg(&self.origin)
            .arg(workspace));
    }

    fn run_shell(
        &self,
        script: &str,
        cwd: &Path,
        env: &BTreeMap<String, String>,
        log: &mut String,
    ) {
        let out = Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
            .current_dir(cwd)
            .env_clear()
            .envs(env)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("start bash");
        log.push_str(&format!("$ {script}\n"));
        log.push_str(&String::from_utf8_lossy(&out.stdout));
        log.push_str(&String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "a CI step failed ({}):\n{script}\nthe job's log:\n{log}",
            out.status
        );
    }
}

/// A CI system's cache: saved directories by key, newest last.
#[derive(Default)]
struct Cache {
    entries: Vec<(String, PathBuf)>,
}

impl Cache {
    /// The exact key, else the newest entry whose key starts with one of
    /// `prefixes` (actions/cache's restore-keys rule).
    fn restore(&self, key: &str, prefixes: &[String], to: &Path) -> Option<bool> {
        let exact = self.entries.iter().rev().find(|(k, _)| k == key);
        let hit = exact.or_else(|| {
            prefixes.iter().find_map(|p| {
                self.entries
                    .iter()
                    .rev()
                    .find(|(k, _)| k.starts_with(p.as_str()))
            })
        })?;
        copy_tree(&hit.1, to);
        Some(exact.is_some())
    }

    fn save(&mut self, key: &str, from: &Path, store: &Path) {
        let dest = store.join(format!("entry-{}", self.entries.len()));
        copy_tree(from, &dest);
        self.entries.push((key.to_string(), dest));
    }
}

// ------------------------------------------------------ GitHub Actions

struct GithubRun {
    /// Job name -> its log.
    logs: BTreeMap<String, String>,
    /// Job name -> its outputs.
    outputs: BTreeMap<String, BTreeMap<String, String>>,
}

/// `${{ EXPR }}` with the expressions docs/ci.md uses; any other is a test
/// failure, so the page cannot grow a step the suite does not understand.
fn github_expr(text: &str, ctx: &BTreeMap<String, String>, workspace: &Path) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("closing }}") + start;
        let expr = rest[start + 3..end].trim();
        let value = if let Some(arg) = expr
            .strip_prefix("hashFiles('")
            .and_then(|a| a.strip_suffix("')"))
        {
            sha256_hex(&fs::read(workspace.join(arg)).unwrap_or_default())
        } else {
            ctx.get(expr)
                .unwrap_or_else(|| {
                    panic!("docs/ci.md uses `${{{{ {expr} }}}}`, which the test does not provide")
                })
                .clone()
        };
        out.push_str(&value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn read_kv(path: &Path) -> BTreeMap<String, String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn run_github(world: &World, workflow: &Y, cache: &mut Cache, name: &str) -> GithubRun {
    let host = world.reg.host();
    let mut ctx = BTreeMap::new();
    ctx.insert("vars.REGISTRY".to_string(), host.clone());
    ctx.insert("vars.REGISTRY_USER".to_string(), USER.to_string());
    ctx.insert(
        "vars.BUNNY_URL".to_string(),
        "https://example.invalid/bunny".to_string(),
    );
    ctx.insert(
        "secrets.REGISTRY_PASSWORD".to_string(),
        PASSWORD.to_string(),
    );
    ctx.insert("github.sha".to_string(), world.sha.clone());
    let mut result = GithubRun {
        logs: BTreeMap::new(),
        outputs: BTreeMap::new(),
    };
    let base = world.dir.path().join(name);
    for (job_name, job) in workflow.get("jobs").expect("jobs").map() {
        if let Some(needs) = job.get("needs") {
            assert!(
                result.outputs.contains_key(needs.str()),
                "{job_name} needs {} which has not run",
                needs.str()
            );
        }
        let job_dir = base.join(job_name);
        let workspace = job_dir.join("workspace");
        fs::create_dir_all(&workspace).unwrap();
        let mut env = world.runner_env(&job_dir.join("home"));
        env.insert("GITHUB_WORKSPACE".into(), workspace.display().to_string());
        env.insert("GITHUB_SHA".into(), world.sha.clone());
        let github_env = job_dir.join("github_env");
        let github_output = job_dir.join("github_output");
        env.insert("GITHUB_ENV".into(), github_env.display().to_string());
        env.insert("GITHUB_OUTPUT".into(), github_output.display().to_string());
        if let Some(job_env) = job.get("env") {
            for (k, v) in job_env.map() {
                env.insert(k.clone(), github_expr(v.str(), &ctx, &workspace));
            }
        }
        let mut log = String::new();
        let mut caches_to_save = Vec::new();
        for step in job.get("steps").expect("steps").list() {
            let step_name = step.get("name").map(Y::str).unwrap_or("");
            if let Some(uses) = step.get("uses").map(Y::str) {
                if uses.starts_with("actions/checkout@") {
                    world.clone_into(&workspace);
                    log.push_str("checkout\n");
                } else if uses.starts_with("actions/cache@") {
                    let with = step.get("with").expect("cache: with");
                    let path = workspace.join(with.get("path").unwrap().str());
                    let key = github_expr(with.get("key").unwrap().str(), &ctx, &workspace);
                    let prefixes: Vec<String> = with
                        .get("restore-keys")
                        .map(|r| {
                            r.str()
                                .lines()
                                .map(|l| github_expr(l.trim(), &ctx, &workspace))
                                .collect()
                        })
                        .unwrap_or_default();
                    let hit = cache.restore(&key, &prefixes, &path);
                    log.push_str(&format!("cache {key}: {hit:?}\n"));
                    if hit != Some(true) {
                        caches_to_save.push((key, path));
                    }
                } else {
                    panic!("docs/ci.md uses `{uses}`, which the test does not play");
                }
                continue;
            }
            if step_name == "Install bunny" {
                log.push_str("install: the bunny under test is on PATH\n");
                continue;
            }
            let script = github_expr(step.get("run").expect("run").str(), &ctx, &workspace);
            let mut step_env = env.clone();
            if let Some(e) = step.get("env") {
                for (k, v) in e.map() {
                    step_env.insert(k.clone(), github_expr(v.str(), &ctx, &workspace));
                }
            }
            let _ = fs::remove_file(&github_output);
            world.run_shell(&script, &workspace, &step_env, &mut log);
            env.extend(read_kv(&github_env));
            if let Some(id) = step.get("id").map(Y::str) {
                for (k, v) in read_kv(&github_output) {
                    ctx.insert(format!("steps.{id}.outputs.{k}"), v);
                }
            }
        }
        // actions/cache saves in its post step, when the key missed.
        for (key, path) in caches_to_save {
            cache.save(&key, &path, &base.join("cache-save"));
        }
        let mut outputs = BTreeMap::new();
        if let Some(o) = job.get("outputs") {
            for (k, v) in o.map() {
                let value = github_expr(v.str(), &ctx, &workspace);
                ctx.insert(format!("needs.{job_name}.outputs.{k}"), value.clone());
                outputs.insert(k.clone(), value);
            }
        }
        // The steps' ids are the job's own.
        ctx.retain(|k, _| !k.starts_with("steps."));
        result.outputs.insert(job_name.clone(), outputs);
        result.logs.insert(job_name.clone(), log);
    }
    result
}

// ------------------------------------------------------------ GitLab CI

/// `$NAME` and `${NAME}` from `vars`, as the runner expands `variables:`.
fn gitlab_expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let rest = &text[i + 1..];
        let (name, skip) = if let Some(inner) = rest.strip_prefix('{') {
            let end = inner.find('}').expect("closing }");
            (&inner[..end], end + 2)
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], end)
        };
        out.push_str(vars.get(name).unwrap_or_else(|| {
            panic!("docs/ci.md's GitLab file uses ${name}, which the test does not provide")
        }));
        for _ in 0..skip {
            chars.next();
        }
    }
    out
}

fn run_gitlab(world: &World, file: &Y, cache: &mut Cache, name: &str) -> BTreeMap<String, String> {
    let host = world.reg.host();
    let base = world.dir.path().join(name);
    let mut logs = BTreeMap::new();
    let mut dotenv: BTreeMap<String, String> = BTreeMap::new();
    let stages: Vec<&str> = file
        .get("stages")
        .unwrap()
        .list()
        .iter()
        .map(Y::str)
        .collect();
    for stage in stages {
        for (job_name, job) in file.map() {
            if job.get("stage").map(Y::str) != Some(stage) {
                continue;
            }
            let job_dir = base.join(job_name);
            let workspace = job_dir.join("project");
            world.clone_into(&workspace);
            let mut env = world.runner_env(&job_dir.join("home"));
            let mut vars = BTreeMap::new();
            vars.insert(
                "CI_PROJECT_DIR".to_string(),
                workspace.display().to_string(),
            );
            vars.insert("CI_REGISTRY".to_string(), host.clone());
            vars.insert("CI_REGISTRY_USER".to_string(), USER.to_string());
            vars.insert("CI_REGISTRY_PASSWORD".to_string(), PASSWORD.to_string());
            vars.insert(
                "CI_REGISTRY_IMAGE".to_string(),
                format!("{host}/group/project"),
            );
            vars.insert("CI_COMMIT_SHA".to_string(), world.sha.clone());
            vars.insert(
                "BUNNY_URL".to_string(),
                "https://example.invalid/bunny".to_string(),
            );
            for section in [file.get("variables"), job.get("variables")]
                .into_iter()
                .flatten()
            {
                for (k, v) in section.map() {
                    let value = gitlab_expand(v.str(), &vars);
                    vars.insert(k.clone(), value);
                }
            }
            if job.get("needs").is_some() {
                vars.extend(dotenv.clone());
            }
            env.extend(vars);
            let mut log = String::new();
            let mut save = None;
            if let Some(c) = job.get("cache") {
                let files = c.get("key").and_then(|k| k.get("files")).unwrap().list();
                let mut h = Sha256::new();
                for f in files {
                    h.update(fs::read(workspace.join(f.str())).unwrap_or_default());
                }
                let key = hex::encode(h.finalize());
                let path = workspace.join(c.get("paths").unwrap().list()[0].str());
                let hit = cache.restore(&key, &[], &path);
                log.push_str(&format!("cache {key}: {hit:?}\n"));
                save = Some((key, path));
            }
            // before_script installs bunny; the bunny under test is on PATH.
            let lines: Vec<&str> = job
                .get("script")
                .unwrap()
                .list()
                .iter()
                .map(Y::str)
                .collect();
            world.run_shell(&lines.join("\n"), &workspace, &env, &mut log);
            if let Some((key, path)) = save {
                cache.save(&key, &path, &base.join("cache-save"));
            }
            if let Some(report) = job
                .get("artifacts")
                .and_then(|a| a.get("reports"))
                .and_then(|r| r.get("dotenv"))
            {
                dotenv.extend(read_kv(&workspace.join(report.str())));
            }
            logs.insert(job_name.clone(), log);
        }
    }
    logs.insert("dotenv".into(), format!("{dotenv:?}"));
    logs
}

// --------------------------------------------------------------- tests

/// Blobs (layers and configs) the job's push uploaded; the manifest is
/// always put, so it does not count.
fn blob_uploads(log: &str) -> usize {
    log.lines()
        .filter(|l| l.ends_with(": pushed") && (l.contains(" layer ") || l.contains(" config ")))
        .count()
}

/// The manifest the registry serves for `reference`, by skopeo.
fn registry_digest(world: &World, reference: &str) -> String {
    let raw = run(Command::new(require_tool("skopeo"))
        .args(["inspect", "--raw", "--creds", &format!("{USER}:{PASSWORD}")])
        .arg("--cert-dir")
        .arg(world.reg.skopeo_cert_dir())
        .arg(format!("docker://{reference}")));
    format!("sha256:{}", sha256_hex(raw.as_bytes()))
}

#[test]
fn the_documented_pipelines_build_push_cache_and_deploy_by_digest() {
    let world = World::new();
    let blocks = doc_yaml_blocks();
    assert_eq!(
        blocks.len(),
        2,
        "docs/ci.md holds the GitHub and the GitLab file"
    );
    let workflow = parse_yaml(&blocks[0]);
    let host = world.reg.host();
    let image = format!("{host}/team/hello");

    // GitHub, cold: the toolchain is pulled, make runs, every blob is new.
    let mut gh_cache = Cache::default();
    let cold = run_github(&world, &workflow, &mut gh_cache, "gh-cold");
    let build_log = &cold.logs["build"];
    let digest = cold.outputs["build"]["digest"].clone();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest:?}\n{build_log}"
    );
    assert!(build_log.contains("cache "), "{build_log}");
    assert!(blob_uploads(build_log) > 0, "{build_log}");
    let uploads_cold = world.reg.upload_requests("team/hello").len();
    assert!(uploads_cold > 0, "{}", world.reg.log());
    // The tag and the digest the job handed on name the same manifest.
    assert_eq!(
        registry_digest(&world, &format!("{image}:{}", world.sha)),
        digest
    );
    assert_eq!(
        registry_digest(&world, &format!("{image}@{digest}")),
        digest
    );
    // The deploy job pulled exactly that digest: the index the push made
    // (the image and its default provenance, as buildx pushes them), of
    // which bunny pull keeps the image for the platform.
    let deploy_log = &cold.logs["deploy"];
    let index: serde_json::Value = serde_json::from_str(&run(Command::new(require_tool("skopeo"))
        .args(["inspect", "--raw", "--creds", &format!("{USER}:{PASSWORD}")])
        .arg("--cert-dir")
        .arg(world.reg.skopeo_cert_dir())
        .arg(format!("docker://{image}@{digest}"))))
    .unwrap();
    let inner = index["manifests"][0]["digest"].as_str().unwrap_or(&digest);
    assert!(
        deploy_log.contains(&format!("{image}@{digest} {inner}\n")),
        "{deploy_log}"
    );
    assert_eq!(gh_cache.entries.len(), 1, "the cold run saves the store");

    // GitHub, warm: a new checkout of the same commit with the store
    // restored: the same digest, the step cached, nothing uploaded.
    let warm = run_github(&world, &workflow, &mut gh_cache, "gh-warm");
    let warm_log = &warm.logs["build"];
    assert_eq!(warm.outputs["build"]["digest"], digest, "{warm_log}");
    assert!(warm_log.contains("CACHED"), "{warm_log}");
    assert_eq!(blob_uploads(warm_log), 0, "{warm_log}");
    assert!(warm_log.contains("already exists"), "{warm_log}");
    assert_eq!(
        world.reg.upload_requests("team/hello").len(),
        uploads_cold,
        "the warm run started an upload: {:?}",
        world.reg.upload_requests("team/hello")
    );

    // Someone moves the mirror's toolchain tag (here onto the kernel image,
    // which has no compiler). The lock still pins the old digest, so a cold
    // runner builds exactly what the warm one did.
    run(Command::new(require_tool("skopeo"))
        .args(["copy", "-q", "--src-creds", &format!("{USER}:{PASSWORD}")])
        .args(["--dest-creds", &format!("{USER}:{PASSWORD}")])
        .arg("--src-cert-dir")
        .arg(world.reg.skopeo_cert_dir())
        .arg("--dest-cert-dir")
        .arg(world.reg.skopeo_cert_dir())
        .arg(format!("docker://{host}/bunny/linux-kernel:bookworm"))
        .arg(format!(
            "docker://{host}/bunny/linux-toolchain:gcc-bookworm"
        )));

    // GitLab, cold, into another repository: the same commit gives the
    // same digest on another CI system, the lock unchanged (its job checks).
    let gitlab = parse_yaml(&blocks[1]);
    let mut gl_cache = Cache::default();
    let gl = run_gitlab(&world, &gitlab, &mut gl_cache, "gl");
    assert!(gl["dotenv"].contains(&digest), "{gl:?}");
    assert!(gl["deploy"].contains(&digest), "{}", gl["deploy"]);
    assert_eq!(
        registry_digest(&world, &format!("{host}/group/project/hello:{}", world.sha)),
        digest
    );
    assert_eq!(gl_cache.entries.len(), 1);

    // The secret reached bunny through stdin only: no log shows it.
    for log in cold
        .logs
        .values()
        .chain(warm.logs.values())
        .chain(gl.values())
    {
        assert!(!log.contains(PASSWORD), "the password is in a log:\n{log}");
    }
}

#[test]
fn the_doc_files_parse_and_use_only_bunny_flags_that_exist() {
    let blocks = doc_yaml_blocks();
    assert_eq!(blocks.len(), 2);
    let gh = parse_yaml(&blocks[0]);
    let gl = parse_yaml(&blocks[1]);
    let mut commands = Vec::new();
    for (_, job) in gh.get("jobs").unwrap().map() {
        for step in job.get("steps").unwrap().list() {
            if let Some(r) = step.get("run") {
                commands.push(r.str().to_string());
            }
        }
    }
    for (_, job) in gl.map() {
        if let Some(s) = job.get("script") {
            commands.extend(s.list().iter().map(|l| l.str().to_string()));
        }
    }
    // Every `bunny VERB --flag` the files use is one `bunny VERB --help` lists.
    let mut checked = 0;
    for text in &commands {
        let joined = text.replace("\\\n", " ");
        for line in joined.lines() {
            for part in line.split(['|', ';']) {
                let words: Vec<&str> = part.split_whitespace().collect();
                let Some(at) = words.iter().position(|w| *w == "bunny") else {
                    continue;
                };
                let Some(verb) = words.get(at + 1) else {
                    continue;
                };
                let help = run(Command::new(env!("CARGO_BIN_EXE_bunny")).args([verb, "--help"]));
                for flag in words[at + 2..].iter().filter(|w| w.starts_with("--")) {
                    let flag = flag.split('=').next().unwrap();
                    assert!(help.contains(flag), "`bunny {verb}` has no {flag}:\n{help}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 8, "only {checked} flags found in docs/ci.md");
}
