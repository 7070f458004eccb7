//! The records of the key log, as stored: one JSON object per record, never the key itself.

use serde::{Deserialize, Serialize};

/// One record of the key log (`{"type":"created",...}` or `{"type":"revoked",...}`).
///
/// Unknown fields are ignored when reading, so a later version may add some without breaking
/// nodes still running this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum LogEntry {
    /// A key was created.
    Created {
        /// UUIDv7.
        id: String,
        /// The app the key sends for.
        app_id: String,
        /// A label.
        name: String,
        /// SHA-256 of the key string, 64 lowercase hex characters (upstream's `key_hash`).
        sha256: String,
        /// RFC 3339, UTC.
        created_at: String,
    },
    /// A key was revoked.
    Revoked {
        /// The revoked key's id.
        id: String,
        /// RFC 3339, UTC.
        revoked_at: String,
    },
}

impl LogEntry {
    /// The stored bytes.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        // Serialising a plain enum of strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads stored bytes.
    pub(crate) fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_tagged_json_and_tolerate_unknown_fields() {
        let created = LogEntry::Created {
            id: "0190".into(),
            app_id: "app".into(),
            name: "ios".into(),
            sha256: "ab".repeat(32),
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        let json: serde_json::Value =
            serde_json::from_slice(&created.to_json()).expect("valid JSON");
        assert_eq!(json["type"], "created");
        assert_eq!(json["sha256"], "ab".repeat(32));
        assert_eq!(LogEntry::from_json(&created.to_json()).ok(), Some(created));

        let revoked =
            br#"{"type":"revoked","id":"0190","revoked_at":"2026-01-01T00:00:01Z","by":"x"}"#;
        assert_eq!(
            LogEntry::from_json(revoked).ok(),
            Some(LogEntry::Revoked {
                id: "0190".into(),
                revoked_at: "2026-01-01T00:00:01Z".into()
            })
        );
        assert!(LogEntry::from_json(br#"{"type":"renamed","id":"0190"}"#).is_err());
    }
}
