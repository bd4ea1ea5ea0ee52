//! The guest side: kernel command lines per unikernel type, as urunc builds
//! them.

use std::net::Ipv4Addr;

use serde_json::json;

use crate::config::Hypervisor;
use crate::error::RuntimeError;
use crate::spec::RunSpec;

/// Prefix length of a dotted mask (contiguous or not: bits are counted).
pub(crate) fn mask_bits(mask: Ipv4Addr) -> u32 {
    u32::from(mask).count_ones()
}

/// Whether `ip` and `gateway` share the subnet; when not, urunit must add a
/// default route itself (`URUNIT_DEFROUTE=1`).
pub(crate) fn in_subnet(ip: Ipv4Addr, mask: Ipv4Addr, gateway: Ipv4Addr) -> bool {
    let m = u32::from(mask);
    u32::from(ip) & m == u32::from(gateway) & m
}

/// A value refused on a guest's command line, and why.
fn refuse(guest: &'static str, what: impl Into<String>, value: &str, reason: &str) -> RuntimeError {
    RuntimeError::Cmdline {
        guest,
        what: what.into(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn has_control(v: &str) -> bool {
    v.chars().any(char::is_control)
}

/// Environment names are shell names: anything else (a blank, a `.`, a
/// `=`) would be read by the guest as something other than one variable.
fn check_env_name<'a>(guest: &'static str, e: &'a str) -> Result<(&'a str, &'a str), RuntimeError> {
    let (k, v) = e.split_once('=').unwrap_or((e, ""));
    let mut chars = k.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(refuse(
            guest,
            "environment variable",
            e,
            "its name must be letters, digits and _ (not starting with a digit)",
        ));
    }
    Ok((k, v))
}

/// Parameters Linux itself acts on (it would not hand them to init as
/// environment), which bunny's own command line sets or which take over
/// the boot: as env names they are refused rather than obeyed.
const LINUX_PARAMS: &[&str] = &[
    "init",
    "rdinit",
    "root",
    "rootfstype",
    "rootflags",
    "rootwait",
    "ro",
    "rw",
    "console",
    "panic",
    "ip",
    "nfsroot",
    "mem",
    "memmap",
    "loglevel",
    "quiet",
    "debug",
    "initrd",
    "noinitrd",
    "earlyprintk",
    "module_blacklist",
    "modprobe",
    "nokaslr",
    "maxcpus",
    "nosmp",
];

/// Linux passes `K=V` words to init as its environment. The kernel splits
/// at blanks outside double quotes and has no escape for a quote, so a
/// value with blanks is double-quoted and a value with a `"` (or a control
/// character) is refused: carried as is, it would end the word early and
/// let the rest of the value become kernel parameters or init's arguments.
fn kernel_env_word(e: &str) -> Result<String, RuntimeError> {
    const G: &str = "Linux";
    let (k, v) = check_env_name(G, e)?;
    if LINUX_PARAMS.contains(&k) {
        return Err(refuse(
            G,
            "environment variable",
            e,
            "the kernel would take it as its own parameter; rename the variable",
        ));
    }
    if v.contains('"') || has_control(v) {
        return Err(refuse(
            G,
            "environment variable",
            e,
            "a double quote or control character cannot be carried on the kernel command line",
        ));
    }
    Ok(if v.contains(' ') {
        format!("{k}=\"{v}\"")
    } else {
        e.to_string()
    })
}

/// urunc's convention with urunit (and bunny-init): an argument holding
/// blanks travels in single quotes and the init joins the words back with
/// one space. So it can carry single spaces, but not a `"` (the kernel's
/// quote), control characters, a `'` among blanks or at the start, or blanks
/// that do not come back as they were (leading, trailing or doubled).
fn quote_arg(a: &str) -> Result<String, RuntimeError> {
    const G: &str = "Linux";
    let bad = |reason| Err(refuse(G, "argument", a, reason));
    if a.contains('"') || has_control(a) {
        return bad(
            "a double quote or control character cannot be carried on the kernel command line",
        );
    }
    if a.is_empty() {
        return Ok("''".into());
    }
    if a.starts_with('\'') {
        return bad(
            "an argument starting with ' would be taken as a quoted one by the guest's init",
        );
    }
    if !a.contains(' ') {
        return Ok(a.to_string());
    }
    if a.contains('\'') {
        return bad(
            "an argument with both blanks and ' cannot be carried on the kernel command line",
        );
    }
    if a.starts_with(' ') || a.ends_with(' ') || a.contains("  ") {
        return bad("leading, trailing or repeated blanks do not survive the kernel command line");
    }
    Ok(format!("'{a}'"))
}

/// The program's path goes in `init=`, which takes no quotes at all.
fn init_word(a: &str) -> Result<&str, RuntimeError> {
    if a.is_empty() || a.contains(['"', '\'']) || a.contains(char::is_whitespace) || has_control(a)
    {
        return Err(refuse(
            "Linux",
            "program",
            a,
            "init= cannot carry an empty path, blanks, quotes or control characters",
        ));
    }
    Ok(a)
}

/// Linux keeps only this much of a command line (x86 and arm64), cutting
/// the rest silently: it could cut off `--` and the arguments.
const LINUX_CMDLINE_MAX: usize = 2047;

pub(crate) enum LinuxRoot {
    Initrd,
    Block,
    None,
}

/// `panic=-1 console=ttyS0 ROOT [ip=IP::GW:MASK:urunc:eth0:off] ENV
/// (rd)init=ARGV0 -- ARGS`
pub(crate) fn linux(
    spec: &RunSpec,
    argv: &[String],
    root: LinuxRoot,
    urunit_config: Option<&str>,
    env_in_config: bool,
) -> Result<String, RuntimeError> {
    let mut p: Vec<String> = vec!["panic=-1".into(), "console=ttyS0".into()];
    let rd = match root {
        LinuxRoot::Initrd => {
            p.push("root=/dev/ram0 rw".into());
            "rd"
        }
        LinuxRoot::Block => {
            p.push("root=/dev/vda rw".into());
            ""
        }
        LinuxRoot::None => "",
    };
    if let Some((ip, mask, gw)) = spec.net.guest_addr() {
        p.push(format!("ip={ip}::{gw}:{mask}:urunc:eth0:off"));
        if !in_subnet(ip, mask, gw) {
            p.push("URUNIT_DEFROUTE=1".into());
        }
    }
    if !env_in_config {
        for e in &spec.env {
            p.push(kernel_env_word(e)?);
        }
    }
    if let Some(path) = urunit_config {
        p.push(format!("URUNIT_CONFIG={path}"));
    }
    if let Some((argv0, rest)) = argv.split_first() {
        p.push(format!("{rd}init={}", init_word(argv0)?));
        p.push("--".into());
        for a in rest {
            p.push(quote_arg(a)?);
        }
    }
    let line = p.join(" ");
    if line.len() > LINUX_CMDLINE_MAX {
        return Err(refuse(
            "Linux",
            "a command line of",
            &format!("{} bytes", line.len()),
            "the kernel keeps only 2047 and would cut off the rest; shorten the environment or the arguments",
        ));
    }
    Ok(line)
}

/// Whether every variable of `env` can ride on a Linux command line.
pub(crate) fn linux_env_fits(env: &[String]) -> bool {
    env.iter().all(|e| kernel_env_word(e).is_ok())
}

/// urunit's `UES` block: the app's whole environment, one `K=V` a line, for
/// values a kernel command line cannot carry (a `"`, a name the kernel
/// takes as its own). Only a line break cannot be carried here either.
pub(crate) fn urunit_env(env: &[String]) -> Result<Vec<u8>, RuntimeError> {
    let mut out = String::from("UES\n");
    for e in env {
        check_env_name("Linux", e)?;
        if has_control(e) {
            return Err(refuse(
                "Linux",
                "environment variable",
                e,
                "urunit's configuration is one line per variable and cannot carry control characters",
            ));
        }
        out.push_str(e);
        out.push('\n');
    }
    out.push_str("UEE\n");
    Ok(out.into_bytes())
}

/// urunit's configuration for volumes: one `UBS` block per disk, naming
/// its serial and where to mount it.
pub(crate) fn urunit_volumes(volumes: &[crate::spec::Volume]) -> Result<Vec<u8>, RuntimeError> {
    let mut out = String::new();
    for (n, v) in volumes.iter().enumerate() {
        if has_control(&v.target) || v.target.contains(char::is_whitespace) {
            return Err(refuse(
                "Linux",
                "volume mount point",
                &v.target,
                "urunit's configuration is one line per item and cannot carry blanks or control characters here",
            ));
        }
        out.push_str(&format!(
            "UBS\nID: {}\nMP: {}\nUBE\n",
            crate::monitor::volume_serial(n),
            v.target
        ));
    }
    Ok(out.into_bytes())
}

/// A newc cpio archive holding one file, `name` (mode 0644), and the
/// trailer: what the kernel unpacks from an initrd's appended archive.
pub(crate) fn cpio_newc(name: &str, data: &[u8]) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, data: &[u8]) {
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    let mut out = Vec::new();
    entry(&mut out, 1, 0o100644, name, data);
    entry(&mut out, 0, 0, "TRAILER!!!", &[]);
    out
}

/// Rumprun's JSON configuration. It is not quite JSON (one `"env"` key per
/// variable), so it is assembled by hand from escaped pieces.
pub(crate) fn rumprun(
    spec: &RunSpec,
    argv: &[String],
    monitor: Hypervisor,
    block_mount: Option<&str>,
) -> Result<String, RuntimeError> {
    const G: &str = "rumprun";
    let s = |v: &str| json!(v).to_string();
    // JSON escaping keeps every value inside its string; rumprun's parser
    // does not undo escapes, so a control character would arrive as `\n`
    // text, and its argv is split at blanks with no quoting.
    for a in argv {
        if has_control(a) || a.contains(char::is_whitespace) || a.is_empty() {
            return Err(refuse(
                G,
                "argument",
                a,
                "rumprun splits its command line at blanks and has no quoting; an argument must be one non-empty word without control characters",
            ));
        }
    }
    let mut out = format!("{{\"cmdline\":{}", s(&argv.join(" ")));
    for e in &spec.env {
        check_env_name(G, e)?;
        if has_control(e) {
            return Err(refuse(
                G,
                "environment variable",
                e,
                "rumprun's configuration cannot carry control characters",
            ));
        }
        out.push_str(&format!(",\"env\":{}", s(e)));
    }
    if let Some((ip, mask, gw)) = spec.net.guest_addr() {
        let net = if monitor == Hypervisor::Qemu {
            // The hw platform sees a real virtio NIC, which is not cloned.
            format!(
                "{{\"if\":\"vioif0\",\"type\":\"inet\",\"method\":\"static\",\"addr\":\"{ip}\",\"mask\":\"{}\",\"gw\":\"{gw}\"}}",
                mask_bits(mask)
            )
        } else {
            // urunc's mask 128.0.0.0 (/1) keeps the gateway reachable even
            // when it lies outside the guest's subnet.
            format!(
                "{{\"if\":\"ukvmif0\",\"cloner\":\"True\",\"type\":\"inet\",\"method\":\"static\",\"addr\":\"{ip}\",\"mask\":\"1\",\"gw\":\"{gw}\"}}"
            )
        };
        out.push_str(&format!(",\"net\":{net}"));
    }
    if let Some(mp) = block_mount {
        out.push_str(&format!(
            ",\"blk\":{{\"source\":\"etfs\",\"path\":\"/dev/ld0a\",\"fstype\":\"blk\",\"mountpoint\":{}}}",
            s(mp)
        ));
    }
    out.push('}');
    Ok(out)
}

/// Unikraft releases before this take the legacy `netdev.ipv4_*` and
/// `vfs.rootfs=` parameters and no environment.
const UNIKRAFT_COMPAT: [u64; 3] = [0, 16, 1];

fn version_before(version: &str, limit: [u64; 3]) -> Option<bool> {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next().unwrap_or_default();
    let mut parts = [0u64; 3];
    for (i, n) in core.split('.').enumerate() {
        if i >= 3 {
            return None;
        }
        parts[i] = n.parse().ok()?;
    }
    Some(parts < limit)
}

/// `Unikraft env.vars=[ .. ] netdev.ip=IP/N:GW:DNS vfs.fstab=[ .. ] -- ARGS`
pub(crate) fn unikraft(
    spec: &RunSpec,
    argv: &[String],
    initrd: bool,
) -> Result<String, RuntimeError> {
    // uklibparam splits at blanks and treats quotes, brackets and
    // backslashes specially: only plain words are passed through.
    const G: &str = "Unikraft";
    let plain = |what: &str, v: &str| {
        if v.is_empty()
            || has_control(v)
            || v.contains(char::is_whitespace)
            || v.contains(['"', '\'', '\\', '[', ']'])
        {
            return Err(refuse(
                G,
                what,
                v,
                "Unikraft's command line can only carry non-empty words without blanks, quotes, brackets, backslashes or control characters",
            ));
        }
        Ok(())
    };
    for e in &spec.env {
        check_env_name(G, e)?;
        plain("environment variable", e)?;
    }
    for a in argv {
        plain("argument", a)?;
    }
    let legacy = spec
        .config
        .version
        .as_deref()
        .and_then(|v| version_before(v, UNIKRAFT_COMPAT))
        .unwrap_or(false);
    let mut p: Vec<String> = vec!["Unikraft".into()];
    let net = spec.net.guest_addr();
    if legacy {
        if let Some((ip, mask, gw)) = net {
            p.push(format!("netdev.ipv4_addr={ip}"));
            p.push(format!("netdev.ipv4_gw_addr={gw}"));
            p.push(format!("netdev.ipv4_subnet_mask={mask}"));
        }
        if initrd {
            p.push("vfs.rootfs=initrd".into());
        }
    } else {
        if !spec.env.is_empty() {
            p.push(format!("env.vars=[ {} ]", spec.env.join(" ")));
        }
        if let Some((ip, mask, gw)) = net {
            p.push(format!("netdev.ip={ip}/{}:{gw}:8.8.8.8", mask_bits(mask)));
        }
        if initrd {
            p.push("vfs.fstab=[ \"initrd0:/:extract:::\" ]".into());
        }
    }
    p.push("--".into());
    p.extend(argv.iter().cloned());
    Ok(p.join(" "))
}

/// `--ipv4=IP/N --ipv4-gateway=GW ARGS`
pub(crate) fn mirage(spec: &RunSpec, argv: &[String]) -> Result<String, RuntimeError> {
    for a in argv {
        if a.is_empty() || has_control(a) || a.contains(char::is_whitespace) {
            return Err(refuse(
                "MirageOS",
                "argument",
                a,
                "solo5 splits the command line at blanks; an argument must be one non-empty word without control characters",
            ));
        }
    }
    let mut p: Vec<String> = Vec::new();
    if let Some((ip, mask, gw)) = spec.net.guest_addr() {
        p.push(format!("--ipv4={ip}/{}", mask_bits(mask)));
        p.push(format!("--ipv4-gateway={gw}"));
    }
    p.extend(argv.iter().cloned());
    Ok(p.join(" "))
}

/// FreeBSD's PVH boot arguments (each `name=value` becomes a kenv entry).
pub(crate) fn freebsd(
    init_path: Option<&str>,
    urunit_disk: Option<usize>,
    spec: &RunSpec,
) -> String {
    let mut p = vec!["vfs.root.mountfrom=ufs:/dev/vtbd0".to_string()];
    if let Some(init) = init_path {
        p.push(format!("init_path={init}"));
    }
    if let Some(n) = urunit_disk {
        p.push(format!("URUNIT_CONFIG=/dev/vtbd{n}"));
        if let Some((ip, mask, gw)) = spec.net.guest_addr() {
            if !in_subnet(ip, mask, gw) {
                p.push("URUNIT_DEFROUTE=1".into());
            }
        }
    }
    p.join(" ")
}

/// urunit's configuration for a FreeBSD guest: env, process, volumes and
/// network, padded with newlines to whole 512-byte sectors because it is
/// exposed as a raw disk.
pub(crate) fn freebsd_urunit_config(
    spec: &RunSpec,
    args: &[String],
) -> Result<Vec<u8>, RuntimeError> {
    // One item a line: a newline (or any control character) in a value
    // would start a line of urunit's own, such as `UEE` or `ARV:`.
    const G: &str = "FreeBSD";
    for e in &spec.env {
        check_env_name(G, e)?;
        if has_control(e) {
            return Err(refuse(
                G,
                "environment variable",
                e,
                "urunit's configuration is one line per item and cannot carry control characters",
            ));
        }
    }
    if let Some(a) = args.iter().find(|a| has_control(a)) {
        return Err(refuse(
            G,
            "argument",
            a,
            "urunit's configuration is one line per item and cannot carry control characters",
        ));
    }
    let mut s = String::from("UES\n");
    for e in &spec.env {
        s.push_str(e);
        s.push('\n');
    }
    s.push_str("UEE\nUCS\nUID:0\nGID:0\nWD:/\n");
    s.push_str(&format!("ARC:{}\n", args.len()));
    for a in args {
        s.push_str(&format!("ARV:{a}\n"));
    }
    s.push_str("UCE\n");
    // urunc's volume blocks, as for Linux; bunny's /etc/rc mounts each
    // (the UFS2 label or disk serial `ID:` at `MP:`).
    if spec.volumes.is_empty() {
        s.push_str("UBS\nUBE\n");
    }
    for (n, v) in spec.volumes.iter().enumerate() {
        if has_control(&v.target) || v.target.contains(char::is_whitespace) {
            return Err(refuse(
                G,
                "volume mount point",
                &v.target,
                "urunit's configuration is one line per item and cannot carry blanks or control characters here",
            ));
        }
        s.push_str(&format!(
            "UBS\nID: {}\nMP: {}\nUBE\n",
            crate::monitor::volume_serial(n),
            v.target
        ));
    }
    s.push_str("UNS\n");
    let (ip, gw, mask) = match spec.net.guest_addr() {
        Some((ip, mask, gw)) => (ip.to_string(), gw.to_string(), mask.to_string()),
        None => Default::default(),
    };
    s.push_str(&format!("IP:{ip}\nGW:{gw}\nMSK:{mask}\nUNE\nPAD\n"));
    let mut bytes = s.into_bytes();
    let padded = bytes.len().div_ceil(512) * 512;
    bytes.resize(padded, b'\n');
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare() {
        assert_eq!(version_before("0.15.0", UNIKRAFT_COMPAT), Some(true));
        assert_eq!(version_before("v0.16.1", UNIKRAFT_COMPAT), Some(false));
        assert_eq!(version_before("0.16", UNIKRAFT_COMPAT), Some(true));
        assert_eq!(version_before("0.17.0-rc1", UNIKRAFT_COMPAT), Some(false));
        assert_eq!(version_before("latest", UNIKRAFT_COMPAT), None);
    }

    #[test]
    fn masks_and_subnets() {
        assert_eq!(mask_bits(Ipv4Addr::new(255, 255, 255, 0)), 24);
        assert_eq!(mask_bits(Ipv4Addr::new(255, 255, 0, 0)), 16);
        let m = Ipv4Addr::new(255, 255, 255, 0);
        assert!(in_subnet(
            Ipv4Addr::new(10, 0, 2, 15),
            m,
            Ipv4Addr::new(10, 0, 2, 2)
        ));
        assert!(!in_subnet(
            Ipv4Addr::new(10, 0, 3, 15),
            m,
            Ipv4Addr::new(10, 0, 2, 2)
        ));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_arg("a b").unwrap(), "'a b'");
        assert_eq!(quote_arg("ab").unwrap(), "ab");
        assert_eq!(quote_arg("").unwrap(), "''");
        assert_eq!(quote_arg("don't").unwrap(), "don't");
        assert_eq!(kernel_env_word("A=b c").unwrap(), "A=\"b c\"");
        assert_eq!(kernel_env_word("PATH=/bin").unwrap(), "PATH=/bin");
        assert_eq!(kernel_env_word("EMPTY=").unwrap(), "EMPTY=");
    }

    #[test]
    fn nothing_rewrites_the_command_line() {
        for e in [
            "MSG=say \"hi\" quiet loglevel=0 -- injected",
            "MSG=a\"b",
            "MSG=line\nnext",
            "A B=c",
            "a.b=c",
            "init=/bin/sh",
            "rdinit=/bin/sh",
            "=x",
        ] {
            let err = kernel_env_word(e).unwrap_err().to_string();
            assert!(err.contains("cannot pass"), "{e}: {err}");
        }
        for a in [
            "a\"b",
            "'quoted'",
            "it' s",
            " lead",
            "trail ",
            "two  blanks",
            "nl\n",
        ] {
            assert!(quote_arg(a).is_err(), "{a:?} was let through");
        }
        assert!(init_word("/bin/my app").is_err());
        assert!(init_word("/bin/app\"").is_err());
    }
}
