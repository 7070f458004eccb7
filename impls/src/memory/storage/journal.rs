#![cfg_attr(not(feature = "log"), allow(dead_code))]

//! What the memory storage tells a journal: each change it commits, as the operation that made
//! it, in the order it made them (under its lock). The embedded log storage (`crate::log`)
//! writes the operations to a file and rebuilds the streams from them (see `replay.rs`).
//!
//! Operations are journaled rather than their effects because the rules (producers, writer
//! sequences, forks, keyed windows) already decide every effect from the stream's state, the
//! operation and the time: applied again in the same order at the same times, they make the
//! same streams. Expiry is the exception (reads reset TTLs and are not journaled), so replay
//! expires nothing by itself and every removal, deletes and expiries alike, is journaled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use courier_traits::storage::{AppendRequest, KeyedRecord, StreamConfig, StreamName};

/// A change the storage committed, borrowed from the call that made it.
#[derive(Debug)]
pub(crate) enum Op<'a> {
    /// A stream created (never an idempotent re-create).
    Create {
        name: &'a StreamName,
        config: &'a StreamConfig,
        initial: &'a [Bytes],
        now_ms: u64,
    },
    /// An append that was not refused and not a duplicate.
    Append {
        name: &'a StreamName,
        request: &'a AppendRequest,
        now_ms: u64,
    },
    /// A keyed append that was not refused (even one of duplicates only: it forgets expired
    /// keys, which later appends see).
    Keyed {
        name: &'a StreamName,
        records: &'a [KeyedRecord],
        window: Duration,
        now_ms: u64,
    },
    /// A stream removed by a delete or because it expired (soft while forks read through it).
    Remove { name: &'a StreamName },
}

/// The same operations, owned: what a journal reads back to apply again.
#[derive(Debug, PartialEq)]
pub(crate) enum ReplayOp {
    /// See [`Op::Create`].
    Create {
        name: StreamName,
        config: StreamConfig,
        initial: Vec<Bytes>,
        now_ms: u64,
    },
    /// See [`Op::Append`].
    Append {
        name: StreamName,
        request: AppendRequest,
        now_ms: u64,
    },
    /// See [`Op::Keyed`].
    Keyed {
        name: StreamName,
        records: Vec<KeyedRecord>,
        window: Duration,
        now_ms: u64,
    },
    /// See [`Op::Remove`].
    Remove { name: StreamName },
}

/// Encodes one operation onto the end of a buffer (the journal's framing included).
pub(crate) type Encoder = fn(&Op<'_>, &mut Vec<u8>);

/// Encoded operations not yet taken by the journal's writer, held under the storage's lock so
/// they are in the order the changes were made.
pub(crate) struct JournalBuffer {
    bytes: Vec<u8>,
    /// The journal position of `bytes[0]`: bytes taken by the writer so far.
    base: u64,
    /// The position after the last operation of a finished call (see [`Self::publish`]).
    published: Arc<AtomicU64>,
    encode: Encoder,
}

impl JournalBuffer {
    /// A buffer whose first byte goes at `position` in the journal, publishing to `published`.
    pub(crate) fn new(position: u64, published: Arc<AtomicU64>, encode: Encoder) -> Self {
        published.store(position, Ordering::Release);
        JournalBuffer {
            bytes: Vec::new(),
            base: position,
            published,
            encode,
        }
    }

    /// Where a [`rollback`](Self::rollback) returns to.
    pub(super) fn mark(&self) -> usize {
        self.bytes.len()
    }

    pub(super) fn record(&mut self, op: &Op<'_>) {
        (self.encode)(op, &mut self.bytes);
    }

    /// Forgets what was recorded since `mark`: the call recorded its operation before applying
    /// it, and the rules refused it.
    pub(super) fn rollback(&mut self, mark: usize) {
        self.bytes.truncate(mark);
    }

    /// Makes everything recorded so far what a caller waits for. Called as the storage's lock
    /// is released, never between recording an operation and deciding it: a position
    /// published is never rolled back.
    pub(super) fn publish(&self) {
        self.published
            .store(self.base + self.bytes.len() as u64, Ordering::Release);
    }

    /// Hands the recorded bytes to the writer (leaving `spare`, emptied, in their place) with
    /// the journal position after them.
    pub(super) fn take(&mut self, mut spare: Vec<u8>) -> (Vec<u8>, u64) {
        spare.clear();
        let taken = std::mem::replace(&mut self.bytes, spare);
        self.base += taken.len() as u64;
        (taken, self.base)
    }
}

/// What `MemoryStreamStorage::take_journal` hands the journal's writer.
pub(crate) struct Taken {
    /// The operations journaled since the last take, encoded.
    pub(crate) bytes: Vec<u8>,
    /// The journal position after them.
    pub(crate) end: u64,
    /// The streams that exist at `end`, when asked for.
    pub(crate) streams: Option<Vec<StreamName>>,
}
