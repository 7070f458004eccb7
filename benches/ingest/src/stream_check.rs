//! Counting an app's stream, and checking that events `seq` 0..N are each in it once.

use courier::storage::{Offset, ReadLimits, StorageError, StreamStorage};
use courier_ingest::server::app_stream;

/// Reads the whole stream of `app`; with `expected`, checks the `seq` parameters too.
pub(crate) async fn check(
    storage: &dyn StreamStorage,
    app: &str,
    expected: Option<u64>,
) -> Result<String, String> {
    let stream = app_stream(app).map_err(|e| e.to_string())?;
    let mut seen = vec![false; expected.unwrap_or(0) as usize];
    let (mut records, mut distinct, mut duplicates) = (0u64, 0u64, 0u64);
    let mut from: Option<Offset> = None;
    loop {
        let batch = match storage
            .read(&stream, from.clone(), ReadLimits::default())
            .await
        {
            Ok(batch) => batch,
            // Nothing was ever accepted for this app.
            Err(StorageError::NotFound { .. }) if from.is_none() => break,
            Err(e) => return Err(format!("read {stream}: {e}")),
        };
        for record in &batch.records {
            records += 1;
            if expected.is_none() {
                continue;
            }
            match seq_of(&record.data).and_then(|s| seen.get_mut(s as usize)) {
                Some(slot) if *slot => duplicates += 1,
                Some(slot) => {
                    *slot = true;
                    distinct += 1;
                }
                None => {}
            }
        }
        if batch.up_to_date || batch.records.is_empty() {
            break;
        }
        from = Some(batch.next_offset);
    }
    Ok(match expected {
        None => format!("records={records}"),
        Some(n) => format!(
            "records={records} distinct={distinct} missing={} duplicates={duplicates}",
            n - distinct
        ),
    })
}

/// The `seq` int parameter of a stored custom event.
fn seq_of(record: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(record).ok()?;
    value
        .get("custom_event")?
        .get("int_params")?
        .get("seq")?
        .as_u64()
}
