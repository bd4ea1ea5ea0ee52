//! The OCI spec's seccomp profile, compiled the way runc compiles it: with
//! libseccomp (loaded at run time, so the runtime neither links it nor needs
//! its headers to build), into a classic BPF program that the monitor loads
//! just before its exec.

use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::io::{Read, Seek};
use std::os::fd::{AsRawFd, FromRawFd};

use serde::Deserialize;

use crate::RuntimeError;

/// `linux.seccomp` of an OCI runtime spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub listener_path: Option<String>,
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    #[serde(default)]
    pub names: Vec<String>,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Vec<ArgRule>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgRule {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// libseccomp's `struct scmp_arg_cmp`.
#[repr(C)]
struct ArgCmp {
    arg: c_uint,
    op: c_int,
    datum_a: u64,
    datum_b: u64,
}

const EPERM: u32 = 1;

fn bad(detail: impl Into<String>) -> RuntimeError {
    RuntimeError::Seccomp {
        detail: detail.into(),
    }
}

/// libseccomp's action value for an OCI action name.
fn action(name: &str, errno: Option<u32>) -> Result<u32, RuntimeError> {
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => 0x0000_0000,
        "SCMP_ACT_KILL_PROCESS" => 0x8000_0000,
        "SCMP_ACT_TRAP" => 0x0003_0000,
        "SCMP_ACT_ERRNO" => 0x0005_0000 | (errno.unwrap_or(EPERM) & 0xffff),
        "SCMP_ACT_TRACE" => 0x7ff0_0000 | (errno.unwrap_or(EPERM) & 0xffff),
        "SCMP_ACT_LOG" => 0x7ffc_0000,
        "SCMP_ACT_ALLOW" => 0x7fff_0000,
        "SCMP_ACT_NOTIFY" => {
            return Err(bad(
                "SCMP_ACT_NOTIFY needs a seccomp agent, which this runtime does not support",
            ))
        }
        other => return Err(bad(format!("unknown action {other:?}"))),
    })
}

fn op(name: &str) -> Result<c_int, RuntimeError> {
    Ok(match name {
        "SCMP_CMP_NE" => 1,
        "SCMP_CMP_LT" => 2,
        "SCMP_CMP_LE" => 3,
        "SCMP_CMP_EQ" => 4,
        "SCMP_CMP_GE" => 5,
        "SCMP_CMP_GT" => 6,
        "SCMP_CMP_MASKED_EQ" => 7,
        other => return Err(bad(format!("unknown comparison {other:?}"))),
    })
}

type Ctx = *mut c_void;

struct Lib {
    init: unsafe extern "C" fn(u32) -> Ctx,
    release: unsafe extern "C" fn(Ctx),
    arch_resolve: unsafe extern "C" fn(*const c_char) -> u32,
    arch_add: unsafe extern "C" fn(Ctx, u32) -> c_int,
    resolve: unsafe extern "C" fn(*const c_char) -> c_int,
    rule_add_array: unsafe extern "C" fn(Ctx, u32, c_int, c_uint, *const ArgCmp) -> c_int,
    export_bpf: unsafe extern "C" fn(Ctx, c_int) -> c_int,
}

fn open_lib() -> Result<Lib, RuntimeError> {
    let mut handle = std::ptr::null_mut();
    for name in [c"libseccomp.so.2", c"libseccomp.so"] {
        // SAFETY: a valid C string; dlopen has no other preconditions.
        handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if !handle.is_null() {
            break;
        }
    }
    if handle.is_null() {
        return Err(bad(
            "the spec asks for a seccomp profile and libseccomp.so.2 is missing (Debian: apt-get install libseccomp2)",
        ));
    }
    macro_rules! sym {
        ($name:literal, $ty:ty) => {{
            // SAFETY: handle is a live dlopen handle and the name a C string.
            let p = unsafe { libc::dlsym(handle, $name.as_ptr()) };
            if p.is_null() {
                return Err(bad(format!("libseccomp lacks {}", $name.to_string_lossy())));
            }
            // SAFETY: the symbol is libseccomp's function of this signature
            // (its public API since 2.0; the library stays loaded).
            unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
        }};
    }
    Ok(Lib {
        init: sym!(c"seccomp_init", unsafe extern "C" fn(u32) -> Ctx),
        release: sym!(c"seccomp_release", unsafe extern "C" fn(Ctx)),
        arch_resolve: sym!(
            c"seccomp_arch_resolve_name",
            unsafe extern "C" fn(*const c_char) -> u32
        ),
        arch_add: sym!(c"seccomp_arch_add", unsafe extern "C" fn(Ctx, u32) -> c_int),
        resolve: sym!(
            c"seccomp_syscall_resolve_name",
            unsafe extern "C" fn(*const c_char) -> c_int
        ),
        rule_add_array: sym!(
            c"seccomp_rule_add_array",
            unsafe extern "C" fn(Ctx, u32, c_int, c_uint, *const ArgCmp) -> c_int
        ),
        export_bpf: sym!(
            c"seccomp_export_bpf",
            unsafe extern "C" fn(Ctx, c_int) -> c_int
        ),
    })
}

/// Frees the filter context on every path.
struct Filter<'a> {
    lib: &'a Lib,
    ctx: Ctx,
}

impl Drop for Filter<'_> {
    fn drop(&mut self) {
        // SAFETY: ctx came from seccomp_init and is released once.
        unsafe { (self.lib.release)(self.ctx) };
    }
}

/// Compiles `profile` to BPF as runc does: unknown syscall names are
/// skipped (profiles list syscalls of every kernel), rules whose action is
/// the default are dropped, and conditions on the same argument become
/// separate rules (libseccomp takes one condition per argument).
pub fn compile(profile: &Profile) -> Result<Vec<libc::sock_filter>, RuntimeError> {
    if profile
        .listener_path
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        return Err(bad(
            "listenerPath needs a seccomp agent, which this runtime does not support",
        ));
    }
    let default = action(&profile.default_action, profile.default_errno_ret)?;
    let lib = open_lib()?;
    // SAFETY: seccomp_init takes any action value and returns NULL on error.
    let ctx = unsafe { (lib.init)(default) };
    if ctx.is_null() {
        return Err(bad(format!(
            "libseccomp refused the default action {}",
            profile.default_action
        )));
    }
    let f = Filter { lib: &lib, ctx };
    for arch in &profile.architectures {
        let short = arch
            .strip_prefix("SCMP_ARCH_")
            .unwrap_or(arch)
            .to_ascii_lowercase();
        let c = CString::new(short).map_err(|_| bad("an architecture name holds a NUL"))?;
        // SAFETY: a valid C string.
        let token = unsafe { (lib.arch_resolve)(c.as_ptr()) };
        if token == 0 {
            return Err(bad(format!("unknown architecture {arch:?}")));
        }
        // SAFETY: ctx is live; -EEXIST (the native one) is fine.
        let rc = unsafe { (lib.arch_add)(f.ctx, token) };
        if rc != 0 && rc != -libc::EEXIST {
            return Err(bad(format!("cannot add architecture {arch:?}: {rc}")));
        }
    }
    for rule in &profile.syscalls {
        let act = action(&rule.action, rule.errno_ret)?;
        if act == default {
            continue;
        }
        let conds: Vec<ArgCmp> = rule
            .args
            .iter()
            .map(|a| {
                Ok(ArgCmp {
                    arg: a.index,
                    op: op(&a.op)?,
                    datum_a: a.value,
                    datum_b: a.value_two,
                })
            })
            .collect::<Result<_, RuntimeError>>()?;
        let mut indexes: Vec<u32> = rule.args.iter().map(|a| a.index).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let groups: Vec<&[ArgCmp]> = if indexes.len() == conds.len() {
            vec![&conds[..]]
        } else {
            conds.iter().map(std::slice::from_ref).collect()
        };
        for name in &rule.names {
            let c = CString::new(name.as_str()).map_err(|_| bad("a syscall name holds a NUL"))?;
            // SAFETY: a valid C string.
            let nr = unsafe { (lib.resolve)(c.as_ptr()) };
            if nr < 0 {
                continue;
            }
            for g in &groups {
                // SAFETY: ctx is live; g points at g.len() valid entries.
                let rc =
                    unsafe { (lib.rule_add_array)(f.ctx, act, nr, g.len() as c_uint, g.as_ptr()) };
                if rc != 0 {
                    return Err(bad(format!(
                        "cannot add the rule for {name}: {}",
                        std::io::Error::from_raw_os_error(-rc)
                    )));
                }
            }
        }
    }
    export(&f)
}

fn export(f: &Filter<'_>) -> Result<Vec<libc::sock_filter>, RuntimeError> {
    // SAFETY: a valid C string; memfd_create has no other preconditions.
    let fd = unsafe { libc::memfd_create(c"bunny-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(bad(format!(
            "cannot create a memfd: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: fd is ours and open.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    // SAFETY: ctx is live and fd open for writing.
    let rc = unsafe { (f.lib.export_bpf)(f.ctx, file.as_raw_fd()) };
    if rc != 0 {
        return Err(bad(format!(
            "libseccomp cannot export the filter: {}",
            std::io::Error::from_raw_os_error(-rc)
        )));
    }
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| bad(format!("cannot read the exported filter: {e}")))?;
    let size = std::mem::size_of::<libc::sock_filter>();
    if bytes.is_empty() || bytes.len() % size != 0 || bytes.len() / size > u16::MAX as usize {
        return Err(bad(format!(
            "libseccomp exported {} bytes, not a BPF program",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(size)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// Loads `filter` into the calling thread. Async-signal-safe (it runs
/// between fork and exec). Without CAP_SYS_ADMIN the kernel requires
/// no_new_privs first, which is then set.
pub(crate) fn load(filter: &[libc::sock_filter]) -> std::io::Result<()> {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    let set = || {
        // SAFETY: prog points at `len` valid instructions for the call.
        unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            )
        }
    };
    if set() == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EACCES) {
        return Err(e);
    }
    // SAFETY: prctl with plain integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 || set() != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_errno_follow_libseccomp() {
        assert_eq!(action("SCMP_ACT_ALLOW", None).unwrap(), 0x7fff_0000);
        assert_eq!(action("SCMP_ACT_ERRNO", None).unwrap(), 0x0005_0001);
        assert_eq!(action("SCMP_ACT_ERRNO", Some(38)).unwrap(), 0x0005_0026);
        assert!(action("SCMP_ACT_NOTIFY", None).is_err());
        assert!(action("allow", None).is_err());
        assert!(op("SCMP_CMP_MASKED_EQ").is_ok() && op("EQ").is_err());
    }

    /// A profile that denies one syscall, loaded into a forked child: the
    /// child sees EPERM from it, the parent is untouched.
    #[test]
    fn a_compiled_profile_denies_what_it_lists() {
        let p: Profile = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_AARCH64"],
                "syscalls":[{"names":["getppid","no_such_syscall"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
                            {"names":["getpid"],"action":"SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        let filter = match compile(&p) {
            Ok(f) => f,
            Err(e) if e.to_string().contains("libseccomp.so.2 is missing") => {
                panic!("{e}: scripts/setup.sh installs it")
            }
            Err(e) => panic!("{e}"),
        };
        assert!(filter.len() > 3);
        // SAFETY: the child only makes raw syscalls and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = if load(&filter).is_err() {
                2
            } else {
                // SAFETY: plain syscalls.
                let r = unsafe { libc::syscall(libc::SYS_getppid) };
                let errno = std::io::Error::last_os_error().raw_os_error();
                if r == -1 && errno == Some(13) {
                    0
                } else {
                    3
                }
            };
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: pid is our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0);
        // SAFETY: plain syscall.
        assert!(unsafe { libc::getppid() } > 0);
    }
}
