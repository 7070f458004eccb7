//! Validated stream names and offsets.

use std::fmt;
use std::sync::Arc;

use crate::error::InvalidInput;

/// Longest stream name accepted, in bytes.
pub const MAX_STREAM_NAME_LEN: usize = 1024;
/// Longest offset accepted, in bytes.
pub const MAX_OFFSET_LEN: usize = 255;

/// A validated stream name.
///
/// 1 to [`MAX_STREAM_NAME_LEN`] bytes of ASCII letters, digits and `. _ - ~ : @ + =`, with `/`
/// separating non-empty segments that are not `.` or `..`. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName(Arc<str>);

impl StreamName {
    /// Validates `name`.
    ///
    /// ```
    /// use courier_traits::storage::StreamName;
    /// assert!(StreamName::new("orders/2026-11").is_ok());
    /// assert!(StreamName::new("../etc").is_err());
    /// ```
    pub fn new(name: &str) -> Result<StreamName, InvalidInput> {
        let bad = |reason: &str| InvalidInput::new("stream name", name, reason);
        if name.is_empty() {
            return Err(bad("must not be empty"));
        }
        if name.len() > MAX_STREAM_NAME_LEN {
            return Err(bad(&format!("longer than {MAX_STREAM_NAME_LEN} bytes")));
        }
        if let Some(c) = name.chars().find(|c| {
            !(c.is_ascii_alphanumeric()
                || matches!(c, '.' | '_' | '-' | '~' | ':' | '@' | '+' | '=' | '/'))
        }) {
            return Err(bad(&format!(
                "character {c:?} is not allowed (use A-Z a-z 0-9 . _ - ~ : @ + = /)"
            )));
        }
        if name
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(bad(
                "'/' must separate non-empty segments other than '.' and '..'",
            ));
        }
        Ok(StreamName(Arc::from(name)))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamName({:?})", &*self.0)
    }
}

/// A position in a stream, between two records (or before the first / after the last).
///
/// Opaque to callers: only the storage that issued it can interpret it. Offsets of one stream
/// sort bytewise in stream order, are unique per position, and stay valid for the stream's life.
/// They are URL-safe: 1 to [`MAX_OFFSET_LEN`] bytes of `A-Z a-z 0-9 _ . ~ -`, never containing
/// `..`. The protocol sentinels `-1` (start) and `now` (tail) are not offsets: map them before.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Offset(Arc<str>);

impl Offset {
    /// Parses an offset received from a client.
    ///
    /// ```
    /// use courier_traits::storage::Offset;
    /// assert!(Offset::parse("0000000000000003").is_ok());
    /// assert!(Offset::parse("1,2").is_err());
    /// assert!(Offset::parse("now").is_err()); // a sentinel, resolved by the protocol layer
    /// ```
    pub fn parse(text: &str) -> Result<Offset, InvalidInput> {
        let bad = |reason: &str| InvalidInput::new("offset", text, reason);
        if text.is_empty() {
            return Err(bad("must not be empty"));
        }
        if text.len() > MAX_OFFSET_LEN {
            return Err(bad(&format!("longer than {MAX_OFFSET_LEN} bytes")));
        }
        if text == "-1" || text == "now" {
            return Err(bad("is a protocol sentinel, not a stored offset"));
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '~' | '-')))
        {
            return Err(bad(&format!("character {c:?} is not allowed")));
        }
        if text.contains("..") {
            return Err(bad("must not contain '..'"));
        }
        Ok(Offset(Arc::from(text)))
    }

    /// Builds an offset from a string the storage produced itself.
    ///
    /// Storages call this for offsets they encode; it still validates so a storage bug cannot
    /// hand clients an offset they could not send back.
    pub fn from_storage(text: String) -> Result<Offset, InvalidInput> {
        Offset::parse(&text)
    }

    /// The offset's text, as sent to clients.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Offset({})", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names() {
        for good in [
            "a",
            "orders/2026-11",
            "__ds/subscriptions/x",
            "a.b~c:d@e+f=g",
        ] {
            assert!(StreamName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "a/../b", "./a", "a b", "a?b", "a\nb", "ä",
        ] {
            let err = StreamName::new(bad).expect_err(bad);
            assert_eq!(err.field, "stream name");
        }
        assert!(StreamName::new(&"a".repeat(MAX_STREAM_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn offsets_reject_unsafe_text() {
        for bad in [
            "", "-1", "now", "a b", "a,b", "a/b", "a&b", "a=b", "a?b", "a..b", "a\0b", "a\r\nb",
        ] {
            assert!(Offset::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Offset::parse(&"1".repeat(MAX_OFFSET_LEN + 1)).is_err());
        let a = Offset::parse("0000000000000009").expect("valid");
        let b = Offset::parse("0000000000000010").expect("valid");
        assert!(a < b, "bytewise order");
    }
}
