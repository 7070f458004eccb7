//! The catalog's events as stored in `broker/catalog`: one JSON object per record.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::dispatch::Dispatch;

/// One catalog event. Records of a kind this build does not know (added by a newer node, such
/// as schema bindings) are skipped when folding, so old nodes keep working beside new ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CatalogEvent {
    /// A topic (plain, or one partition) came into existence with its dispatch strategy.
    TopicCreated {
        /// The topic's name (`/ns/topic`).
        topic: String,
        /// How its messages are dispatched.
        dispatch: Dispatch,
    },
}

/// How one stored record reads.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodedEvent {
    /// An event this build folds.
    Known(CatalogEvent),
    /// A well-formed event of a kind this build does not know (its `event` field).
    Unknown(String),
    /// Not an event at all (the reason).
    Corrupt(String),
}

impl CatalogEvent {
    /// The record stored for the event.
    pub fn encode(&self) -> Bytes {
        // Serialising a plain enum of strings cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a stored record.
    pub fn decode(record: &[u8]) -> DecodedEvent {
        match serde_json::from_slice::<CatalogEvent>(record) {
            Ok(event) => DecodedEvent::Known(event),
            Err(error) => match serde_json::from_slice::<serde_json::Value>(record) {
                Ok(serde_json::Value::Object(fields)) => match fields.get("event") {
                    Some(serde_json::Value::String(kind))
                        if !matches!(kind.as_str(), "topic_created") =>
                    {
                        DecodedEvent::Unknown(kind.clone())
                    }
                    _ => DecodedEvent::Corrupt(error.to_string()),
                },
                _ => DecodedEvent::Corrupt(error.to_string()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_unknown_kinds_are_told_apart_from_garbage() {
        let event = CatalogEvent::TopicCreated {
            topic: "/default/orders".into(),
            dispatch: Dispatch::Reliable,
        };
        let record = event.encode();
        assert_eq!(
            std::str::from_utf8(&record).expect("utf-8"),
            r#"{"event":"topic_created","topic":"/default/orders","dispatch":"reliable"}"#
        );
        assert_eq!(CatalogEvent::decode(&record), DecodedEvent::Known(event));
        assert_eq!(
            CatalogEvent::decode(br#"{"event":"schema_bound","topic":"/a/b"}"#),
            DecodedEvent::Unknown("schema_bound".into())
        );
        for garbage in [
            &b"not json"[..],
            br#"{"event":"topic_created","topic":"/a/b","dispatch":"sometimes"}"#,
            br#"{"topic":"/a/b"}"#,
            b"[1]",
        ] {
            assert!(
                matches!(CatalogEvent::decode(garbage), DecodedEvent::Corrupt(_)),
                "{garbage:?}"
            );
        }
    }
}
