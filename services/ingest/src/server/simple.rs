//! The upstream Go SDK's event shape (`event_type`, RFC 3339 `timestamp`, string fields,
//! `metadata`, `server_context`), told from the envelope by its `event_type` key.
//!
//! Upstream's own server refuses this shape (protojson sees unknown fields); we accept it so
//! that SDK works. Its fields are kept as they are in the stored record, `timestamp` becomes
//! `timestamp_ms`.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::event::{AcceptedEvent, EventOutcome, IngestContext};
use super::fresh_id;
use super::reply::Violation;

const STRING_FIELDS: [&str; 6] = [
    "event_type",
    "timestamp",
    "user_id",
    "session_id",
    "app_id",
    "idempotency_key",
];
const SERVER_CONTEXT_FIELDS: [&str; 5] = ["hostname", "go_version", "sdk_version", "os", "arch"];

pub(crate) fn parse(
    mut event: Map<String, Value>,
    path: &str,
    context: &IngestContext<'_>,
) -> Result<EventOutcome, Violation> {
    check_shape(&event, path)?;
    // Go's encoding/json reads null as the zero value; so do we, by dropping it.
    event.retain(|_, v| !v.is_null());
    let text = |event: &Map<String, Value>, key: &str| {
        event
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if text(&event, "event_type").is_empty() {
        return Ok(EventOutcome::Rejected("event_type: required".into()));
    }
    let app_id = text(&event, "app_id");
    if !app_id.is_empty() && app_id != context.app_id {
        return Ok(EventOutcome::Rejected(
            "app_id: not the app of the API key".into(),
        ));
    }
    let timestamp_ms = match event.remove("timestamp") {
        None => context.received_ms,
        Some(Value::String(t)) if t.is_empty() => context.received_ms,
        Some(Value::String(t)) => match OffsetDateTime::parse(&t, &Rfc3339) {
            Ok(at) => i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
            Err(e) => {
                return Ok(EventOutcome::Rejected(format!(
                    "timestamp: {t:?} is not an RFC 3339 time ({e})"
                )));
            }
        },
        // check_shape refused any other type with a 400 already.
        Some(_) => return Ok(EventOutcome::Rejected("timestamp: must be a string".into())),
    };
    let id = fresh_id::event_id(context.received_ms);
    let mut idempotency_key = text(&event, "idempotency_key");
    if idempotency_key.is_empty() {
        idempotency_key = fresh_id::idempotency_key();
    }
    event.insert("app_id".into(), context.app_id.into());
    event.insert("id".into(), id.clone().into());
    event.insert("idempotency_key".into(), idempotency_key.clone().into());
    event.insert("timestamp_ms".into(), timestamp_ms.into());
    event.insert("received_ms".into(), context.received_ms.into());
    Ok(EventOutcome::Valid(AcceptedEvent {
        id,
        idempotency_key,
        record: serde_json::to_vec(&event)
            .map_err(|e| Violation::new(path, e.to_string()))?
            .into(),
    }))
}

/// Field names and types of the Go SDK's `Event`; anything else is a 400 naming the field.
fn check_shape(event: &Map<String, Value>, path: &str) -> Result<(), Violation> {
    for (key, value) in event {
        let at = format!("{path}.{key}");
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            k if STRING_FIELDS.contains(&k) => expect_string(value, &at)?,
            "metadata" => {
                let map = value
                    .as_object()
                    .ok_or_else(|| Violation::new(&at, "must be an object of strings"))?;
                for (name, v) in map {
                    expect_string(v, &format!("{at}.{name}"))?;
                }
            }
            "server_context" => {
                let map = value
                    .as_object()
                    .ok_or_else(|| Violation::new(&at, "must be an object"))?;
                for (name, v) in map {
                    let inner = format!("{at}.{name}");
                    if !SERVER_CONTEXT_FIELDS.contains(&name.as_str()) {
                        return Err(Violation::new(inner, "unknown field"));
                    }
                    if !v.is_null() {
                        expect_string(v, &inner)?;
                    }
                }
            }
            _ => return Err(Violation::new(at, "unknown field")),
        }
    }
    Ok(())
}

fn expect_string(value: &Value, at: &str) -> Result<(), Violation> {
    if value.is_string() {
        Ok(())
    } else {
        Err(Violation::new(at, "must be a string"))
    }
}
