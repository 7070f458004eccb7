//! Closed-loop load for a fixed time: `workers` tasks each send a batch, wait for its answer,
//! and send the next, until the time is up. Used for the server and for its ceiling alike,
//! so both are driven the same way.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A worker stops after this many failed batches (the run is then reported as failed).
const MAX_FAILURES: u64 = 20;

/// What a timed run did.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Events written (accepted by the server, appended by the storage).
    pub(crate) events: u64,
    /// Batches answered with success.
    pub(crate) batches: u64,
    /// Batches that failed.
    pub(crate) failures: u64,
    /// The first failure.
    pub(crate) first_error: Option<String>,
    /// From the first send to the last answer (batches in flight at the deadline finish).
    pub(crate) elapsed: Duration,
    /// The longest wait for one batch (a storage pausing every writer shows here).
    pub(crate) slowest: Duration,
}

impl Tally {
    /// Events per second.
    pub(crate) fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `workers` closed loops of `send` for `duration`. `send(first)` writes the batch of
/// events numbered `first..first + batch` (numbers are unique across workers) and answers
/// how many were written.
pub(crate) async fn drive<F, Fut>(
    workers: usize,
    duration: Duration,
    batch: usize,
    send: F,
) -> Tally
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, String>> + Send + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (send, next) = (send.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline && tally.failures < MAX_FAILURES {
                    let first = next.fetch_add(batch as u64, Ordering::Relaxed);
                    let sent = Instant::now();
                    let outcome = send(first).await;
                    tally.slowest = tally.slowest.max(sent.elapsed());
                    match outcome {
                        Ok(written) => {
                            tally.events += written;
                            tally.batches += 1;
                        }
                        Err(error) => {
                            tally.failures += 1;
                            tally.first_error.get_or_insert(error);
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        match task.await {
            Ok(t) => {
                total.events += t.events;
                total.batches += t.batches;
                total.failures += t.failures;
                total.slowest = total.slowest.max(t.slowest);
                if total.first_error.is_none() {
                    total.first_error = t.first_error;
                }
            }
            Err(e) => {
                total.failures += 1;
                total
                    .first_error
                    .get_or_insert(format!("worker panicked: {e}"));
            }
        }
    }
    total.elapsed = started.elapsed();
    total
}
