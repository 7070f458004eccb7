//! Spill files: where full chunks moved out of memory ([`super::residency`]) are kept.
//!
//! A spill file is a cache, not a record of anything: the journal holds every record, and
//! opening the storage replays it and spills again, so spill files are neither synced nor kept
//! across an open. A chunk is written to one once, by the log's writer thread, outside the
//! storage's lock; the lock is taken only to swap the stream's chunk for its spilled twin.
//! Reads of spilled chunks read the file (the page cache, mostly) once the lock is released.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// How large a spill file grows before the next chunk starts another. A file is removed once
/// no chunk in it is held any more (its streams deleted, expired or compacted away), so
/// smaller files give disk back sooner, at one file per this many bytes spilled.
#[cfg(not(test))]
const SEGMENT_BYTES: u64 = 64 << 20;
/// Small in tests, so that a test fills several files.
#[cfg(test)]
const SEGMENT_BYTES: u64 = 256 << 10;

/// The file name prefix of spill files in the storage's directory.
const PREFIX: &str = "spill-";

/// One spill file; removed when the last chunk in it is dropped.
#[derive(Debug)]
pub(crate) struct Segment {
    file: File,
    path: PathBuf,
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Nothing reads it any more; a failure leaves a file the next open removes.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Where a spilled chunk's bytes are: `len` bytes at `at` in `segment`.
#[derive(Clone, Debug)]
pub(crate) struct SpillRef {
    segment: Arc<Segment>,
    at: u64,
}

impl SpillRef {
    /// Reads `range` of the chunk's bytes (offsets within the chunk).
    pub(super) fn read(&self, range: std::ops::Range<usize>) -> std::io::Result<Bytes> {
        let mut buf = BytesMut::zeroed(range.len());
        self.read_into(range, &mut buf)?;
        Ok(buf.freeze())
    }

    /// Reads `range` of the chunk's bytes into `out` (as long as the range).
    pub(super) fn read_into(
        &self,
        range: std::ops::Range<usize>,
        out: &mut [u8],
    ) -> std::io::Result<()> {
        read_at(&self.segment.file, out, self.at + range.start as u64)
    }
}

/// Bytes of one spill file that lie back to back, read with one call: consecutive chunks of a
/// stream spilled one after the other (the common case for a stream written in one go) are
/// side by side in their file.
#[derive(Debug)]
pub(super) struct SpillRun {
    segment: Arc<Segment>,
    at: u64,
    len: usize,
}

impl SpillRun {
    /// The run of `range` of the chunk at `at`.
    pub(super) fn new(at: &SpillRef, range: std::ops::Range<usize>) -> SpillRun {
        SpillRun {
            segment: at.segment.clone(),
            at: at.at + range.start as u64,
            len: range.len(),
        }
    }

    /// Extends the run by `range` of the chunk at `at` if those bytes follow it in the same
    /// file; false (and unchanged) otherwise.
    pub(super) fn extend(&mut self, at: &SpillRef, range: std::ops::Range<usize>) -> bool {
        let follows = Arc::ptr_eq(&self.segment, &at.segment)
            && self.at + self.len as u64 == at.at + range.start as u64;
        if follows {
            self.len += range.len();
        }
        follows
    }

    /// The run's length in bytes.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Reads the run into `out` (as long as the run).
    pub(super) fn read_into(&self, out: &mut [u8]) -> std::io::Result<()> {
        read_at(&self.segment.file, out, self.at)
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, at)
}

#[cfg(unix)]
fn write_at(file: &File, buf: &[u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, at)
}

#[cfg(not(unix))]
fn read_at(_: &File, _: &mut [u8], _: u64) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "spill files need positioned reads",
    ))
}

#[cfg(not(unix))]
fn write_at(_: &File, _: &[u8], _: u64) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "spill files need positioned writes",
    ))
}

/// Writes chunks into spill files in a directory (one writer: the log's writer thread).
#[derive(Debug)]
pub(crate) struct Spiller {
    dir: PathBuf,
    /// The file being filled, and where its next chunk goes.
    current: Option<(Arc<Segment>, u64)>,
    next_file: u64,
    /// Set after a write failed: nothing more is spilled (chunks stay resident), and the
    /// failure was logged once.
    failed: bool,
}

impl Spiller {
    /// A spiller into `dir`, removing the spill files an earlier open left there.
    pub(crate) fn new(dir: &Path) -> std::io::Result<Spiller> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(PREFIX) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(Spiller {
            dir: dir.to_path_buf(),
            current: None,
            next_file: 0,
            failed: false,
        })
    }

    /// Writes `parts` back to back as one chunk's bytes; `None` once spilling failed.
    pub(super) fn write(&mut self, parts: &[&[u8]]) -> Option<SpillRef> {
        if self.failed {
            return None;
        }
        match self.try_write(parts) {
            Ok(at) => Some(at),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "log storage: cannot write a spill file; records stay in memory from now on");
                self.failed = true;
                None
            }
        }
    }

    fn try_write(&mut self, parts: &[&[u8]]) -> std::io::Result<SpillRef> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let full = self
            .current
            .as_ref()
            .is_none_or(|(_, at)| *at > 0 && at + len > SEGMENT_BYTES);
        if full {
            let path = self.dir.join(format!("{PREFIX}{:06}.dat", self.next_file));
            self.next_file += 1;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            self.current = Some((Arc::new(Segment { file, path }), 0));
        }
        let Some((segment, at)) = self.current.as_mut() else {
            unreachable!("a segment was just opened");
        };
        let start = *at;
        let mut pos = start;
        for part in parts {
            write_at(&segment.file, part, pos)?;
            pos += part.len() as u64;
        }
        *at = pos;
        Ok(SpillRef {
            segment: segment.clone(),
            at: start,
        })
    }
}
