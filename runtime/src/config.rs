//! urunc's `com.urunc.unikernel.*` settings and where they are found.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use base64::Engine as _;

use crate::paths::resolve_in_rootfs;
use crate::RuntimeError;

pub const ANNOT_TYPE: &str = "com.urunc.unikernel.unikernelType";
pub const ANNOT_HYPERVISOR: &str = "com.urunc.unikernel.hypervisor";
pub const ANNOT_BINARY: &str = "com.urunc.unikernel.binary";
pub const ANNOT_CMDLINE: &str = "com.urunc.unikernel.cmdline";
pub const ANNOT_INITRD: &str = "com.urunc.unikernel.initrd";
pub const ANNOT_BLOCK: &str = "com.urunc.unikernel.block";
pub const ANNOT_BLK_MNT_POINT: &str = "com.urunc.unikernel.blkMntPoint";
pub const ANNOT_MOUNT_ROOTFS: &str = "com.urunc.unikernel.mountRootfs";
/// The older name of `mountRootfs`.
const ANNOT_USE_DM_BLOCK: &str = "com.urunc.unikernel.useDMBlock";
pub const ANNOT_VERSION: &str = "com.urunc.unikernel.unikernelVersion";
/// Where urunc looks when the spec carries no settings (path in the rootfs).
pub const URUNC_JSON: &str = "/urunc.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnikernelType {
    Linux,
    Rumprun,
    Unikraft,
    Mirage,
    FreeBsd,
    Hermit,
    Mewz,
}

impl UnikernelType {
    pub const ALL: &'static [UnikernelType] = &[
        UnikernelType::Linux,
        UnikernelType::Rumprun,
        UnikernelType::Unikraft,
        UnikernelType::Mirage,
        UnikernelType::FreeBsd,
        UnikernelType::Hermit,
        UnikernelType::Mewz,
    ];

    /// The value of `com.urunc.unikernel.unikernelType`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnikernelType::Linux => "linux",
            UnikernelType::Rumprun => "rumprun",
            UnikernelType::Unikraft => "unikraft",
            UnikernelType::Mirage => "mirage",
            UnikernelType::FreeBsd => "freebsd",
            UnikernelType::Hermit => "hermit",
            UnikernelType::Mewz => "mewz",
        }
    }

    pub fn parse(s: &str) -> Option<UnikernelType> {
        Self::ALL.iter().copied().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for UnikernelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hypervisor {
    Qemu,
    Firecracker,
    Hvt,
    Spt,
    CloudHypervisor,
}

impl Hypervisor {
    pub const ALL: &'static [Hypervisor] = &[
        Hypervisor::Qemu,
        Hypervisor::Firecracker,
        Hypervisor::Hvt,
        Hypervisor::Spt,
        Hypervisor::CloudHypervisor,
    ];

    /// The value of `com.urunc.unikernel.hypervisor`.
    pub fn as_str(self) -> &'static str {
        match self {
            Hypervisor::Qemu => "qemu",
            Hypervisor::Firecracker => "firecracker",
            Hypervisor::Hvt => "hvt",
            Hypervisor::Spt => "spt",
            Hypervisor::CloudHypervisor => "cloud-hypervisor",
        }
    }

    pub fn parse(s: &str) -> Option<Hypervisor> {
        Self::ALL.iter().copied().find(|h| h.as_str() == s)
    }

    /// The program urunc execs for this monitor.
    pub fn program(self) -> &'static str {
        match self {
            Hypervisor::Qemu => "qemu-system-x86_64",
            Hypervisor::Firecracker => "firecracker",
            Hypervisor::Hvt => "solo5-hvt",
            Hypervisor::Spt => "solo5-spt",
            Hypervisor::CloudHypervisor => "cloud-hypervisor",
        }
    }

    /// What to install when the program is missing.
    pub fn package(self) -> &'static str {
        match self {
            Hypervisor::Qemu => "the Debian package qemu-system-x86",
            Hypervisor::Firecracker => {
                "firecracker (https://github.com/firecracker-microvm/firecracker/releases)"
            }
            Hypervisor::Hvt | Hypervisor::Spt => "solo5 (https://github.com/Solo5/solo5)",
            Hypervisor::CloudHypervisor => {
                "cloud-hypervisor (https://github.com/cloud-hypervisor/cloud-hypervisor/releases)"
            }
        }
    }
}

impl fmt::Display for Hypervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnikernelConfig {
    pub unikernel_type: UnikernelType,
    pub hypervisor: Hypervisor,
    /// Path of the kernel inside the rootfs.
    pub binary: String,
    pub cmdline: Option<String>,
    pub initrd: Option<String>,
    pub block: Option<String>,
    pub blk_mnt_point: Option<String>,
    pub mount_rootfs: bool,
    pub version: Option<String>,
}

/// Reads urunc's settings the way urunc does: from `annotations` when they
/// carry the three required keys, else from `/urunc.json` in `rootfs`.
pub fn read_config(
    annotations: &BTreeMap<String, String>,
    rootfs: &Path,
) -> Result<UnikernelConfig, RuntimeError> {
    let json_shown = rootfs.join(URUNC_JSON.trim_start_matches('/'));
    let required = [ANNOT_TYPE, ANNOT_HYPERVISOR, ANNOT_BINARY];
    let has = |m: &BTreeMap<String, String>, k: &str| m.get(k).is_some_and(|v| !v.is_empty());
    if required.iter().all(|k| has(annotations, k)) {
        // Older urunc base64-decoded spec annotations, so images in the wild
        // carry either form; the type key tells which one this set uses.
        let encoded = annotations
            .get(ANNOT_TYPE)
            .is_some_and(|t| UnikernelType::parse(t).is_none());
        return build(annotations, encoded, "the image annotations");
    }

    let json_path = match resolve_in_rootfs(rootfs, URUNC_JSON, "urunc.json") {
        Ok(p) => Some(p),
        Err(RuntimeError::BadImagePath { reason, .. }) if reason == NOT_IN_IMAGE => None,
        Err(e) => return Err(e),
    };
    let Some(json_path) = json_path else {
        let key = required
            .into_iter()
            .find(|k| !has(annotations, k))
            .unwrap_or(ANNOT_TYPE);
        return Err(RuntimeError::MissingKey {
            key,
            urunc_json: json_shown,
        });
    };
    let text = std::fs::read_to_string(&json_path).map_err(|source| RuntimeError::ReadFile {
        path: json_path.clone(),
        source,
    })?;
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| RuntimeError::BadUruncJson {
            path: json_shown.clone(),
            detail: e.to_string(),
        })?;
    let mut values = BTreeMap::new();
    for (k, v) in map {
        match v {
            serde_json::Value::String(s) => {
                values.insert(k, s);
            }
            // Keys urunc does not know may hold anything; ours must be strings.
            _ if k.starts_with("com.urunc.unikernel.") => {
                return Err(RuntimeError::BadUruncJson {
                    path: json_shown,
                    detail: format!("{k} is not a string"),
                })
            }
            _ => {}
        }
    }
    for key in required {
        if !has(&values, key) {
            return Err(RuntimeError::MissingKey {
                key,
                urunc_json: json_shown,
            });
        }
    }
    build(&values, true, &json_shown.display().to_string())
}

pub(crate) const NOT_IN_IMAGE: &str = "does not exist in the image";

fn build(
    values: &BTreeMap<String, String>,
    encoded: bool,
    source_name: &str,
) -> Result<UnikernelConfig, RuntimeError> {
    let get = |key: &'static str| -> Result<Option<String>, RuntimeError> {
        match values.get(key) {
            None => Ok(None),
            Some(raw) => {
                let v = if encoded {
                    let decoded = decode(key, raw, source_name)?;
                    // A value that only makes sense undecoded was written
                    // plain: mixed sets exist in the wild.
                    if !known_good(key, &decoded) && known_good(key, raw) {
                        raw.clone()
                    } else {
                        decoded
                    }
                } else {
                    raw.clone()
                };
                Ok(if v.is_empty() { None } else { Some(v) })
            }
        }
    };
    let bad = |key: &'static str, value: &str, expected: &'static str| RuntimeError::BadValue {
        key,
        value: value.to_string(),
        source_name: source_name.to_string(),
        expected,
    };
    let ty = get(ANNOT_TYPE)?.unwrap_or_default();
    let unikernel_type = UnikernelType::parse(&ty).ok_or_else(|| {
        bad(
            ANNOT_TYPE,
            &ty,
            "linux, rumprun, unikraft, mirage, freebsd, hermit, mewz",
        )
    })?;
    let hv = get(ANNOT_HYPERVISOR)?.unwrap_or_default();
    let hypervisor = Hypervisor::parse(&hv).ok_or_else(|| {
        bad(
            ANNOT_HYPERVISOR,
            &hv,
            "qemu, firecracker, hvt, spt, cloud-hypervisor",
        )
    })?;
    let mount = match get(ANNOT_MOUNT_ROOTFS)? {
        Some(v) => Some(v),
        None => get(ANNOT_USE_DM_BLOCK)?,
    };
    let mount_rootfs = match mount.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(bad(
                ANNOT_MOUNT_ROOTFS,
                mount.as_deref().unwrap_or_default(),
                "true, false",
            ))
        }
    };
    Ok(UnikernelConfig {
        unikernel_type,
        hypervisor,
        binary: get(ANNOT_BINARY)?.unwrap_or_default(),
        cmdline: get(ANNOT_CMDLINE)?,
        initrd: get(ANNOT_INITRD)?,
        block: get(ANNOT_BLOCK)?,
        blk_mnt_point: get(ANNOT_BLK_MNT_POINT)?,
        mount_rootfs,
        version: get(ANNOT_VERSION)?,
    })
}

/// Whether `value` is a sensible value for `key`; keys with free-form
/// values accept anything.
fn known_good(key: &str, value: &str) -> bool {
    match key {
        ANNOT_TYPE => UnikernelType::parse(value).is_some(),
        ANNOT_HYPERVISOR => Hypervisor::parse(value).is_some(),
        ANNOT_BINARY | ANNOT_INITRD | ANNOT_BLOCK | ANNOT_BLK_MNT_POINT => value.starts_with('/'),
        ANNOT_MOUNT_ROOTFS | ANNOT_USE_DM_BLOCK => {
            value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false")
        }
        _ => true,
    }
}

/// Decodes one value the way urunc does: `b64:` marks base64 explicitly;
/// otherwise valid base64 of UTF-8 is decoded and anything else is taken
/// as plain text.
fn decode(key: &'static str, raw: &str, source_name: &str) -> Result<String, RuntimeError> {
    let engine = base64::engine::general_purpose::STANDARD;
    if let Some(rest) = raw.strip_prefix("b64:") {
        let bytes = engine.decode(rest).ok();
        return bytes
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| RuntimeError::BadValue {
                key,
                value: raw.to_string(),
                source_name: source_name.to_string(),
                expected: "base64 of UTF-8 text after \"b64:\"",
            });
    }
    Ok(engine
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn plain_annotations() -> BTreeMap<String, String> {
        [
            (ANNOT_TYPE, "linux"),
            (ANNOT_HYPERVISOR, "qemu"),
            (ANNOT_BINARY, "/.boot/kernel"),
            (ANNOT_CMDLINE, "/bin/httpd -f -p 80"),
            (ANNOT_INITRD, "/.boot/rootfs"),
            (ANNOT_MOUNT_ROOTFS, "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn expected_linux() -> UnikernelConfig {
        UnikernelConfig {
            unikernel_type: UnikernelType::Linux,
            hypervisor: Hypervisor::Qemu,
            binary: "/.boot/kernel".into(),
            cmdline: Some("/bin/httpd -f -p 80".into()),
            initrd: Some("/.boot/rootfs".into()),
            block: None,
            blk_mnt_point: None,
            mount_rootfs: false,
            version: None,
        }
    }

    fn write_json(dir: &Path, pairs: &[(&str, &str)]) {
        let obj: serde_json::Map<String, serde_json::Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(b64(v))))
            .collect();
        std::fs::write(
            dir.join("urunc.json"),
            serde_json::to_vec(&serde_json::Value::Object(obj)).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn from_plain_annotations() {
        let dir = tempfile::tempdir().unwrap();
        let c = read_config(&plain_annotations(), dir.path()).unwrap();
        assert_eq!(c, expected_linux());
    }

    #[test]
    fn from_base64_annotations_of_older_images() {
        let dir = tempfile::tempdir().unwrap();
        let enc = plain_annotations()
            .into_iter()
            .map(|(k, v)| (k, b64(&v)))
            .collect();
        let c = read_config(&enc, dir.path()).unwrap();
        assert_eq!(c, expected_linux());
    }

    #[test]
    fn from_urunc_json_base64() {
        let dir = tempfile::tempdir().unwrap();
        write_json(
            dir.path(),
            &[
                (ANNOT_TYPE, "rumprun"),
                (ANNOT_HYPERVISOR, "hvt"),
                (ANNOT_BINARY, "/.boot/kernel"),
                (ANNOT_CMDLINE, "hello world"),
                (ANNOT_BLOCK, "/.boot/rootfs"),
                (ANNOT_BLK_MNT_POINT, "/data"),
                (ANNOT_MOUNT_ROOTFS, "true"),
                (ANNOT_VERSION, "0.15.0"),
            ],
        );
        let c = read_config(&BTreeMap::new(), dir.path()).unwrap();
        assert_eq!(
            c,
            UnikernelConfig {
                unikernel_type: UnikernelType::Rumprun,
                hypervisor: Hypervisor::Hvt,
                binary: "/.boot/kernel".into(),
                cmdline: Some("hello world".into()),
                initrd: None,
                block: Some("/.boot/rootfs".into()),
                blk_mnt_point: Some("/data".into()),
                mount_rootfs: true,
                version: Some("0.15.0".into()),
            }
        );
    }

    #[test]
    fn mixed_plain_and_base64_values_are_each_understood() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = plain_annotations();
        a.insert(ANNOT_TYPE.into(), b64("linux"));
        // "qemu" and "true" are themselves valid base64.
        a.insert(ANNOT_MOUNT_ROOTFS.into(), "true".into());
        let c = read_config(&a, dir.path()).unwrap();
        assert_eq!(c.unikernel_type, UnikernelType::Linux);
        assert_eq!(c.hypervisor, Hypervisor::Qemu);
        assert_eq!(c.binary, "/.boot/kernel");
        assert!(c.mount_rootfs);
    }

    #[test]
    fn complete_annotations_win_over_urunc_json() {
        let dir = tempfile::tempdir().unwrap();
        write_json(
            dir.path(),
            &[
                (ANNOT_TYPE, "unikraft"),
                (ANNOT_HYPERVISOR, "firecracker"),
                (ANNOT_BINARY, "/other"),
            ],
        );
        let c = read_config(&plain_annotations(), dir.path()).unwrap();
        assert_eq!(c, expected_linux());

        // An incomplete set falls back to urunc.json as a whole, like urunc.
        let mut partial = plain_annotations();
        partial.remove(ANNOT_BINARY);
        let c = read_config(&partial, dir.path()).unwrap();
        assert_eq!(c.unikernel_type, UnikernelType::Unikraft);
        assert_eq!(c.hypervisor, Hypervisor::Firecracker);
        assert_eq!(c.binary, "/other");
        assert_eq!(c.cmdline, None);
    }

    #[test]
    fn missing_key_names_key_and_places() {
        let dir = tempfile::tempdir().unwrap();
        let mut partial = plain_annotations();
        partial.remove(ANNOT_HYPERVISOR);
        let e = read_config(&partial, dir.path()).unwrap_err().to_string();
        assert!(e.contains(ANNOT_HYPERVISOR), "{e}");
        assert!(e.contains("annotations"), "{e}");
        assert!(
            e.contains(&dir.path().join("urunc.json").display().to_string()),
            "{e}"
        );

        write_json(
            dir.path(),
            &[(ANNOT_TYPE, "linux"), (ANNOT_HYPERVISOR, "qemu")],
        );
        let e = read_config(&BTreeMap::new(), dir.path()).unwrap_err();
        assert!(
            matches!(e, RuntimeError::MissingKey { key, .. } if key == ANNOT_BINARY),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = plain_annotations();
        a.insert(ANNOT_HYPERVISOR.into(), "vmware".into());
        let e = read_config(&a, dir.path()).unwrap_err().to_string();
        assert!(e.contains("vmware") && e.contains(ANNOT_HYPERVISOR), "{e}");

        std::fs::write(dir.path().join("urunc.json"), "[1,2]").unwrap();
        let e = read_config(&BTreeMap::new(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("urunc.json"), "{e}");
    }

    #[test]
    fn urunc_json_symlink_out_of_rootfs_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        write_json(
            outside.path(),
            &[
                (ANNOT_TYPE, "linux"),
                (ANNOT_HYPERVISOR, "qemu"),
                (ANNOT_BINARY, "/k"),
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let depth = dir.path().components().count();
        let up = "../".repeat(depth + 2);
        std::os::unix::fs::symlink(
            format!("{up}{}", outside.path().join("urunc.json").display()),
            dir.path().join("urunc.json"),
        )
        .unwrap();
        let e = read_config(&BTreeMap::new(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("out of the image"), "{e}");
    }
}
