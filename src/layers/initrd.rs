//! Writes a [`Tree`] as a cpio "newc" initrd, optionally gzip-compressed.
//!
//! The output is padded with zeros to a multiple of 512 bytes: urunc appends
//! its own cpio archive after the initrd, and the kernel only finds that
//! second archive when the first ends on such a boundary ("invalid magic").

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use super::error::LayerError;
use super::tree::{EntryKind, Tree};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const PAD_TO: u64 = 512;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitrdOptions {
    /// Modification time of every entry (seconds since the epoch).
    pub mtime: u64,
    pub gzip: bool,
}

/// Writes the initrd to `out` and returns the number of bytes written,
/// padding included.
pub fn write_initrd<W: Write>(
    tree: &Tree,
    out: W,
    opts: &InitrdOptions,
) -> Result<u64, LayerError> {
    let mtime = u32::try_from(opts.mtime).map_err(|_| LayerError::MtimeOutOfRange {
        mtime: opts.mtime,
        format: "cpio newc",
        max: u64::from(u32::MAX),
    })?;
    // Checked before anything is written, so a failure leaves no half archive.
    for (path, entry) in tree.iter() {
        if let EntryKind::File { size, .. } = entry.kind {
            if size > u64::from(u32::MAX) {
                return Err(LayerError::FileTooLarge {
                    path: path.to_string(),
                    size,
                });
            }
        }
    }

    let mut counted = Counting {
        inner: BufWriter::with_capacity(1 << 16, out),
        written: 0,
    };
    if opts.gzip {
        // No file name and mtime 0 in the gzip header keep the bytes stable.
        let mut gz = GzBuilder::new()
            .mtime(0)
            .write(&mut counted, Compression::default());
        write_cpio(tree, &mut gz, mtime)?;
        finish_gzip(gz)?;
    } else {
        write_cpio(tree, &mut counted, mtime)?;
    }
    pad(&mut counted)?;
    counted.flush().map_err(output)?;
    Ok(counted.written)
}

fn finish_gzip<W: Write>(gz: GzEncoder<W>) -> Result<(), LayerError> {
    gz.finish().map(|_| ()).map_err(output)
}

fn output(source: io::Error) -> LayerError {
    LayerError::Output {
        what: "initrd",
        source,
    }
}

fn write_cpio<W: Write>(tree: &Tree, out: &mut W, mtime: u32) -> Result<(), LayerError> {
    let subdirs = count_subdirs(tree);
    for (ino, (path, entry)) in (1u32..).zip(tree.iter()) {
        let builder = cpio::newc::Builder::new(path)
            .ino(ino)
            .uid(0)
            .gid(0)
            .mtime(mtime);
        match &entry.kind {
            EntryKind::Dir => {
                let nlink = 2 + subdirs.get(path).copied().unwrap_or(0);
                let w = builder
                    .mode(S_IFDIR | entry.mode)
                    .nlink(nlink)
                    .write(&mut *out, 0);
                w.finish().map_err(output)?;
            }
            EntryKind::Symlink { target } => {
                let len = u32::try_from(target.len()).map_err(|_| LayerError::FileTooLarge {
                    path: path.to_string(),
                    size: target.len() as u64,
                })?;
                let mut w = builder.mode(S_IFLNK | 0o777).nlink(1).write(&mut *out, len);
                w.write_all(target.as_bytes()).map_err(output)?;
                w.finish().map_err(output)?;
            }
            EntryKind::File { source, size } => {
                let len = u32::try_from(*size).map_err(|_| LayerError::FileTooLarge {
                    path: path.to_string(),
                    size: *size,
                })?;
                let file = File::open(source).map_err(|e| LayerError::io("opening", source, e))?;
                let mut w = builder
                    .mode(S_IFREG | entry.mode)
                    .nlink(1)
                    .write(&mut *out, len);
                // take(size + 1) notices a file that grew since it was added.
                let mut reader = file.take(*size + 1);
                let copied = copy_exact(&mut reader, &mut w, *size)
                    .map_err(|e| LayerError::io("reading", source, e))?;
                if copied != *size {
                    return Err(LayerError::FileChanged {
                        path: source.clone(),
                        expected: *size,
                        actual: copied,
                    });
                }
                w.finish().map_err(output)?;
            }
        }
    }
    cpio::newc::trailer(&mut *out).map_err(output)?;
    Ok(())
}

/// Copies at most `limit` bytes; returns how many the source had (up to
/// `limit + 1`), so a size mismatch is detected instead of corrupting the
/// archive. The writer rejects bytes beyond its declared size.
fn copy_exact<R: Read, W: Write>(reader: &mut R, writer: &mut W, limit: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let room = limit.saturating_sub(total);
        let take = (n as u64).min(room) as usize;
        writer.write_all(&buf[..take])?;
        total += n as u64;
        if total > limit {
            return Ok(total);
        }
    }
}

fn count_subdirs(tree: &Tree) -> HashMap<&str, u32> {
    let mut counts = HashMap::new();
    for (path, entry) in tree.iter() {
        if matches!(entry.kind, EntryKind::Dir) {
            if let Some((parent, _)) = path.rsplit_once('/') {
                *counts.entry(parent).or_insert(0) += 1;
            }
        }
    }
    counts
}

fn pad<W: Write>(out: &mut Counting<W>) -> Result<(), LayerError> {
    let rem = out.written % PAD_TO;
    if rem != 0 {
        let zeros = [0u8; PAD_TO as usize];
        out.write_all(&zeros[..(PAD_TO - rem) as usize])
            .map_err(output)?;
    }
    Ok(())
}

struct Counting<W: Write> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
