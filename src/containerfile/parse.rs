//! Containerfile syntax: logical lines (comments, `\` continuations),
//! instruction words, quoting, JSON exec form and `ARG` substitution.

use std::collections::BTreeMap;

use super::{Base, Containerfile, CopyInstr};
use crate::bunnyfile::{Diagnostic, Pos, Severity};

/// Every instruction Docker knows, for format detection and messages.
pub const INSTRUCTIONS: &[&str] = &[
    "FROM",
    "ARG",
    "COPY",
    "ADD",
    "LABEL",
    "ENV",
    "CMD",
    "ENTRYPOINT",
    "WORKDIR",
    "USER",
    "EXPOSE",
    "RUN",
    "HEALTHCHECK",
    "VOLUME",
    "SHELL",
    "ONBUILD",
    "STOPSIGNAL",
    "MAINTAINER",
];

/// One instruction after joining continuation lines.
struct Logical {
    pos: Pos,
    word: String,
    /// Where the arguments start.
    rest_pos: Pos,
    rest: String,
}

fn logical_lines(text: &str) -> Vec<Logical> {
    let mut out = Vec::new();
    let mut cur: Option<Logical> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let line = if i == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        let trimmed = line.trim_start();
        // Comments are whole lines, also between continuation lines.
        if trimmed.starts_with('#') {
            continue;
        }
        let (body, continues) = match line.trim_end().strip_suffix('\\') {
            Some(b) => (b, true),
            None => (line, false),
        };
        match cur.as_mut() {
            Some(l) => {
                l.rest.push(' ');
                l.rest.push_str(body.trim());
            }
            None => {
                if trimmed.is_empty() {
                    continue;
                }
                let indent = line.chars().count() - trimmed.chars().count();
                let body_trim = body.trim_start();
                let word_len = body_trim
                    .find(char::is_whitespace)
                    .unwrap_or(body_trim.len());
                let word = body_trim[..word_len].to_string();
                let after = &body_trim[word_len..];
                let rest = after.trim_start();
                let rest_col = indent + word.chars().count() + (after.len() - rest.len());
                cur = Some(Logical {
                    pos: Pos {
                        line: i + 1,
                        col: indent + 1,
                    },
                    word,
                    rest_pos: Pos {
                        line: i + 1,
                        col: rest_col + 1,
                    },
                    rest: rest.trim_end().to_string(),
                });
            }
        }
        if !continues {
            if let Some(l) = cur.take() {
                out.push(l);
            }
        }
    }
    if let Some(l) = cur.take() {
        out.push(l);
    }
    out
}

/// Whether `text` is a Containerfile: its first line that is neither empty
/// nor a comment starts with a Dockerfile instruction (FROM, ARG, ...).
pub fn is_containerfile(text: &str) -> bool {
    for line in text.lines() {
        let t = line.trim_start_matches('\u{feff}').trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let word = t.split_whitespace().next().unwrap_or("");
        return INSTRUCTIONS.iter().any(|i| i.eq_ignore_ascii_case(word));
    }
    false
}

struct Ctx<'a> {
    file: &'a str,
    diags: Vec<Diagnostic>,
    args: BTreeMap<String, String>,
}

impl Ctx<'_> {
    fn error(&mut self, pos: Pos, message: impl Into<String>, help: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.file.to_string(),
            pos,
            message: message.into(),
            help: Some(help.into()),
            severity: Severity::Error,
        });
    }
    fn warn(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.file.to_string(),
            pos,
            message: message.into(),
            help: None,
            severity: Severity::Warning,
        });
    }

    /// `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alt}` from ARGs (and
    /// ENVs set so far); `\$` is a literal dollar.
    fn subst(&mut self, pos: Pos, s: &str, env: &BTreeMap<String, String>) -> String {
        let lookup = |n: &str| env.get(n).or_else(|| self.args.get(n)).cloned();
        let mut out = String::new();
        let chars: Vec<char> = s.chars().collect();
        let mut i = 0;
        let mut bad = None;
        while i < chars.len() {
            let c = chars[i];
            if c == '\\' && chars.get(i + 1) == Some(&'$') {
                out.push('$');
                i += 2;
                continue;
            }
            if c != '$' {
                out.push(c);
                i += 1;
                continue;
            }
            if chars.get(i + 1) == Some(&'{') {
                let Some(close) = chars[i + 2..].iter().position(|&c| c == '}') else {
                    bad = Some("`${` without a closing `}`");
                    out.extend(&chars[i..]);
                    break;
                };
                let inner: String = chars[i + 2..i + 2 + close].iter().collect();
                let (name, op) = match inner.find(':') {
                    Some(k) => (&inner[..k], Some(&inner[k + 1..])),
                    None => (inner.as_str(), None),
                };
                let val = lookup(name);
                match op {
                    None => out.push_str(&val.unwrap_or_default()),
                    Some(o) if o.starts_with('-') => match val {
                        Some(v) if !v.is_empty() => out.push_str(&v),
                        _ => out.push_str(&o[1..]),
                    },
                    Some(o) if o.starts_with('+') => {
                        if val.is_some_and(|v| !v.is_empty()) {
                            out.push_str(&o[1..]);
                        }
                    }
                    Some(_) => bad = Some("unsupported `${VAR:...}` form; use `:-` or `:+`"),
                }
                i += 3 + close;
                continue;
            }
            let name: String = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .collect();
            if name.is_empty() {
                out.push('$');
                i += 1;
            } else {
                out.push_str(&lookup(&name).unwrap_or_default());
                i += 1 + name.chars().count();
            }
        }
        if let Some(m) = bad {
            self.error(
                pos,
                m,
                "write `${NAME}`, `${NAME:-default}` or `${NAME:+value}`",
            );
        }
        out
    }
}

/// Splits shell-like words: whitespace separates, `"..."` (with `\`
/// escapes) and `'...'` group, `\x` outside quotes is `x`.
fn words(s: &str) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match it.next() {
                        None => return Err("a `\"` is not closed"),
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some(n) => cur.push(n),
                            None => return Err("a `\"` is not closed"),
                        },
                        Some(n) => cur.push(n),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match it.next() {
                        None => return Err("a `'` is not closed"),
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = it.next() {
                    cur.push(n);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `KEY=VALUE ...` pairs, or the legacy `KEY VALUE` form.
fn pairs(rest: &str) -> Result<Vec<(String, String)>, &'static str> {
    let first = rest.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let mut it = rest.splitn(2, char::is_whitespace);
        let k = it.next().unwrap_or("").to_string();
        let v = it.next().unwrap_or("").trim();
        let v = words(v)?.join(" ");
        if k.is_empty() {
            return Err("expected KEY=VALUE");
        }
        return Ok(vec![(k, v)]);
    }
    words(rest)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err("expected KEY=VALUE"),
        })
        .collect()
}

/// `["a", "b"]` (exec form) or `None` when `rest` is not a JSON string array.
fn json_array(rest: &str) -> Option<Vec<String>> {
    if !rest.trim_start().starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(rest).ok()
}

/// Exec form as is; shell form through `/bin/sh -c`, as Docker does.
fn command(rest: &str) -> Vec<String> {
    match json_array(rest) {
        Some(v) => v,
        None if rest.is_empty() => Vec::new(),
        None => vec!["/bin/sh".into(), "-c".into(), rest.to_string()],
    }
}

/// `--name=value` flags in front of the arguments.
fn flags(rest: &str) -> (Vec<(String, String)>, &str) {
    let mut flags = Vec::new();
    let mut r = rest;
    while let Some(f) = r.strip_prefix("--") {
        let end = f.find(char::is_whitespace).unwrap_or(f.len());
        let (name, value) = f[..end].split_once('=').unwrap_or((&f[..end], ""));
        flags.push((name.to_string(), value.to_string()));
        r = f[end..].trim_start();
    }
    (flags, r)
}

pub(super) fn parse(file: &str, text: &str) -> (Option<Containerfile>, Vec<Diagnostic>) {
    let mut cx = Ctx {
        file,
        diags: Vec::new(),
        args: BTreeMap::new(),
    };
    let mut cf = Containerfile::default();
    let mut from_seen: Option<Pos> = None;
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for l in logical_lines(text) {
        let word = l.word.to_ascii_uppercase();
        let pos = l.pos;
        let rp = l.rest_pos;
        let rest = l.rest.as_str();
        if from_seen.is_none()
            && word != "FROM"
            && word != "ARG"
            && INSTRUCTIONS.contains(&word.as_str())
        {
            cx.error(
                pos,
                format!("`{word}` before `FROM`"),
                "start with `FROM scratch` or `FROM IMAGE` (only `ARG` may come before it)",
            );
            continue;
        }
        let needs_args = !matches!(word.as_str(), "CMD" | "ENTRYPOINT");
        if needs_args && rest.is_empty() && INSTRUCTIONS.contains(&word.as_str()) {
            cx.error(
                pos,
                format!("`{word}` needs arguments"),
                format!("see docs/containerfile.md for `{word}`"),
            );
            continue;
        }
        match word.as_str() {
            "FROM" => {
                if let Some(first) = from_seen {
                    cx.error(
                        pos,
                        format!(
                            "a second `FROM` (the first is on line {}): multi-stage builds are not supported",
                            first.line
                        ),
                        "build one image per Containerfile; copy files from another image with `COPY --from=IMAGE`",
                    );
                    continue;
                }
                from_seen = Some(pos);
                let (fl, r) = flags(rest);
                for (name, _) in fl {
                    if name != "platform" {
                        cx.error(
                            rp,
                            format!("unknown `FROM` flag `--{name}`"),
                            "only `--platform` is accepted",
                        );
                    }
                }
                let r = cx.subst(rp, r, &env);
                let parts: Vec<&str> = r.split_whitespace().collect();
                let image = match parts.as_slice() {
                    [img] => img,
                    [img, a, _] if a.eq_ignore_ascii_case("as") => img,
                    _ => {
                        cx.error(
                            rp,
                            "`FROM` takes one image",
                            "write `FROM IMAGE` or `FROM scratch`",
                        );
                        continue;
                    }
                };
                cf.base = if image.eq_ignore_ascii_case("scratch") {
                    Base::Scratch
                } else {
                    Base::Image(image.to_string())
                };
                cf.from_pos = pos;
            }
            "ARG" => {
                for w in words(rest).unwrap_or_default() {
                    let (k, v) = match w.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (w.clone(), None),
                    };
                    let v = v.map(|v| cx.subst(rp, &v, &env));
                    cx.args.entry(k).or_insert_with(|| v.unwrap_or_default());
                }
            }
            "COPY" | "ADD" => {
                let (fl, r) = flags(rest);
                let mut from = None;
                for (name, value) in fl {
                    match name.as_str() {
                        "from" => from = Some(cx.subst(rp, &value, &env)),
                        "chown" | "chmod" | "link" => {
                            cx.warn(rp, format!("`--{name}` is ignored: files keep their mode and are owned by root"))
                        }
                        _ => cx.error(rp, format!("unknown `{word}` flag `--{name}`"), "`--from=IMAGE` is accepted"),
                    }
                }
                let list = match json_array(r) {
                    Some(v) => Ok(v),
                    None => words(r),
                };
                let list = match list {
                    Ok(v) => v
                        .into_iter()
                        .map(|s| cx.subst(rp, &s, &env))
                        .collect::<Vec<_>>(),
                    Err(m) => {
                        cx.error(rp, m, "close the quote");
                        continue;
                    }
                };
                let Some((dest, sources)) = list.split_last() else {
                    continue;
                };
                if sources.is_empty() {
                    cx.error(
                        rp,
                        format!("`{word}` needs a source and a destination"),
                        format!("write `{word} SRC DEST`"),
                    );
                    continue;
                }
                if word == "ADD" {
                    if let Some(u) = sources
                        .iter()
                        .find(|s| s.contains("://") || s.starts_with("git@"))
                    {
                        cx.error(rp, format!("`ADD {u}`: downloading URLs is not supported (builds are offline and reproducible)"), "download the file into the context and `COPY` it");
                        continue;
                    }
                    if let Some(a) = sources.iter().find(|s| {
                        [".tar", ".tgz", ".gz", ".xz", ".bz2", ".zst"]
                            .iter()
                            .any(|e| s.ends_with(e))
                    }) {
                        cx.error(
                            rp,
                            format!("`ADD {a}`: unpacking archives is not supported"),
                            "unpack it in the context and `COPY` the files",
                        );
                        continue;
                    }
                }
                let dest = if dest.starts_with('/') {
                    dest.clone()
                } else {
                    // Relative destinations are relative to WORKDIR, as in Docker.
                    format!(
                        "{}/{}",
                        cf.workdir.as_deref().unwrap_or("").trim_end_matches('/'),
                        dest
                    )
                };
                let dest = if sources.len() > 1 && !dest.ends_with('/') {
                    format!("{dest}/")
                } else {
                    dest
                };
                for s in sources {
                    cf.copies.push(CopyInstr {
                        from: from.clone(),
                        source: s.clone(),
                        dest: dest.clone(),
                        pos,
                    });
                }
            }
            "LABEL" | "ENV" => {
                let list = match pairs(rest) {
                    Ok(p) => p,
                    Err(m) => {
                        cx.error(
                            rp,
                            format!("`{word}`: {m}"),
                            format!("write `{word} KEY=VALUE` (quote values with spaces)"),
                        );
                        continue;
                    }
                };
                for (k, v) in list {
                    let k = cx.subst(rp, &k, &env);
                    let v = cx.subst(rp, &v, &env);
                    if word == "LABEL" {
                        cf.labels.insert(k, v);
                    } else {
                        env.insert(k.clone(), v.clone());
                        cf.env.retain(|(ek, _)| *ek != k);
                        cf.env.push((k, v));
                    }
                }
            }
            "CMD" => cf.cmd = Some(command(rest)),
            "ENTRYPOINT" => {
                cf.entrypoint = Some(command(rest));
                // Docker: a new ENTRYPOINT resets a CMD set before it.
                cf.cmd = None;
            }
            "WORKDIR" => {
                let w = cx.subst(rp, rest, &env);
                cf.workdir = Some(if w.starts_with('/') {
                    w
                } else {
                    format!(
                        "{}/{}",
                        cf.workdir.as_deref().unwrap_or("").trim_end_matches('/'),
                        w
                    )
                });
            }
            "USER" => {
                let u = cx.subst(rp, rest, &env);
                cf.user = Some(u);
                cf.user_pos = pos;
            }
            "EXPOSE" | "STOPSIGNAL" => {
                cx.warn(
                    pos,
                    format!("`{word}` has no effect on a unikernel image; ignored"),
                );
            }
            "MAINTAINER" => {
                cf.labels
                    .insert("org.opencontainers.image.authors".into(), rest.to_string());
            }
            "RUN" => cx.error(
                pos,
                "`RUN` is not supported: a unikernel image runs no commands while it is built",
                "build the files beforehand (or with a BunnyFile `app` section) and `COPY` them in",
            ),
            "HEALTHCHECK" | "VOLUME" | "SHELL" | "ONBUILD" => cx.error(
                pos,
                format!("`{word}` is not supported in a unikernel image"),
                "remove the instruction",
            ),
            _ => {
                let close = INSTRUCTIONS
                    .iter()
                    .find(|i| strsim::levenshtein(i, &word) <= 2)
                    .map(|i| format!("did you mean `{i}`?"))
                    .unwrap_or_else(|| {
                        "see docs/containerfile.md for the instructions bunny reads".into()
                    });
                cx.error(pos, format!("unknown instruction `{}`", l.word), close);
            }
        }
    }
    if from_seen.is_none() && !cx.diags.iter().any(|d| d.severity == Severity::Error) {
        cx.error(
            Pos { line: 1, col: 1 },
            "no `FROM` instruction",
            "start with `FROM scratch` or `FROM IMAGE`",
        );
    }
    let ok = !cx.diags.iter().any(|d| d.severity == Severity::Error);
    (ok.then_some(cf), cx.diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_pairs() {
        assert_eq!(
            words(r#"a "b c" 'd e' f\ g"#).unwrap(),
            ["a", "b c", "d e", "f g"]
        );
        assert_eq!(
            pairs(r#"a=1 b="two words""#).unwrap(),
            [("a".into(), "1".into()), ("b".into(), "two words".into())]
        );
        assert_eq!(
            pairs("key some value").unwrap(),
            [("key".into(), "some value".into())]
        );
        assert!(words("\"open").is_err());
    }

    #[test]
    fn commands_have_two_forms() {
        assert_eq!(command(r#"["/bin/app", "-x"]"#), ["/bin/app", "-x"]);
        assert_eq!(command("app -x"), ["/bin/sh", "-c", "app -x"]);
    }

    #[test]
    fn detection() {
        assert!(is_containerfile("# c\n\nFROM scratch\n"));
        assert!(is_containerfile("arg V=1\nFROM x:$V\n"));
        assert!(!is_containerfile("version: v0.1\nfrom: x\n"));
        assert!(!is_containerfile(""));
    }
}
