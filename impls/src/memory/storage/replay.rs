#![cfg_attr(not(feature = "log"), allow(dead_code))]

//! Applying a journal to a memory storage, then keeping one: the hooks the embedded log storage
//! (`crate::log`) opens a directory with.

use courier_traits::storage::{CreateOutcome, StorageError};

use super::journal::{JournalBuffer, ReplayOp, Taken};
use super::{MemoryStorageConfig, MemoryStreamStorage};

/// The log storage's hooks: applying a journal, then keeping one.
#[cfg_attr(not(feature = "log"), allow(dead_code))]
impl MemoryStreamStorage {
    /// An empty storage to apply a journal to: nothing expires by the clock until
    /// [`attach_journal`](Self::attach_journal).
    pub(crate) fn for_replay(config: MemoryStorageConfig) -> MemoryStreamStorage {
        let store = MemoryStreamStorage::with_config(config);
        store.state().replaying = true;
        store
    }

    /// Applies one journaled operation again. An error means the journal does not describe
    /// what this storage did (a create that finds its stream, an append the rules refuse).
    pub(crate) fn replay(&self, op: ReplayOp) -> Result<(), StorageError> {
        let mut state = self.state();
        match op {
            ReplayOp::Create {
                name,
                config,
                initial,
                now_ms,
            } => match state.create(&name, config, initial, now_ms)? {
                CreateOutcome::Created(_) => Ok(()),
                CreateOutcome::AlreadyExists(_) => Err(StorageError::backend(
                    false,
                    format!("the journal creates stream {name} twice"),
                    None,
                )),
            },
            ReplayOp::Append {
                name,
                request,
                now_ms,
            } => state.append(&name, request, now_ms).map(drop),
            ReplayOp::Keyed {
                name,
                records,
                window,
                now_ms,
            } => {
                let (_, expired) = state.append_keyed(&name, records, window, now_ms)?;
                drop(state);
                expired.release();
                Ok(())
            }
            ReplayOp::Remove { name } => {
                if !state.streams.contains_key(&name) {
                    return Err(StorageError::NotFound { stream: name });
                }
                state.remove(&name);
                Ok(())
            }
        }
    }

    /// Ends replay and journals every change from now on into `journal`. TTL windows start
    /// afresh (reads reset them, and reads are not journaled).
    pub(crate) fn attach_journal(&self, journal: JournalBuffer) {
        let now = self.now();
        let mut state = self.state();
        state.replaying = false;
        for entry in state.streams.values_mut() {
            entry.last_access_ms = now;
        }
        state.journal = Some(journal);
    }

    /// The changes journaled since the last call, and the journal position after them (see
    /// [`JournalBuffer::take`]), with the names of the streams that exist at that position
    /// (deleted ones kept for their forks included) if `with_streams`; `None` without a journal.
    pub(crate) fn take_journal(&self, spare: Vec<u8>, with_streams: bool) -> Option<Taken> {
        let mut state = self.state();
        let (bytes, end) = state.journal.as_mut()?.take(spare);
        let streams = with_streams.then(|| state.streams.keys().cloned().collect());
        Some(Taken {
            bytes,
            end,
            streams,
        })
    }
}
