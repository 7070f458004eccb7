//! Folding a log stream into an in-memory state: the catalog and the schema registry both keep
//! their state as events in a stream every node appends to, and fold what others appended
//! before each decision.

use std::sync::{PoisonError, RwLock};

use courier_traits::storage::{Offset, ReadLimits, StorageError, StreamName, StreamStorage};

/// A state folded from a log: where the fold stopped and how many events it holds (the index,
/// and so the writer sequence, of the next one).
pub(crate) trait FoldedLog {
    /// The position after the last folded event (`None`: nothing folded yet).
    fn position(&self) -> Option<&Offset>;
    /// Records where the fold stopped.
    fn set_position(&mut self, at: Offset);
    /// Counts one more folded event.
    fn count_event(&mut self);
}

/// Folds into `state` the events of `stream` appended since its last fold, with `fold`. A
/// record `fold` refuses stops the fold at that record: what was folded before it stays
/// folded and the next refresh starts at the bad record (and fails on it again) rather than
/// folding the good ones a second time, which would move the writer sequence past the log.
pub(crate) async fn refresh<S: FoldedLog, E: From<StorageError>>(
    storage: &dyn StreamStorage,
    stream: &StreamName,
    state: &RwLock<S>,
    mut fold: impl FnMut(&mut S, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    loop {
        let from = state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .position()
            .cloned();
        let batch = storage
            .read(stream, from.clone(), ReadLimits::default())
            .await?;
        let mut state = state.write().unwrap_or_else(PoisonError::into_inner);
        // Another task folded this stretch meanwhile: read on from where it stopped.
        if state.position() != from.as_ref() {
            continue;
        }
        for record in &batch.records {
            if let Err(error) = fold(&mut state, &record.data) {
                state.set_position(record.offset.clone());
                return Err(error);
            }
            state.count_event();
        }
        let moved = state.position() != Some(&batch.next_offset);
        state.set_position(batch.next_offset);
        if batch.up_to_date || !moved {
            return Ok(());
        }
    }
}
