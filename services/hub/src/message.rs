//! [`AppMessage`]: the JSON application message clients and the hub exchange.

use serde::{Deserialize, Serialize};

/// `{"message_id": int, "message_type": string, "data": any, "ts": int}`.
///
/// A client picks `message_id`; the hub's reply carries the same id, so a client can match
/// replies to requests. `ts` is milliseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppMessage {
    /// Chosen by the sender; replies repeat it.
    #[serde(default)]
    pub message_id: i64,
    /// What kind of message this is; the dispatcher routes on it.
    pub message_type: String,
    /// The payload.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Sender's clock, ms since the Unix epoch.
    #[serde(default)]
    pub ts: i64,
}

impl AppMessage {
    /// A message stamped with the current time.
    pub fn new(message_id: i64, message_type: &str, data: serde_json::Value) -> AppMessage {
        AppMessage {
            message_id,
            message_type: message_type.to_owned(),
            data,
            ts: now_ms(),
        }
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings, numbers and a Value cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
