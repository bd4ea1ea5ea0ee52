//! The archive forms FreeBSD ships: `.pkg` packages and the catalogue
//! (`packagesite.pkg`) are tars compressed with zstd (pkg >= 1.17), xz
//! (`.txz`, older repositories and `base.txz`) or gzip; compression is told
//! by the stream's magic bytes, as pkg itself does.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path};

use super::FreeBsdError;

/// Wraps `file` in the decompressor its first bytes call for.
pub fn decompress(file: File, what: &str) -> Result<Box<dyn Read>, FreeBsdError> {
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let head = reader.fill_buf().map_err(|e| FreeBsdError::io(what, e))?;
    Ok(if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(reader)
                .map_err(|e| FreeBsdError::io(what, e))?,
        )
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(reader))
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else {
        // An uncompressed tar (pkg's `none` format).
        Box::new(reader)
    })
}

/// The text of one member of a (compressed) tar, by name (`./` allowed).
pub fn read_member(file: File, member: &str, what: &str) -> Result<Option<Vec<u8>>, FreeBsdError> {
    let mut archive = tar::Archive::new(decompress(file, what)?);
    for entry in archive.entries().map_err(|e| FreeBsdError::io(what, e))? {
        let mut entry = entry.map_err(|e| FreeBsdError::io(what, e))?;
        let path = entry.path().map_err(|e| FreeBsdError::io(what, e))?;
        if path.strip_prefix("./").unwrap_or(&path) == Path::new(member) {
            let mut out = Vec::new();
            entry
                .read_to_end(&mut out)
                .map_err(|e| FreeBsdError::io(what, e))?;
            return Ok(Some(out));
        }
    }
    Ok(None)
}

/// Unpacks a package or base archive into `target` (which must exist).
/// Entries are written below `target` whatever their form (`/usr/...`,
/// `./usr/...`); pkg's metadata (`+MANIFEST`, `+COMPACT_MANIFEST`, ...) is
/// skipped; `..`, device nodes and anything a symlink would lead out of
/// `target` are refused with the entry's name. Returns the regular files.
pub fn unpack(file: File, target: &Path, what: &str) -> Result<u64, FreeBsdError> {
    let mut archive = tar::Archive::new(decompress(file, what)?);
    // Modes are kept (binaries must stay executable); owners cannot be
    // without root and are set by the rootfs builder anyway.
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    let mut files = 0;
    for entry in archive.entries().map_err(|e| FreeBsdError::io(what, e))? {
        let mut entry = entry.map_err(|e| FreeBsdError::io(what, e))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel = name.trim_start_matches('/').trim_start_matches("./");
        if rel.is_empty() || rel == "." || rel.starts_with('+') {
            continue;
        }
        let escape = |why: &'static str| FreeBsdError::Escape {
            archive: what.to_string(),
            entry: name.clone(),
            why,
        };
        if Path::new(rel)
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(escape("`..` in the path"));
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink() || kind.is_hard_link()) {
            if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
                continue;
            }
            return Err(escape("not a file, directory or link"));
        }
        if kind.is_hard_link() {
            let link = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let link_rel = link.trim_start_matches('/').trim_start_matches("./");
            if Path::new(link_rel)
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
            {
                return Err(escape("a hard link pointing outside the archive"));
            }
        }
        // tar's unpack_in refuses `..` and checks that the parent directory,
        // symlinks resolved, still lies inside `target`.
        let unpacked = entry.unpack_in(target).map_err(|e| FreeBsdError::Entry {
            archive: what.to_string(),
            entry: name.clone(),
            source: e,
        })?;
        if !unpacked {
            return Err(escape("the path leaves the target"));
        }
        if kind.is_file() {
            files += 1;
        }
    }
    Ok(files)
}

/// Reads `path`'s first bytes: is it an ELF file?
pub fn is_elf(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; 4];
    let mut f = File::open(path)?;
    let mut got = 0;
    while got < 4 {
        match f.read(&mut head[got..])? {
            0 => return Ok(false),
            n => got += n,
        }
    }
    Ok(&head == b"\x7fELF")
}
