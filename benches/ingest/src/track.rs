//! The SDK's `track` cost while the transport is stalled: a loopback server that accepts
//! connections and never answers, so the first batch hangs in flight, the queue fills, and
//! every later `track` meets a full queue. Each call is timed on its own.

use std::time::{Duration, Instant};

use courier_ingest::sdk::{Event, IngestClient, TrackError};
use tokio::net::TcpListener;

use crate::latency::Summary;

/// What `track` did while nothing was delivered.
#[derive(Debug)]
pub(crate) struct TrackRun {
    /// Calls that queued their event.
    pub(crate) queued: Summary,
    /// Calls refused with `QueueFull`.
    pub(crate) refused: Summary,
    /// Any other answer (there should be none).
    pub(crate) other_errors: u64,
    /// Wall time of all calls.
    pub(crate) wall: Duration,
    /// The queue capacity configured.
    pub(crate) capacity: usize,
    /// `stats().dropped.queue_full` after the calls.
    pub(crate) dropped_queue_full: u64,
    /// Two back-to-back clock reads (included in every figure above).
    pub(crate) clock_overhead_ns: u64,
}

/// Tracks `calls` events with a queue of `capacity` against a server that never answers.
pub(crate) async fn run(calls: usize, capacity: usize) -> Result<TrackRun, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("addr: {e}"))?;
    // Accepts and holds every connection without reading or answering; aborted below.
    let stall = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let client = IngestClient::builder(format!("http://{addr}"), "0".repeat(64), "bench-track")
        .queue_capacity(capacity)
        .request_timeout(Duration::from_secs(60))
        .shutdown_timeout(Duration::from_millis(200))
        .device_id("bench-device")
        .build()
        .map_err(|e| format!("client: {e}"))?;
    let pad = "x".repeat(60);
    let timed = tokio::task::spawn_blocking(move || {
        let mut queued = Vec::with_capacity(capacity + 1000);
        let mut refused = Vec::with_capacity(calls);
        let mut other_errors = 0;
        let started = Instant::now();
        for _ in 0..calls {
            // Built outside the timed span: the caller's own work.
            let event = Event::custom("bench").param("pad", pad.as_str());
            let t = Instant::now();
            let result = client.track(event);
            let nanos = t.elapsed().as_nanos() as u64;
            match result {
                Ok(()) => queued.push(nanos),
                Err(TrackError::QueueFull { .. }) => refused.push(nanos),
                Err(_) => other_errors += 1,
            }
        }
        let wall = started.elapsed();
        (client, queued, refused, other_errors, wall)
    })
    .await
    .map_err(|e| format!("tracking thread: {e}"))?;
    let (client, mut queued, mut refused, other_errors, wall) = timed;
    let dropped_queue_full = client.stats().dropped.queue_full;
    client.close().await;
    stall.abort();
    Ok(TrackRun {
        queued: Summary::of(&mut queued),
        refused: Summary::of(&mut refused),
        other_errors,
        wall,
        capacity,
        dropped_queue_full,
        clock_overhead_ns: clock_overhead(),
    })
}

fn clock_overhead() -> u64 {
    let mut nanos: Vec<u64> = (0..100_000)
        .map(|_| {
            let t = Instant::now();
            t.elapsed().as_nanos() as u64
        })
        .collect();
    Summary::of(&mut nanos).p50
}
