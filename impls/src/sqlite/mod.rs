//! [`SqliteStreamStorage`]: the embedded durable
//! [`StreamStorage`](courier_traits::storage::StreamStorage) (feature `sqlite`).
//!
//! One SQLite file in WAL mode, `synchronous = FULL` by default so an acknowledged append
//! survives a crash or power loss, driven directly through `rusqlite`: one writer thread
//! commits queued writes in batches on the write connection (`writer.rs`; without fsync a lone
//! append commits on its caller's thread instead), reads run on
//! a small pool of read connections off the async runtime (`readers.rs`). Appends run in
//! `BEGIN IMMEDIATE` transactions: records,
//! producer state and the close flag commit together, as do a keyed append's records and its
//! dedup keys (`keyed.rs`). Reads near the tail are answered from each stream's recent records,
//! kept in memory after each commit (`recent.rs`). `wait` is woken in process after each
//! commit; commits by other processes (or other instances) on the same file are noticed by
//! polling `PRAGMA data_version` while someone waits (`change_watch.rs`), so the storage is
//! `shared` by every process on one host that opens the file.

mod batch_append;
mod change_watch;
mod checkpoint;
mod config;
mod connection;
mod errors;
mod forks;
mod found;
#[cfg(test)]
mod inline_tests;
#[cfg(test)]
mod joined_tests;
mod keyed;
mod readers;
mod recent;
mod row;
mod schema;
mod storage;
mod wal_index;
mod writer;

pub use config::SqliteStorageConfig;
pub use storage::SqliteStreamStorage;
