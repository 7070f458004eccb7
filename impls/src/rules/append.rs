//! The append rules: idempotent-producer verdicts, writer sequences, the closed and content
//! type checks, in the order `courier_traits::storage` documents.

use super::index_offset;
use courier_traits::storage::{
    AppendOutcome, AppendRequest, ProducerAck, ProducerStamp, StorageError, StreamName,
};

/// A producer's stored state in one stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProducerState {
    /// Current epoch.
    pub(crate) epoch: u64,
    /// Highest accepted sequence in that epoch.
    pub(crate) last_seq: u64,
}

/// What to do with a stamped append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProducerVerdict {
    /// Write it, then store this state.
    Accept(ProducerState),
    /// Already written: write nothing and acknowledge with the stored state.
    Duplicate(ProducerAck),
}

/// Applies the idempotent-producer rules (see `courier_traits::storage`) to `stamp` given
/// the producer's stored state.
pub(crate) fn producer_verdict(
    stored: Option<ProducerState>,
    stamp: &ProducerStamp,
) -> Result<ProducerVerdict, StorageError> {
    let accept = ProducerVerdict::Accept(ProducerState {
        epoch: stamp.epoch,
        last_seq: stamp.seq,
    });
    match stored {
        None if stamp.seq == 0 => Ok(accept),
        None => Err(StorageError::ProducerSeqGap {
            expected: 0,
            received: stamp.seq,
        }),
        Some(s) if stamp.epoch < s.epoch => Err(StorageError::StaleProducerEpoch {
            current: s.epoch,
            received: stamp.epoch,
        }),
        Some(s) if stamp.epoch > s.epoch && stamp.seq != 0 => {
            Err(StorageError::ProducerEpochStart {
                epoch: stamp.epoch,
                seq: stamp.seq,
            })
        }
        Some(s) if stamp.epoch > s.epoch => Ok(accept),
        Some(s) if stamp.seq <= s.last_seq => Ok(ProducerVerdict::Duplicate(ProducerAck {
            epoch: s.epoch,
            seq: s.last_seq,
        })),
        Some(s) if stamp.seq == s.last_seq + 1 => Ok(accept),
        Some(s) => Err(StorageError::ProducerSeqGap {
            expected: s.last_seq + 1,
            received: stamp.seq,
        }),
    }
}

/// Checks a writer sequence against the last accepted one: it must sort strictly above it,
/// bytewise (so `"10"` is below `"2"`, and `"09"` is below `"10"`).
pub(crate) fn check_writer_seq(last: Option<&str>, received: &str) -> Result<(), StorageError> {
    match last {
        Some(last) if received.as_bytes() <= last.as_bytes() => {
            Err(StorageError::WriterSeqRegression {
                last: last.to_owned(),
                received: received.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

/// What an append is checked against: the stream's state as stored (read in the same
/// transaction or under the same lock as the write that follows).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AppendContext<'a> {
    /// The stream.
    pub(crate) stream: &'a StreamName,
    /// Its tail as a record index.
    pub(crate) tail: u64,
    /// Whether it is closed.
    pub(crate) closed: bool,
    /// The stamp of the append that closed it, if a producer did.
    pub(crate) closed_by: Option<&'a ProducerStamp>,
    /// Its content type.
    pub(crate) content_type: &'a str,
    /// The stored state of the request's producer, if the request is stamped.
    pub(crate) producer: Option<ProducerState>,
    /// The last accepted writer sequence.
    pub(crate) writer_seq: Option<&'a str>,
}

/// The decision on an append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AppendPlan {
    /// Write nothing; answer with this (a duplicate, or a repeated close).
    Reply(AppendOutcome),
    /// Write the records at the tail and commit, together: this producer state, the request's
    /// writer sequence and close flag. Then answer with [`committed_outcome`].
    Commit {
        /// The producer state to store, for stamped appends.
        producer: Option<ProducerState>,
    },
}

/// Applies the append rules of `courier_traits::storage` in their documented order:
/// closed, content type, producer, writer sequence.
pub(crate) fn plan_append(
    ctx: &AppendContext<'_>,
    request: &AppendRequest,
) -> Result<AppendPlan, StorageError> {
    let tail = index_offset::encode(ctx.tail);
    let reply = |duplicate, producer| {
        AppendPlan::Reply(AppendOutcome {
            next_offset: tail.clone(),
            first_offset: None,
            closed: ctx.closed,
            duplicate,
            producer,
        })
    };
    if ctx.closed {
        // A producer's retry of the append that closed the stream is acknowledged again.
        if let (Some(stamp), Some(closer)) = (&request.producer, ctx.closed_by)
            && stamp == closer
        {
            return Ok(reply(
                true,
                Some(ProducerAck {
                    epoch: closer.epoch,
                    seq: closer.seq,
                }),
            ));
        }
        // Closing is idempotent: an unstamped close-only append succeeds again.
        if request.close && request.records.is_empty() && request.producer.is_none() {
            return Ok(reply(false, None));
        }
        return Err(StorageError::Closed {
            stream: ctx.stream.clone(),
            next_offset: tail,
        });
    }
    if !request.records.is_empty()
        && let Some(received) = &request.content_type
        && received != ctx.content_type
    {
        return Err(StorageError::ContentTypeMismatch {
            expected: ctx.content_type.to_owned(),
            received: received.clone(),
        });
    }
    let mut producer = None;
    if let Some(stamp) = &request.producer {
        match producer_verdict(ctx.producer, stamp)? {
            ProducerVerdict::Duplicate(ack) => return Ok(reply(true, Some(ack))),
            ProducerVerdict::Accept(state) => producer = Some(state),
        }
    }
    if let Some(seq) = &request.writer_seq {
        check_writer_seq(ctx.writer_seq, seq)?;
    }
    Ok(AppendPlan::Commit { producer })
}

/// The outcome of a committed append that started at record index `tail`.
pub(crate) fn committed_outcome(
    tail: u64,
    request: &AppendRequest,
    producer: Option<ProducerState>,
) -> AppendOutcome {
    let written = request.records.len() as u64;
    AppendOutcome {
        next_offset: index_offset::encode(tail + written),
        first_offset: (written > 0).then(|| index_offset::encode(tail)),
        closed: request.close,
        duplicate: false,
        producer: producer.map(|p| ProducerAck {
            epoch: p.epoch,
            seq: p.last_seq,
        }),
    }
}

/// Refuses records larger than `limit` bytes (a create's initial records, an append's).
pub(crate) fn check_record_sizes(
    records: &[bytes::Bytes],
    limit: usize,
) -> Result<(), StorageError> {
    match records.iter().find(|r| r.len() > limit) {
        Some(r) => Err(StorageError::TooLarge {
            what: "record",
            size: r.len(),
            limit,
        }),
        None => Ok(()),
    }
}

/// The checks every storage makes on an append before touching its state: at least one record
/// unless it only closes, and no record above `max_record_bytes`.
pub(crate) fn validate_append(
    request: &AppendRequest,
    max_record_bytes: usize,
) -> Result<(), StorageError> {
    if request.records.is_empty() && !request.close {
        return Err(courier_traits::InvalidInput::new(
            "records",
            "",
            "an append needs at least one record unless it closes the stream",
        )
        .into());
    }
    check_record_sizes(&request.records, max_record_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(epoch: u64, seq: u64) -> ProducerStamp {
        ProducerStamp::new("p", epoch, seq).expect("valid")
    }
    fn state(epoch: u64, last_seq: u64) -> Option<ProducerState> {
        Some(ProducerState { epoch, last_seq })
    }

    #[test]
    fn producer_rules() {
        use ProducerVerdict::*;
        let accept = |e, s| {
            Accept(ProducerState {
                epoch: e,
                last_seq: s,
            })
        };
        let ok = |stored, st: ProducerStamp| producer_verdict(stored, &st).expect("accepted");
        assert_eq!(ok(None, stamp(7, 0)), accept(7, 0));
        assert!(matches!(
            producer_verdict(None, &stamp(0, 1)),
            Err(StorageError::ProducerSeqGap {
                expected: 0,
                received: 1
            })
        ));
        assert_eq!(ok(state(0, 3), stamp(0, 4)), accept(0, 4));
        assert_eq!(
            ok(state(0, 3), stamp(0, 3)),
            Duplicate(ProducerAck { epoch: 0, seq: 3 })
        );
        assert_eq!(
            ok(state(0, 3), stamp(0, 0)),
            Duplicate(ProducerAck { epoch: 0, seq: 3 })
        );
        assert!(matches!(
            producer_verdict(state(0, 3), &stamp(0, 5)),
            Err(StorageError::ProducerSeqGap {
                expected: 4,
                received: 5
            })
        ));
        assert!(matches!(
            producer_verdict(state(2, 3), &stamp(1, 4)),
            Err(StorageError::StaleProducerEpoch {
                current: 2,
                received: 1
            })
        ));
        assert_eq!(ok(state(2, 3), stamp(3, 0)), accept(3, 0));
        assert!(matches!(
            producer_verdict(state(2, 3), &stamp(3, 1)),
            Err(StorageError::ProducerEpochStart { epoch: 3, seq: 1 })
        ));
    }

    #[test]
    fn writer_seq_is_bytewise() {
        assert!(check_writer_seq(None, "2").is_ok());
        assert!(check_writer_seq(Some("2"), "10").is_err());
        assert!(check_writer_seq(Some("09"), "10").is_ok());
        assert!(check_writer_seq(Some("a"), "a").is_err());
        assert!(
            check_writer_seq(Some("a"), "B").is_err(),
            "case-sensitive: 'B' < 'a'"
        );
    }
}
