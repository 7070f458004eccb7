//! Durable cursors: a subscription's position in its topic log, checkpointed as JSON records
//! appended to its cursor stream; the last readable record is the cursor.

use bytes::Bytes;
use courier_traits::storage::{
    AppendRequest, Offset, ReadLimits, StorageError, StreamConfig, StreamName, StreamStorage,
};
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

    fn encode(&self) -> Bytes {
        // Serializing a struct of an Option<u64> and a String cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// The last readable checkpoint in `stream`, or `None` if the stream does not exist or holds
/// none (unreadable records are skipped with a warning).
pub(crate) async fn load(
    storage: &dyn StreamStorage,
    stream: &StreamName,
) -> Result<Option<Checkpoint>, StorageError> {
    let mut from = None;
    let mut last = None;
    // Bounded: every round moves `from` forward or ends.
    loop {
        let batch = match storage
            .read(stream, from.clone(), ReadLimits::default())
            .await
        {
            Ok(batch) => batch,
            Err(StorageError::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        for record in &batch.records {
            match serde_json::from_slice::<Checkpoint>(&record.data) {
                Ok(checkpoint) if checkpoint.offset().is_some() => last = Some(checkpoint),
                _ => {
                    tracing::warn!(%stream, offset = %record.offset, "skipping an unreadable cursor checkpoint")
                }
            }
        }
        let moved = from.as_ref() != Some(&batch.next_offset);
        from = Some(batch.next_offset);
        if batch.up_to_date || !moved {
            return Ok(last);
        }
    }
}

/// Creates `stream` holding `first` if it does not exist yet; returns the checkpoint it holds
/// afterwards (another creator's, if one came first).
pub(crate) async fn create(
    storage: &dyn StreamStorage,
    stream: &StreamName,
    first: &Checkpoint,
) -> Result<Checkpoint, StorageError> {
    storage
        .create(
            stream,
            StreamConfig::with_content_type("application/json"),
            vec![first.encode()],
        )
        .await?;
    Ok(load(storage, stream)
        .await?
        .unwrap_or_else(|| first.clone()))
}

/// Appends `checkpoint` to `stream`.
pub(crate) async fn save(
    storage: &dyn StreamStorage,
    stream: &StreamName,
    checkpoint: &Checkpoint,
) -> Result<(), StorageError> {
    storage
        .append(stream, AppendRequest::record(checkpoint.encode()))
        .await
        .map(|_| ())
}
