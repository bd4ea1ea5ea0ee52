//! Solo5 guests and tenders: which device ABI a unikernel was linked for,
//! and which tender on this host speaks it.
//!
//! Solo5 0.5 replaced the fixed pair of devices (`--net=`, `--disk=`) with
//! named devices the unikernel declares in an application manifest, an ELF
//! note `.note.solo5.manifest` of type "MFT1". A tender only runs guests of
//! its own ABI, and a >= 0.5 tender refuses to start unless every declared
//! device is attached, so the command line has to follow the guest.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::RuntimeError;

const NOTE_NAME: &[u8] = b"Solo5\0";
/// "MFT1", the manifest note's type.
const MFT1_NOTE_TYPE: u32 = 0x3154_464d;
const MFT_VERSION: u32 = 1;
const MFT_MAX_ENTRIES: u32 = 64;
/// `struct mft_entry` on 64-bit targets: name[68], type, two unions, bool.
const MFT_ENTRY_SIZE: usize = 104;
const MFT_NAME_SIZE: usize = 68;
const MFT_DEV_BLOCK_BASIC: u32 = 1;
const MFT_DEV_NET_BASIC: u32 = 2;
/// Notes are small; anything larger is not a Solo5 note.
const MAX_NOTE_BYTES: u64 = 1 << 20;

/// The device ABI a Solo5 unikernel was linked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Solo5Abi {
    /// Solo5 0.4: no manifest; one NIC (`--net=`) and one disk (`--disk=`).
    Legacy,
    /// Solo5 >= 0.5: the devices the manifest declares, by name.
    Manifest {
        net: Vec<String>,
        block: Vec<String>,
    },
}

impl Solo5Abi {
    /// What a tender of this ABI is called in messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Solo5Abi::Legacy => "Solo5 0.4 (no .note.solo5.manifest: --net=/--disk=)",
            Solo5Abi::Manifest { .. } => {
                "Solo5 >= 0.5 (devices named in .note.solo5.manifest: --net:NAME=/--block:NAME=)"
            }
        }
    }

    fn is_legacy(&self) -> bool {
        matches!(self, Solo5Abi::Legacy)
    }
}

/// Reads the unikernel's manifest note. A file that is not a 64-bit
/// little-endian ELF is an error: no tender can run it.
pub fn read_abi(kernel: &Path) -> Result<Solo5Abi, RuntimeError> {
    let bad = |detail: String| RuntimeError::BadUnikernel {
        path: kernel.to_path_buf(),
        detail,
    };
    let io = |source: std::io::Error| RuntimeError::ReadFile {
        path: kernel.to_path_buf(),
        source,
    };
    let mut f = File::open(kernel).map_err(io)?;
    let mut ehdr = [0u8; 64];
    f.read_exact(&mut ehdr)
        .map_err(|_| bad("too short to be an ELF file".into()))?;
    if &ehdr[..4] != b"\x7fELF" || ehdr[4] != 2 || ehdr[5] != 1 {
        return Err(bad(
            "not a 64-bit little-endian ELF file, which every Solo5 unikernel is".into(),
        ));
    }
    let phoff = u64_at(&ehdr, 0x20);
    let phentsize = u16_at(&ehdr, 0x36) as u64;
    let phnum = u16_at(&ehdr, 0x38) as u64;
    if phentsize < 56 || phnum > 256 {
        return Err(bad(format!(
            "implausible program headers ({phnum} of {phentsize} bytes)"
        )));
    }
    let mut phdrs = vec![0u8; (phentsize * phnum) as usize];
    f.seek(SeekFrom::Start(phoff)).map_err(io)?;
    f.read_exact(&mut phdrs)
        .map_err(|_| bad("its program headers lie past the end of the file".into()))?;
    for ph in phdrs.chunks_exact(phentsize as usize) {
        // PT_NOTE: Solo5's tenders look for the manifest in note segments.
        if u32_at(ph, 0) != 4 {
            continue;
        }
        let (offset, size) = (u64_at(ph, 8), u64_at(ph, 32));
        if size > MAX_NOTE_BYTES {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        f.read_exact(&mut notes)
            .map_err(|_| bad("a note segment lies past the end of the file".into()))?;
        if let Some(desc) = find_note(&notes, MFT1_NOTE_TYPE) {
            return parse_manifest(desc).map_err(bad);
        }
    }
    Ok(Solo5Abi::Legacy)
}

/// The descriptor of the Solo5 note of type `ty` among `notes`.
fn find_note(notes: &[u8], ty: u32) -> Option<&[u8]> {
    let mut at = 0usize;
    while at + 12 <= notes.len() {
        let namesz = u32_at(notes, at) as usize;
        let descsz = u32_at(notes, at + 4) as usize;
        let nty = u32_at(notes, at + 8);
        let name_at = at + 12;
        let desc_at = name_at.checked_add(align4(namesz))?;
        let end = desc_at.checked_add(descsz)?;
        if end > notes.len() {
            return None;
        }
        if nty == ty && notes.get(name_at..name_at + namesz) == Some(NOTE_NAME) {
            return Some(&notes[desc_at..end]);
        }
        at = desc_at.checked_add(align4(descsz))?;
    }
    None
}

/// `struct mft` inside the descriptor. The structure is 8-byte aligned in the
/// note, so it may start a few padding bytes into the descriptor.
fn parse_manifest(desc: &[u8]) -> Result<Solo5Abi, String> {
    for pad in [4usize, 0] {
        let Some(m) = desc.get(pad..) else { continue };
        if m.len() < 8 || u32_at(m, 0) != MFT_VERSION {
            continue;
        }
        let entries = u32_at(m, 4);
        if entries > MFT_MAX_ENTRIES || 8 + entries as usize * MFT_ENTRY_SIZE > m.len() {
            continue;
        }
        let (mut net, mut block) = (Vec::new(), Vec::new());
        for i in 0..entries as usize {
            let e = &m[8 + i * MFT_ENTRY_SIZE..8 + (i + 1) * MFT_ENTRY_SIZE];
            let raw = &e[..MFT_NAME_SIZE];
            let len = raw.iter().position(|&b| b == 0).unwrap_or(MFT_NAME_SIZE);
            let name = String::from_utf8_lossy(&raw[..len]).into_owned();
            match u32_at(e, MFT_NAME_SIZE) {
                MFT_DEV_NET_BASIC => net.push(name),
                MFT_DEV_BLOCK_BASIC => block.push(name),
                // Reserved entries (Solo5's own bookkeeping) are no devices.
                _ => {}
            }
        }
        return Ok(Solo5Abi::Manifest { net, block });
    }
    Err(format!(
        "its .note.solo5.manifest is not a version {MFT_VERSION} manifest of at most {MFT_MAX_ENTRIES} entries"
    ))
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

/// Tender names to try, in order, for a guest of `abi`: a 0.4 tender is
/// installed beside a newer one under a `-0.4` suffix (a distribution ships
/// one `solo5-spt`; both cannot have that name).
pub fn tender_candidates(program: &str, abi: &Solo5Abi) -> Vec<String> {
    if abi.is_legacy() {
        vec![format!("{program}-0.4"), program.to_string()]
    } else {
        vec![program.to_string()]
    }
}

/// Which option syntax a tender takes, from its own `--help` (0.4 lists
/// `--net=TAP`, >= 0.5 lists `--net:NAME=`); None if it says neither.
pub fn tender_speaks_legacy(tender: &Path) -> Option<bool> {
    let out = Command::new(tender)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = [out.stdout, out.stderr].concat();
    let text = String::from_utf8_lossy(&text);
    if text.contains("--net:NAME") || text.contains("--block:NAME") {
        Some(false)
    } else if text.contains("--net=") || text.contains("--disk=") {
        Some(true)
    } else {
        None
    }
}

/// The first candidate on PATH that speaks `abi`, or an error naming every
/// tender found and what each speaks.
pub fn find_tender(
    candidates: &[String],
    abi: &Solo5Abi,
    kernel: &Path,
    find: impl Fn(&str) -> Option<PathBuf>,
) -> Result<PathBuf, RuntimeError> {
    let mut seen = Vec::new();
    for name in candidates {
        let Some(path) = find(name) else { continue };
        match tender_speaks_legacy(&path) {
            Some(legacy) if legacy == abi.is_legacy() => return Ok(path),
            Some(legacy) => seen.push(format!(
                "{} speaks {}",
                path.display(),
                if legacy {
                    Solo5Abi::Legacy.describe()
                } else {
                    "Solo5 >= 0.5 (named devices)"
                }
            )),
            None => seen.push(format!(
                "{} did not say which options it takes",
                path.display()
            )),
        }
    }
    Err(RuntimeError::TenderAbi {
        kernel: kernel.to_path_buf(),
        abi: abi.describe(),
        wanted: candidates.join(" or "),
        found: if seen.is_empty() {
            "none is on PATH".into()
        } else {
            seen.join("; ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 file with one PT_NOTE segment holding `notes`.
    pub(crate) fn elf_with_notes(notes: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        f[ph..ph + 4].copy_from_slice(&4u32.to_le_bytes());
        f[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes());
        f[ph + 32..ph + 40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        f.extend_from_slice(notes);
        f
    }

    /// A Solo5 manifest note declaring `devs` (name, type), laid out as
    /// Solo5's MFT1_NOTE_DECLARE does (struct mft 8 bytes into the note's
    /// 8-aligned body, so 4 bytes into the descriptor).
    pub(crate) fn manifest_note(devs: &[(&str, u32)]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&MFT_VERSION.to_le_bytes());
        m.extend_from_slice(&(devs.len() as u32).to_le_bytes());
        for (name, ty) in devs {
            let mut e = vec![0u8; MFT_ENTRY_SIZE];
            e[..name.len()].copy_from_slice(name.as_bytes());
            e[MFT_NAME_SIZE..MFT_NAME_SIZE + 4].copy_from_slice(&ty.to_le_bytes());
            m.extend_from_slice(&e);
        }
        let mut desc = vec![0u8; 4];
        desc.extend_from_slice(&m);
        let mut n = Vec::new();
        n.extend_from_slice(&6u32.to_le_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&MFT1_NOTE_TYPE.to_le_bytes());
        n.extend_from_slice(b"Solo5\0\0\0");
        n.extend_from_slice(&desc);
        n
    }

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), bytes).unwrap();
        f
    }

    #[test]
    fn a_manifest_names_the_devices() {
        // A note of another owner first: it must be skipped, not misread.
        let mut notes = Vec::new();
        notes.extend_from_slice(&4u32.to_le_bytes());
        notes.extend_from_slice(&4u32.to_le_bytes());
        notes.extend_from_slice(&MFT1_NOTE_TYPE.to_le_bytes());
        notes.extend_from_slice(b"GNU\0abcd");
        notes.extend(manifest_note(&[
            ("tap", MFT_DEV_NET_BASIC),
            ("rootfs", MFT_DEV_BLOCK_BASIC),
            ("", 1 << 30),
        ]));
        let f = write(&elf_with_notes(&notes));
        assert_eq!(
            read_abi(f.path()).unwrap(),
            Solo5Abi::Manifest {
                net: vec!["tap".into()],
                block: vec!["rootfs".into()]
            }
        );
    }

    #[test]
    fn no_manifest_is_solo5_0_4() {
        let f = write(&elf_with_notes(&[]));
        assert_eq!(read_abi(f.path()).unwrap(), Solo5Abi::Legacy);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&b"#!/bin/sh\n"[..], &b"\x7fELF\x01\x01"[..], &[0u8; 3][..]] {
            let f = write(bytes);
            let e = read_abi(f.path()).unwrap_err().to_string();
            assert!(e.contains("ELF"), "{e}");
        }
        // A manifest note whose entry count runs past its end.
        let mut n = manifest_note(&[("tap", MFT_DEV_NET_BASIC)]);
        let at = 12 + 8 + 4 + 4;
        n[at..at + 4].copy_from_slice(&9u32.to_le_bytes());
        let f = write(&elf_with_notes(&n));
        assert!(read_abi(f.path())
            .unwrap_err()
            .to_string()
            .contains("manifest"));
        // Program headers pointing past the end.
        let mut e = elf_with_notes(&[]);
        e[0x20..0x28].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let f = write(&e);
        assert!(read_abi(f.path()).is_err());
    }

    #[test]
    fn legacy_guests_look_for_a_suffixed_tender_first() {
        assert_eq!(
            tender_candidates("solo5-spt", &Solo5Abi::Legacy),
            ["solo5-spt-0.4", "solo5-spt"]
        );
        let named = Solo5Abi::Manifest {
            net: vec![],
            block: vec![],
        };
        assert_eq!(tender_candidates("solo5-hvt", &named), ["solo5-hvt"]);
    }

    #[test]
    fn a_tender_is_judged_by_its_help() {
        let d = tempfile::tempdir().unwrap();
        let mk = |name: &str, help: &str| {
            let p = d.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\necho '{help}' >&2\nexit 1\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let old = mk("old", "    --net=TAP (host tap device)\n    --disk=IMAGE");
        let new = mk("new", "    --net:NAME=IFACE | @NN\n    --block:NAME=PATH");
        let mute = mk("mute", "hello");
        assert_eq!(tender_speaks_legacy(&old), Some(true));
        assert_eq!(tender_speaks_legacy(&new), Some(false));
        assert_eq!(tender_speaks_legacy(&mute), None);
        let find = |n: &str| Some(d.path().join(n)).filter(|p| p.exists());
        let k = Path::new("/k");
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            find_tender(&names(&["absent", "old"]), &Solo5Abi::Legacy, k, find).unwrap(),
            old
        );
        let e = find_tender(&names(&["new", "mute"]), &Solo5Abi::Legacy, k, find)
            .unwrap_err()
            .to_string();
        assert!(e.contains("named devices") && e.contains("mute"), "{e}");
        let e = find_tender(&names(&["absent"]), &Solo5Abi::Legacy, k, find)
            .unwrap_err()
            .to_string();
        assert!(e.contains("none is on PATH"), "{e}");
    }
}
