//! What the storage cases share: names, configurations, appends that must succeed, full reads,
//! and refusals matched by error variant.

use bytes::Bytes;
use courier_traits::storage::{
    AppendOutcome, AppendRequest, CreateOutcome, ForkFrom, Offset, ProducerStamp, ReadBatch,
    ReadLimits, Record, StorageError, StreamConfig, StreamName, StreamStorage, SubOffset,
};

use crate::fixtures::unique_prefix;

pub(crate) const TEXT: &str = "text/plain";

pub(crate) fn name(label: &str) -> StreamName {
    StreamName::new(&format!("{}/{label}", unique_prefix()))
        .expect("generated stream names are valid")
}

pub(crate) fn text_config() -> StreamConfig {
    StreamConfig::with_content_type(TEXT)
}

pub(crate) fn rec(tag: &str, i: usize) -> Bytes {
    Bytes::from(format!("{tag}-{i:04}"))
}

pub(crate) fn stamp(id: &str, epoch: u64, seq: u64) -> ProducerStamp {
    ProducerStamp::new(id, epoch, seq).expect("valid stamp")
}

/// A fork of `source` at its tail, inheriting its content type.
pub(crate) fn fork_at_tail(source: &StreamName) -> StreamConfig {
    StreamConfig {
        fork: Some(ForkFrom {
            source: source.clone(),
            offset: None,
            sub_offset: SubOffset::None,
        }),
        ..StreamConfig::default()
    }
}

pub(crate) async fn create(s: &dyn StreamStorage, name: &StreamName, config: StreamConfig) {
    match s.create(name, config, vec![]).await {
        Ok(CreateOutcome::Created(_)) => {}
        other => panic!("create {name}: expected Created, got {other:?}"),
    }
}

pub(crate) async fn append(
    s: &dyn StreamStorage,
    name: &StreamName,
    request: AppendRequest,
) -> AppendOutcome {
    s.append(name, request)
        .await
        .unwrap_or_else(|e| panic!("append to {name}: {e}"))
}

/// Creates an empty text stream and returns its tail offset (panics naming the stream if the
/// create fails).
pub async fn create_tail(s: &dyn StreamStorage, name: &StreamName) -> Offset {
    match s.create(name, text_config(), vec![]).await {
        Ok(outcome) => outcome.info().next_offset.clone(),
        Err(e) => panic!("create {name}: {e}"),
    }
}

/// Every record from `from` on, following `next_offset` until up to date. A read that is not
/// up to date yet returns nothing fails the case (records lost below the tail), instead of
/// looping forever.
pub(crate) async fn read_all(
    s: &dyn StreamStorage,
    name: &StreamName,
    from: Option<Offset>,
) -> (Vec<Record>, ReadBatch) {
    let mut records = Vec::new();
    let mut from = from;
    loop {
        let batch = s
            .read(name, from.clone(), ReadLimits::default())
            .await
            .unwrap_or_else(|e| panic!("read {name}: {e}"));
        records.extend(batch.records.iter().cloned());
        if batch.up_to_date {
            return (records, batch);
        }
        assert!(
            !batch.records.is_empty(),
            "read {name} from {from:?}: no records, yet not up to date (records missing below \
             the tail {:?})",
            batch.next_offset
        );
        from = Some(batch.next_offset.clone());
    }
}

pub(crate) fn data(records: &[Record]) -> Vec<Bytes> {
    records.iter().map(|r| r.data.clone()).collect()
}

/// Fails the case unless `result` is an error that `expected` accepts; returns that error.
pub(crate) fn assert_refused(
    result: Result<impl std::fmt::Debug, StorageError>,
    expected: fn(&StorageError) -> bool,
    what: &str,
) -> StorageError {
    match result {
        Err(e) if expected(&e) => e,
        other => panic!("{what}: expected a refusal of that kind, got {other:?}"),
    }
}

/// Refused as bad input: malformed, or an offset the stream never had (backends tell these
/// apart differently, both are the caller's mistake).
pub(crate) fn bad_input(e: &StorageError) -> bool {
    matches!(
        e,
        StorageError::InvalidInput(_) | StorageError::UnknownOffset { .. }
    )
}

/// Refused because it conflicts with an existing stream.
pub(crate) fn conflict(e: &StorageError) -> bool {
    matches!(e, StorageError::ConfigConflict { .. })
}

/// Refused as larger than the backend accepts.
pub(crate) fn too_large(e: &StorageError) -> bool {
    matches!(e, StorageError::TooLarge { .. })
}
