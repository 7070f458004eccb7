//! Postgres backends (feature `postgres`): [`PgStreamStorage`], streams shared by every node,
//! and [`PgBus`], a message bus of rows woken by NOTIFY.
//!
//! # `PgStreamStorage`
//!
//! * Appends lock their stream's row (`SELECT … FOR UPDATE`) and take the next index from
//!   its counter, so offsets follow commit order; a plain `BIGSERIAL` would not (a reader can
//!   see id 7 committed before id 6 and skip 6 for good). Records, producer state and the
//!   close flag commit in one transaction. Concurrent appends to one stream on one node go as
//!   one batch: one transaction (one fsync), the rules decided for the whole batch in queue
//!   order, one statement writing all its records (`append_queue.rs`). The batches of
//!   different streams that are ready at once share a transaction (`shared_commit.rs`): it
//!   locks their rows in one statement that skips rows held elsewhere, so it never waits for a
//!   lock (no deadlock, no stream held up by another's); the streams it skipped commit on
//!   their own after it.
//! * Every write notifies channel `courier_streams` with the stream name. Appends do it after
//!   their commit, several streams in one transaction of their own (`notifier.rs`: a
//!   transaction that notifies commits under a database-wide lock, so appends that notified
//!   inside their transaction committed one at a time); creates, deletes and expiry inside
//!   their transaction. One listener connection per storage instance — not one per waiter —
//!   wakes the local `wait` calls, so an append on any node wakes waits on all of them (this
//!   node's at once). After a listener reconnect every waiter re-checks, as notifications may
//!   have been missed.

mod bus;
mod config;
mod create;
mod errors;
mod forks;
mod keyed;
mod listener;
mod notifier;
mod schema;
mod shared_commit;
mod storage;
mod tables;

pub use bus::{PgBus, PgBusConfig};
pub use config::PgStorageConfig;
/// The keyed append's lookup statement, for the test that checks its query plan
/// (`suites/tests/postgres_suites.rs`); not an API.
#[doc(hidden)]
pub use keyed::LOOKUP as KEYED_LOOKUP_SQL;
pub use storage::PgStreamStorage;
