//! End to end: events tracked through the SDK (HTTP transport) into the server, then every
//! one looked for in the stream. An event `track` refuses for a full queue is tracked again
//! after a short pause (the application's choice; the SDK drops it), so all of them are
//! offered and any missing one is a loss.

use std::time::{Duration, Instant};

use courier_ingest::sdk::{CloseReport, Event, IngestClient, TrackError};

use crate::child::ServerProcess;
use crate::latency::Summary;

/// What the run did and what the stream holds afterwards.
#[derive(Debug)]
pub(crate) struct E2eRun {
    /// Events tracked (each `seq` once).
    pub(crate) events: u64,
    /// From the first `track` to `close` returning.
    pub(crate) wall: Duration,
    /// The SDK's report.
    pub(crate) report: CloseReport,
    /// `track` calls refused with `QueueFull` (each retried).
    pub(crate) queue_full: u64,
    /// Per-call time of the `track`s that queued.
    pub(crate) track: Summary,
    /// The count of the stream (`records= distinct= missing= duplicates=`); `None` when it
    /// cannot be read (`courier ingest` on memory).
    pub(crate) stream: Option<String>,
    /// Server CPU time over the run.
    pub(crate) server_cpu: Duration,
}

impl E2eRun {
    /// Every event delivered and in the stream exactly once; `None` if the stream could not
    /// be read.
    pub(crate) fn lossless(&self) -> Option<bool> {
        let n = self.events;
        let expected = format!("records={n} distinct={n} missing=0 duplicates=0");
        let stream = self.stream.as_ref()?;
        Some(self.report.delivered == n && *stream == expected)
    }
}

/// Tracks `events` events (`seq` 0..events) in batches of `batch` into `server` for `app`.
pub(crate) async fn run(
    server: &mut ServerProcess,
    app: &str,
    key: &str,
    events: u64,
    batch: usize,
) -> Result<E2eRun, String> {
    let client = IngestClient::builder(format!("http://{}", server.addr), key, app)
        .batch_size(batch)
        .device_id("bench-device")
        .build()
        .map_err(|e| format!("client: {e}"))?;
    let cpu_before = server.cpu()?;
    let started = Instant::now();
    let produced = tokio::task::spawn_blocking(move || {
        let mut nanos = Vec::with_capacity(events as usize);
        let mut queue_full = 0u64;
        for seq in 0..events {
            loop {
                let event = Event::custom("e2e").param("seq", seq as i64);
                let t = Instant::now();
                let result = client.track(event);
                let elapsed = t.elapsed().as_nanos() as u64;
                match result {
                    Ok(()) => {
                        nanos.push(elapsed);
                        break;
                    }
                    Err(TrackError::QueueFull { .. }) => {
                        queue_full += 1;
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(e) => return Err(format!("track {seq}: {e}")),
                }
            }
        }
        Ok((client, nanos, queue_full))
    })
    .await
    .map_err(|e| format!("producer thread: {e}"))?;
    let (client, mut nanos, queue_full) = produced?;
    client.flush().await.map_err(|e| format!("flush: {e}"))?;
    let report = client.close().await;
    let wall = started.elapsed();
    let server_cpu = server.cpu()?.saturating_sub(cpu_before);
    let stream = server.check(app, Some(events)).await?;
    Ok(E2eRun {
        events,
        wall,
        report,
        queue_full,
        track: Summary::of(&mut nanos),
        stream,
        server_cpu,
    })
}
