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
///
/// Offsets up to 46 bytes (every offset the project's storages issue) are held inline, so creating and cloning one allocates nothing: a read builds one per record.
#[derive(Clone)]
pub struct Offset(Repr);

/// The longest offset held without an allocation.
const INLINE_OFFSET_LEN: usize = 46;

#[derive(Clone)]
enum Repr {
    /// `bytes[..len]` is the text.
    Inline {
        len: u8,
        bytes: [u8; INLINE_OFFSET_LEN],
    },
    Shared(Arc<str>),
}

/// Which bytes an offset may hold: `A-Z a-z 0-9 _ . ~ -`.
const ALLOWED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'~' | b'-');
        b += 1;
    }
    table
};

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
        // One pass over the bytes: this runs for every record a read returns.
        let mut previous_dot = false;
        for &byte in text.as_bytes() {
            if !ALLOWED[usize::from(byte)] {
                let c = text
                    .chars()
                    .find(|&c| !(c.is_ascii() && ALLOWED[c as usize]))
                    .unwrap_or(char::REPLACEMENT_CHARACTER);
                return Err(bad(&format!("character {c:?} is not allowed")));
            }
            if byte == b'.' && previous_dot {
                return Err(bad("must not contain '..'"));
            }
            previous_dot = byte == b'.';
        }
        Ok(Offset::from_valid(text))
    }

    fn from_valid(text: &str) -> Offset {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= INLINE_OFFSET_LEN => {
                let mut bytes = [0u8; INLINE_OFFSET_LEN];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                Offset(Repr::Inline { len, bytes })
            }
            _ => Offset(Repr::Shared(Arc::from(text))),
        }
    }

    /// The offset `{high:016x}_{low:016x}`: 16 lowercase hex digits, `_`, 16 more, the shape
    /// the Durable Streams reference server issues (its start-of-stream offset is
    /// `from_hex_pair(0, 0)`). Valid by construction and allocation-free, so a storage that
    /// numbers its records can build one per record on every read cheaply. Bytewise order is
    /// the numeric order of `(high, low)`.
    ///
    /// ```
    /// use courier_traits::storage::Offset;
    /// assert_eq!(Offset::from_hex_pair(0, 255).as_str(), "0000000000000000_00000000000000ff");
    /// assert!(Offset::from_hex_pair(0, 9) < Offset::from_hex_pair(0, 10));
    /// ```
    pub fn from_hex_pair(high: u64, low: u64) -> Offset {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        const LEN: usize = 33;
        let mut bytes = [0u8; INLINE_OFFSET_LEN];
        for i in 0..16 {
            let shift = 60 - 4 * i;
            bytes[i] = HEX[((high >> shift) & 0xf) as usize];
            bytes[17 + i] = HEX[((low >> shift) & 0xf) as usize];
        }
        bytes[16] = b'_';
        Offset(Repr::Inline {
            len: LEN as u8,
            bytes,
        })
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
        match &self.0 {
            Repr::Inline { len, bytes } => {
                // Only ASCII from `parse` is ever stored, so this cannot fail.
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Shared(text) => text,
        }
    }
}

impl PartialEq for Offset {
    fn eq(&self, other: &Offset) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Offset {}

impl std::hash::Hash for Offset {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for Offset {
    fn partial_cmp(&self, other: &Offset) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Offset {
    fn cmp(&self, other: &Offset) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Offset({})", self.as_str())
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
        let err = Offset::parse("ab\u{e4}c").expect_err("non-ASCII");
        assert!(err.to_string().contains("'\u{e4}'"), "{err}");
        assert!(Offset::parse("a.b.c").is_ok(), "single dots are allowed");
    }

    #[test]
    fn short_and_long_offsets_behave_alike() {
        // 46 bytes are held inline, 47 and more shared; callers cannot tell them apart.
        let pair = Offset::from_hex_pair(0x1f, u64::MAX);
        assert_eq!(pair, Offset::parse(pair.as_str()).expect("a valid offset"));
        assert_eq!(pair.as_str(), "000000000000001f_ffffffffffffffff");
        let inline = "0".repeat(INLINE_OFFSET_LEN);
        let shared = format!("{inline}1");
        let longest = "z".repeat(MAX_OFFSET_LEN);
        for text in [inline.as_str(), shared.as_str(), longest.as_str(), "7"] {
            let offset = Offset::parse(text).expect("valid");
            assert_eq!(offset.as_str(), text);
            assert_eq!(offset.clone(), offset);
            assert_eq!(offset.to_string(), text);
        }
        let (a, b) = (
            Offset::parse(&inline).expect("valid"),
            Offset::parse(&shared).expect("valid"),
        );
        assert!(a < b, "a prefix sorts first, across representations");
        assert_ne!(a, b);
    }
}
