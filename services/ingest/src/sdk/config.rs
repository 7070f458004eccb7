//! The options a client runs with once validated, and the option types the builder and the
//! delivery share.

use std::sync::Arc;
use std::time::Duration;

use courier_traits::retry::RetryPolicy;
use courier_traits::transport::RequestTransport;

use super::error::DeliveryError;

/// Bytes a batch body adds around its events: `{"events":[` and `]}`.
pub(crate) const BATCH_OVERHEAD: usize = r#"{"events":[]}"#.len();

/// Called with every terminal delivery failure and every per-event rejection. Runs on the
/// client's worker task: keep it short and never block in it.
pub type ErrorCallback = Arc<dyn Fn(&DeliveryError) + Send + Sync>;

/// How batch bodies are encoded on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Plain JSON (the default: upstream Causality servers accept nothing else).
    #[default]
    None,
    /// `Content-Encoding: gzip` (Courier's endpoint accepts it).
    Gzip,
}

/// The validated options the worker runs with.
pub(crate) struct Config {
    pub(crate) api_key: String,
    pub(crate) app_id: String,
    pub(crate) device_id: String,
    pub(crate) batch_size: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) max_retries: u32,
    pub(crate) request_timeout: Duration,
    pub(crate) retry_policy: Arc<dyn RetryPolicy>,
    pub(crate) queue_capacity: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) max_event_bytes: usize,
    pub(crate) compression: Compression,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) transport: Arc<dyn RequestTransport>,
    pub(crate) on_error: Option<ErrorCallback>,
}
