//! The events the load sends: envelopes in proto names, exactly [`EVENT_BYTES`] of JSON each,
//! every one with its own idempotency key (repeats would be answered from the dedup index
//! without writing, which is not what is measured).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Size of one event as sent, in bytes of JSON.
pub(crate) const EVENT_BYTES: usize = 200;

/// Writes events and batches of the same fixed size for one run.
#[derive(Clone, Debug)]
pub(crate) struct EventWriter {
    app_id: String,
    /// Distinguishes this run's keys from any earlier run's on the same storage.
    run: u32,
    timestamp_ms: u64,
    pad: String,
}

impl EventWriter {
    /// A writer for `app_id`, its padding chosen so each event is [`EVENT_BYTES`] long.
    pub(crate) fn new(app_id: &str) -> Result<EventWriter, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| format!("clock before 1970: {e}"))?;
        let mut writer = EventWriter {
            app_id: app_id.to_owned(),
            run: now.subsec_nanos() ^ (now.as_secs() as u32),
            // 13 digits for every date until 2286: the size stays constant.
            timestamp_ms: now.as_millis() as u64,
            pad: String::new(),
        };
        let mut probe = String::new();
        writer.event(&mut probe, 0);
        let pad = EVENT_BYTES.checked_sub(probe.len()).ok_or_else(|| {
            format!("app id {app_id:?} leaves no room in a {EVENT_BYTES} B event")
        })?;
        writer.pad = "x".repeat(pad);
        Ok(writer)
    }

    /// The idempotency key of event `n` of this run (UUID-shaped, fixed width).
    pub(crate) fn key(&self, n: u64) -> String {
        format!("{:08x}-0000-4000-8000-{:012x}", self.run, n)
    }

    /// Appends event `n` to `out`.
    pub(crate) fn event(&self, out: &mut String, n: u64) {
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            r#"{{"app_id":"{}","device_id":"d","timestamp_ms":{},"idempotency_key":"{}","custom_event":{{"event_name":"bench","string_params":{{"p":"{}"}}}}}}"#,
            self.app_id,
            self.timestamp_ms,
            self.key(n),
            self.pad
        );
    }

    /// `{"events":[...]}` with events `first..first + count`.
    pub(crate) fn batch(&self, first: u64, count: usize) -> String {
        let mut out = String::with_capacity(16 + count * (EVENT_BYTES + 1));
        out.push_str(r#"{"events":["#);
        for i in 0..count as u64 {
            if i > 0 {
                out.push(',');
            }
            self.event(&mut out, first + i);
        }
        out.push_str("]}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_event_bytes_long_with_its_own_key() {
        let writer = EventWriter::new("bench-accept").expect("writer");
        for n in [0, 1, 999, 1 << 40] {
            let mut event = String::new();
            writer.event(&mut event, n);
            assert_eq!(event.len(), EVENT_BYTES, "event {n}: {event}");
            assert!(event.contains(&writer.key(n)));
        }
        assert_ne!(writer.key(1), writer.key(2));
        let batch = writer.batch(10, 3);
        // `{"events":[`, three events and two commas, `]}`.
        assert_eq!(batch.len(), 11 + 3 * EVENT_BYTES + 2 + 2);
    }

    #[test]
    fn the_server_accepts_the_events_and_the_ceiling_writes_what_it_stores() {
        let writer = EventWriter::new("ceiling").expect("writer");
        let record = crate::ceiling::stored_record(&writer, "ceiling").expect("accepted");
        let stored: serde_json::Value = serde_json::from_slice(&record).expect("json");
        assert_eq!(stored["custom_event"]["event_name"], "bench");
    }
}
