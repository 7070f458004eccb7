//! The ceiling: `StreamStorage::append_keyed` called directly, in this process, with the
//! records the server would store for the same events (same bytes, key and tag sizes), the
//! same batch size and as many concurrent writers as the server has connections.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier::storage::{KeyedOutcome, KeyedRecord, StreamConfig, StreamName, StreamStorage};
use courier_ingest::server::{EventOutcome, EventParser, IngestContext, Limits};

use crate::drive::{Tally, drive};
use crate::events::EventWriter;

/// The server's dedup window (24 h): the ceiling keeps its keys as long.
const WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The record the server stores for one of `writer`'s events: the server's own parser run on
/// it, so the ceiling writes the same bytes.
pub(crate) fn stored_record(writer: &EventWriter, app: &str) -> Result<Vec<u8>, String> {
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

/// Drives `storage` for `duration` with `writers` loops of keyed appends of `batch` records
/// like `record` to a fresh stream.
pub(crate) async fn run(
    storage: Arc<dyn StreamStorage>,
    batch: usize,
    writers: usize,
    duration: Duration,
) -> Result<Tally, String> {
    let app = "ceiling";
    let writer = Arc::new(EventWriter::new(app)?);
    let record = Bytes::from(stored_record(&writer, app)?);
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
            let records = (first..first + batch as u64)
                .map(|n| KeyedRecord {
                    key: writer.key(n),
                    // A UUIDv7-sized tag, as the server's event ids.
                    tag: format!("00000000-0000-7000-8000-{n:012x}"),
                    // A copy per record, as the server makes from its parsed request.
                    data: Bytes::copy_from_slice(&record),
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
    // Warm-up batch: connections, prepared statements, the stream's first row.
    append(u64::MAX / 2)
        .await
        .map_err(|e| format!("ceiling warm-up: {e}"))?;
    Ok(drive(writers, duration, batch, append).await)
}
