//! Keyed appends: records carrying a dedup key, written at most once per key within a window
//! (see [`StreamStorage::append_keyed`](super::StreamStorage::append_keyed)).

use bytes::Bytes;

use super::names::Offset;
use crate::error::InvalidInput;

/// Longest dedup key or tag a storage accepts, in bytes.
pub const MAX_DEDUP_KEY_LEN: usize = 1024;

/// One record of a keyed append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyedRecord {
    /// The dedup key, per stream (non-empty, at most [`MAX_DEDUP_KEY_LEN`] bytes).
    pub key: String,
    /// A small label stored with the key (e.g. the event id), returned to later duplicates
    /// (at most [`MAX_DEDUP_KEY_LEN`] bytes).
    pub tag: String,
    /// The record's bytes.
    pub data: Bytes,
}

impl KeyedRecord {
    /// A keyed record, its key and tag validated (see the field docs).
    pub fn new(
        key: impl Into<String>,
        tag: impl Into<String>,
        data: impl Into<Bytes>,
    ) -> Result<KeyedRecord, InvalidInput> {
        let record = KeyedRecord {
            key: key.into(),
            tag: tag.into(),
            data: data.into(),
        };
        record.validate()?;
        Ok(record)
    }

    /// Checks the key and tag (storages call this on every record they are given, since the
    /// fields are public).
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.key.is_empty() {
            return Err(InvalidInput::new(
                "dedup key",
                &self.key,
                "must not be empty",
            ));
        }
        for (field, value) in [("dedup key", &self.key), ("dedup tag", &self.tag)] {
            if value.len() > MAX_DEDUP_KEY_LEN {
                return Err(InvalidInput::new(field, value, "is longer than 1024 bytes"));
            }
        }
        Ok(())
    }
}

/// What a keyed append did with one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyedOutcome {
    /// Written: the record's offset (reading from it returns this record first).
    Appended {
        /// The position just before the record.
        offset: Offset,
    },
    /// Not written: its key was committed within the window (or earlier in the same call).
    Duplicate {
        /// The tag of the record that committed the key.
        tag: String,
    },
}
