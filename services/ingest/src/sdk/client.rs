//! [`IngestClient`]: the handle applications track through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::config::Config;
use super::delivery::Delivery;
use super::error::{FlushError, TrackError};
use super::event::{Envelope, EnvelopeContext, Event};
use super::stats::{CloseReport, Counters, Stats, bump};
use super::worker::{Control, Item, Worker};

/// Pending `close` requests the worker has not read yet.
const CONTROL_CAPACITY: usize = 64;
/// `close` waits this much past the shutdown timeout for the worker's report before giving
/// up on it (the worker cuts its own work at the timeout; this only guards against a
/// transport that ignores cancellation).
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Batches events and delivers them to a `/v1/events/batch` endpoint in the background.
///
/// Built by [`IngestClient::builder`]; see the [module docs](super) for an example. Share it
/// behind an `Arc`: every method takes `&self`.
pub struct IngestClient {
    queue: mpsc::Sender<Item>,
    control: mpsc::Sender<Control>,
    context: EnvelopeContext,
    max_event_bytes: usize,
    queue_capacity: usize,
    shutdown_timeout: Duration,
    counters: Arc<Counters>,
    closed: AtomicBool,
    report: watch::Receiver<Option<CloseReport>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for IngestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestClient")
            .field("app_id", &self.context.app_id)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl IngestClient {
    pub(crate) fn start(config: Config, runtime: &tokio::runtime::Handle) -> IngestClient {
        let (queue_tx, queue_rx) = mpsc::channel(config.queue_capacity);
        let (control_tx, control_rx) = mpsc::channel(CONTROL_CAPACITY);
        let (report_tx, report_rx) = watch::channel(None);
        let counters = Arc::new(Counters::default());
        let stop = CancellationToken::new();
        let client = IngestClient {
            queue: queue_tx,
            control: control_tx,
            context: EnvelopeContext {
                app_id: config.app_id.clone(),
                device_id: config.device_id.clone(),
                device_context: super::event::DeviceContext::of_this_host(),
            },
            max_event_bytes: config.max_event_bytes,
            queue_capacity: config.queue_capacity,
            shutdown_timeout: config.shutdown_timeout,
            counters: Arc::clone(&counters),
            closed: AtomicBool::new(false),
            report: report_rx,
            stop: stop.clone(),
        };
        let worker = Worker {
            queue: queue_rx,
            control: control_rx,
            delivery: Arc::new(Delivery {
                config: Arc::new(config),
                counters,
            }),
            report: report_tx,
            stop,
        };
        // Owned through `stop` (fired on drop) and `Control::Close`.
        runtime.spawn(worker.run());
        client
    }

    /// Queues `event` for delivery. Never blocks and never waits: it stamps the event (app
    /// id, device id and context, and the timestamp and a UUIDv4 idempotency key unless the
    /// event has them), encodes it and puts it in the bounded queue.
    ///
    /// Errors, each counted in [`Stats::dropped`]: [`TrackError::QueueFull`] (this event is
    /// dropped), [`TrackError::TooLarge`], [`TrackError::Closed`],
    /// [`TrackError::InvalidEvent`].
    pub fn track(&self, event: Event) -> Result<(), TrackError> {
        if self.closed.load(Ordering::Acquire) {
            bump(&self.counters.closed, 1);
            return Err(TrackError::Closed);
        }
        if let Some((field, reason)) = event.problem() {
            bump(&self.counters.invalid, 1);
            return Err(TrackError::InvalidEvent { field, reason });
        }
        if self.queue.capacity() == 0 {
            // Full now: skip encoding an event that would be dropped (try_send below still
            // decides when the queue drains meanwhile).
            return Err(self.queue_full());
        }
        let generated_key;
        let idempotency_key = match &event.idempotency_key {
            Some(key) => key.as_str(),
            None => {
                generated_key = uuid::Uuid::new_v4().to_string();
                generated_key.as_str()
            }
        };
        let envelope = Envelope {
            event: &event,
            context: &self.context,
            timestamp_ms: event.timestamp_ms.unwrap_or_else(now_ms),
            idempotency_key,
        };
        let encoded = serde_json::to_vec(&envelope).map_err(|e| {
            bump(&self.counters.invalid, 1);
            TrackError::InvalidEvent {
                field: "event",
                reason: e.to_string(),
            }
        })?;
        if encoded.len() > self.max_event_bytes {
            bump(&self.counters.too_large, 1);
            return Err(TrackError::TooLarge {
                size: encoded.len(),
                limit: self.max_event_bytes,
            });
        }
        match self.queue.try_send(Item::Event(Bytes::from(encoded))) {
            Ok(()) => {
                bump(&self.counters.enqueued, 1);
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(self.queue_full()),
            Err(TrySendError::Closed(_)) => {
                bump(&self.counters.closed, 1);
                Err(TrackError::Closed)
            }
        }
    }

    fn queue_full(&self) -> TrackError {
        bump(&self.counters.queue_full, 1);
        TrackError::QueueFull {
            capacity: self.queue_capacity,
        }
    }

    /// Returns once every event queued before the call is delivered or has failed (all
    /// batches, not just one). Failures go to `on_error` and [`Stats::failed`].
    ///
    /// Errors: [`FlushError::Closed`] when the client is closed (or closes meanwhile) before
    /// those events were all handled.
    pub async fn flush(&self) -> Result<(), FlushError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(FlushError::Closed);
        }
        // The marker queues behind every event whose `track` returned before this call, and
        // waits for queue space like any event would.
        let (done_tx, done_rx) = oneshot::channel();
        self.queue
            .send(Item::Flush(done_tx))
            .await
            .map_err(|_| FlushError::Closed)?;
        // Dropped unanswered when the worker stops first (close, drop).
        done_rx.await.map_err(|_| FlushError::Closed)
    }

    /// Stops intake (later `track`s fail with [`TrackError::Closed`]), delivers what is queued
    /// within the shutdown timeout (retry waits are cut short at the timeout), and reports.
    /// Idempotent: later calls return the same report.
    pub async fn close(&self) -> CloseReport {
        self.closed.store(true, Ordering::Release);
        let mut report = self.report.clone();
        if let Some(done) = *report.borrow() {
            return done;
        }
        let wait = async {
            // The worker may already be gone (dropped runtime); then there is no one to tell.
            let _ = self.control.send(Control::Close).await;
            report.wait_for(Option::is_some).await.ok().and_then(|r| *r)
        };
        match tokio::time::timeout(self.shutdown_timeout + CLOSE_GRACE, wait).await {
            Ok(Some(done)) => done,
            _ => {
                self.stop.cancel();
                let mut fallback = self.counters.report();
                fallback.unsent += self.counters.snapshot().queued;
                fallback
            }
        }
    }

    /// The client's counters now.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }
}

impl Drop for IngestClient {
    fn drop(&mut self) {
        if self.report.borrow().is_none() {
            let unsent = self.counters.snapshot().queued;
            if unsent > 0 {
                tracing::warn!(
                    unsent,
                    "courier-ingest: IngestClient dropped without close(); its queued events are lost"
                );
            }
        }
        self.stop.cancel();
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(1)
}
