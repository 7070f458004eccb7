//! Compaction: rewriting the journal without the changes of streams that are gone.
//!
//! The journal keeps every change ever made, so a stream deleted or expired would keep its
//! bytes in the file forever. A stream's current life starts at the last frame that created it
//! (a create is journaled only for a name that does not exist, and a name kept for its forks
//! cannot be created again), and every later frame naming it belongs to that life. Applied again
//! in their order, the frames of the lives that still exist make the same streams: each
//! operation decides its effect from its own stream's state only, except a fork's create, which
//! reads its source, and a source exists as long as any fork of it does (it is kept, marked
//! deleted, for them). So the journal can be rewritten with those frames alone.
//!
//! The writer rewrites it once the dead bytes are at least [`min_dead`](Liveness::new) and at
//! least the live bytes (so each byte is copied a bounded number of times: rewriting copies the
//! live bytes, and at least as many dead bytes were written since the last rewrite). The new
//! file is written next to the journal, synced, renamed over it and the directory synced; a
//! crash before the rename leaves the old journal (and a stray file opening deletes), one after
//! it the new one, and both describe the same streams.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use courier_traits::storage::StreamName;

use super::codec::{self, Subject};
use super::frame::{self, At, HEADER};

/// Where a stream's current life starts in the file and how many bytes of frames it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Life {
    /// The offset of the frame that created the stream.
    start: u64,
    /// Bytes of its frames from there on, headers included.
    bytes: u64,
}

/// What the writer knows of the journal file's frames: which life each belongs to.
#[derive(Debug)]
pub(super) struct Liveness {
    /// Every name created since the last check, including names since removed (the next check
    /// forgets those).
    lives: HashMap<String, Life>,
    /// The length of the file's whole frames.
    file_bytes: u64,
    /// The file length at which to check again whether to rewrite.
    next_check: u64,
    min_dead: u64,
    /// Bytes of the lives that removals ended (or marked deleted) since the last check: a
    /// delete makes a stream's bytes dead without the file growing.
    removed: u64,
    /// Set when a frame could not be read back: rewriting is then off for this open.
    broken: Option<String>,
}

/// A rewritten journal, synced, not yet renamed over the journal.
pub(super) struct Rewritten {
    /// The new file, open for writing, at `dir/journal.compact` until renamed.
    pub(super) file: File,
    /// Its length.
    pub(super) len: u64,
    lives: HashMap<String, Life>,
}

impl Liveness {
    /// Nothing known yet; the file is rewritten once it holds at least `min_dead` dead bytes
    /// and at least as many as live ones.
    pub(super) fn new(min_dead: u64) -> Liveness {
        Liveness {
            lives: HashMap::new(),
            file_bytes: 0,
            next_check: min_dead.max(1),
            min_dead: min_dead.max(1),
            removed: 0,
            broken: None,
        }
    }

    /// Notes the frame of `len` bytes (header included) at `offset`, about `subject`.
    pub(super) fn frame(&mut self, offset: u64, len: u64, subject: &Subject<'_>) {
        if subject.creates {
            self.lives.insert(
                subject.name.to_owned(),
                Life {
                    start: offset,
                    bytes: len,
                },
            );
        } else if let Some(life) = self.lives.get_mut(subject.name) {
            life.bytes += len;
            if subject.removes {
                self.removed += life.bytes;
            }
        }
        self.file_bytes = offset + len;
    }

    /// Notes the frames of `group`, written at `offset`.
    pub(super) fn group(&mut self, group: &[u8], offset: u64) {
        let mut pos = 0;
        while let At::Frame { body, next } = frame::at(group, pos) {
            match codec::subject(body) {
                Ok(subject) => self.frame(offset + pos as u64, (next - pos) as u64, &subject),
                Err(why) => {
                    return self.broke(format!("a frame at byte {}: {why}", offset + pos as u64));
                }
            }
            pos = next;
        }
        if pos != group.len() {
            self.broke(format!(
                "a group at byte {offset} does not end with a whole frame"
            ));
        }
        self.file_bytes = offset + group.len() as u64;
    }

    fn broke(&mut self, why: String) {
        tracing::error!(error = %why, "log storage: the journal will not be compacted until it is opened again");
        self.broken.get_or_insert(why);
    }

    /// Whether the file grew, or removals ended, enough since the last check to look again
    /// (which needs the names of the streams that exist).
    pub(super) fn due(&self) -> bool {
        self.broken.is_none()
            && (self.file_bytes >= self.next_check || self.removed >= self.min_dead)
    }

    /// Decides, given the streams that exist at the end of the file, whether rewriting is worth
    /// it now; if not, when to look again. Forgets the lives of names that no longer exist.
    pub(super) fn worth_rewriting(&mut self, existing: &[StreamName]) -> bool {
        self.removed = 0;
        let existing: HashSet<&str> = existing.iter().map(StreamName::as_str).collect();
        self.lives
            .retain(|name, _| existing.contains(name.as_str()));
        if let Some(missing) = existing.iter().find(|n| !self.lives.contains_key(**n)) {
            self.broke(format!("stream {missing} exists but no frame created it"));
            return false;
        }
        let live: u64 = self.lives.values().map(|life| life.bytes).sum();
        let dead = self.file_bytes.saturating_sub(live);
        let needed = self.min_dead.max(live);
        if dead >= needed {
            return true;
        }
        self.next_check = self.file_bytes + (needed - dead);
        false
    }

    /// Writes the live frames of the journal at `path` (its first `end` bytes) to `tmp`, in
    /// order, and syncs it. The caller renames it over the journal, then calls [`Self::adopt`].
    pub(super) fn rewrite(&self, path: &Path, end: u64, tmp: &Path) -> std::io::Result<Rewritten> {
        let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
        let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(tmp)?;
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        let mut lives: HashMap<String, Life> = HashMap::with_capacity(self.lives.len());
        let (mut pos, mut len) = (0u64, 0u64);
        let mut header = [0; HEADER];
        let mut body = Vec::new();
        while pos < end {
            reader.read_exact(&mut header)?;
            let (crc, body_len) =
                frame::header(&header).map_err(|why| invalid(format!("byte {pos}: {why}")))?;
            body.resize(
                usize::try_from(body_len).map_err(|e| invalid(e.to_string()))?,
                0,
            );
            reader.read_exact(&mut body)?;
            if crc32fast::hash(&body) != crc {
                return Err(invalid(format!("byte {pos}: a checksum does not match")));
            }
            let frame_len = (HEADER + body.len()) as u64;
            let subject =
                codec::subject(&body).map_err(|why| invalid(format!("byte {pos}: {why}")))?;
            if let Some(life) = self.lives.get(subject.name)
                && pos >= life.start
            {
                let new = lives.entry(subject.name.to_owned()).or_insert(Life {
                    start: len,
                    bytes: 0,
                });
                new.bytes += frame_len;
                out.write_all(&header)?;
                out.write_all(&body)?;
                len += frame_len;
            }
            pos += frame_len;
        }
        out.flush()?;
        drop(out);
        file.sync_data()?;
        Ok(Rewritten { file, len, lives })
    }

    /// Takes the rewritten file's frames as the journal's, once it was renamed over it.
    pub(super) fn adopt(&mut self, rewritten: &mut Rewritten) {
        self.lives = std::mem::take(&mut rewritten.lives);
        self.file_bytes = rewritten.len;
        self.next_check = rewritten.len + self.min_dead.max(rewritten.len);
    }

    /// Looks again only after `more` bytes (a rewrite failed and is not retried at once).
    pub(super) fn postpone(&mut self, more: u64) {
        self.next_check = self.file_bytes + more.max(self.min_dead);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(name: &str, creates: bool) -> Subject<'_> {
        Subject {
            name,
            creates,
            removes: false,
        }
    }

    fn names(list: &[&str]) -> Vec<StreamName> {
        list.iter()
            .map(|n| StreamName::new(n).expect("valid"))
            .collect()
    }

    #[test]
    fn only_dead_bytes_at_least_the_live_ones_and_the_minimum_call_for_a_rewrite() {
        let mut liveness = Liveness::new(100);
        liveness.frame(0, 50, &subject("a", true));
        liveness.frame(50, 50, &subject("gone", true));
        liveness.frame(100, 10, &subject("a", false));
        assert!(liveness.due(), "110 bytes, past the first check at 100");
        // 60 live, 50 dead: under the minimum of 100.
        assert!(!liveness.worth_rewriting(&names(&["a"])));
        assert!(!liveness.due());
        assert_eq!(liveness.next_check, 160, "50 more dead bytes are needed");
        // "a" removed and created again: its first life is dead too.
        liveness.frame(110, 60, &subject("a", true));
        assert!(liveness.due());
        assert!(
            liveness.worth_rewriting(&names(&["a"])),
            "110 dead, 60 live"
        );
    }

    #[test]
    fn removing_a_large_stream_calls_for_a_check_before_the_file_grows() {
        let mut liveness = Liveness::new(100);
        liveness.frame(0, 20, &subject("small", true));
        liveness.frame(20, 30, &subject("big", true));
        liveness.frame(50, 40, &subject("big", false));
        assert!(!liveness.due());
        let remove = Subject {
            name: "big",
            creates: false,
            removes: true,
        };
        liveness.frame(90, 30, &remove);
        assert!(liveness.due(), "100 bytes of \"big\" removed");
        assert!(
            liveness.worth_rewriting(&names(&["small"])),
            "100 dead: the minimum, and more than the 20 live"
        );
    }

    #[test]
    fn a_stream_no_frame_created_stops_rewriting_rather_than_dropping_it() {
        let mut liveness = Liveness::new(1);
        liveness.frame(0, 50, &subject("a", true));
        assert!(!liveness.worth_rewriting(&names(&["a", "unknown"])));
        assert!(!liveness.due(), "rewriting is off");
    }
}
