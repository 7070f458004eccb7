//! The ceiling: `StreamStorage::append_keyed` called directly with the records the server
//! would store for the same events (same bytes, key and tag sizes), the same batch size and as
//! many concurrent writers as the server has connections.
//!
//! It runs in a fresh process of its own (`ingest-bench ceiling ...`), as the server does
//! (`serve`), so both start from the same state: an empty process with the same allocator, a
//! storage opened anew, a stream of their own, one batch and the same warm-up before the timed
//! run. Its CPU time is then its own too.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier::storage::{KeyedOutcome, KeyedRecord, StreamConfig, StreamName, StreamStorage};
use courier_ingest::server::{EventOutcome, EventParser, IngestContext, Limits};
use tokio::process::Command;

use crate::drive::{Tally, drive};
use crate::events::EventWriter;

/// The server's dedup window (24 h): the ceiling keeps its keys as long.
const WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The longest a ceiling process may take beyond its run (start, warm-up, exit).
const SLACK: Duration = Duration::from_secs(120);

/// The record the server stores for one of `writer`'s events: the server's own parser run on
/// it, so the ceiling writes the same bytes.
pub(crate) fn stored_record(writer: &EventWriter, app: &str) -> Result<Bytes, String> {
    let parser = EventParser::new(Limits::default()).map_err(|e| format!("parser: {e}"))?;
    let context = IngestContext {
        app_id: app,
        received_ms: 1_764_460_800_000,
    };
    let outcomes = parser
        .parse_batch(writer.batch(0, 1).as_bytes(), &context)
        .map_err(|e| format!("the bench's own event is refused: {e:?}"))?;
    match outcomes.into_iter().next() {
        Some(EventOutcome::Valid(event)) => Ok(event.record),
        other => Err(format!("the bench's own event is refused: {other:?}")),
    }
}

/// One timed run of the ceiling, as its process reported it.
#[derive(Debug)]
pub(crate) struct CeilingRun {
    /// The timed run.
    pub(crate) tally: Tally,
    /// The ceiling process's CPU time over the timed run.
    pub(crate) cpu: Duration,
}

/// Runs the ceiling on the storage `spec` in a fresh process of this binary and waits for it.
pub(crate) async fn run_in_child(
    spec: &str,
    batch: usize,
    writers: usize,
    duration: Duration,
) -> Result<CeilingRun, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let child = Command::new(exe)
        .args(["ceiling", spec])
        .arg(batch.to_string())
        .arg(writers.to_string())
        .arg(duration.as_secs_f64().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the ceiling process: {e}"))?;
    let output = tokio::time::timeout(duration + SLACK, child.wait_with_output())
        .await
        .map_err(|_| format!("the ceiling process did not finish within {duration:?} + {SLACK:?}"))?
        .map_err(|e| format!("ceiling process: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("ceiling process {}: {text}", output.status));
    }
    parse_report(text.trim())
}

/// The child's side: drives `spec` as [`run`] does and prints the report line
/// (`events= batches= failures= elapsed_ns= slowest_ns= cpu_ns= error=`).
pub(crate) async fn child(
    spec: &str,
    batch: usize,
    writers: usize,
    duration: Duration,
) -> Result<(), String> {
    let storage = crate::backends::open(spec).await?;
    let run = run(storage, batch, writers, duration).await?;
    let t = &run.tally;
    println!(
        "events={} batches={} failures={} elapsed_ns={} slowest_ns={} cpu_ns={} error={}",
        t.events,
        t.batches,
        t.failures,
        t.elapsed.as_nanos(),
        t.slowest.as_nanos(),
        run.cpu.as_nanos(),
        // The rest of the line, so it may hold spaces.
        t.first_error.as_deref().unwrap_or("").replace('\n', " "),
    );
    Ok(())
}

fn parse_report(line: &str) -> Result<CeilingRun, String> {
    let (fields, error) = line
        .split_once(" error=")
        .ok_or_else(|| format!("unexpected ceiling report {line:?}"))?;
    let mut values = [0u64; 6];
    let names = [
        "events=",
        "batches=",
        "failures=",
        "elapsed_ns=",
        "slowest_ns=",
        "cpu_ns=",
    ];
    let words: Vec<&str> = fields.split_whitespace().collect();
    if words.len() != names.len() {
        return Err(format!("unexpected ceiling report {line:?}"));
    }
    for (word, (name, value)) in words.iter().zip(names.iter().zip(values.iter_mut())) {
        *value = word
            .strip_prefix(name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("unexpected ceiling report {line:?}"))?;
    }
    let [events, batches, failures, elapsed, slowest, cpu] = values;
    Ok(CeilingRun {
        tally: Tally {
            events,
            batches,
            failures,
            first_error: Some(error.to_owned()).filter(|e| !e.is_empty()),
            elapsed: Duration::from_nanos(elapsed),
            slowest: Duration::from_nanos(slowest),
        },
        cpu: Duration::from_nanos(cpu),
    })
}

/// Drives `storage` with `writers` loops of keyed appends of `batch` records like the server's
/// to a fresh stream: one batch, a warm-up as long as the server's
/// ([`crate::accept::warm_up_time`]), then the timed run of `duration`, with this process's
/// CPU time read around it.
pub(crate) async fn run(
    storage: Arc<dyn StreamStorage>,
    batch: usize,
    writers: usize,
    duration: Duration,
) -> Result<CeilingRun, String> {
    let app = "ceiling";
    let writer = Arc::new(EventWriter::new(app)?);
    let record = stored_record(&writer, app)?;
    let stream = StreamName::new(&format!("ingest-ceiling/b{batch}-{}", writer.key(0)))
        .map_err(|e| e.to_string())?;
    storage
        .create(
            &stream,
            StreamConfig::with_content_type("application/json"),
            Vec::new(),
        )
        .await
        .map_err(|e| format!("create {stream}: {e}"))?;
    let append = move |first: u64| {
        let (storage, writer, stream, record) = (
            storage.clone(),
            writer.clone(),
            stream.clone(),
            record.clone(),
        );
        async move {
            // The batch's records written into one buffer and handed over as views of it, as
            // the server does with the records it reads from a request: distinct bytes for
            // every record, one allocation per batch.
            let mut buffer = Vec::with_capacity(batch * record.len());
            for _ in 0..batch {
                buffer.extend_from_slice(&record);
            }
            let buffer = Bytes::from(buffer);
            let records = (first..first + batch as u64)
                .zip(0..)
                .map(|(n, i)| KeyedRecord {
                    key: writer.key(n),
                    // A UUIDv7-sized tag, as the server's event ids.
                    tag: format!("00000000-0000-7000-8000-{n:012x}"),
                    data: buffer.slice(i * record.len()..(i + 1) * record.len()),
                })
                .collect();
            let outcomes = storage
                .append_keyed(&stream, records, WINDOW)
                .await
                .map_err(|e| format!("append_keyed: {e}"))?;
            Ok(outcomes
                .iter()
                .filter(|o| matches!(o, KeyedOutcome::Appended { .. }))
                .count() as u64)
        }
    };
    // Each phase numbers its events after the previous phase's (keys never repeat).
    let mut offset = u64::MAX / 2;
    // First batch: connections, prepared statements, the stream's first row.
    append(offset)
        .await
        .map_err(|e| format!("ceiling first batch: {e}"))?;
    offset += batch as u64;
    let warm_up = drive(writers, crate::accept::warm_up_time(duration), batch, {
        let append = append.clone();
        move |first| append(offset + first)
    })
    .await;
    if let Some(error) = warm_up.first_error {
        return Err(format!("ceiling warm-up: {error}"));
    }
    offset += (warm_up.batches + warm_up.failures) * batch as u64;
    let own = std::process::id();
    let cpu_before = crate::proc_cpu::cpu_time(own)?;
    let tally = drive(writers, duration, batch, move |first| {
        append(offset + first)
    })
    .await;
    let cpu = crate::proc_cpu::cpu_time(own)?.saturating_sub(cpu_before);
    Ok(CeilingRun { tally, cpu })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_line_reads_back() {
        let line = "events=100 batches=2 failures=1 elapsed_ns=5000000000 slowest_ns=7 cpu_ns=9 error=append_keyed: boom here";
        let run = parse_report(line).expect("parses");
        assert_eq!(run.tally.events, 100);
        assert_eq!(run.tally.batches, 2);
        assert_eq!(run.tally.failures, 1);
        assert_eq!(run.tally.elapsed, Duration::from_secs(5));
        assert_eq!(run.tally.slowest, Duration::from_nanos(7));
        assert_eq!(run.cpu, Duration::from_nanos(9));
        assert_eq!(
            run.tally.first_error.as_deref(),
            Some("append_keyed: boom here")
        );
        let clean =
            parse_report("events=1 batches=1 failures=0 elapsed_ns=1 slowest_ns=1 cpu_ns=1 error=")
                .expect("parses");
        assert_eq!(clean.tally.first_error, None);
        assert!(parse_report("events=x batches=1 error=").is_err());
        assert!(parse_report("events=1 error=").is_err());
    }
}
