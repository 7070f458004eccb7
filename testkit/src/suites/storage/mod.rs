//! The universal [`StreamStorage`](courier_traits::storage::StreamStorage) cases, one file per
//! capability group. Each case takes a [`StorageFactory`](super::StorageFactory); see
//! [`crate::storage_suite!`].

mod forks;
mod keyed;
mod lifecycle;
mod producers;
mod records;
mod restart;
mod support;
mod ttl;
mod waits;

pub use forks::{fork_delete_lifecycle, fork_errors, fork_reads, fork_sub_offsets};
pub use keyed::{
    keyed_concurrent_nodes, keyed_failure_writes_nothing, keyed_repeats_in_one_call,
    keyed_survives_server_restart, keyed_window_expiry,
};
pub use lifecycle::{
    close_semantics, create_conflicts, create_is_idempotent, delete_and_recreate,
    invalid_input_is_named, missing_stream_errors,
};
pub use producers::{
    failed_append_keeps_producer_state, producer_close_retry, producer_dedup,
    producer_epochs_and_gaps,
};
pub use records::{
    concurrent_writers, offsets_strictly_increase, read_from_every_offset,
    read_limits_page_through, round_trip_sizes, writer_seq,
};
pub use restart::{survives_server_restart, unavailable_while_server_down};
pub use ttl::{absolute_expiry, ttl_sliding_window};
pub use waits::{wait_across_nodes, wait_times_out, wait_wakeups};

pub use support::create_tail;

pub(super) use support::{
    append, create, data, fork_at_tail, name, read_all, rec, stamp, text_config,
};
