//! Counters of a client, read as [`Stats`], and the [`CloseReport`].

use std::sync::atomic::{AtomicU64, Ordering};

/// Events `track` did not queue, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// The queue was full.
    pub queue_full: u64,
    /// Larger than `max_event_bytes`.
    pub too_large: u64,
    /// Tracked after `close` (or after the worker stopped).
    pub closed: u64,
    /// Invalid content (empty event name, parameter on a typed payload, ...).
    pub invalid: u64,
}

/// A snapshot of a client's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Taken by `track` and not yet sent, rejected, failed or given up as unsent.
    pub queued: u64,
    /// Accepted by the server.
    pub sent: u64,
    /// Rejected by the server one by one inside a 2xx answer.
    pub rejected: u64,
    /// In batches the server refused with a terminal status or that ran out of retries.
    pub failed: u64,
    /// Still queued or in flight when `close` ran out of time, or when the client was dropped.
    pub unsent: u64,
    /// Not queued by `track`.
    pub dropped: Dropped,
    /// Retries of a batch request.
    pub retries: u64,
}

/// What `close` reports: the client's totals once its worker stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloseReport {
    /// Events the server accepted.
    pub delivered: u64,
    /// Events the server rejected one by one.
    pub rejected: u64,
    /// Events in batches that failed (terminal status, retries exhausted).
    pub failed: u64,
    /// Events still queued or in flight when the shutdown timeout ran out. Those that were in
    /// flight may have reached the server (their idempotency keys make a later resend safe).
    pub unsent: u64,
    /// Events `track` did not queue.
    pub dropped: Dropped,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) enqueued: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) unsent: AtomicU64,
    pub(crate) queue_full: AtomicU64,
    pub(crate) too_large: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) invalid: AtomicU64,
    pub(crate) retries: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Counters {
    /// Events that left the SDK's hands one way or another (the flush watermark).
    pub(crate) fn finished(&self) -> u64 {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        get(&self.sent) + get(&self.rejected) + get(&self.failed) + get(&self.unsent)
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            queued: get(&self.enqueued).saturating_sub(self.finished()),
            sent: get(&self.sent),
            rejected: get(&self.rejected),
            failed: get(&self.failed),
            unsent: get(&self.unsent),
            dropped: Dropped {
                queue_full: get(&self.queue_full),
                too_large: get(&self.too_large),
                closed: get(&self.closed),
                invalid: get(&self.invalid),
            },
            retries: get(&self.retries),
        }
    }

    pub(crate) fn report(&self) -> CloseReport {
        let s = self.snapshot();
        CloseReport {
            delivered: s.sent,
            rejected: s.rejected,
            failed: s.failed,
            unsent: s.unsent,
            dropped: s.dropped,
        }
    }
}
