//! Durable cursors (spec §3): a subscription's position in its topic log, checkpointed as JSON
//! records. The stream `broker/c/<ns>/<topic>/<sub>` is the anchor: each of its records names
//! a generation `…/g<k>`, and the last one is current. Checkpoints go to the current
//! generation; after [`ConsumerConfig::cursor_rotate_every`](super::ConsumerConfig) of them
//! the next goes to a new generation, the anchor names it, and the old one is deleted, so
//! neither a restart's read nor the storage grows with the subscription's age.

use std::sync::Arc;

use bytes::Bytes;
use courier_traits::storage::{
    AppendRequest, CreateOutcome, Offset, ReadLimits, StorageError, StreamConfig, StreamName,
    StreamStorage,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Where a subscription resumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// The dense offset of the first message not yet settled; `None` for a subscription that
    /// started at the log's tail and has read nothing since (only the position is known).
    pub(crate) next: Option<u64>,
    /// The topic log position to read from (the storage offset just before that message).
    pub(crate) position: String,
}

impl Checkpoint {
    pub(crate) fn new(next: Option<u64>, position: &Offset) -> Checkpoint {
        Checkpoint {
            next,
            position: position.as_str().to_owned(),
        }
    }

    /// The position as a storage offset, if it is one (a checkpoint is read back from storage,
    /// so it is checked like any input).
    pub(crate) fn offset(&self) -> Option<Offset> {
        Offset::parse(&self.position).ok()
    }
}

/// An anchor record: the generation checkpoints currently go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Anchor {
    generation: u64,
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    // Serializing these plain structs cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

fn config() -> StreamConfig {
    StreamConfig::with_content_type("application/json")
}

/// A subscription's cursor in storage.
pub(crate) struct CursorStore {
    storage: Arc<dyn StreamStorage>,
    anchor: StreamName,
    generation: u64,
    /// Checkpoints in the current generation.
    records: u64,
    rotate_every: u64,
}

impl std::fmt::Debug for CursorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorStore")
            .field("anchor", &self.anchor)
            .field("generation", &self.generation)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl CursorStore {
    /// The last checkpoint under `anchor`, or `None` for a subscription never checkpointed.
    pub(crate) async fn load(
        storage: Arc<dyn StreamStorage>,
        anchor: StreamName,
        rotate_every: u64,
    ) -> Result<Option<(CursorStore, Checkpoint)>, StorageError> {
        let (generations, _) = read_all::<Anchor>(&*storage, &anchor).await?;
        // The newest generation that holds a checkpoint: a crash while creating the cursor
        // can leave the anchor naming a generation not created yet.
        for Anchor { generation } in generations.into_iter().rev() {
            let stream = generation_stream(&anchor, generation);
            let (checkpoints, records) = read_all::<Checkpoint>(&*storage, &stream).await?;
            if let Some(last) = checkpoints.into_iter().rev().find(|c| c.offset().is_some()) {
                let store = CursorStore {
                    storage,
                    anchor,
                    generation,
                    records,
                    rotate_every: rotate_every.max(1),
                };
                return Ok(Some((store, last)));
            }
            tracing::warn!(%stream, "cursor generation without a checkpoint; trying the one before");
        }
        Ok(None)
    }

    /// Creates the cursor under `anchor` at `first`; if another creator came first, loads
    /// theirs.
    pub(crate) async fn create(
        storage: Arc<dyn StreamStorage>,
        anchor: StreamName,
        rotate_every: u64,
        first: Checkpoint,
    ) -> Result<(CursorStore, Checkpoint), StorageError> {
        let created = storage
            .create(&anchor, config(), vec![encode(&Anchor { generation: 0 })])
            .await?;
        if let CreateOutcome::AlreadyExists(_) = created
            && let Some(loaded) =
                CursorStore::load(storage.clone(), anchor.clone(), rotate_every).await?
        {
            return Ok(loaded);
        }
        let stream = generation_stream(&anchor, 0);
        storage
            .create(&stream, config(), vec![encode(&first)])
            .await?;
        match CursorStore::load(storage.clone(), anchor.clone(), rotate_every).await? {
            Some(loaded) => Ok(loaded),
            None => Ok((
                CursorStore {
                    storage,
                    anchor,
                    generation: 0,
                    records: 1,
                    rotate_every: rotate_every.max(1),
                },
                first,
            )),
        }
    }

    /// Stores `checkpoint` durably, rotating to a new generation when the current one is full.
    pub(crate) async fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), StorageError> {
        if self.records < self.rotate_every {
            let stream = generation_stream(&self.anchor, self.generation);
            self.storage
                .append(&stream, AppendRequest::record(encode(checkpoint)))
                .await?;
            self.records += 1;
            return Ok(());
        }
        let next = self.generation.saturating_add(1);
        let stream = generation_stream(&self.anchor, next);
        // A retry after a failure half-way finds the generation created: append instead.
        match self
            .storage
            .create(&stream, config(), vec![encode(checkpoint)])
            .await?
        {
            CreateOutcome::Created(_) => {}
            CreateOutcome::AlreadyExists(_) => {
                self.storage
                    .append(&stream, AppendRequest::record(encode(checkpoint)))
                    .await?;
            }
        }
        self.storage
            .append(
                &self.anchor,
                AppendRequest::record(encode(&Anchor { generation: next })),
            )
            .await?;
        let old = generation_stream(&self.anchor, self.generation);
        self.generation = next;
        self.records = 1;
        if let Err(error) = self.storage.delete(&old).await {
            // Left behind, it only takes space: the anchor no longer names it.
            tracing::warn!(stream = %old, %error, "could not delete an old cursor generation");
        }
        Ok(())
    }
}

/// The stream of generation `generation` under `anchor`: `<anchor>/g<k>`.
fn generation_stream(anchor: &StreamName, generation: u64) -> StreamName {
    StreamName::new(&format!("{anchor}/g{generation}"))
        .unwrap_or_else(|_| unreachable!("a valid stream name plus a valid segment"))
}

/// Every readable record of `stream` (none if it does not exist), and how many records it has.
async fn read_all<T: DeserializeOwned>(
    storage: &dyn StreamStorage,
    stream: &StreamName,
) -> Result<(Vec<T>, u64), StorageError> {
    let mut from = None;
    let mut values = Vec::new();
    let mut records = 0u64;
    // Bounded: every round moves `from` forward or ends.
    loop {
        let batch = match storage
            .read(stream, from.clone(), ReadLimits::default())
            .await
        {
            Ok(batch) => batch,
            Err(StorageError::NotFound { .. }) => return Ok((values, records)),
            Err(error) => return Err(error),
        };
        for record in &batch.records {
            records += 1;
            match serde_json::from_slice::<T>(&record.data) {
                Ok(value) => values.push(value),
                Err(error) => {
                    tracing::warn!(%stream, offset = %record.offset, %error, "skipping an unreadable cursor record");
                }
            }
        }
        let moved = from.as_ref() != Some(&batch.next_offset);
        from = Some(batch.next_offset);
        if batch.up_to_date || !moved {
            return Ok((values, records));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_impls::memory::MemoryStreamStorage;

    fn checkpoint(next: u64) -> Checkpoint {
        Checkpoint {
            next: Some(next),
            position: format!("{next:016}"),
        }
    }

    #[tokio::test]
    async fn checkpoints_rotate_through_generations_and_the_last_one_loads() {
        let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
        let anchor = StreamName::new("broker/c/ns/t/s").expect("valid");
        assert!(
            CursorStore::load(storage.clone(), anchor.clone(), 3)
                .await
                .expect("load")
                .is_none()
        );
        let (mut store, first) =
            CursorStore::create(storage.clone(), anchor.clone(), 3, checkpoint(0))
                .await
                .expect("create");
        assert_eq!(first, checkpoint(0));
        for next in 1..=7 {
            store.save(&checkpoint(next)).await.expect("save");
        }
        // 8 checkpoints, 3 per generation: g0 and g1 full and deleted, g2 holds 6 and 7.
        assert_eq!(store.generation, 2);
        for gone in [0, 1] {
            let result = storage.head(&generation_stream(&anchor, gone)).await;
            assert!(
                matches!(result, Err(StorageError::NotFound { .. })),
                "g{gone}"
            );
        }
        let (loaded, last) = CursorStore::load(storage.clone(), anchor.clone(), 3)
            .await
            .expect("load")
            .expect("exists");
        assert_eq!(last, checkpoint(7));
        assert_eq!((loaded.generation, loaded.records), (2, 2));
        // Creating again (a racing creator) keeps what is there, and creates nothing.
        let (_, kept) = CursorStore::create(storage.clone(), anchor.clone(), 3, checkpoint(99))
            .await
            .expect("create");
        assert_eq!(kept, checkpoint(7));
        let result = storage.head(&generation_stream(&anchor, 0)).await;
        assert!(matches!(result, Err(StorageError::NotFound { .. })));
    }
}
