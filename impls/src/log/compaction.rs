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
//! The writer has it rewritten once the dead bytes are at least [`min_dead`](Liveness::new) and
//! at least the live bytes (so each byte is copied a bounded number of times: rewriting copies
//! the live bytes, and at least as many dead bytes were written since the last rewrite).
//!
//! In two steps, so that calls do not wait for the copy of the live bytes: a thread of its own
//! copies the live frames of the journal as it was when the rewrite started ([`rewrite`]),
//! while the writer goes on appending to the journal; then the writer copies what it appended
//! meanwhile, in order, less the streams created and removed meanwhile
//! ([`Rewritten::append_tail`]), syncs the new file, renames it over the journal and syncs the
//! directory. Only that last step holds the calls (it reads what was appended during the copy,
//! from the page cache). A crash before the rename leaves the old journal (and a stray file
//! opening deletes), one after it the new one, and both describe the same streams.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Notes in `lives` the frame of `len` bytes at `offset` about `subject`; answers the bytes of
/// the life it removes (0 unless it is a removal).
fn note(lives: &mut HashMap<String, Life>, offset: u64, len: u64, subject: &Subject<'_>) -> u64 {
    if subject.creates {
        lives.insert(
            subject.name.to_owned(),
            Life {
                start: offset,
                bytes: len,
            },
        );
    } else if let Some(life) = lives.get_mut(subject.name) {
        life.bytes += len;
        if subject.removes {
            return life.bytes;
        }
    }
    0
}

/// The frames to keep of a journal's first `end` bytes (see [`Liveness::plan`]).
pub(super) struct Plan {
    lives: HashMap<String, Life>,
    /// Where the whole frames ended when the plan was made.
    pub(super) end: u64,
}

/// A rewritten journal, not yet renamed over the journal.
pub(super) struct Rewritten {
    /// The new file, open for writing, at `dir/journal.compact` until renamed.
    pub(super) file: File,
    /// Its length.
    pub(super) len: u64,
    lives: HashMap<String, Life>,
    /// The plan's lives: the streams that existed where the copy stopped, `copied_to`.
    planned: HashMap<String, Life>,
    /// Where in the old journal the copy stopped: the plan's end.
    copied_to: u64,
}

/// Writes the frames of the journal at `path` that `plan` keeps (those of the streams that
/// existed at its end, from the frame that created each) to `tmp`, in order, and syncs it.
/// Runs beside the writer, which goes on appending to the journal after `plan.end`; see
/// [`Rewritten::append_tail`] for what it appended meanwhile.
///
/// Stops between two frames, and before its sync, with an error [`is_cancelled`] recognises
/// once `cancelled` is set: the storage is closing, and the copy of a large journal must not
/// hold its close (the journal is whole without it; the next open starts again).
pub(super) fn rewrite(
    plan: Plan,
    path: &Path,
    tmp: &Path,
    cancelled: &AtomicBool,
) -> std::io::Result<Rewritten> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    let mut out = BufWriter::with_capacity(1 << 20, &file);
    let mut lives: HashMap<String, Life> = HashMap::with_capacity(plan.lives.len());
    let mut len = 0u64;
    each_frame(path, 0, plan.end, |pos, frame, subject| {
        #[cfg(test)]
        gate::wait_while_held(tmp, cancelled);
        if cancelled.load(Ordering::Relaxed) {
            return Err(std::io::Error::other(Cancelled));
        }
        if let Some(life) = plan.lives.get(subject.name)
            && pos >= life.start
        {
            note(&mut lives, len, frame.len() as u64, subject);
            out.write_all(frame)?;
            len += frame.len() as u64;
        }
        Ok(())
    })?;
    out.flush()?;
    drop(out);
    if cancelled.load(Ordering::Relaxed) {
        // Its pages need not reach the device: the file is about to be removed.
        return Err(std::io::Error::other(Cancelled));
    }
    // Synced here, beside the writer, so that the sync after the tail flushes the tail only.
    file.sync_data()?;
    Ok(Rewritten {
        file,
        len,
        lives,
        planned: plan.lives,
        copied_to: plan.end,
    })
}

/// Why [`rewrite`] stopped when it was cancelled. Not an `Interrupted` I/O error, which
/// `read_exact`, `write_all` and `io::copy` retry.
#[derive(Debug)]
struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("compaction cancelled: the storage is closing")
    }
}

impl std::error::Error for Cancelled {}

/// Whether `error` is [`rewrite`]'s answer to being cancelled.
pub(super) fn is_cancelled(error: &std::io::Error) -> bool {
    error.get_ref().is_some_and(|e| e.is::<Cancelled>())
}

impl Rewritten {
    /// Copies what the writer appended to the journal at `path` since the plan, up to `to`
    /// (its end: the writer waits meanwhile), to the end of the new file, in order, and syncs
    /// it. `now` knows the journal up to `to` and `existing` are the streams that exist there.
    ///
    /// A frame of a life that began before the plan is copied whatever came of the life (its
    /// earlier frames are in the new file, so a removal after them must be too). A frame of a
    /// life that began after the plan is copied only if that life is the stream's current one
    /// at `to`: a stream created and removed meanwhile leaves nothing (nothing else depends on
    /// it: a fork's source outlives the fork).
    pub(super) fn append_tail(
        &mut self,
        path: &Path,
        to: u64,
        now: &Liveness,
        existing: &[StreamName],
    ) -> std::io::Result<()> {
        let existing: HashSet<&str> = existing.iter().map(StreamName::as_str).collect();
        if let Some(missing) = existing.iter().find(|n| now.life_start(n).is_none()) {
            // The writer lost track of a frame: dropping by its lives could drop a stream.
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("stream {missing} exists but no frame created it"),
            ));
        }
        self.file.seek(SeekFrom::Start(self.len))?;
        let mut out = BufWriter::with_capacity(1 << 20, &self.file);
        let (lives, len, planned) = (&mut self.lives, &mut self.len, &self.planned);
        // Where the life began of each stream created after the plan.
        let mut born_after: HashMap<String, u64> = HashMap::new();
        each_frame(path, self.copied_to, to, |pos, frame, subject| {
            if subject.creates {
                born_after.insert(subject.name.to_owned(), pos);
            }
            let keep = match born_after.get(subject.name) {
                None => planned.contains_key(subject.name),
                Some(&start) => {
                    existing.contains(subject.name) && now.life_start(subject.name) == Some(start)
                }
            };
            if keep {
                note(lives, *len, frame.len() as u64, subject);
                out.write_all(frame)?;
                *len += frame.len() as u64;
            }
            Ok(())
        })?;
        out.flush()?;
        drop(out);
        self.file.sync_data()
    }
}

/// Calls `f` with each frame of the file at `path` from `from` to `to` (whole frames, checked):
/// its position, its bytes (header included) and its subject.
fn each_frame(
    path: &Path,
    from: u64,
    to: u64,
    mut f: impl FnMut(u64, &[u8], &Subject<'_>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let invalid = |pos: u64, why: &dyn std::fmt::Display| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("byte {pos}: {why}"),
        )
    };
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut frame = Vec::new();
    let mut pos = from;
    while pos < to {
        frame.resize(HEADER, 0);
        reader.read_exact(&mut frame)?;
        let (crc, body_len) = frame::header(&frame).map_err(|why| invalid(pos, &why))?;
        if body_len > to.saturating_sub(pos + HEADER as u64) {
            return Err(invalid(pos, &"a frame longer than the journal"));
        }
        let body_len = usize::try_from(body_len).map_err(|e| invalid(pos, &e))?;
        frame.resize(HEADER + body_len, 0);
        reader.read_exact(&mut frame[HEADER..])?;
        let body = &frame[HEADER..];
        if crc32fast::hash(body) != crc {
            return Err(invalid(pos, &"a checksum does not match"));
        }
        let subject = codec::subject(body).map_err(|why| invalid(pos, &why))?;
        f(pos, &frame, &subject)?;
        pos += frame.len() as u64;
    }
    Ok(())
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
        self.removed += note(&mut self.lives, offset, len, subject);
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

    /// What [`rewrite`] needs to copy the live frames written so far: which frames are live
    /// and where the file's whole frames end.
    pub(super) fn plan(&self) -> Plan {
        Plan {
            lives: self.lives.clone(),
            end: self.file_bytes,
        }
    }

    /// Takes the rewritten file's frames as the journal's, once it was renamed over it.
    pub(super) fn adopt(&mut self, rewritten: &mut Rewritten) {
        self.lives = std::mem::take(&mut rewritten.lives);
        self.removed = 0;
        self.file_bytes = rewritten.len;
        self.next_check = rewritten.len + self.min_dead.max(rewritten.len);
    }

    /// Where the current life of stream `name` began, if a frame created it.
    fn life_start(&self, name: &str) -> Option<u64> {
        self.lives.get(name).map(|life| life.start)
    }

    /// Looks again only after `more` bytes (a rewrite failed and is not retried at once).
    pub(super) fn postpone(&mut self, more: u64) {
        self.removed = 0;
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

    #[test]
    fn a_length_past_the_journal_is_an_error_not_an_allocation() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, tmp) = (
            dir.path().join("journal.log"),
            dir.path().join("journal.compact"),
        );
        let mut data = Vec::new();
        frame::write(&mut data, |body| {
            body.extend_from_slice(b"\x02\x01\x00\x00\x00a")
        });
        data[8..HEADER].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &data).expect("write");
        let mut liveness = Liveness::new(1);
        liveness.frame(0, data.len() as u64, &subject("a", true));
        let err = rewrite(liveness.plan(), &path, &tmp, &AtomicBool::new(false))
            .err()
            .expect("a frame longer than the journal is refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    }
}

/// Tests hold a rewrite of their own directory between two frames, to close the storage while
/// it runs.
#[cfg(test)]
pub(super) mod gate {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, PoisonError};
    use std::time::Duration;

    /// The rewrite files held, and those whose rewrite reached the gate.
    static HELD: Mutex<(Vec<PathBuf>, Vec<PathBuf>)> = Mutex::new((Vec::new(), Vec::new()));

    fn held() -> std::sync::MutexGuard<'static, (Vec<PathBuf>, Vec<PathBuf>)> {
        HELD.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds every rewrite into `tmp` at its first frame until [`release`].
    pub(crate) fn hold(tmp: &Path) {
        held().0.push(tmp.to_owned());
    }

    /// Lets the rewrites into `tmp` go on.
    pub(crate) fn release(tmp: &Path) {
        held().0.retain(|p| p != tmp);
    }

    /// Whether a rewrite into `tmp` has reached the gate.
    pub(crate) fn reached(tmp: &Path) -> bool {
        held().1.iter().any(|p| p == tmp)
    }

    /// Waits while rewrites into `tmp` are held (and this one is not cancelled).
    pub(super) fn wait_while_held(tmp: &Path, cancelled: &AtomicBool) {
        let mut noted = false;
        while held().0.iter().any(|p| p == tmp) && !cancelled.load(Ordering::Relaxed) {
            if !noted {
                held().1.push(tmp.to_owned());
                noted = true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
