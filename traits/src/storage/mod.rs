//! [`StreamStorage`]: named append-only byte streams with opaque, bytewise-ordered offsets.
//!
//! Protocol-neutral, but rich enough for the Durable Streams protocol: content type, TTL or
//! absolute expiry, a durable closed flag, idempotent producers, a writer sequence, forks and
//! delete.
//!
//! # Semantics
//!
//! * **Create** is idempotent: [`CreateOutcome::Created`], or
//!   [`CreateOutcome::AlreadyExists`] when the configuration matches, else
//!   [`StorageError::ConfigConflict`].
//! * **Append** is atomic: the records, the producer state and the close flag commit together
//!   or not at all. Checks run in this order: closed (a producer's retry of the closing append
//!   is a duplicate, not an error, and an unstamped close-only append on a closed stream
//!   succeeds again: closing is idempotent), content type (not checked on close-only
//!   appends), producer, writer sequence.
//! * **Producers** (id, epoch, seq) are deduplicated by the storage itself, so the rules hold
//!   across server nodes: for an unknown producer seq must be 0; an older epoch is
//!   [`StorageError::StaleProducerEpoch`]; a newer epoch must start at seq 0; within an epoch
//!   `seq <= last` is a duplicate (nothing written, [`AppendOutcome::duplicate`]), `last + 1` is
//!   accepted, anything higher is [`StorageError::ProducerSeqGap`].
//! * **Offsets** are opaque, unique, strictly increasing and sort bytewise in stream order.
//!   Reading from an offset returns the records after it; chaining reads by
//!   [`ReadBatch::next_offset`] reproduces the stream exactly.
//! * **Wait** returns [`WaitOutcome::Ready`] as soon as data lies past the offset,
//!   [`WaitOutcome::Closed`] when the stream is closed at that offset, an error when the stream
//!   is deleted, or [`WaitOutcome::TimedOut`]. Shared backends are woken by appends made
//!   through other nodes.
//! * **Expiry**: a TTL is an idle window reset by reads and appends (not by `head`); an
//!   absolute expiry never moves. An expired stream behaves as absent.
//! * **Keyed appends** ([`StreamStorage::append_keyed`], capability
//!   [`StorageCapabilities::keyed_append`]) deduplicate by a key stored with the records: a
//!   record whose key was committed to the stream within the call's window (on the storage's
//!   [`Clock`](crate::clock::Clock)) is not written and answers [`KeyedOutcome::Duplicate`] with
//!   the tag of the record that committed it; a key repeated inside one call is a duplicate of
//!   its first occurrence. The other records and their keys commit together or not at all.
//!   Keys belong to the stream: deleting it forgets them, and a fork starts without any. A
//!   call may forget keys older than its own window, so use one window per stream.
//! * **Delete** removes the stream; if forks of it are alive it is kept for them but answers
//!   [`StorageError::Gone`] until the last fork goes.
//!
//! # Cancellation
//!
//! Every method is cancel-safe in the sense that dropping its future never leaves a partial
//! append: either the whole append committed or none of it did (use a producer stamp to retry
//! safely). Dropping a `wait` only stops waiting.

mod error;
mod forwarding;
mod joined;
mod keyed;
mod names;
mod stream_storage;
mod types;

pub use error::StorageError;
pub use forwarding::ForwardingStorage;
pub use joined::{JoinedBatch, Joining, JoiningFor, ReadFrom};
pub use keyed::{KeyedOutcome, KeyedRecord, MAX_DEDUP_KEY_LEN};
pub use names::{MAX_OFFSET_LEN, MAX_STREAM_NAME_LEN, Offset, StreamName};
#[cfg(any(test, feature = "mocks"))]
pub use stream_storage::MockStreamStorage;
pub use stream_storage::StreamStorage;
pub use types::{
    AppendOutcome, AppendRequest, CreateOutcome, DEFAULT_CONTENT_TYPE, Expiry, ForkFrom,
    MAX_PRODUCER_NUMBER, ProducerAck, ProducerStamp, ReadBatch, ReadLimits, Record,
    StorageCapabilities, StreamConfig, StreamInfo, SubOffset, WaitOutcome,
};
