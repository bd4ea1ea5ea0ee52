//! Deterministic layer tars, streamed straight into the store.
//!
//! The same entries always give the same bytes: entries are sorted by path,
//! missing parent directories are added (mode 0755), headers are GNU with
//! uid/gid 0, empty user/group names, the given mtime and no PAX records (so
//! no atime/ctime), and the file's mode is taken from the entry, never from
//! the disk. File contents are copied through a chain of writers that hashes
//! the uncompressed tar (the diff_id), compresses, and hashes again (the
//! digest) as the store writes the blob, so nothing is held in memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use oci_spec::image::Descriptor;
use sha2::{Digest as _, Sha256};

use super::error::OciError;
use crate::layers::store::{BlobWriter, Store};

/// What a layer entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerContent {
    /// A file on the host, streamed when the layer is written.
    File(PathBuf),
    /// Small generated content such as `/urunc.json`.
    Bytes(Vec<u8>),
    Dir,
    /// A symbolic link to the given target.
    Symlink(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    /// Absolute path inside the image.
    pub path: String,
    pub content: LayerContent,
    pub mode: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// How to compress a layer.
///
/// `Auto` looks at the content: when most of the bytes are already compressed
/// (a bzImage kernel, a gzip/xz/zstd/bzip2/lz4 initrd, or anything whose
/// sampled byte entropy is near 8 bits) gzip would only burn CPU and add
/// bytes, so the layer is stored uncompressed; otherwise it is gzipped at
/// the fastest level, which gets most of the gain on text and filesystem
/// images for little time. `Auto` never picks zstd because Docker 20.10
/// cannot load zstd layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionChoice {
    Auto,
    Fixed(Compression),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOptions {
    /// The mtime of every entry (SOURCE_DATE_EPOCH).
    pub mtime: u64,
    pub compression: CompressionChoice,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub descriptor: Descriptor,
    /// `sha256:` digest of the uncompressed tar.
    pub diff_id: String,
}

enum Planned<'a> {
    Entry(&'a LayerEntry),
    ImplicitDir,
}

/// Writes the layer tar for `entries` into the store.
pub fn write_layer(
    entries: &[LayerEntry],
    opts: &LayerOptions,
    store: &Store,
) -> Result<Layer, OciError> {
    let plan = plan(entries)?;
    let compression = match opts.compression {
        CompressionChoice::Fixed(c) => c,
        CompressionChoice::Auto => choose_auto(entries)?,
    };
    // A first pass only hashes the tar: when the store already holds this
    // layer in this compression, the costly pass (gzip, or copying a kernel)
    // is skipped. Rebuilds with unchanged inputs are then mostly hashing.
    let mut hashing = tar::Builder::new(HashSink(Sha256::new()));
    for (rel, item) in &plan {
        append(&mut hashing, rel, item, opts.mtime)?;
    }
    let tmp = store.root().join("tmp");
    let sink = hashing
        .into_inner()
        .map_err(OciError::io("hash layer tar in", &tmp))?;
    let diff_id = format!("sha256:{}", hex::encode(sink.0.finalize()));
    if let Some(descriptor) = cached_layer(store, &diff_id, compression) {
        return Ok(Layer {
            descriptor,
            diff_id,
        });
    }

    let blob = store.blob_writer()?;
    let encoder =
        Encoder::new(compression, blob).map_err(OciError::io("start compressor in", &tmp))?;
    let mut builder = tar::Builder::new(encoder);
    for (rel, item) in &plan {
        append(&mut builder, rel, item, opts.mtime)?;
    }
    let blob = builder
        .into_inner()
        .map_err(OciError::io("finish layer tar in", &tmp))?
        .finish()
        .map_err(OciError::io("finish compression in", &tmp))?;
    let descriptor = blob.commit(compression.media_type())?;
    if compression == Compression::None && descriptor.digest().to_string() != diff_id {
        // The inputs changed between the two passes.
        return Err(OciError::LayerInputsChanged { diff_id });
    }
    remember_layer(store, &diff_id, compression, &descriptor);
    Ok(Layer {
        descriptor,
        diff_id,
    })
}

struct HashSink(Sha256);

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where the compressed form of an uncompressed layer is remembered.
fn cache_entry(store: &Store, diff_id: &str, c: Compression) -> Option<std::path::PathBuf> {
    let hex = diff_id.strip_prefix("sha256:")?;
    let suffix = match c {
        Compression::None => "tar",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    };
    Some(
        store
            .root()
            .join("layer-cache")
            .join(format!("{hex}.{suffix}")),
    )
}

/// A layer built before from the same tar, if its blob is still stored.
fn cached_layer(store: &Store, diff_id: &str, c: Compression) -> Option<Descriptor> {
    if c == Compression::None {
        // Uncompressed, the blob's digest is the diff_id itself.
        let path = store.blob_path(diff_id).ok()?;
        let size = std::fs::metadata(path).ok()?.len();
        return crate::layers::store::descriptor(c.media_type(), size, diff_id).ok();
    }
    let bytes = std::fs::read(cache_entry(store, diff_id, c)?).ok()?;
    let d: Descriptor = serde_json::from_slice(&bytes).ok()?;
    (store.has_blob(d.digest().as_ref()) && d.media_type().to_string() == c.media_type())
        .then_some(d)
}

/// Best effort: a lost entry only costs a recompression next time.
fn remember_layer(store: &Store, diff_id: &str, c: Compression, d: &Descriptor) {
    if c == Compression::None {
        return;
    }
    let (Some(path), Ok(bytes)) = (cache_entry(store, diff_id, c), serde_json::to_vec(d)) else {
        return;
    };
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    if let Ok(mut f) = tempfile::NamedTempFile::new_in(dir) {
        if f.write_all(&bytes).is_ok() {
            let _ = f.persist(&path);
        }
    }
}

/// Normalises an absolute image path to its tar form (`a/b`), refusing
/// anything that could escape the rootfs.
pub fn normalize_path(path: &str) -> Result<String, OciError> {
    let bad = |reason| OciError::InvalidEntryPath {
        path: path.to_string(),
        reason,
    };
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| bad("must be absolute"))?;
    let mut parts = Vec::new();
    for part in rest.split('/') {
        match part {
            "" | "." => continue,
            ".." => return Err(bad("must not contain `..`")),
            p if p.contains('\0') => return Err(bad("must not contain NUL")),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(bad("names the image root"));
    }
    Ok(parts.join("/"))
}

fn plan(entries: &[LayerEntry]) -> Result<BTreeMap<String, Planned<'_>>, OciError> {
    let mut plan = BTreeMap::new();
    for entry in entries {
        let rel = normalize_path(&entry.path)?;
        if plan.insert(rel.clone(), Planned::Entry(entry)).is_some() {
            return Err(OciError::DuplicateEntry(entry.path.clone()));
        }
    }
    let explicit: Vec<String> = plan.keys().cloned().collect();
    for rel in explicit {
        let mut parent = rel.as_str();
        while let Some((p, _)) = parent.rsplit_once('/') {
            parent = p;
            match plan.get(parent) {
                None => {
                    plan.insert(parent.to_string(), Planned::ImplicitDir);
                }
                Some(Planned::Entry(e)) if e.content != LayerContent::Dir => {
                    return Err(OciError::InvalidEntryPath {
                        path: e.path.clone(),
                        reason: "is a parent of another entry but not a directory",
                    });
                }
                Some(_) => {}
            }
        }
    }
    Ok(plan)
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    rel: &str,
    item: &Planned<'_>,
    mtime: u64,
) -> Result<(), OciError> {
    let mut header = tar::Header::new_gnu();
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    let image_path = format!("/{rel}");
    let write_err = OciError::io("write layer entry", &image_path);
    match item {
        Planned::ImplicitDir => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder
                .append_data(&mut header, rel, io::empty())
                .map_err(write_err)
        }
        Planned::Entry(entry) => {
            header.set_mode(entry.mode & 0o7777);
            match &entry.content {
                LayerContent::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    builder
                        .append_data(&mut header, rel, io::empty())
                        .map_err(write_err)
                }
                LayerContent::Bytes(bytes) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(bytes.len() as u64);
                    builder
                        .append_data(&mut header, rel, bytes.as_slice())
                        .map_err(write_err)
                }
                LayerContent::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    builder
                        .append_link(&mut header, rel, target)
                        .map_err(write_err)
                }
                LayerContent::File(src) => {
                    let file = File::open(src).map_err(OciError::io("open", src))?;
                    let len = file.metadata().map_err(OciError::io("stat", src))?.len();
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(len);
                    let reader = ExactReader {
                        inner: file.take(len),
                        remaining: len,
                    };
                    builder.append_data(&mut header, rel, reader).map_err(|e| {
                        if e.kind() == io::ErrorKind::UnexpectedEof {
                            OciError::FileChanged {
                                path: src.clone(),
                                expected: len,
                            }
                        } else {
                            OciError::Io {
                                action: "add to layer",
                                path: src.clone(),
                                source: e,
                            }
                        }
                    })
                }
            }
        }
    }
}

/// Yields exactly the size announced in the header: a file that shrinks
/// while it is read is an error rather than a corrupt tar (`take` already
/// stops a growing file).
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being read",
            ));
        }
        self.remaining = self.remaining.saturating_sub(n as u64);
        Ok(n)
    }
}

enum Encoder {
    Plain(BlobWriter),
    Gzip(GzEncoder<BlobWriter>),
    Zstd(zstd::stream::write::Encoder<'static, BlobWriter>),
}

impl Encoder {
    fn new(c: Compression, blob: BlobWriter) -> io::Result<Encoder> {
        Ok(match c {
            Compression::None => Encoder::Plain(blob),
            // flate2 writes a fixed header (mtime 0, no name), so the output
            // depends only on the input.
            Compression::Gzip => Encoder::Gzip(GzEncoder::new(blob, flate2::Compression::fast())),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(blob, 3)?),
        })
    }

    fn finish(self) -> io::Result<BlobWriter> {
        match self {
            Encoder::Plain(b) => Ok(b),
            Encoder::Gzip(g) => g.finish(),
            Encoder::Zstd(z) => z.finish(),
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

const SAMPLE: usize = 64 * 1024;

fn choose_auto(entries: &[LayerEntry]) -> Result<Compression, OciError> {
    let mut total: u64 = 0;
    let mut incompressible: u64 = 0;
    for entry in entries {
        let (size, dense) = match &entry.content {
            LayerContent::Bytes(b) => (b.len() as u64, looks_compressed(&[b])),
            LayerContent::File(p) => {
                let (size, samples) = sample_file(p)?;
                let views: Vec<&[u8]> = samples.iter().map(Vec::as_slice).collect();
                (size, looks_compressed(&views))
            }
            LayerContent::Dir | LayerContent::Symlink(_) => continue,
        };
        total += size;
        if dense {
            incompressible += size;
        }
    }
    if total > 0 && incompressible * 2 >= total {
        Ok(Compression::None)
    } else {
        Ok(Compression::Gzip)
    }
}

/// Reads the head of the file and, for large files, a block from the middle,
/// so a compressed payload behind an uncompressed header is still noticed.
fn sample_file(path: &Path) -> Result<(u64, Vec<Vec<u8>>), OciError> {
    let mut f = File::open(path).map_err(OciError::io("open", path))?;
    let size = f.metadata().map_err(OciError::io("stat", path))?.len();
    let mut samples = Vec::new();
    let mut head = Vec::with_capacity(SAMPLE);
    (&mut f)
        .take(SAMPLE as u64)
        .read_to_end(&mut head)
        .map_err(OciError::io("read", path))?;
    samples.push(head);
    if size > 4 * SAMPLE as u64 {
        f.seek(SeekFrom::Start(size / 2))
            .map_err(OciError::io("seek in", path))?;
        let mut mid = Vec::with_capacity(SAMPLE);
        f.take(SAMPLE as u64)
            .read_to_end(&mut mid)
            .map_err(OciError::io("read", path))?;
        samples.push(mid);
    }
    Ok((size, samples))
}

/// True for data that gzip cannot usefully shrink.
pub fn looks_compressed(samples: &[&[u8]]) -> bool {
    let Some(head) = samples.first() else {
        return false;
    };
    const MAGICS: &[&[u8]] = &[
        &[0x1f, 0x8b],                         // gzip
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00], // xz
        &[0x28, 0xb5, 0x2f, 0xfd],             // zstd
        b"BZh",                                // bzip2
        &[0x04, 0x22, 0x4d, 0x18],             // lz4 frame
        &[0x02, 0x21, 0x4c, 0x18],             // lz4 legacy (kernel initrds)
        &[0x89, b'L', b'Z', b'O'],             // lzop
    ];
    if MAGICS.iter().any(|m| head.starts_with(m)) {
        return true;
    }
    // x86 bzImage: "HdrS" at 0x202; its payload is compressed.
    if head.len() >= 0x206 && &head[0x202..0x206] == b"HdrS" {
        return true;
    }
    let mut counts = [0u64; 256];
    let mut n = 0u64;
    for s in samples {
        for &b in *s {
            counts[b as usize] += 1;
        }
        n += s.len() as u64;
    }
    // Too little data to judge; gzip of a tiny file costs nothing.
    if n < 4096 {
        return false;
    }
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.log2()
        })
        .sum();
    entropy > 7.5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_and_escapes_refused() {
        assert_eq!(normalize_path("/a//b/./c").unwrap(), "a/b/c");
        assert!(normalize_path("a/b").is_err());
        assert!(normalize_path("/a/../b").is_err());
        assert!(normalize_path("/").is_err());
    }

    #[test]
    fn entropy_and_magic_sniffing() {
        let text = b"hello world, this is text\n".repeat(1000);
        assert!(!looks_compressed(&[&text]));
        let mut gz = vec![0x1f, 0x8b];
        gz.extend_from_slice(&text);
        assert!(looks_compressed(&[&gz]));
        // A pseudo-random sequence has near-maximal byte entropy.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let noise: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        assert!(looks_compressed(&[&noise]));
    }

    #[test]
    fn file_as_parent_is_refused() {
        let entries = vec![
            LayerEntry {
                path: "/a".into(),
                content: LayerContent::Bytes(vec![1]),
                mode: 0o644,
            },
            LayerEntry {
                path: "/a/b".into(),
                content: LayerContent::Bytes(vec![1]),
                mode: 0o644,
            },
        ];
        assert!(plan(&entries).is_err());
    }
}
