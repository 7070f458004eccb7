//! Each stream's recent records in memory, written by the writer thread after each commit, so
//! reads at or near the tail (and `head`, and a wait's re-reads) are answered without SQLite and
//! without a hop to a blocking thread. Older ranges, and anything not cached, read SQLite.
//!
//! The cache holds only committed state, exactly: the writer applies a batch's changes after
//! its COMMIT (appended records and the new row; any other write forgets the streams it may
//! have touched). Commits by other connections on the file (other processes, other instances)
//! never pass through it, so it is trusted only at one reading of a [`Version`], which changes
//! whenever anyone commits: the file's wal-index header (`wal_index.rs`, one `pread`), or,
//! where that cannot be read, `PRAGMA data_version` of a connection of the cache's own:
//! - the writer, after applying its commit, takes a reading and then its own connection's
//!   `data_version`, which moves only on commits by others; unchanged since its batch began
//!   means nobody else committed before the reading, so the cache is exact at it;
//! - a read takes a reading first: the trusted one means nobody committed since, so the
//!   cache is exact now; any other (or none) sends the read to SQLite.
//!
//! A commit by someone else seen by the writer (its `data_version` moved) empties the cache.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use courier_traits::storage::{JoiningFor, ReadFrom, ReadLimits, StorageError, StreamName};
use rusqlite::Connection;

use super::row::{StreamRow, start_of};
use super::wal_index::{HeaderReading, WalIndex};

/// Bytes counted per cached record besides its payload (the `Bytes` handle and allocation).
const RECORD_OVERHEAD: usize = 64;
/// Bytes counted per cached stream besides its records (map slot, row, name).
const STREAM_OVERHEAD: usize = 256;
/// Up to this many bytes, a joined read is copied under the lock (one copy, no handles to
/// take and drop); larger reads take handles and join after it.
const JOIN_UNDER_LOCK_BYTES: usize = 256 << 10;

/// `PRAGMA data_version` of `conn`.
pub(super) fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("PRAGMA data_version")?
        .query_row([], |row| row.get(0))
}

/// A reading of whether anyone committed: equal readings mean nobody did in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Version {
    /// The file's wal-index header.
    Header(HeaderReading),
    /// `PRAGMA data_version` of the cache's own connection, where the header cannot be read.
    DataVersion(i64),
}

/// The recent records of the streams this instance wrote, bounded to `budget` bytes.
pub(super) struct Recent {
    /// Read on every cached read, if the file has one that reads; `None` when caching is off.
    wal_index: Option<WalIndex>,
    /// Asked on every cached read when there is no `wal_index`; `None` once closed or when
    /// caching is off.
    version: Mutex<Option<Connection>>,
    /// Set once the storage is closed: nothing is answered from memory again.
    closed: AtomicBool,
    state: Mutex<State>,
    budget: usize,
}

#[derive(Default)]
struct State {
    /// The reading at which the cache is exact; `None`: not trusted.
    trusted: Option<Version>,
    streams: HashMap<StreamName, Entry>,
    bytes: usize,
    /// Advances on every use; an entry's `used` says how recently it was read or written.
    tick: u64,
}

/// One stream: its row and its records at indexes `first..row.next_index`.
struct Entry {
    row: StreamRow,
    first: u64,
    records: VecDeque<Bytes>,
    bytes: usize,
    used: u64,
}

impl Entry {
    fn cost(&self) -> usize {
        self.bytes + STREAM_OVERHEAD
    }

    /// Which held records a read from `from` within `limits` takes (none unless the row is
    /// live at `now`), `None` if it starts before the oldest held one; `Err` for an offset
    /// the stream does not have.
    fn extent(
        &self,
        name: &StreamName,
        from: &ReadFrom,
        limits: ReadLimits,
        now: i64,
    ) -> Option<Result<Extent, StorageError>> {
        if self.row.soft_deleted || self.row.is_expired(now) {
            return Some(Ok(Extent::default()));
        }
        let start = match start_of(name, &self.row, from) {
            Ok(start) => start,
            Err(e) => return Some(Err(e)),
        };
        let skip = usize::try_from(start.checked_sub(self.first)?).ok()?;
        let (mut count, mut bytes) = (0usize, 0usize);
        for record in self.records.range(skip.min(self.records.len())..) {
            if count >= limits.max_records || (count > 0 && bytes + record.len() > limits.max_bytes)
            {
                break;
            }
            bytes += record.len();
            count += 1;
        }
        Some(Ok(Extent {
            start,
            skip,
            count,
            bytes,
        }))
    }

    /// The held records `extent` takes.
    fn held(&self, extent: &Extent) -> impl Iterator<Item = &Bytes> {
        self.records
            .range(extent.skip.min(self.records.len())..)
            .take(extent.count)
    }
}

/// Where a read lies in an entry: the index it starts at, and the `count` held records from
/// the `skip`th on that it takes, `bytes` long.
#[derive(Default)]
struct Extent {
    start: u64,
    skip: usize,
    count: usize,
    bytes: usize,
}

/// What a committed write changed, in batch order.
pub(super) enum Change {
    /// Records committed at `first..` of `name`, whose row is now `row`.
    Appended {
        name: StreamName,
        row: StreamRow,
        first: u64,
        records: Vec<Bytes>,
    },
    /// `name` may have changed in ways the cache cannot follow.
    Forget(StreamName),
    /// Any stream may have changed.
    ForgetAll,
}

/// A read answered from the cache: the stream's row, the index read from, and the records
/// (empty unless the row is live).
pub(super) struct Hit {
    pub(super) row: StreamRow,
    pub(super) start: u64,
    pub(super) records: Vec<Bytes>,
}

/// A joined read answered from the cache: the stream's row, the index read from, how many
/// records it took and their joined body (empty records unless the row is live).
pub(super) struct JoinedHit {
    pub(super) row: StreamRow,
    pub(super) start: u64,
    pub(super) records: usize,
    pub(super) body: Bytes,
}

impl Recent {
    /// A cache of at most `budget` bytes that checks freshness on the file's wal-index header,
    /// or else on `version` (a connection only it uses, that never writes). A budget of 0
    /// turns caching off.
    pub(super) fn new(version: Connection, budget: usize) -> Recent {
        // A read transaction first, so that the header is there to be read.
        let wal_index = (budget > 0 && data_version(&version).is_ok())
            .then(|| WalIndex::of(&version))
            .flatten();
        Recent {
            wal_index,
            version: Mutex::new((budget > 0).then_some(version)),
            closed: AtomicBool::new(false),
            state: Mutex::default(),
            budget,
        }
    }

    /// Whether anything is cached at all (a budget above 0).
    pub(super) fn caching(&self) -> bool {
        self.budget > 0
    }

    /// A reading now, `None` if none can be taken (or the storage is closed).
    pub(super) fn version_now(&self) -> Option<Version> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        if let Some(wal_index) = &self.wal_index {
            return wal_index.read().map(Version::Header);
        }
        let guard = self.version.lock().ok()?;
        data_version(guard.as_ref()?).ok().map(Version::DataVersion)
    }

    /// The state, if the cache is exact now.
    fn exact(&self) -> Option<std::sync::MutexGuard<'_, State>> {
        let now = self.version_now()?;
        let state = self.state.lock().ok()?;
        (state.trusted == Some(now)).then_some(state)
    }

    /// `name`'s current row, if cached and exact.
    pub(super) fn row(&self, name: &StreamName) -> Option<StreamRow> {
        let mut state = self.exact()?;
        let tick = state.next_tick();
        let entry = state.streams.get_mut(name)?;
        entry.used = tick;
        Some(entry.row.clone())
    }

    /// `name`'s row for the writer, inside a batch that holds the write lock and has checked
    /// that nobody else committed since the writer's last batch: while the cache is trusted,
    /// a held row is the committed one, so the writer need not select it.
    pub(super) fn committed_row(&self, name: &StreamName) -> Option<StreamRow> {
        let state = self.state.lock().ok()?;
        state.trusted?;
        state.streams.get(name).map(|entry| entry.row.clone())
    }

    /// Runs `use_entry` on `name`'s entry under the lock, if cached and exact.
    fn with_entry<R>(&self, name: &StreamName, use_entry: impl FnOnce(&Entry) -> R) -> Option<R> {
        let mut state = self.exact()?;
        let tick = state.next_tick();
        let entry = state.streams.get_mut(name)?;
        entry.used = tick;
        Some(use_entry(entry))
    }

    /// `name`'s records from `from` within `limits`, if the cache holds them and is exact
    /// (from the tail: only its row); `Err` for an offset the stream does not have. Live is
    /// judged at `now`.
    pub(super) fn read(
        &self,
        name: &StreamName,
        from: &ReadFrom,
        limits: ReadLimits,
        now: i64,
    ) -> Option<Result<Hit, StorageError>> {
        self.with_entry(name, |entry| {
            Some(entry.extent(name, from, limits, now)?.map(|extent| Hit {
                row: entry.row.clone(),
                start: extent.start,
                records: entry.held(&extent).cloned().collect(),
            }))
        })?
    }

    /// As [`read`](Self::read), the records joined as `join` says for the stream's content
    /// type: under the lock up to [`JOIN_UNDER_LOCK_BYTES`], else after it from handles to
    /// them (copying megabytes would hold up every other read and the writer).
    pub(super) fn read_joined(
        &self,
        name: &StreamName,
        from: &ReadFrom,
        limits: ReadLimits,
        now: i64,
        join: JoiningFor,
    ) -> Option<Result<JoinedHit, StorageError>> {
        let taken = self.with_entry(name, |entry| {
            let extent = match entry.extent(name, from, limits, now)? {
                Ok(extent) => extent,
                Err(e) => return Some(Err(e)),
            };
            let joining = join(&entry.row.content_type);
            let held = entry.held(&extent);
            let records = if extent.bytes <= JOIN_UNDER_LOCK_BYTES {
                Ok(joining.join(held.map(|record| &record[..]), extent.bytes))
            } else {
                Err(held.cloned().collect::<Vec<Bytes>>())
            };
            Some(Ok((entry.row.clone(), extent, joining, records)))
        })??;
        Some(taken.map(|(row, extent, joining, records)| {
            let body = records.unwrap_or_else(|handles| {
                joining.join(handles.iter().map(|record| &record[..]), extent.bytes)
            });
            JoinedHit {
                row,
                start: extent.start,
                records: extent.count,
                body,
            }
        }))
    }

    /// Empties the cache and stops trusting it (someone else committed, or a commit failed).
    pub(super) fn distrust(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.trusted = None;
            state.streams.clear();
            state.bytes = 0;
        }
    }

    /// Applies a committed batch's `changes`, in order.
    pub(super) fn apply(&self, changes: Vec<Change>) {
        if self.budget == 0 || changes.is_empty() {
            return;
        }
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        for change in changes {
            match change {
                Change::Appended {
                    name,
                    row,
                    first,
                    records,
                } => state.append(name, row, first, records, self.budget / 4),
                Change::Forget(name) => state.forget(&name),
                Change::ForgetAll => {
                    state.streams.clear();
                    state.bytes = 0;
                }
            }
        }
        if state.bytes > self.budget {
            state.evict_to(self.budget / 4 * 3);
        }
    }

    /// Trusts the cache at the reading `version`.
    pub(super) fn trust(&self, version: Version) {
        if let Ok(mut state) = self.state.lock() {
            state.trusted = Some(version);
        }
    }

    /// Forgets everything and answers nothing from memory again (the storage is closed).
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut version) = self.version.lock() {
            *version = None;
        }
        self.distrust();
    }
}

impl State {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn forget(&mut self, name: &StreamName) {
        if let Some(entry) = self.streams.remove(name) {
            self.bytes -= entry.cost();
        }
    }

    /// Adds `records`, committed at `first..`, to `name`, keeping at most `stream_budget` bytes
    /// of its records (the oldest go first).
    fn append(
        &mut self,
        name: StreamName,
        row: StreamRow,
        first: u64,
        records: Vec<Bytes>,
        stream_budget: usize,
    ) {
        if first + records.len() as u64 != row.next_index {
            // Not a contiguous append of what the row says: do not guess.
            self.forget(&name);
            return;
        }
        let tick = self.next_tick();
        let follows = self
            .streams
            .get(&name)
            .is_some_and(|entry| entry.row.next_index == first);
        if !follows {
            self.forget(&name);
        }
        let entry = self.streams.entry(name).or_insert_with(|| Entry {
            row: StreamRow::clone(&row),
            first,
            records: VecDeque::new(),
            bytes: 0,
            used: tick,
        });
        let before = entry.cost();
        entry.row = row;
        entry.used = tick;
        for record in records {
            entry.bytes += record.len() + RECORD_OVERHEAD;
            entry.records.push_back(record);
        }
        while entry.bytes > stream_budget {
            let Some(oldest) = entry.records.pop_front() else {
                break;
            };
            entry.bytes -= oldest.len() + RECORD_OVERHEAD;
            entry.first += 1;
        }
        let after = entry.cost();
        // `forget` above removed a replaced entry's cost, so `before` is this entry's own.
        if follows {
            self.bytes = self.bytes - before + after;
        } else {
            self.bytes += after;
        }
    }

    /// Drops the least recently used streams until at most `target` bytes are held.
    fn evict_to(&mut self, target: usize) {
        let mut by_use: Vec<(u64, StreamName)> = self
            .streams
            .iter()
            .map(|(name, entry)| (entry.used, name.clone()))
            .collect();
        by_use.sort_unstable_by_key(|(used, _)| *used);
        for (_, name) in by_use {
            if self.bytes <= target {
                break;
            }
            self.forget(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(next_index: u64) -> StreamRow {
        StreamRow::open_text(next_index)
    }

    fn appended(name: &StreamName, first: u64, count: u64, size: usize) -> Change {
        Change::Appended {
            name: name.clone(),
            row: row(first + count),
            first,
            records: (0..count)
                .map(|i| Bytes::from(vec![(first + i) as u8; size]))
                .collect(),
        }
    }

    /// The counted bytes are the entries' own, and stay within the budget.
    fn check_accounting(recent: &Recent) {
        let state = recent.state.lock().expect("lock");
        let counted: usize = state.streams.values().map(Entry::cost).sum();
        assert_eq!(state.bytes, counted);
        assert!(
            state.bytes <= recent.budget,
            "{} > {}",
            state.bytes,
            recent.budget
        );
        for entry in state.streams.values() {
            assert_eq!(
                entry.first + entry.records.len() as u64,
                entry.row.next_index
            );
        }
    }

    fn trusted(budget: usize) -> Recent {
        let recent = Recent::new(Connection::open_in_memory().expect("open"), budget);
        recent.trust(recent.version_now().expect("version"));
        recent
    }

    #[test]
    fn the_memory_bound_holds_and_reads_return_what_is_held() {
        let recent = trusted(64 << 10);
        let names: Vec<StreamName> = (0..20)
            .map(|i| StreamName::new(&format!("s{i}")).expect("valid"))
            .collect();
        let mut next = vec![0u64; names.len()];
        for round in 0..200u64 {
            let i = (round * 7 % names.len() as u64) as usize;
            let count = 1 + round % 5;
            recent.apply(vec![appended(&names[i], next[i], count, 100)]);
            next[i] += count;
            if round % 50 == 49 {
                recent.apply(vec![Change::Forget(names[0].clone())]);
            }
            check_accounting(&recent);
        }
        for (name, &tail) in names.iter().zip(&next) {
            let Some(hit) = recent.read(name, &ReadFrom::Start, ReadLimits::default(), 0) else {
                continue; // evicted, or reading from 0 needs records no longer held
            };
            let hit = hit.expect("read");
            assert_eq!(hit.start + hit.records.len() as u64, tail);
            for (k, record) in hit.records.iter().enumerate() {
                assert_eq!(record[0], (hit.start + k as u64) as u8);
            }
        }
        // A stream's own records are cut to a quarter of the budget, oldest first.
        let big = StreamName::new("big").expect("valid");
        recent.apply(vec![appended(&big, 0, 1000, 100)]);
        check_accounting(&recent);
        let state = recent.state.lock().expect("lock");
        let entry = state.streams.get(&big).expect("held");
        assert!(entry.bytes <= recent.budget / 4);
        assert!(entry.first > 0);
    }

    #[test]
    fn a_gap_or_a_commit_by_someone_else_is_not_served() {
        let recent = trusted(1 << 20);
        let name = StreamName::new("s").expect("valid");
        recent.apply(vec![appended(&name, 0, 3, 10)]);
        assert_eq!(recent.row(&name).expect("held").next_index, 3);
        // Records that do not follow the held ones replace them.
        recent.apply(vec![appended(&name, 5, 2, 10)]);
        check_accounting(&recent);
        assert!(
            recent
                .read(&name, &ReadFrom::Start, ReadLimits::default(), 0)
                .is_none()
        );
        let from = crate::rules::index_offset::encode(5);
        let hit = recent.read(&name, &ReadFrom::After(from), ReadLimits::default(), 0);
        assert_eq!(hit.expect("held").expect("read").records.len(), 2);
        // Not trusted at the version now: nothing is served.
        recent.trust(Version::DataVersion(-1));
        assert!(recent.row(&name).is_none());
        recent.distrust();
        check_accounting(&recent);
    }
}
