//! The storage rules every backend decides in Rust and only carries out in its own dialect
//! (memory, SQLite, Postgres, Redis): appends (idempotent producers, writer sequences), forks,
//! deletes up a fork chain, and the index-based offset encoding.
//!
//! Keeping them in one place means the backends cannot drift apart on the protocol's rules:
//! each rule is unit-tested here, and the universal storage suite checks the result end to end
//! on every backend. Crate-private: what a service needs lives in `courier_traits`.

mod append;
#[cfg(any(feature = "redis", feature = "postgres", feature = "sqlite"))]
mod append_batch;
mod fork;
pub(crate) mod index_offset;
mod keyed;
mod remove;

#[cfg(feature = "memory")]
pub(crate) use append::{AppendContext, AppendPlan, committed_outcome, plan_append};
pub(crate) use append::{ProducerState, check_record_sizes, validate_append};
#[cfg(any(feature = "redis", feature = "postgres", feature = "sqlite"))]
pub(crate) use append_batch::AppendBatch;
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) use append_batch::producer_ids;
pub(crate) use fork::{
    ByteCut, ForkSource, fork_settings, own_settings, plan_fork, reject_self_fork,
};
#[cfg(feature = "memory")]
pub(crate) use keyed::key_is_live;
pub(crate) use keyed::{StoredKey, plan_keyed, validate_keyed, window_ms};
pub(crate) use remove::{ChainLink, Removal, RemoveChain};
