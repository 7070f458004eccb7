//! Which full chunks stay in memory, for the log storage (the memory storage keeps every
//! record resident): once the resident ones pass a budget, the oldest sealed go first, across
//! all streams (a queue in sealing order), into spill files ([`super::spill`]). A stream's
//! growing tail (fewer than a chunk of records) always stays resident, as does a fork's share
//! of its source's chunks.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use courier_traits::storage::StreamName;

use super::records::Sealed;
use super::spill::Spiller;

/// A sealed chunk waiting in the residency queue.
#[derive(Debug)]
struct Queued {
    stream: StreamName,
    index: usize,
    chunk: Weak<Sealed>,
    bytes: usize,
}

/// The sealed chunks still in memory, oldest first, and what they total.
#[derive(Debug)]
pub(crate) struct Residency {
    budget: usize,
    queue: Mutex<(VecDeque<Queued>, usize)>,
}

/// The oldest resident chunk, to be spilled: its stream, its index there, the chunk.
pub(super) struct Victim {
    pub(super) stream: StreamName,
    pub(super) index: usize,
    pub(super) chunk: Arc<Sealed>,
}

impl Residency {
    /// Spills the oldest chunks while the resident ones total more than `budget` bytes.
    pub(crate) fn new(budget: usize) -> Residency {
        Residency {
            budget,
            queue: Mutex::new((VecDeque::new(), 0)),
        }
    }

    /// Queues chunk `index` of `stream`, just sealed.
    pub(super) fn admit(&self, stream: &StreamName, index: usize, chunk: &Arc<Sealed>) {
        let bytes = chunk.resident_bytes();
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.1 += bytes;
        queue.0.push_back(Queued {
            stream: stream.clone(),
            index,
            chunk: Arc::downgrade(chunk),
            bytes,
        });
    }

    /// The oldest chunk still held, while the queue is over budget (chunks of streams that
    /// are gone are dropped from the queue on the way).
    pub(super) fn over_budget(&self) -> Option<Victim> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        while queue.1 > self.budget {
            let queued = queue.0.pop_front()?;
            queue.1 -= queued.bytes;
            if let Some(chunk) = queued.chunk.upgrade() {
                return Some(Victim {
                    stream: queued.stream,
                    index: queued.index,
                    chunk,
                });
            }
        }
        None
    }

    /// The bytes of the queued chunks (those of streams gone since included, until they
    /// reach the front).
    #[cfg(test)]
    pub(crate) fn resident_bytes(&self) -> usize {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).1
    }
}

/// Writes `victim`'s bytes with `spiller`: its spilled twin, or `None` (spilling failed, or
/// the chunk cannot be spilled).
pub(super) fn spill(spiller: &mut Spiller, victim: &Victim) -> Option<Sealed> {
    victim.chunk.spilled_with(|parts| spiller.write(parts))
}
