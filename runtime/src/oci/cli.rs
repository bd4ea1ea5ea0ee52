//! runc's command line, parsed leniently: engines pass flags we have no use
//! for, and for containers that are not unikernels everything is handed to
//! runc unchanged anyway.

use std::path::PathBuf;

use super::error::OciError;

pub const DEFAULT_ROOT: &str = "/run/bunny-runtime";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Global {
    pub root: PathBuf,
    pub log: Option<PathBuf>,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct Invocation {
    pub global: Global,
    /// The subcommand; `version` / `help` for `--version` / `--help`.
    pub command: String,
    pub flags: Vec<(String, Option<String>)>,
    pub positionals: Vec<String>,
}

impl Invocation {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    pub fn has(&self, name: &str) -> bool {
        self.flags
            .iter()
            .any(|(n, v)| n == name && v.as_deref() != Some("false"))
    }

    /// The container id: the first positional.
    pub fn id(&self) -> Result<&str, OciError> {
        self.positionals.first().map(String::as_str).ok_or_else(|| {
            OciError::Usage(format!(
                "{} needs a container id (usage: bunny-runtime {} [OPTIONS] CONTAINER_ID)",
                self.command, self.command
            ))
        })
    }
}

/// Global flags that take a value.
const GLOBAL_VALUES: &[&str] = &["root", "log", "log-format", "criu", "rootless"];

/// Short flag aliases, per runc.
fn long_name(command: &str, name: &str) -> String {
    let n = match (command, name) {
        (_, "h") => "help",
        ("create" | "run", "b") => "bundle",
        ("run" | "exec", "d") => "detach",
        ("kill", "a") => "all",
        ("delete", "f") => "force",
        ("ps", "f") => "format",
        ("exec", "t") => "tty",
        ("exec", "e") => "env",
        ("exec", "p") => "process",
        ("exec", "u") => "user",
        ("exec", "g") => "additional-gids",
        ("exec", "c") => "cap",
        ("update", "r") => "resources",
        _ => name,
    };
    n.to_string()
}

/// Flags of a subcommand that take a value (the rest are booleans).
fn takes_value(command: &str, name: &str) -> bool {
    let common = ["bundle", "pid-file", "console-socket", "preserve-fds"];
    match command {
        "create" | "run" => common.contains(&name),
        "ps" => name == "format",
        "exec" => [
            "console-socket",
            "cwd",
            "env",
            "process",
            "pid-file",
            "process-label",
            "apparmor",
            "user",
            "additional-gids",
            "cap",
            "preserve-fds",
            "cgroup",
        ]
        .contains(&name),
        "update" => !matches!(name, "help"),
        "checkpoint" | "restore" => [
            "image-path",
            "work-path",
            "parent-path",
            "page-server",
            "manage-cgroups-mode",
            "empty-ns",
            "status-fd",
            "lsm-profile",
            "lsm-mount-context",
            "bundle",
            "pid-file",
            "console-socket",
        ]
        .contains(&name),
        _ => false,
    }
}

/// Splits `-x`, `--x`, `--x=v` into a name and maybe an inline value.
fn split_flag(arg: &str) -> Option<(&str, Option<&str>)> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    if body.is_empty() {
        return None;
    }
    Some(match body.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (body, None),
    })
}

pub fn parse(args: &[String]) -> Result<Invocation, OciError> {
    let mut global = Global {
        root: PathBuf::from(DEFAULT_ROOT),
        log: None,
        log_format: LogFormat::Text,
    };
    let mut i = 0;
    let mut command = None;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some((name, inline)) = split_flag(arg) else {
            command = Some(arg.clone());
            break;
        };
        match name {
            "v" | "version" => {
                command = Some("version".into());
                break;
            }
            "h" | "help" => {
                command = Some("help".into());
                break;
            }
            _ => {}
        }
        let value = if GLOBAL_VALUES.contains(&name) {
            match inline {
                Some(v) => Some(v.to_string()),
                None => {
                    let v = args
                        .get(i)
                        .cloned()
                        .ok_or_else(|| OciError::Usage(format!("flag --{name} needs a value")))?;
                    i += 1;
                    Some(v)
                }
            }
        } else {
            // --debug, --systemd-cgroup and unknown booleans are tolerated.
            None
        };
        match (name, value) {
            ("root", Some(v)) => global.root = PathBuf::from(v),
            ("log", Some(v)) => global.log = (!v.is_empty()).then(|| PathBuf::from(v)),
            ("log-format", Some(v)) => {
                global.log_format = match v.as_str() {
                    "json" => LogFormat::Json,
                    "text" => LogFormat::Text,
                    other => {
                        return Err(OciError::Usage(format!(
                            "unknown --log-format {other:?} (expected text or json)"
                        )))
                    }
                }
            }
            _ => {}
        }
    }
    let command = command.unwrap_or_else(|| "help".into());
    let mut flags = Vec::new();
    let mut positionals = Vec::new();
    let mut only_positionals = false;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if only_positionals || !positionals.is_empty() && command == "exec" {
            // exec's command line after the id belongs to the process.
            positionals.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_positionals = true;
            continue;
        }
        // A lone "-" or a negative number (kill's signal) is not a flag.
        let Some((name, inline)) = split_flag(arg).filter(|_| arg.parse::<i64>().is_err()) else {
            positionals.push(arg.clone());
            continue;
        };
        let name = long_name(&command, name);
        let value = match inline {
            Some(v) => Some(v.to_string()),
            None if takes_value(&command, &name) => {
                let v = args.get(i).cloned().ok_or_else(|| {
                    OciError::Usage(format!("{command}: flag --{name} needs a value"))
                })?;
                i += 1;
                Some(v)
            }
            None => None,
        };
        flags.push((name, value));
    }
    Ok(Invocation {
        global,
        command,
        flags,
        positionals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Invocation {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn containerd_create() {
        let inv = p("--root /r --log /b/log.json --log-format json --systemd-cgroup create --bundle /b --pid-file /b/init.pid --console-socket /s.sock --no-pivot c1");
        assert_eq!(inv.global.root, PathBuf::from("/r"));
        assert_eq!(inv.global.log, Some(PathBuf::from("/b/log.json")));
        assert_eq!(inv.global.log_format, LogFormat::Json);
        assert_eq!(inv.command, "create");
        assert_eq!(inv.flag("bundle"), Some("/b"));
        assert_eq!(inv.flag("pid-file"), Some("/b/init.pid"));
        assert_eq!(inv.flag("console-socket"), Some("/s.sock"));
        assert!(inv.has("no-pivot"));
        assert_eq!(inv.id().unwrap(), "c1");
    }

    #[test]
    fn short_and_inline_forms() {
        let inv = p("-root=/x --debug kill -a c2 KILL");
        assert_eq!(inv.global.root, PathBuf::from("/x"));
        assert!(inv.has("all"));
        assert_eq!(inv.positionals, ["c2", "KILL"]);
        let inv = p("delete -f c3");
        assert!(inv.has("force"));
        assert_eq!(inv.global.root, PathBuf::from(DEFAULT_ROOT));
        let inv = p("ps --format=json c4");
        assert_eq!(inv.flag("format"), Some("json"));
        let inv = p("create -b /b c5");
        assert_eq!(inv.flag("bundle"), Some("/b"));
        let inv = p("kill c6 -9");
        assert_eq!(inv.positionals, ["c6", "-9"]);
    }

    #[test]
    fn exec_keeps_the_process_args() {
        let inv = p("exec -t --env A=B -u 0 c7 sh -c ls");
        assert_eq!(inv.id().unwrap(), "c7");
        assert_eq!(inv.positionals, ["c7", "sh", "-c", "ls"]);
        assert_eq!(inv.flag("user"), Some("0"));
    }

    #[test]
    fn version_help_and_errors() {
        assert_eq!(p("--version").command, "version");
        assert_eq!(p("-v").command, "version");
        assert_eq!(p("").command, "help");
        assert!(parse(&["--root".into()]).is_err());
        assert!(parse(&["--log-format".into(), "xml".into(), "state".into()]).is_err());
        assert!(p("state").id().is_err());
    }
}
