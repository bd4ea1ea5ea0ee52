//! urunc's `com.urunc.unikernel.*` settings and their two encodings: plain
//! annotations/labels, and `/urunc.json` with standard-base64 values (the
//! copy urunc really reads under Docker, nerdctl and ctr, which build the
//! runtime spec from the image config and drop manifest annotations).

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::error::OciError;
use super::layer::{LayerContent, LayerEntry};

pub const KERNEL_PATH: &str = "/.boot/kernel";
pub const ROOTFS_PATH: &str = "/.boot/rootfs";
pub const URUNC_JSON_PATH: &str = "/urunc.json";

pub const PREFIX: &str = "com.urunc.unikernel.";
pub const KEY_UNIKERNEL_TYPE: &str = "com.urunc.unikernel.unikernelType";
pub const KEY_HYPERVISOR: &str = "com.urunc.unikernel.hypervisor";
pub const KEY_BINARY: &str = "com.urunc.unikernel.binary";
pub const KEY_CMDLINE: &str = "com.urunc.unikernel.cmdline";
pub const KEY_INITRD: &str = "com.urunc.unikernel.initrd";
pub const KEY_BLOCK: &str = "com.urunc.unikernel.block";
pub const KEY_BLK_MNT_POINT: &str = "com.urunc.unikernel.blkMntPoint";
pub const KEY_MOUNT_ROOTFS: &str = "com.urunc.unikernel.mountRootfs";
/// Older urunc's devmapper switch. urunc of mid-2025 lets any non-empty
/// value override the operator's `USE_DEVMAPPER_AS_BLOCK`, and Go bunny never
/// writes it: so it is passed through when the user set it, never made up.
pub const KEY_USE_DM_BLOCK: &str = "com.urunc.unikernel.useDMBlock";
pub const KEY_UNIKERNEL_VERSION: &str = "com.urunc.unikernel.unikernelVersion";

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct UruncConfig {
    pub unikernel_type: String,
    pub hypervisor: String,
    pub binary: String,
    pub cmdline: Option<String>,
    pub initrd: Option<String>,
    pub block: Option<String>,
    pub blk_mnt_point: Option<String>,
    pub mount_rootfs: bool,
    pub unikernel_version: Option<String>,
    /// Only ever the user's own value (see [`KEY_USE_DM_BLOCK`]).
    pub use_dm_block: Option<String>,
}

impl UruncConfig {
    /// Plain values keyed `com.urunc.unikernel.*`; absent optionals omitted.
    pub fn to_annotations(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            m.insert(k.to_string(), v.to_string());
        };
        put(KEY_UNIKERNEL_TYPE, &self.unikernel_type);
        put(KEY_HYPERVISOR, &self.hypervisor);
        put(KEY_BINARY, &self.binary);
        let optionals = [
            (KEY_CMDLINE, &self.cmdline),
            (KEY_INITRD, &self.initrd),
            (KEY_BLOCK, &self.block),
            (KEY_BLK_MNT_POINT, &self.blk_mnt_point),
            (KEY_UNIKERNEL_VERSION, &self.unikernel_version),
            (KEY_USE_DM_BLOCK, &self.use_dm_block),
        ];
        for (k, v) in optionals {
            if let Some(v) = v {
                put(k, v);
            }
        }
        let flag = if self.mount_rootfs { "true" } else { "false" };
        put(KEY_MOUNT_ROOTFS, flag);
        m
    }

    /// The content of `/urunc.json`: a flat object, keys sorted, values in
    /// standard base64.
    pub fn urunc_json(&self) -> Vec<u8> {
        let encoded: BTreeMap<String, String> = self
            .to_annotations()
            .into_iter()
            .map(|(k, v)| (k, STANDARD.encode(v.as_bytes())))
            .collect();
        // A map of strings always serialises; fall back to an empty object
        // rather than panic should that ever change.
        serde_json::to_vec(&encoded).unwrap_or_else(|_| b"{}".to_vec())
    }

    /// The `/urunc.json` layer entry (mode 0644).
    pub fn layer_entry(&self) -> LayerEntry {
        LayerEntry {
            path: URUNC_JSON_PATH.to_string(),
            content: LayerContent::Bytes(self.urunc_json()),
            mode: 0o644,
        }
    }

    /// Reads plain values; keys outside `com.urunc.unikernel.*` are ignored.
    pub fn from_annotations(map: &BTreeMap<String, String>) -> Result<UruncConfig, OciError> {
        let required = |k: &str| {
            map.get(k)
                .cloned()
                .ok_or_else(|| OciError::MissingAnnotation(k.to_string()))
        };
        let optional = |k: &str| map.get(k).cloned();
        let mount_rootfs = match (map.get(KEY_MOUNT_ROOTFS), map.get(KEY_USE_DM_BLOCK)) {
            (Some(v), _) => parse_bool(KEY_MOUNT_ROOTFS, v)?,
            (None, Some(v)) => parse_bool(KEY_USE_DM_BLOCK, v)?,
            (None, None) => false,
        };
        Ok(UruncConfig {
            unikernel_type: required(KEY_UNIKERNEL_TYPE)?,
            hypervisor: required(KEY_HYPERVISOR)?,
            binary: required(KEY_BINARY)?,
            cmdline: optional(KEY_CMDLINE),
            initrd: optional(KEY_INITRD),
            block: optional(KEY_BLOCK),
            blk_mnt_point: optional(KEY_BLK_MNT_POINT),
            mount_rootfs,
            unikernel_version: optional(KEY_UNIKERNEL_VERSION),
            use_dm_block: optional(KEY_USE_DM_BLOCK),
        })
    }

    /// Reads `/urunc.json` (base64 values).
    pub fn from_urunc_json(bytes: &[u8]) -> Result<UruncConfig, OciError> {
        Self::from_annotations(&decode_urunc_json(bytes)?)
    }
}

/// Decodes every `com.urunc.unikernel.*` value of a `/urunc.json`; other keys
/// are kept as they are.
pub fn decode_urunc_json(bytes: &[u8]) -> Result<BTreeMap<String, String>, OciError> {
    let raw: BTreeMap<String, String> =
        serde_json::from_slice(bytes).map_err(OciError::InvalidUruncJson)?;
    raw.into_iter()
        .map(|(k, v)| {
            if !k.starts_with(PREFIX) {
                return Ok((k, v));
            }
            let decoded = STANDARD
                .decode(v.as_bytes())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| OciError::InvalidBase64 { key: k.clone() })?;
            Ok((k, decoded))
        })
        .collect()
}

fn parse_bool(key: &str, value: &str) -> Result<bool, OciError> {
    // Go's strconv.ParseBool spellings, which is what urunc accepts.
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(OciError::InvalidBool {
            key: key.to_string(),
            value: value.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> UruncConfig {
        UruncConfig {
            unikernel_type: "linux".into(),
            hypervisor: "qemu".into(),
            binary: KERNEL_PATH.into(),
            cmdline: Some("/bin/httpd -f -p 80".into()),
            initrd: Some(ROOTFS_PATH.into()),
            mount_rootfs: false,
            ..Default::default()
        }
    }

    #[test]
    fn annotations_round_trip_and_use_dm_block_is_never_made_up() {
        let c = sample();
        let a = c.to_annotations();
        assert_eq!(a[KEY_MOUNT_ROOTFS], "false");
        assert!(!a.contains_key(KEY_USE_DM_BLOCK));
        assert!(!a.contains_key(KEY_BLOCK));
        assert_eq!(UruncConfig::from_annotations(&a).unwrap(), c);
        // The user's own value, even one that disagrees, goes through as is.
        let mut a = a;
        a.insert(KEY_USE_DM_BLOCK.into(), "true".into());
        let c = UruncConfig::from_annotations(&a).unwrap();
        assert_eq!(c.use_dm_block.as_deref(), Some("true"));
        assert_eq!(c.to_annotations()[KEY_USE_DM_BLOCK], "true");
        assert_eq!(c.to_annotations()[KEY_MOUNT_ROOTFS], "false");
    }

    #[test]
    fn urunc_json_is_sorted_standard_base64() {
        let c = sample();
        let json = c.urunc_json();
        let raw: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&json).unwrap();
        let keys: Vec<&String> = raw.keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        // "linux" in standard base64 (padding kept).
        assert_eq!(raw[KEY_UNIKERNEL_TYPE], "bGludXg=");
        assert_eq!(UruncConfig::from_urunc_json(&json).unwrap(), c);
        assert_eq!(json, c.urunc_json());
    }

    #[test]
    fn missing_key_is_named() {
        let mut a = sample().to_annotations();
        a.remove(KEY_BINARY);
        let err = UruncConfig::from_annotations(&a).unwrap_err().to_string();
        assert!(err.contains(KEY_BINARY), "{err}");
    }

    #[test]
    fn use_dm_block_alone_is_honoured_and_bad_bool_rejected() {
        let mut a = sample().to_annotations();
        a.remove(KEY_MOUNT_ROOTFS);
        a.insert(KEY_USE_DM_BLOCK.into(), "true".into());
        assert!(UruncConfig::from_annotations(&a).unwrap().mount_rootfs);
        a.insert(KEY_MOUNT_ROOTFS.into(), "yes".into());
        assert!(UruncConfig::from_annotations(&a).is_err());
    }
}
