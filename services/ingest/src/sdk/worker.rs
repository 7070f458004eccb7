//! The client's one worker task: forms batches by count, bytes and interval, keeps one
//! request in flight (forming the next batch meanwhile), serves flushes, and shuts down
//! within the deadline.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::BATCH_OVERHEAD;
use super::delivery::Delivery;
use super::stats::{CloseReport, bump};

/// What the queue carries.
#[derive(Debug)]
pub(crate) enum Item {
    /// An encoded envelope.
    Event(Bytes),
    /// A flush: answered once every event queued ahead of it is settled. Riding the queue
    /// makes "queued before the call" exact even with concurrent `track`s.
    Flush(oneshot::Sender<()>),
}

/// Requests from the client handle that must not wait for queue space.
#[derive(Debug)]
pub(crate) enum Control {
    /// Stop intake, drain within the shutdown timeout, publish the report.
    Close,
}

/// The worker's channels and shared state.
pub(crate) struct Worker {
    pub(crate) queue: mpsc::Receiver<Item>,
    pub(crate) control: mpsc::Receiver<Control>,
    pub(crate) delivery: Arc<Delivery>,
    pub(crate) report: watch::Sender<Option<CloseReport>>,
    /// Fired when the client is dropped without `close`.
    pub(crate) stop: CancellationToken,
}

/// The batch being formed.
struct Pending {
    events: Vec<Bytes>,
    /// Body size if sent now.
    bytes: usize,
    /// When its first event was taken (the interval runs from there).
    since: Option<Instant>,
    /// An event taken that did not fit `max_batch_bytes`: it starts the next batch.
    carry: Option<Bytes>,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            events: Vec::new(),
            bytes: BATCH_OVERHEAD,
            since: None,
            carry: None,
        }
    }

    fn len(&self) -> usize {
        self.events.len() + usize::from(self.carry.is_some())
    }

    fn push(&mut self, event: Bytes) {
        self.bytes += event.len() + usize::from(!self.events.is_empty());
        self.since.get_or_insert_with(Instant::now);
        self.events.push(event);
    }

    /// Hands out the batch and starts the next one with the carried event.
    fn take(&mut self) -> Vec<Bytes> {
        let batch = std::mem::take(&mut self.events);
        self.bytes = BATCH_OVERHEAD;
        self.since = None;
        if let Some(event) = self.carry.take() {
            self.push(event);
        }
        batch
    }
}

impl Worker {
    pub(crate) async fn run(mut self) {
        let config = Arc::clone(&self.delivery.config);
        let counters = Arc::clone(&self.delivery.counters);
        let mut pending = Pending::new();
        // Events taken from the queue so far; with `flush_target` it tells which pending
        // events a flush waits for.
        let mut taken: u64 = 0;
        let mut flush_target: u64 = 0;
        // Flushes waiting, each with the number of events taken ahead of it.
        let mut flushes: Vec<(u64, oneshot::Sender<()>)> = Vec::new();
        let mut queue_open = true;
        let mut control_open = true;
        let mut deadline: Option<Instant> = None;
        let mut deadline_passed = false;
        // Fired at the shutdown deadline: cuts the in-flight request and its retry waits.
        let cancel = CancellationToken::new();
        let mut in_flight: Option<BoxFuture<'static, ()>> = None;
        let mut in_flight_len = 0usize;
        // `Counters::finished` when the in-flight delivery started: only it moves the count
        // meanwhile, so the difference is what it has already settled.
        let mut finished_at_start = 0u64;

        loop {
            if deadline_passed && in_flight.is_none() {
                break;
            }
            // Deliveries settle events in queue order, so `finished` events are exactly the
            // first `finished` taken. Past the deadline, settled may mean unsent: those
            // flushes are left to fail when the worker stops.
            if !flushes.is_empty() && !cancel.is_cancelled() {
                let finished = counters.finished();
                for (_, done) in flushes.extract_if(.., |(ahead, _)| *ahead <= finished) {
                    let _ = done.send(());
                }
            }
            let now = Instant::now();
            let full = pending.carry.is_some() || pending.events.len() >= config.batch_size;
            let first_pending = taken - pending.len() as u64;
            let due = !pending.events.is_empty()
                && (full
                    || !queue_open
                    || pending
                        .since
                        .is_some_and(|since| now >= since + config.flush_interval)
                    || (first_pending < flush_target && taken >= flush_target));
            if due && in_flight.is_none() {
                let batch = pending.take();
                in_flight_len = batch.len();
                finished_at_start = counters.finished();
                let delivery = Arc::clone(&self.delivery);
                let cancel = cancel.clone();
                in_flight = Some(Box::pin(
                    async move { delivery.deliver(batch, cancel).await },
                ));
                continue;
            }
            if !queue_open && pending.len() == 0 && in_flight.is_none() {
                break;
            }
            let interval_at = pending.since.map(|since| since + config.flush_interval);
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => {
                    // Dropped without close: what is left is unsent, the request abandoned
                    // (a 413 split may have settled part of the batch already).
                    cancel.cancel();
                    if in_flight.is_some() {
                        let settled = counters.finished().saturating_sub(finished_at_start);
                        bump(&counters.unsent, (in_flight_len as u64).saturating_sub(settled));
                    }
                    break;
                }
                _ = sleep_until_some(deadline), if deadline.is_some() && !deadline_passed => {
                    deadline_passed = true;
                    cancel.cancel();
                }
                _ = poll_some(&mut in_flight), if in_flight.is_some() => {
                    in_flight = None;
                }
                command = self.control.recv(), if control_open => match command {
                    Some(Control::Close) => {
                        if deadline.is_none() {
                            deadline = Some(Instant::now() + config.shutdown_timeout);
                            // Refuses new events; those already queued are still received.
                            self.queue.close();
                        }
                    }
                    None => control_open = false,
                },
                item = self.queue.recv(), if queue_open && !full => match item {
                    Some(Item::Flush(done)) => {
                        flush_target = flush_target.max(taken);
                        flushes.push((taken, done));
                    }
                    Some(Item::Event(event)) => {
                        taken += 1;
                        let fits = pending.events.is_empty()
                            || pending.bytes + 1 + event.len() <= config.max_batch_bytes;
                        if fits {
                            pending.push(event);
                        } else {
                            pending.carry = Some(event);
                        }
                    }
                    None => queue_open = false,
                },
                _ = sleep_until_some(interval_at),
                    if interval_at.is_some() && in_flight.is_none() && !deadline_passed => {}
            }
        }

        // Whatever was not delivered by now stays unsent.
        self.queue.close();
        let mut left = pending.len() as u64;
        while let Ok(item) = self.queue.try_recv() {
            left += u64::from(matches!(item, Item::Event(_)));
        }
        bump(&counters.unsent, left);
        if left > 0 || counters.snapshot().unsent > 0 {
            tracing::warn!(
                unsent = counters.snapshot().unsent,
                "courier-ingest: stopped with events undelivered"
            );
        }
        self.report.send_replace(Some(counters.report()));
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn poll_some(future: &mut Option<BoxFuture<'static, ()>>) {
    match future {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}
