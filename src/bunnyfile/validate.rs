//! Maps the spanned YAML tree onto the model and applies the Go bunny's rules
//! plus bunny's own (framework support tables, env names, image references).
//!
//! Errors are collected rather than returned at the first one, so a user fixes
//! a file in one round; a section that cannot be read is skipped, and checks
//! that need it are skipped too, which keeps follow-on noise out.

use std::collections::HashMap;

use super::model::*;
use super::yaml::{self, Node, Value};
use super::{BunnyFileError, Diagnostic, Parsed, Severity, MAX_FILE_BYTES, SUPPORTED_VERSION};
use crate::frameworks;
use crate::platform::{one_of, Arch, Monitor, RootfsType};

const TOP_KEYS: &[&str] = &[
    "version",
    "platforms",
    "rootfs",
    "kernel",
    "app",
    "cmdline",
    "cmd",
    "entrypoint",
    "envs",
];
const PLATFORM_KEYS: &[&str] = &["framework", "version", "monitor", "architecture"];
const ROOTFS_KEYS: &[&str] = &["from", "path", "type", "include"];
const INCLUDE_KEYS: &[&str] = &["from", "source", "destination"];
const KERNEL_KEYS: &[&str] = &["from", "path", "source", "config", "toolchain"];
/// `kernel.config` when the kernel is built from source.
const KERNEL_CONFIG_KEYS: &[&str] = &["base", "fragments", "set", "unset"];
const KERNEL_SOURCE_EXAMPLE: &str =
    "e.g. `kernel: {from: source, source: debian:linux-source-6.1, config: minimal}`";
const APP_KEYS: &[&str] = &[
    "name",
    "from",
    "branch",
    "path",
    "language",
    "packages",
    "repository",
    "shell",
];
const PACKAGE_KEYS: &[&str] = &["name", "version"];
const REPOSITORY_KEYS: &[&str] = &["url", "abi"];
const PACKAGES_EXAMPLE: &str =
    "write a list of package names, or mappings with `name` and `version`: `packages: [iperf3]`";

const IMAGE_EXAMPLE: &str = "docker.io/library/alpine:3.20";

/// The position just past `text` (1-based).
pub(super) fn end_pos(text: &str) -> Pos {
    let line = 1 + text.matches('\n').count();
    let last = text.rsplit('\n').next().unwrap_or("");
    Pos {
        line,
        col: last.chars().count() + 1,
    }
}

struct Ctx {
    file: String,
    diags: Vec<Diagnostic>,
    /// Just past the last character: the YAML scanner reports some
    /// end-of-input errors on a line after the last one, which is clamped here.
    end: Pos,
}

impl Ctx {
    fn push(&mut self, severity: Severity, pos: Pos, message: String, help: String) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            pos,
            message,
            help: Some(help),
            severity,
        });
    }

    fn error(&mut self, pos: Pos, message: impl Into<String>, help: impl Into<String>) {
        self.push(Severity::Error, pos, message.into(), help.into());
    }

    fn warn(&mut self, pos: Pos, message: impl Into<String>, help: impl Into<String>) {
        self.push(Severity::Warning, pos, message.into(), help.into());
    }

    fn has_errors(&self) -> bool {
        self.diags.iter().any(|d| d.severity == Severity::Error)
    }

    fn finish(mut self, bunnyfile: Option<BunnyFile>) -> Result<Parsed, BunnyFileError> {
        let end = self.end;
        for d in &mut self.diags {
            if (d.pos.line, d.pos.col) > (end.line, end.col) {
                d.pos = end;
            }
        }
        self.diags.sort_by_key(|d| (d.pos.line, d.pos.col));
        match bunnyfile {
            Some(bunnyfile) if !self.has_errors() => Ok(Parsed {
                bunnyfile,
                warnings: self.diags,
            }),
            _ => {
                if !self.has_errors() {
                    // Defensive: a file that was not built must say why.
                    self.error(
                        Pos { line: 1, col: 1 },
                        "the BunnyFile could not be read",
                        "see docs/bunnyfile.md for the format",
                    );
                }
                Err(BunnyFileError::Invalid(self.diags))
            }
        }
    }
}

pub(super) fn parse_text(file: &str, text: &str) -> Result<Parsed, BunnyFileError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(super::too_large(file, text.len() as u64));
    }
    let mut ctx = Ctx {
        file: file.to_string(),
        diags: Vec::new(),
        end: end_pos(text),
    };
    let syntax = syntax_directive(&mut ctx, text);
    if let Some(pos) = containerfile_start(text) {
        ctx.error(
            pos,
            "this is a Containerfile (it starts with `FROM`), not a BunnyFile",
            "`bunny build` reads Containerfiles too (see docs/containerfile.md); a BunnyFile is YAML: `version: 0.1`, `platforms`, `kernel`, `rootfs`",
        );
        return ctx.finish(None);
    }
    let tree = match yaml::parse_tree(text) {
        Ok(tree) => tree,
        Err(e) => {
            ctx.diags.push(Diagnostic {
                file: file.to_string(),
                pos: e.pos,
                message: e.message,
                help: e.help,
                severity: Severity::Error,
            });
            return ctx.finish(None);
        }
    };
    let bunnyfile = build(&mut ctx, tree.as_ref(), syntax);
    ctx.finish(bunnyfile)
}

/// Reads a BuildKit `#syntax=IMAGE` directive from the first line.
fn syntax_directive(ctx: &mut Ctx, text: &str) -> Option<String> {
    let first = text.lines().next()?;
    let first = first.strip_prefix('\u{feff}').unwrap_or(first);
    let rest = first.trim_start().strip_prefix('#')?.trim_start();
    let rest = rest.strip_prefix("syntax")?.trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    match rest.split_whitespace().next() {
        Some(image) => Some(image.to_string()),
        None => {
            ctx.error(
                Pos { line: 1, col: 1 },
                "the `#syntax=` directive names no image",
                "write `#syntax=harbor.nbfc.io/nubificus/bunny:latest` or remove the line",
            );
            None
        }
    }
}

/// Where a Containerfile's `FROM` is, if the first line that is neither empty
/// nor a comment starts with one (the Go bunny's format detection).
fn containerfile_start(text: &str) -> Option<Pos> {
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "\u{feff}" {
            continue;
        }
        let trimmed = trimmed.trim_start_matches('\u{feff}');
        let word = trimmed.split_whitespace().next().unwrap_or("");
        if word.eq_ignore_ascii_case("FROM") {
            let indent = line.chars().count() - trimmed.chars().count();
            return Some(Pos {
                line: i + 1,
                col: indent + 1,
            });
        }
        return None;
    }
    None
}

/// The closest candidate to a misspelt `word`, if one is close enough.
fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for &c in candidates {
        let d = strsim::damerau_levenshtein(&lower, c);
        let close = d <= (c.len() / 3).clamp(1, 3)
            || (lower.len() >= 3 && (c.starts_with(&lower) || lower.starts_with(c)));
        if close && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn keys_list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Entry<'n> {
    key: &'n str,
    key_pos: Pos,
    value: &'n Node,
}

/// A mapping whose keys have been checked.
struct Section<'n> {
    /// Dotted path for messages; empty at the top level.
    name: String,
    /// Where the section is written (its key), for "missing key" errors.
    pos: Pos,
    entries: Vec<Entry<'n>>,
}

impl<'n> Section<'n> {
    fn get(&self, key: &str) -> Option<&Entry<'n>> {
        self.entries.iter().find(|e| e.key == key)
    }

    fn path(&self, key: &str) -> String {
        if self.name.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.name)
        }
    }

    fn place(&self) -> String {
        if self.name.is_empty() {
            "at the top level".to_string()
        } else {
            format!("in `{}`", self.name)
        }
    }
}

/// Checks a mapping's keys: unknown, duplicate and non-string keys are errors.
/// A null node (`rootfs:` with nothing under it) is an empty section.
fn section<'n>(
    ctx: &mut Ctx,
    node: &'n Node,
    name: &str,
    pos: Pos,
    allowed: &[&str],
    example: &str,
) -> Option<Section<'n>> {
    let mut sec = Section {
        name: name.to_string(),
        pos,
        entries: Vec::new(),
    };
    if node.is_null() {
        return Some(sec);
    }
    let Value::Map(entries) = &node.value else {
        let what = if name.is_empty() {
            "a BunnyFile".to_string()
        } else {
            format!("`{name}`")
        };
        ctx.error(
            node.pos,
            format!(
                "{what} must be a mapping of `key: value` lines, found {}",
                node.kind()
            ),
            example.to_string(),
        );
        return None;
    };
    let mut seen: HashMap<&str, Pos> = HashMap::new();
    for (k, v) in entries {
        let Value::Scalar { text: key, .. } = &k.value else {
            ctx.error(
                k.pos,
                format!(
                    "keys {} must be plain names, found {}",
                    sec.place(),
                    k.kind()
                ),
                format!("valid keys {}: {}", sec.place(), keys_list(allowed)),
            );
            continue;
        };
        if key == "<<" {
            ctx.error(
                k.pos,
                "YAML merge keys (`<<`) are not supported",
                "write the keys out in full",
            );
            continue;
        }
        if let Some(first) = seen.get(key.as_str()) {
            ctx.error(
                k.pos,
                format!(
                    "duplicate key `{key}` {} (first written at {}:{})",
                    sec.place(),
                    first.line,
                    first.col
                ),
                "keep only one of them",
            );
            continue;
        }
        seen.insert(key, k.pos);
        if !allowed.contains(&key.as_str()) {
            let hint = suggest(key, allowed)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            ctx.error(
                k.pos,
                format!("unknown key `{key}` {}{hint}", sec.place()),
                format!("valid keys {}: {}", sec.place(), keys_list(allowed)),
            );
            continue;
        }
        sec.entries.push(Entry {
            key,
            key_pos: k.pos,
            value: v,
        });
    }
    Some(sec)
}

/// A string value; `Ok(None)` when absent, null or empty (as the Go bunny
/// treats them), `Err(())` when it was the wrong type (already reported).
fn string(ctx: &mut Ctx, sec: &Section, key: &str) -> Result<Option<Spanned<String>>, ()> {
    let Some(e) = sec.get(key) else {
        return Ok(None);
    };
    if e.value.is_null() {
        return Ok(None);
    }
    match &e.value.value {
        Value::Scalar { text, .. } if text.is_empty() => Ok(None),
        Value::Scalar { text, .. } => Ok(Some(Spanned {
            value: text.clone(),
            pos: e.value.pos,
        })),
        _ => {
            ctx.error(
                e.value.pos,
                format!(
                    "`{}` expects a string, found {}",
                    sec.path(key),
                    e.value.kind()
                ),
                format!("write `{key}: VALUE` on one line"),
            );
            Err(())
        }
    }
}

fn required_string(ctx: &mut Ctx, sec: &Section, key: &str, help: &str) -> Option<Spanned<String>> {
    match string(ctx, sec, key) {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            let (pos, what) = match sec.get(key) {
                Some(e) => (e.key_pos, "is empty"),
                None => (sec.pos, "is missing"),
            };
            let name = if sec.name.is_empty() {
                format!("`{key}`")
            } else {
                format!("`{key}` {}", sec.place())
            };
            ctx.error(pos, format!("{name} {what}; it is required"), help);
            None
        }
        Err(()) => None,
    }
}

fn string_list(ctx: &mut Ctx, sec: &Section, key: &str, example: &str) -> Vec<Spanned<String>> {
    let Some(e) = sec.get(key) else {
        return Vec::new();
    };
    if e.value.is_null() {
        return Vec::new();
    }
    let Value::Seq(items) = &e.value.value else {
        ctx.error(
            e.value.pos,
            format!(
                "`{}` expects a list of strings, found {}",
                sec.path(key),
                e.value.kind()
            ),
            example.to_string(),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        match &item.value {
            Value::Scalar { text, .. } => out.push(Spanned {
                value: text.clone(),
                pos: item.pos,
            }),
            _ => ctx.error(
                item.pos,
                format!(
                    "`{}` expects a list of strings, found {} in it",
                    sec.path(key),
                    item.kind()
                ),
                example.to_string(),
            ),
        }
    }
    out
}

fn build(ctx: &mut Ctx, root: Option<&Node>, syntax: Option<String>) -> Option<BunnyFile> {
    let Some(root) = root.filter(|r| !r.is_null()) else {
        ctx.error(
            Pos { line: 1, col: 1 },
            "the file has no BunnyFile content",
            "start with `version: 0.1`, then `platforms` (framework, monitor) and `kernel` (from, path)",
        );
        return None;
    };
    let top = section(
        ctx,
        root,
        "",
        root.pos,
        TOP_KEYS,
        "a BunnyFile is a YAML mapping: `version: 0.1`, `platforms:`, `kernel:` ...",
    )?;
    let version = version(ctx, &top);
    let platforms = platforms(ctx, &top);
    let rootfs = rootfs(ctx, &top);
    let framework_name = platforms.as_ref().map(|p| p.framework.value.clone());
    let (kernel, kernel_source) = match kernel(ctx, &top, framework_name.as_deref()) {
        None => (None, None),
        Some(KernelEntry::File(k)) => (Some(k), None),
        Some(KernelEntry::Source(ks)) => (None, Some(ks)),
        Some(KernelEntry::Invalid) => (Some(None), None),
    };
    let app = app(ctx, &top);
    if let (Some(p), Some(Some(a))) = (&platforms, &app) {
        // Only freebsd knows a binary package repository.
        if let Some(first) = a
            .packages
            .first()
            .filter(|_| p.framework.value != "freebsd")
        {
            ctx.error(
                first.pos,
                format!(
                    "`app.packages` is for `framework: freebsd`, not `{}`",
                    p.framework.value
                ),
                "build the app from sources (`from`), or package a prebuilt `kernel`",
            );
        }
    }
    match (top.get("kernel"), top.get("app")) {
        (None, None) => ctx.error(
            top.pos,
            "neither `kernel` nor `app` is given; one is required",
            "add `kernel:` with `from` and `path` to package a prebuilt kernel, or `app:` to build one",
        ),
        // A kernel built from source replaces the app's framework kernel.
        (Some(_), Some(_)) if kernel_source.is_some() => {}
        (Some(_), Some(a)) => ctx.error(
            a.key_pos,
            "both `kernel` and `app` are given; use one",
            "keep `kernel` to package a prebuilt kernel, or `app` to build the kernel from source (a `kernel: {from: source, ...}` may go with an `app`)",
        ),
        _ => {}
    }
    let cmdline = string(ctx, &top, "cmdline").ok().flatten();
    let cmd = string_list(
        ctx,
        &top,
        "cmd",
        "write `cmd: [\"/server\", \"-p\", \"80\"]`, or put a single command line in `cmdline:`",
    );
    let entrypoint = string_list(ctx, &top, "entrypoint", "write `entrypoint: [\"/init\"]`");
    let envs = envs(ctx, &top);
    if let (Some(c), Some(_)) = (&cmdline, cmd.first()) {
        ctx.warn(
            c.pos,
            "`cmdline` is ignored when `cmd` is given (as Go bunny does): the image's cmdline is `cmd` joined by spaces",
            "remove `cmdline`, or remove `cmd` to have `cmdline` split at spaces become the command",
        );
    }

    if let (Some(p), Some(r)) = (&platforms, &rootfs) {
        combinations(ctx, p, r);
        let has_app = top.get("app").is_some();
        let fw = frameworks::resolve(&p.framework.value);
        if let (Some(path), None, false) = (&r.path, &r.kind, has_app) {
            if fw.default_rootfs_type() == RootfsType::Raw {
                ctx.warn(
                    path.pos,
                    format!(
                        "a prebuilt rootfs file without `type`: as Go bunny does, a `{}` image takes it to be `raw`, so the file is carried at /.boot/rootfs but urunc hands the guest the container's files (mountRootfs=true)",
                        fw.name()
                    ),
                    "add `type: initrd` or `type: block` (what the file is) for the guest to boot from it",
                );
            }
        }
    }
    if ctx.has_errors() {
        return None;
    }
    Some(BunnyFile {
        syntax,
        version: version?,
        platforms: platforms?,
        rootfs: rootfs?,
        kernel: kernel.flatten(),
        kernel_source,
        app: app.flatten(),
        cmdline,
        cmd,
        entrypoint,
        envs,
    })
}

/// A hashicorp/go-version style version: `v0.1`, `0.1`, `0.1.0`, `0.1-rc1`.
/// Returns the numeric segments and whether it is a pre-release.
fn parse_version(s: &str) -> Option<(Vec<u64>, bool)> {
    let s = s.trim();
    let s = s.strip_prefix('v').unwrap_or(s);
    let s = s.split('+').next().unwrap_or(s);
    let (core, pre) = match s.split_once('-') {
        Some((core, pre)) if !pre.is_empty() => (core, true),
        Some(_) => return None,
        None => (s, false),
    };
    let mut segments = Vec::new();
    for part in core.split('.') {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        segments.push(part.parse().ok()?);
    }
    Some((segments, pre))
}

/// Whether version `a` is newer than `b` (missing segments count as 0; a
/// pre-release is older than its release).
fn newer(a: &(Vec<u64>, bool), b: &(Vec<u64>, bool)) -> bool {
    let n = a.0.len().max(b.0.len());
    for i in 0..n {
        let x = a.0.get(i).copied().unwrap_or(0);
        let y = b.0.get(i).copied().unwrap_or(0);
        if x != y {
            return x > y;
        }
    }
    !a.1 && b.1
}

fn version(ctx: &mut Ctx, top: &Section) -> Option<Spanned<String>> {
    let v = required_string(
        ctx,
        top,
        "version",
        "add `version: 0.1` at the top of the file",
    )?;
    let Some(parsed) = parse_version(&v.value) else {
        ctx.error(
            v.pos,
            format!("cannot read `{}` as a BunnyFile version", v.value),
            format!("write `version: {SUPPORTED_VERSION}`"),
        );
        return None;
    };
    let supported = parse_version(SUPPORTED_VERSION)?;
    if newer(&parsed, &supported) {
        ctx.error(
            v.pos,
            format!(
                "BunnyFile version `{}` is newer than this bunny supports ({SUPPORTED_VERSION})",
                v.value
            ),
            format!("use version {SUPPORTED_VERSION} or earlier"),
        );
        return None;
    }
    Some(v)
}

fn known_framework_names() -> Vec<&'static str> {
    frameworks::known()
        .iter()
        .map(|f| f.name())
        .chain(frameworks::generic::URUNC_GUESTS.iter().copied())
        .collect()
}

fn platforms(ctx: &mut Ctx, top: &Section) -> Option<Platforms> {
    let Some(e) = top.get("platforms") else {
        ctx.error(
            top.pos,
            "`platforms` is missing; it is required",
            "add `platforms:` with `framework: NAME` and `monitor: MONITOR` under it",
        );
        return None;
    };
    let sec = section(
        ctx,
        e.value,
        "platforms",
        e.key_pos,
        PLATFORM_KEYS,
        "write `platforms:` followed by indented `framework: unikraft` and `monitor: qemu` lines",
    )?;
    let names = known_framework_names();
    let framework = required_string(
        ctx,
        &sec,
        "framework",
        &format!(
            "add `framework: NAME`; known frameworks: {}",
            one_of(&names)
        ),
    );
    let version = string(ctx, &sec, "version").ok().flatten();
    let monitor = required_string(
        ctx,
        &sec,
        "monitor",
        &format!("add `monitor: NAME`, one of {}", one_of(Monitor::ALL)),
    )
    .and_then(|m| match Monitor::parse(&m.value) {
        Some(value) => Some(Spanned { value, pos: m.pos }),
        None => {
            let all: Vec<&str> = Monitor::ALL.iter().map(|m| m.as_str()).collect();
            let hint = suggest(&m.value, &all)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            ctx.error(
                m.pos,
                format!("unknown monitor `{}`{hint}", m.value),
                format!("use one of {}", one_of(Monitor::ALL)),
            );
            None
        }
    });
    let architecture = match string(ctx, &sec, "architecture") {
        Ok(Some(a)) => match Arch::parse(&a.value) {
            Some(value) => Some(Spanned { value, pos: a.pos }),
            None => {
                ctx.error(
                    a.pos,
                    format!("unknown architecture `{}`", a.value),
                    "use `x86`, `x86_64` or `amd64` (all amd64), or `arm64` or `aarch64` (both arm64)",
                );
                None
            }
        },
        Ok(None) => Some(Spanned {
            value: Arch::host(),
            pos: sec.pos,
        }),
        Err(()) => None,
    };
    if let Some(fw) = &framework {
        if !frameworks::resolve(&fw.value).is_known() {
            let (message, help) = match suggest(&fw.value, &names) {
                Some(s) => (
                    format!(
                        "unknown framework `{}` (did you mean `{s}`?): it will be packaged generically",
                        fw.value
                    ),
                    format!("write `framework: {s}`; known frameworks: {}", one_of(&names)),
                ),
                None => (
                    format!(
                        "unknown framework `{}`: it will be packaged generically",
                        fw.value
                    ),
                    format!(
                        "known frameworks: {}; others get every monitor and rootfs type, unchecked",
                        one_of(&names)
                    ),
                ),
            };
            ctx.warn(fw.pos, message, help);
        }
    }
    Some(Platforms {
        framework: framework?,
        version,
        monitor: monitor?,
        architecture: architecture?,
    })
}

/// Why `s` is not an image reference, if it is not one.
fn image_ref_problem(s: &str) -> Option<String> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("it contains whitespace".into());
    }
    if s.starts_with(['/', '.', '-']) {
        return Some(
            "it looks like a path; a file in the build context is `from: local` with `path: FILE`"
                .into(),
        );
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@')))
    {
        return Some(format!("`{c}` cannot appear in an image reference"));
    }
    if s.ends_with(['/', ':', '@']) {
        return Some("it is incomplete".into());
    }
    None
}

/// Reads a `from` value: `local`, `scratch` (where allowed) or an image.
fn source(ctx: &mut Ctx, s: &Spanned<String>, what: &str, allow_scratch: bool) -> Option<Source> {
    let choices = if allow_scratch {
        "`scratch`, `local` or an image reference"
    } else {
        "`local` or an image reference"
    };
    match s.value.as_str() {
        "local" => return Some(Source::Local),
        "scratch" if allow_scratch => return Some(Source::Scratch),
        "scratch" => {
            ctx.error(
                s.pos,
                format!("`{what}` cannot be `scratch`"),
                format!("write {choices}, e.g. `local` for the build context or `{IMAGE_EXAMPLE}`"),
            );
            return None;
        }
        _ => {}
    }
    if let Some(problem) = image_ref_problem(&s.value) {
        ctx.error(
            s.pos,
            format!("`{what}: {}` is not {choices}: {problem}", s.value),
            format!("write `local` for the build context, or an image like `{IMAGE_EXAMPLE}`"),
        );
        return None;
    }
    let keywords: &[&str] = if allow_scratch {
        &["local", "scratch"]
    } else {
        &["local"]
    };
    if !s.value.contains(['/', ':', '.', '@']) {
        if let Some(k) = suggest(&s.value, keywords) {
            ctx.warn(
                s.pos,
                format!(
                    "`{what}: {}` is read as an image reference (did you mean `{k}`?)",
                    s.value
                ),
                format!("write `{k}` if you meant it, or a full image reference to silence this"),
            );
        }
    }
    Some(Source::Image(s.value.clone()))
}

/// Makes an include destination absolute and clean; `..` is refused.
fn normalize_destination(dst: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for part in dst.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("it contains `..`".into()),
            p => parts.push(p),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    // A trailing slash says "into this directory", as in a Containerfile COPY.
    if dst.ends_with('/') && out != "/" {
        out.push('/');
    }
    Ok(out)
}

fn include_entry(ctx: &mut Ctx, item: &Node, index: usize) -> Option<Include> {
    let string_help = "write `SOURCE:DESTINATION` (e.g. `conf/:/conf`; DESTINATION defaults to SOURCE) or a mapping with `source`, `destination` and optionally `from`";
    let (from, source, destination, dst_pos) = match &item.value {
        Value::Scalar { text, .. } if !item.is_null() => {
            let (src, dst) = match text.split_once(':') {
                Some((src, dst)) => (src, dst),
                None => (text.as_str(), ""),
            };
            if src.is_empty() {
                ctx.error(
                    item.pos,
                    format!("include entry `{text}` has no source before the `:`"),
                    string_help,
                );
                return None;
            }
            let dst = if dst.is_empty() { src } else { dst };
            (Source::Local, src.to_string(), dst.to_string(), item.pos)
        }
        Value::Map(_) => {
            let name = format!("rootfs.include[{index}]");
            let sec = section(ctx, item, &name, item.pos, INCLUDE_KEYS, string_help)?;
            let from = match string(ctx, &sec, "from") {
                Ok(Some(f)) => source(ctx, &f, &format!("{name}.from"), false)?,
                Ok(None) => Source::Local,
                Err(()) => return None,
            };
            let src = required_string(
                ctx,
                &sec,
                "source",
                "add `source: PATH`, the file or directory to copy",
            )?;
            let dst = match string(ctx, &sec, "destination") {
                Ok(Some(d)) => d,
                Ok(None) => src.clone(),
                Err(()) => return None,
            };
            (from, src.value, dst.value, dst.pos)
        }
        _ => {
            ctx.error(
                item.pos,
                format!(
                    "`rootfs.include` entries are strings or mappings, found {}",
                    item.kind()
                ),
                string_help,
            );
            return None;
        }
    };
    match normalize_destination(&destination) {
        Ok(destination) => Some(Include {
            from,
            source,
            destination,
            pos: item.pos,
        }),
        Err(problem) => {
            ctx.error(
                dst_pos,
                format!("include destination `{destination}` is not allowed: {problem}"),
                "write an absolute path inside the rootfs, e.g. `/etc/app.conf`",
            );
            None
        }
    }
}

fn rootfs(ctx: &mut Ctx, top: &Section) -> Option<Rootfs> {
    let Some(e) = top.get("rootfs") else {
        return Some(Rootfs {
            from: Spanned {
                value: Source::Scratch,
                pos: top.pos,
            },
            path: None,
            kind: None,
            include: Vec::new(),
        });
    };
    let sec = section(
        ctx,
        e.value,
        "rootfs",
        e.key_pos,
        ROOTFS_KEYS,
        "write `rootfs:` followed by indented `from:`, `path:`, `type:` or `include:` lines",
    )?;
    let from = match string(ctx, &sec, "from") {
        Ok(Some(f)) => {
            source(ctx, &f, "rootfs.from", true).map(|value| Spanned { value, pos: f.pos })
        }
        Ok(None) => Some(Spanned {
            value: Source::Scratch,
            pos: e.key_pos,
        }),
        Err(()) => None,
    };
    let path = string(ctx, &sec, "path");
    let kind = match string(ctx, &sec, "type") {
        Ok(Some(t)) => match RootfsType::parse(&t.value) {
            Some(value) => Ok(Some(Spanned { value, pos: t.pos })),
            None => {
                let all: Vec<&str> = RootfsType::ALL.iter().map(|t| t.as_str()).collect();
                let hint = suggest(&t.value, &all)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                ctx.error(
                    t.pos,
                    format!("unknown rootfs type `{}`{hint}", t.value),
                    format!("use one of {}", one_of(RootfsType::ALL)),
                );
                Err(())
            }
        },
        Ok(None) => Ok(None),
        Err(()) => Err(()),
    };
    let mut include = Vec::new();
    let mut include_ok = true;
    let include_pos = sec.get("include").map(|i| i.key_pos);
    if let Some(i) = sec.get("include") {
        match &i.value.value {
            _ if i.value.is_null() => {}
            Value::Seq(items) => {
                for (n, item) in items.iter().enumerate() {
                    match include_entry(ctx, item, n) {
                        Some(inc) => include.push(inc),
                        None => include_ok = false,
                    }
                }
            }
            _ => {
                ctx.error(
                    i.value.pos,
                    format!("`rootfs.include` expects a list, found {}", i.value.kind()),
                    "write one `- SOURCE:DESTINATION` line per file under `include:`",
                );
                include_ok = false;
            }
        }
    }
    let (Some(from), Ok(path), Ok(kind)) = (from, path, kind) else {
        return None;
    };
    if !include_ok {
        return None;
    }
    rootfs_rules(
        ctx,
        &from,
        path.as_ref(),
        kind.as_ref(),
        &include,
        include_pos,
    );
    Some(Rootfs {
        from,
        path,
        kind,
        include,
    })
}

/// The Go bunny's rootfs rules, plus the image-without-path case its code
/// treats as "reuse the image's filesystem as a raw rootfs".
fn rootfs_rules(
    ctx: &mut Ctx,
    from: &Spanned<Source>,
    path: Option<&Spanned<String>>,
    kind: Option<&Spanned<RootfsType>>,
    include: &[Include],
    include_pos: Option<Pos>,
) {
    let raw = kind.filter(|k| k.value == RootfsType::Raw);
    match (&from.value, path) {
        (Source::Scratch, Some(p)) => ctx.error(
            p.pos,
            "`rootfs.path` names a prebuilt rootfs file, but `from` is `scratch` (the default), which builds one",
            "write `from: local` (a file in the build context) or `from: IMAGE` (a file in an image), or remove `path` and list files in `include`",
        ),
        (Source::Local, None) => ctx.error(
            from.pos,
            "`rootfs.from: local` needs `path`, the prebuilt rootfs file in the build context",
            "add `path: FILE`, or use `from: scratch` with `include` to build the rootfs",
        ),
        _ => {}
    }
    if let (Some(p), Some(_)) = (path, raw) {
        ctx.error(
            p.pos,
            "`rootfs.path` cannot be combined with `type: raw`: a raw rootfs is the image's own files, not a rootfs file",
            "remove `path` (with `from: IMAGE` or `scratch` + `include`), or use `type: initrd` or `type: block` for a prebuilt file",
        );
    }
    if let (Source::Local, Some(k)) = (&from.value, raw) {
        ctx.error(
            k.pos,
            "a `raw` rootfs cannot come `from: local`",
            "use `from: scratch` with `include` to copy local files, or `from: IMAGE` to reuse an image's files",
        );
    }
    if let (Source::Image(_), None, Some(k)) = (&from.value, path, kind) {
        if k.value != RootfsType::Raw {
            ctx.error(
                k.pos,
                format!(
                    "`rootfs.from` is an image without `path`, so its files are the rootfs; that is a `raw` rootfs, not `{}`",
                    k.value
                ),
                "add `path:` naming the rootfs file inside the image, or write `type: raw`",
            );
        }
    }
    if let Some(pos) = include_pos.filter(|_| !include.is_empty()) {
        match (&from.value, path) {
            (Source::Local, _) | (Source::Image(_), Some(_)) => ctx.error(
                pos,
                "adding files to an existing rootfs file is not supported yet",
                "use `from: scratch` (the default) and list every file in `include`, or add the files when building the rootfs file",
            ),
            _ => {}
        }
    }
}

enum KernelEntry {
    File(Option<Kernel>),
    Source(crate::build::kernel::KernelSource),
    /// Already reported.
    Invalid,
}

fn kernel(ctx: &mut Ctx, top: &Section, framework: Option<&str>) -> Option<KernelEntry> {
    let e = top.get("kernel")?;
    let Some(sec) = section(
        ctx,
        e.value,
        "kernel",
        e.key_pos,
        KERNEL_KEYS,
        "write `kernel:` followed by indented `from: local` and `path: FILE` lines",
    ) else {
        return Some(KernelEntry::File(None));
    };
    let from = required_string(
        ctx,
        &sec,
        "from",
        "add `from: local` (a file in the build context), `from: IMAGE` (a file inside an image) or `from: source` (build it)",
    );
    if from.as_ref().is_some_and(|f| f.value == "source") {
        return Some(kernel_from_source(ctx, &sec, framework));
    }
    for key in ["source", "config", "toolchain"] {
        if let Some(k) = sec.get(key) {
            ctx.error(
                k.key_pos,
                format!("`kernel.{key}` is for a kernel built from source"),
                format!("add `from: source` to build the kernel, or remove `{key}`; {KERNEL_SOURCE_EXAMPLE}"),
            );
        }
    }
    let path = required_string(
        ctx,
        &sec,
        "path",
        "add `path: FILE`, the kernel's path in the build context or inside the image",
    );
    let from = from.and_then(|f| {
        source(ctx, &f, "kernel.from", false).map(|value| Spanned { value, pos: f.pos })
    });
    Some(KernelEntry::File(match (from, path) {
        (Some(from), Some(path)) => Some(Kernel { from, path }),
        _ => None,
    }))
}

/// `kernel: {from: source, source: ..., config: ..., toolchain: ...}`.
fn kernel_from_source(ctx: &mut Ctx, sec: &Section, framework: Option<&str>) -> KernelEntry {
    use crate::build::kernel::{KernelConfig, KernelSource, SourceRef, FREEBSD_BASES, LINUX_BASES};
    let errors = ctx.diags.len();
    if let Some(p) = sec.get("path") {
        ctx.error(
            p.key_pos,
            "`kernel.path` names a prebuilt kernel; a kernel `from: source` is built",
            format!("remove `path`; {KERNEL_SOURCE_EXAMPLE}"),
        );
    }
    let bases: &[&str] = match framework {
        Some("linux") | None => LINUX_BASES,
        Some("freebsd") => FREEBSD_BASES,
        Some(other) => {
            ctx.error(
                sec.pos,
                format!("`kernel.from: source` builds linux and freebsd kernels, not `{other}`'s"),
                "use `from: local` or an image for a prebuilt kernel, or `app` to build a unikernel",
            );
            &[]
        }
    };
    let source = required_string(
        ctx,
        sec,
        "source",
        &format!("add `source:`: `debian:linux-source-6.1`, a tarball or tree in the build context, or `https://...tar.xz#sha256=HEX`; {KERNEL_SOURCE_EXAMPLE}"),
    )
    .and_then(|s| match SourceRef::parse(&s.value) {
        Ok(value) => Some(Spanned { value, pos: s.pos }),
        Err(message) => {
            ctx.error(s.pos, format!("`kernel.source`: {message}"), KERNEL_SOURCE_EXAMPLE);
            None
        }
    });
    let toolchain = string(ctx, sec, "toolchain").ok().flatten();
    let config = match sec.get("config") {
        None => {
            ctx.error(
                sec.pos,
                "`config` in `kernel` is missing; it is required with `from: source`",
                format!("add `config: minimal` (bunny's minimal Linux config) or `config: {{base: {}, fragments: [FILE]}}`", bases.first().unwrap_or(&"BASE")),
            );
            None
        }
        Some(c) => match &c.value.value {
            Value::Scalar { text, .. } if text == "minimal" => {
                if framework == Some("freebsd") {
                    ctx.error(
                        c.value.pos,
                        "`config: minimal` is bunny's Linux fragment; a freebsd kernel names its KERNCONF",
                        "write `config: {base: FIRECRACKER}` (or GENERIC, MINIMAL, a config file), with `fragments` to drop devices",
                    );
                    None
                } else {
                    Some(KernelConfig::minimal(c.value.pos))
                }
            }
            Value::Scalar { text, .. } => {
                ctx.error(
                    c.value.pos,
                    format!("`kernel.config: {text}` is not a configuration"),
                    "write `config: minimal`, or a mapping with `base`, `fragments`, `set`, `unset`",
                );
                None
            }
            _ => kernel_config(ctx, c, bases, framework),
        },
    };
    if ctx.diags.len() > errors && ctx.has_errors() {
        return KernelEntry::Invalid;
    }
    match (source, config) {
        (Some(source), Some(config)) => KernelEntry::Source(KernelSource {
            source,
            config,
            toolchain,
            pos: sec.pos,
        }),
        _ => KernelEntry::Invalid,
    }
}

fn kernel_config(
    ctx: &mut Ctx,
    entry: &Entry,
    bases: &[&str],
    framework: Option<&str>,
) -> Option<crate::build::kernel::KernelConfig> {
    use crate::build::kernel::{ConfigBase, Fragment, KernelConfig};
    let sec = section(
        ctx,
        entry.value,
        "kernel.config",
        entry.key_pos,
        KERNEL_CONFIG_KEYS,
        "write `config:` followed by indented `base: tinyconfig` and `fragments: [FILE]` lines",
    )?;
    let base = required_string(
        ctx,
        &sec,
        "base",
        &format!(
            "add `base:`: one of {} or a config file in the build context",
            keys_list(bases)
        ),
    )?;
    let base_value = if bases.contains(&base.value.as_str()) {
        ConfigBase::Named(base.value.clone())
    } else if base.value.contains(['/', '.']) {
        ConfigBase::File(base.value.clone())
    } else {
        let hint = suggest(&base.value, bases)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        ctx.error(
            base.pos,
            format!(
                "`kernel.config.base: {}` is neither a known base nor a file{hint}",
                base.value
            ),
            format!(
                "write one of {}, or a path in the build context (`./{}`)",
                keys_list(bases),
                base.value
            ),
        );
        return None;
    };
    let fragments = string_list(
        ctx,
        &sec,
        "fragments",
        "write `fragments: [kernel/extra.config]` (files in the build context; `minimal` is bunny's)",
    )
    .into_iter()
    .map(|f| Spanned {
        value: if f.value == "minimal" && framework != Some("freebsd") {
            Fragment::Minimal
        } else {
            Fragment::File(f.value.clone())
        },
        pos: f.pos,
    })
    .collect();
    let valid_name = |n: &str| {
        n.strip_prefix("CONFIG_").is_some_and(|r| {
            !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
    };
    let mut set = Vec::new();
    if let Some(e) = sec.get("set") {
        match &e.value.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    match (&k.value, &v.value) {
                        (Value::Scalar { text: name, .. }, Value::Scalar { text: value, .. })
                            if valid_name(name) && !value.is_empty() && !value.contains('\n') =>
                        {
                            set.push(Spanned {
                                value: (name.clone(), value.clone()),
                                pos: k.pos,
                            })
                        }
                        _ => ctx.error(
                            k.pos,
                            "`kernel.config.set` takes `CONFIG_NAME: VALUE` entries",
                            "e.g. `set: {CONFIG_HZ_100: y, CONFIG_NR_CPUS: 4}`",
                        ),
                    }
                }
            }
            _ if e.value.is_null() => {}
            _ => ctx.error(
                e.value.pos,
                format!(
                    "`kernel.config.set` expects a mapping, found {}",
                    e.value.kind()
                ),
                "e.g. `set: {CONFIG_HZ_100: y}`",
            ),
        }
    }
    let unset: Vec<_> = string_list(ctx, &sec, "unset", "e.g. `unset: [CONFIG_ACPI]`")
        .into_iter()
        .filter(|u| {
            let ok = valid_name(&u.value);
            if !ok {
                ctx.error(
                    u.pos,
                    format!(
                        "`{}` in `kernel.config.unset` is not a CONFIG_ name",
                        u.value
                    ),
                    "e.g. `unset: [CONFIG_ACPI]`",
                );
            }
            ok
        })
        .collect();
    if framework == Some("freebsd") {
        if let Some(e) = sec.get("set").or_else(|| sec.get("unset")) {
            ctx.error(
                e.key_pos,
                "`set`/`unset` are Linux options; a freebsd kernel config takes fragment files",
                "write `options NAME`, `nooptions NAME` or `nodevice NAME` lines in a file and list it in `fragments`",
            );
        }
    }
    Some(KernelConfig {
        base: Spanned {
            value: base_value,
            pos: base.pos,
        },
        fragments,
        set,
        unset,
    })
}

fn app(ctx: &mut Ctx, top: &Section) -> Option<Option<App>> {
    let e = top.get("app")?;
    let Some(sec) = section(
        ctx,
        e.value,
        "app",
        e.key_pos,
        APP_KEYS,
        "write `app:` followed by indented `name:`, `from:` and `branch:` lines",
    ) else {
        return Some(None);
    };
    let name = required_string(
        ctx,
        &sec,
        "name",
        "add `name: NAME`, the application to build",
    );
    let packages = packages(ctx, &sec);
    let repository = repository(ctx, &sec);
    // An app made only of packages needs no sources: `from` defaults to
    // `packages` then.
    let from = match string(ctx, &sec, "from") {
        Ok(None) if !packages.is_empty() && sec.get("from").is_none() => Some(Spanned {
            value: FROM_PACKAGES.to_string(),
            pos: e.key_pos,
        }),
        _ => required_string(
            ctx,
            &sec,
            "from",
            "add `from: GIT-URL` (the repository to build), `from: local`, or `packages:`",
        ),
    };
    if let Some(f) = from.as_ref().filter(|f| f.value == FROM_PACKAGES) {
        if packages.is_empty() {
            ctx.error(
                f.pos,
                "`from: packages` in `app` needs a `packages` list",
                PACKAGES_EXAMPLE,
            );
        }
    }
    let branch = string(ctx, &sec, "branch").ok().flatten();
    if let Some(f) = &from {
        // A repository needs a branch (the Go bunny's rule); a directory in
        // the context or an image reference (our extension) does not.
        let is_repository =
            f.value.contains("://") || f.value.starts_with("git@") || f.value.ends_with(".git");
        if f.value != "local"
            && is_repository
            && branch.is_none()
            && sec.get("branch").is_none_or(|b| b.value.is_null())
        {
            ctx.error(
                sec.get("branch").map(|b| b.key_pos).unwrap_or(sec.pos),
                "`branch` in `app` is required when `from` is a repository",
                "add `branch: NAME` (e.g. `branch: main`), or use `from: local`",
            );
        }
    }
    let path = string(ctx, &sec, "path").ok().flatten();
    let language = string(ctx, &sec, "language").ok().flatten();
    let shell = match string(ctx, &sec, "shell").ok().flatten() {
        None => false,
        Some(s) => match s.value.as_str() {
            "true" => true,
            "false" => false,
            other => {
                ctx.error(
                    s.pos,
                    format!("`app.shell` expects true or false, found `{other}`"),
                    "write `shell: true` to keep busybox and a shell init in the guest",
                );
                false
            }
        },
    };
    Some(match (name, from) {
        (Some(name), Some(from)) => Some(App {
            name,
            from,
            branch,
            path,
            language,
            packages,
            repository,
            shell,
            pos: e.key_pos,
        }),
        _ => None,
    })
}

/// `app.packages`: names, or mappings with `name` and `version`.
fn packages(ctx: &mut Ctx, app: &Section) -> Vec<PackageReq> {
    let Some(e) = app.get("packages") else {
        return Vec::new();
    };
    if e.value.is_null() {
        return Vec::new();
    }
    let Value::Seq(items) = &e.value.value else {
        ctx.error(
            e.value.pos,
            format!("`app.packages` expects a list, found {}", e.value.kind()),
            PACKAGES_EXAMPLE,
        );
        return Vec::new();
    };
    let mut out: Vec<PackageReq> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let req = match &item.value {
            Value::Scalar { text, .. } if !item.is_null() && !text.is_empty() => PackageReq {
                name: text.clone(),
                version: None,
                pos: item.pos,
            },
            Value::Map(_) => {
                let name = format!("app.packages[{index}]");
                let Some(sec) = section(ctx, item, &name, item.pos, PACKAGE_KEYS, PACKAGES_EXAMPLE)
                else {
                    continue;
                };
                let Some(n) = required_string(
                    ctx,
                    &sec,
                    "name",
                    "add `name: PACKAGE`, e.g. `name: iperf3`",
                ) else {
                    continue;
                };
                PackageReq {
                    name: n.value,
                    version: string(ctx, &sec, "version").ok().flatten().map(|v| v.value),
                    pos: item.pos,
                }
            }
            _ => {
                ctx.error(
                    item.pos,
                    format!(
                        "`app.packages` entries are names or mappings, found {}",
                        item.kind()
                    ),
                    PACKAGES_EXAMPLE,
                );
                continue;
            }
        };
        if req.name.contains(['/', ' ', '\t']) {
            ctx.error(
                req.pos,
                format!("`{}` is not a package name", req.name),
                "write the package's name as the catalogue has it, e.g. `iperf3`",
            );
            continue;
        }
        if let Some(first) = out.iter().find(|p| p.name == req.name) {
            ctx.error(
                req.pos,
                format!(
                    "package `{}` is listed twice (first at line {})",
                    req.name, first.pos.line
                ),
                "keep only one entry",
            );
            continue;
        }
        out.push(req);
    }
    out
}

/// `app.repository`: `url` and `abi`, both optional.
fn repository(ctx: &mut Ctx, app: &Section) -> Option<PackageRepository> {
    let e = app.get("repository")?;
    let sec = section(
        ctx,
        e.value,
        "app.repository",
        e.key_pos,
        REPOSITORY_KEYS,
        "write `repository:` followed by indented `url:` and `abi:` lines",
    )?;
    let url = string(ctx, &sec, "url").ok().flatten();
    if let Some(u) = &url {
        if !["http://", "https://", "file://"]
            .iter()
            .any(|p| u.value.starts_with(p))
        {
            ctx.error(
                u.pos,
                format!("repository url `{}` is not http, https or file", u.value),
                "write e.g. `url: https://pkg.freebsd.org/${ABI}/quarterly`",
            );
        }
    }
    let abi = string(ctx, &sec, "abi").ok().flatten();
    if let Some(a) = &abi {
        if a.value.split(':').count() != 3 {
            ctx.error(
                a.pos,
                format!("ABI `{}` is not OS:MAJOR:ARCH", a.value),
                "write e.g. `abi: FreeBSD:14:amd64`",
            );
        }
    }
    Some(PackageRepository {
        url,
        abi,
        pos: e.key_pos,
    })
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn envs(ctx: &mut Ctx, top: &Section) -> Vec<Spanned<String>> {
    let list = string_list(
        ctx,
        top,
        "envs",
        "write one `- KEY=VALUE` line per variable under `envs:`",
    );
    list.into_iter()
        .filter(|e| match e.value.split_once('=') {
            None => {
                ctx.error(
                    e.pos,
                    format!("environment entry `{}` has no `=`", e.value),
                    "write `KEY=VALUE`, e.g. `HOME=/root`",
                );
                false
            }
            Some((key, _)) if !valid_env_name(key) => {
                ctx.error(
                    e.pos,
                    format!("`{key}` is not a valid environment variable name"),
                    "a name starts with a letter or `_` and has only letters, digits and `_`",
                );
                false
            }
            Some(_) => true,
        })
        .collect()
}

/// Framework x monitor x architecture x rootfs type, from the support tables.
fn combinations(ctx: &mut Ctx, p: &Platforms, r: &Rootfs) {
    let fw = frameworks::resolve(&p.framework.value);
    let support = fw.support();
    if !support.monitors.contains(&p.monitor.value) {
        ctx.error(
            p.monitor.pos,
            format!(
                "framework `{}` does not run on monitor `{}`",
                fw.name(),
                p.monitor.value
            ),
            format!("use one of {}", one_of(support.monitors)),
        );
    }
    if !support.architectures.contains(&p.architecture.value) {
        ctx.error(
            p.architecture.pos,
            format!(
                "framework `{}` does not support architecture `{}`",
                fw.name(),
                p.architecture.value
            ),
            format!("use one of {}", one_of(support.architectures)),
        );
    }
    if let Some(k) = &r.kind {
        if !support.rootfs_types.contains(&k.value) {
            ctx.error(
                k.pos,
                format!(
                    "framework `{}` does not support rootfs type `{}`",
                    fw.name(),
                    k.value
                ),
                format!(
                    "use {}",
                    one_of(
                        &support
                            .rootfs_types
                            .iter()
                            .map(|t| format!("type: {t}"))
                            .collect::<Vec<_>>()
                    )
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_like_go_version() {
        let v = |s| parse_version(s).unwrap();
        assert!(!newer(&v("0.1"), &v("0.1")));
        assert!(!newer(&v("v0.1"), &v("0.1")));
        assert!(!newer(&v("0.1.0"), &v("0.1")));
        assert!(!newer(&v("0.0.9"), &v("0.1")));
        assert!(!newer(&v("0.1-rc1"), &v("0.1")));
        assert!(newer(&v("0.2.0"), &v("0.1")));
        assert!(newer(&v("0.1.1"), &v("0.1")));
        assert!(newer(&v("999.99"), &v("0.1")));
        assert!(parse_version("not.a.version").is_none());
        assert!(parse_version("").is_none());
        assert!(parse_version("1..2").is_none());
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("inclde", ROOTFS_KEYS), Some("include"));
        assert_eq!(
            suggest("rumpurn", &known_framework_names()),
            Some("rumprun")
        );
        assert_eq!(suggest("arch", PLATFORM_KEYS), Some("architecture"));
        assert_eq!(suggest("zzzzzz", ROOTFS_KEYS), None);
    }

    #[test]
    fn destinations_normalise() {
        assert_eq!(normalize_destination("conf").unwrap(), "/conf");
        assert_eq!(normalize_destination("/conf/").unwrap(), "/conf/");
        assert_eq!(normalize_destination("./a//b/./c").unwrap(), "/a/b/c");
        assert_eq!(normalize_destination("/").unwrap(), "/");
        assert!(normalize_destination("../etc").is_err());
    }

    #[test]
    fn env_names() {
        assert!(valid_env_name("HOME"));
        assert!(valid_env_name("_x1"));
        assert!(!valid_env_name("1X"));
        assert!(!valid_env_name(""));
        assert!(!valid_env_name("A-B"));
    }
}
