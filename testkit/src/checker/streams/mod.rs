//! The Durable Streams checker: the operations, the [`StreamsApi`] a test implements over its
//! service, the random [`Workload`] and the pure [`check`] of the recorded history.
//!
//! Every record carries a unique id (the test writes it as the JSON message `{"id": ...}`), so a
//! read is a list of ids and the checker can tell exactly which write each record came from.

mod check;
mod model;
mod workload;

pub use check::check;
pub use model::{ProducerStamp, ReadResult, STREAM_CONFIGS, StreamOp, StreamRet, StreamsApi};
pub use workload::Workload;
