//! Which shared libraries a set of FreeBSD programs needs: each ELF file's
//! interpreter (`PT_INTERP`) and `DT_NEEDED` entries, looked up the way
//! FreeBSD's rtld does (`DT_RUNPATH`/`DT_RPATH`, then the standard
//! directories, `/usr/local/lib` standing in for ldconfig's hints),
//! recursively, in the app's own files first and then in the base system.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::FreeBsdError;

/// rtld's default search path, plus where packages put their libraries.
pub const STANDARD_DIRS: &[&str] = &["/lib", "/usr/lib", "/usr/local/lib"];
const MAX_LINKS: usize = 40;

/// Resolves `guest` (an absolute path in a FreeBSD tree rooted at `root`) to
/// the regular file it names on the host, following symlinks as the guest
/// would: absolute targets start at `root`, and nothing leaves it.
pub fn resolve_in_root(root: &Path, guest: &str) -> Option<PathBuf> {
    let mut pending: Vec<String> = guest
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_string)
        .collect();
    let mut parts: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => {}
        }
        let mut host = root.to_path_buf();
        host.extend(&parts);
        host.push(&part);
        let meta = fs::symlink_metadata(&host).ok()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return None;
            }
            let target = fs::read_link(&host).ok()?;
            let target = target.to_str()?;
            if target.starts_with('/') {
                parts.clear();
            }
            pending.extend(
                target
                    .split('/')
                    .filter(|c| !c.is_empty())
                    .rev()
                    .map(str::to_string),
            );
        } else {
            parts.push(part);
        }
    }
    let mut host = root.to_path_buf();
    host.extend(&parts);
    host.is_file().then_some(host)
}

struct Needs {
    interpreter: Option<String>,
    needed: Vec<String>,
    search: Vec<String>,
}

fn read_needs(host: &Path, guest: &str) -> Result<Option<Needs>, FreeBsdError> {
    let bytes = fs::read(host).map_err(|e| FreeBsdError::io(&format!("reading {guest}"), e))?;
    if !bytes.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let elf = goblin::elf::Elf::parse(&bytes).map_err(|e| FreeBsdError::Elf {
        file: guest.to_string(),
        message: e.to_string(),
    })?;
    let origin = Path::new(guest)
        .parent()
        .and_then(|p| p.to_str())
        .unwrap_or("/")
        .to_string();
    let search = elf
        .runpaths
        .iter()
        .chain(elf.rpaths.iter())
        .flat_map(|p| p.split(':'))
        .filter(|p| !p.is_empty())
        .map(|p| p.replace("$ORIGIN", &origin).replace("${ORIGIN}", &origin))
        .collect();
    Ok(Some(Needs {
        interpreter: elf.interpreter.map(str::to_string),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        search,
    }))
}

/// Where a needed file was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// In the app's files (already in the rootfs).
    App(String),
    /// In the base system: guest path and the host file to copy.
    Base(String, PathBuf),
}

/// Every file of `base` the `roots` (guest paths of ELF files in `app` or
/// `base`) need, transitively: guest path -> host file. Non-ELF roots (shell
/// scripts) need nothing. A library found nowhere is an error naming it and
/// the file that needs it.
pub fn needed_from_base(
    roots: &[String],
    app: &Path,
    base: &Path,
) -> Result<BTreeMap<String, PathBuf>, FreeBsdError> {
    needed_from(roots, app, base, STANDARD_DIRS)
}

/// [`needed_from_base`] with the loader's default directories given: the
/// same walk serves other systems' loaders (glibc's `ld.so` searches its
/// multiarch directories where FreeBSD's rtld searches `/lib`).
pub fn needed_from(
    roots: &[String],
    app: &Path,
    base: &Path,
    standard_dirs: &[&str],
) -> Result<BTreeMap<String, PathBuf>, FreeBsdError> {
    let mut from_base: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut queue: Vec<(String, PathBuf)> = Vec::new();
    let locate = |guest: &str| -> Option<Found> {
        if let Some(_h) = resolve_in_root(app, guest) {
            return Some(Found::App(guest.to_string()));
        }
        resolve_in_root(base, guest).map(|h| Found::Base(guest.to_string(), h))
    };
    for root in roots {
        match locate(root) {
            Some(Found::App(g)) => {
                let host = resolve_in_root(app, &g).unwrap_or_default();
                queue.push((g, host));
            }
            Some(Found::Base(g, h)) => {
                from_base.insert(g.clone(), h.clone());
                queue.push((g, h));
            }
            None => {
                return Err(FreeBsdError::MissingBase {
                    file: root.clone(),
                    needed_by: None,
                })
            }
        }
    }
    while let Some((guest, host)) = queue.pop() {
        if !done.insert(guest.clone()) {
            continue;
        }
        let Some(needs) = read_needs(&host, &guest)? else {
            continue;
        };
        let mut wanted: Vec<(Vec<String>, String)> = Vec::new();
        if let Some(interp) = needs.interpreter {
            wanted.push((vec![interp.clone()], interp));
        }
        for lib in needs.needed {
            let candidates = if lib.contains('/') {
                vec![lib.clone()]
            } else {
                needs
                    .search
                    .iter()
                    .map(String::as_str)
                    .chain(standard_dirs.iter().copied())
                    .map(|d| format!("{}/{lib}", d.trim_end_matches('/')))
                    .collect()
            };
            wanted.push((candidates, lib));
        }
        for (candidates, name) in wanted {
            let found = candidates.iter().find_map(|c| locate(c));
            match found {
                Some(Found::App(g)) => {
                    if !done.contains(&g) {
                        let h = resolve_in_root(app, &g).unwrap_or_default();
                        queue.push((g, h));
                    }
                }
                Some(Found::Base(g, h)) => {
                    if !from_base.contains_key(&g) {
                        from_base.insert(g.clone(), h.clone());
                        queue.push((g, h));
                    }
                }
                None => {
                    return Err(FreeBsdError::MissingBase {
                        file: name,
                        needed_by: Some(guest.clone()),
                    })
                }
            }
        }
    }
    Ok(from_base)
}
