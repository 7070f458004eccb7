//! The append rules for a batch: several appends to one stream, decided in queue order against
//! the stream's state as the earlier appends of the batch leave it, so the batch gives the same
//! outcomes as the same appends made one by one in that order. The shared storages (Redis,
//! Postgres) read the stream once per batch, and SQLite's writer for each stream of its group
//! commit; they decide here and write what [`AppendBatch`] collected at once (one round trip,
//! one transaction).

use std::collections::HashMap;

use bytes::Bytes;
use courier_traits::storage::{AppendOutcome, AppendRequest, StorageError, StreamName};

use super::append::{AppendContext, AppendPlan, ProducerState, committed_outcome, plan_append};
use crate::sql_model::StreamRow;

/// One stream's state as a batch's appends change it, and what they write.
pub(crate) struct AppendBatch<'a> {
    stream: &'a StreamName,
    row: StreamRow,
    first_index: u64,
    /// Stored state per producer id the batch names (`None`: not stored), updated as appends
    /// are accepted.
    producers: HashMap<String, Option<ProducerState>>,
    /// Producers whose state the batch changed, in first-change order.
    changed_producers: Vec<String>,
    records: Vec<Bytes>,
    changed: bool,
}

impl<'a> AppendBatch<'a> {
    /// A batch on `stream` whose stored row is `row`; `stored` holds the stored state of the
    /// producers the batch's requests name ([`producer_ids`]); a named producer missing there
    /// has no stored state.
    pub(crate) fn new(
        stream: &'a StreamName,
        row: StreamRow,
        stored: HashMap<String, ProducerState>,
    ) -> AppendBatch<'a> {
        AppendBatch {
            stream,
            first_index: row.next_index,
            row,
            producers: stored.into_iter().map(|(id, s)| (id, Some(s))).collect(),
            changed_producers: Vec::new(),
            records: Vec::new(),
            changed: false,
        }
    }

    /// The stream the batch appends to.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn stream(&self) -> &'a StreamName {
        self.stream
    }

    /// Whether the batch knows producer `id`'s stored state (given to [`new`](Self::new) or
    /// [learned](Self::learn_producer)); a producer it does not know counts as not stored.
    #[cfg(feature = "sqlite")]
    pub(crate) fn knows_producer(&self, id: &str) -> bool {
        self.producers.contains_key(id)
    }

    /// Tells the batch producer `id`'s stored state (`None`: not stored), for a storage that
    /// reads it only when a request names it; what the batch already knows is kept.
    #[cfg(feature = "sqlite")]
    pub(crate) fn learn_producer(&mut self, id: &str, stored: Option<ProducerState>) {
        self.producers.entry(id.to_owned()).or_insert(stored);
    }

    /// Decides `request` against the state the batch's earlier appends left.
    pub(crate) fn decide(
        &mut self,
        request: &AppendRequest,
    ) -> Result<AppendOutcome, StorageError> {
        let producer = request
            .producer
            .as_ref()
            .and_then(|stamp| self.producers.get(&stamp.id).copied().flatten());
        let ctx = AppendContext {
            stream: self.stream,
            tail: self.row.next_index,
            closed: self.row.closed,
            closed_by: self.row.closed_by.as_ref(),
            content_type: &self.row.content_type,
            producer,
            writer_seq: self.row.writer_seq.as_deref(),
        };
        let accepted = match plan_append(&ctx, request)? {
            AppendPlan::Reply(outcome) => return Ok(outcome),
            AppendPlan::Commit { producer } => producer,
        };
        let outcome = committed_outcome(self.row.next_index, request, accepted);
        self.records.extend(request.records.iter().cloned());
        self.row.next_index += request.records.len() as u64;
        if let Some(seq) = &request.writer_seq {
            self.row.writer_seq = Some(seq.clone());
        }
        if request.close {
            self.row.closed = true;
            if let Some(stamp) = &request.producer {
                self.row.closed_by = Some(stamp.clone());
            }
        }
        if let (Some(stamp), Some(state)) = (&request.producer, accepted) {
            self.producers.insert(stamp.id.clone(), Some(state));
            if !self.changed_producers.contains(&stamp.id) {
                self.changed_producers.push(stamp.id.clone());
            }
        }
        self.changed = true;
        Ok(outcome)
    }

    /// Whether any append was accepted (else there is nothing to write).
    pub(crate) fn changed(&self) -> bool {
        self.changed
    }

    /// The index of the first record written.
    pub(crate) fn first_index(&self) -> u64 {
        self.first_index
    }

    /// The accepted records, in order, starting at [`first_index`](Self::first_index).
    pub(crate) fn records(&self) -> &[Bytes] {
        &self.records
    }

    /// The stream's row after the batch (tail, writer sequence, close).
    pub(crate) fn row(&self) -> &StreamRow {
        &self.row
    }

    /// The producer states the batch changed, to store.
    pub(crate) fn changed_producers(&self) -> impl Iterator<Item = (&str, ProducerState)> {
        self.changed_producers.iter().filter_map(|id| {
            let state = (*self.producers.get(id)?)?;
            Some((id.as_str(), state))
        })
    }
}

/// The distinct producer ids `requests` are stamped with, in first-use order.
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) fn producer_ids<'r>(requests: impl Iterator<Item = &'r AppendRequest>) -> Vec<&'r str> {
    let mut ids: Vec<&str> = Vec::new();
    for stamp in requests.filter_map(|r| r.producer.as_ref()) {
        if !ids.contains(&stamp.id.as_str()) {
            ids.push(&stamp.id);
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_traits::storage::ProducerStamp;

    fn row(next_index: u64) -> StreamRow {
        StreamRow::open_text(next_index)
    }

    fn stamped(seq: u64) -> AppendRequest {
        AppendRequest::record("x")
            .with_producer(ProducerStamp::new("p", 0, seq).expect("valid stamp"))
    }

    /// Each append sees what the batch's earlier ones did: a producer's retry inside the batch
    /// is a duplicate, its next sequence is accepted, a gap refused, an append after a close
    /// in the same batch refused, a writer sequence checked against the batch's last one.
    #[test]
    fn appends_see_the_batch_state_in_order() {
        let name = StreamName::new("s").expect("valid");
        let stored = HashMap::from([(
            "p".to_owned(),
            ProducerState {
                epoch: 0,
                last_seq: 0,
            },
        )]);
        let mut batch = AppendBatch::new(&name, row(5), stored);
        let first = batch.decide(&stamped(1)).expect("next seq");
        assert_eq!(
            first.first_offset,
            Some(crate::rules::index_offset::encode(5))
        );
        assert!(batch.decide(&stamped(1)).expect("retry").duplicate);
        assert!(matches!(
            batch.decide(&stamped(3)),
            Err(StorageError::ProducerSeqGap { expected: 2, .. })
        ));
        batch
            .decide(&AppendRequest::record("y").with_writer_seq("b"))
            .expect("writer seq");
        assert!(matches!(
            batch.decide(&AppendRequest::record("z").with_writer_seq("a")),
            Err(StorageError::WriterSeqRegression { .. })
        ));
        let closed = batch.decide(&AppendRequest::close_only()).expect("close");
        assert!(closed.closed);
        assert!(matches!(
            batch.decide(&AppendRequest::record("late")),
            Err(StorageError::Closed { .. })
        ));
        assert_eq!(batch.records().len(), 2);
        assert_eq!(batch.first_index(), 5);
        assert_eq!(batch.row().next_index, 7);
        assert!(batch.row().closed);
        let changed: Vec<_> = batch.changed_producers().collect();
        assert_eq!(
            changed,
            vec![(
                "p",
                ProducerState {
                    epoch: 0,
                    last_seq: 1
                }
            )]
        );
    }

    #[cfg(any(feature = "redis", feature = "postgres"))]
    #[test]
    fn producer_ids_are_distinct_in_order() {
        let requests = [stamped(0), AppendRequest::record("u"), stamped(1)];
        assert_eq!(producer_ids(requests.iter()), vec!["p"]);
    }
}
