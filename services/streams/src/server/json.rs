//! JSON mode: appends are validated and a top-level array is flattened into messages; reads
//! return one JSON array of the messages in range.

use bytes::Bytes;
use courier_traits::storage::{Joining, Record};
use serde_json::value::RawValue;

use super::reply::Failure;
use crate::protocol;

/// How deep arrays and objects may nest in one message. serde_json parses the body into raw
/// values without a depth limit, so a 200 000-deep message would be stored, and readers that
/// parse it into values (serde_json stops at 128, as do many parsers) could not read it. A
/// read response wraps messages in one more array, which stays within 128.
pub(crate) const MAX_MESSAGE_DEPTH: usize = 64;

/// Splits a JSON body into messages, byte-exact: a top-level array gives one message per
/// element (an empty one gives none), any other value is one message. A message nesting
/// deeper than [`MAX_MESSAGE_DEPTH`] is refused.
pub(crate) fn split_messages(body: &[u8]) -> Result<Vec<Bytes>, Failure> {
    let text = std::str::from_utf8(body).map_err(|_| Failure::bad("JSON body is not UTF-8"))?;
    let trimmed = text.trim_start();
    let flattened = trimmed.starts_with('[');
    // The outer array of a flattened body is not part of any message.
    let depth = nesting_depth(trimmed.as_bytes()).saturating_sub(usize::from(flattened));
    if depth > MAX_MESSAGE_DEPTH {
        return Err(Failure::bad(format!(
            "JSON message nests arrays and objects {depth} levels deep; at most \
             {MAX_MESSAGE_DEPTH} are allowed"
        )));
    }
    if flattened {
        let items: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|e| Failure::bad(format!("invalid JSON: {e}")))?;
        Ok(items
            .into_iter()
            .map(|raw| Bytes::copy_from_slice(raw.get().as_bytes()))
            .collect())
    } else {
        let raw: &RawValue =
            serde_json::from_str(text).map_err(|e| Failure::bad(format!("invalid JSON: {e}")))?;
        Ok(vec![Bytes::copy_from_slice(raw.get().as_bytes())])
    }
}

/// The deepest nesting of arrays and objects in `json`, found in one pass without recursion
/// (brackets inside strings do not count). Syntax is checked later by the parser.
fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// How a read of a stream with this content type is joined into one body: a JSON array of
/// the messages for JSON streams, the bytes back to back otherwise.
pub(crate) fn joining(content_type: &str) -> Joining {
    if protocol::is_json(content_type) {
        Joining::JsonArray
    } else {
        Joining::Concat
    }
}

/// The records joined into one body.
pub(crate) fn body(records: &[Record], joining: Joining) -> Bytes {
    let bytes = records.iter().map(|r| r.data.len()).sum();
    joining.join(records.iter().map(|r| &r.data[..]), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_traits::storage::Offset;

    fn texts(body: &str) -> Vec<String> {
        split_messages(body.as_bytes())
            .expect("valid")
            .iter()
            .map(|b| String::from_utf8(b.to_vec()).expect("utf8"))
            .collect()
    }

    #[test]
    fn flattening() {
        assert_eq!(texts("[1, {\"a\": [2]}]"), ["1", "{\"a\": [2]}"]);
        assert_eq!(texts("[[1,2],[3,4]]"), ["[1,2]", "[3,4]"]);
        assert_eq!(texts("[[[1,2,3]]]"), ["[[1,2,3]]"]);
        assert_eq!(texts(" \"x\" "), ["\"x\""]);
        assert!(texts("[]").is_empty());
        assert!(split_messages(b"{").is_err());
        assert!(split_messages(b"[1,").is_err());
        assert!(split_messages(b"1 2").is_err());
    }

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn nesting_is_bounded() {
        let refused = |body: &str| match split_messages(body.as_bytes()) {
            Err(Failure::BadRequest(message)) => message,
            other => panic!("not refused: {other:?}"),
        };
        // A 200 000-deep body is refused, naming the depth and the limit.
        let message = refused(&nested(200_000));
        assert!(
            message.contains("199999 levels") && message.contains("at most 64"),
            "{message}"
        );
        // The outer array of a body is flattened away: it does not count.
        assert_eq!(
            split_messages(nested(65).as_bytes())
                .expect("64 deep")
                .len(),
            1
        );
        refused(&nested(66));
        let object = format!("{}1{}", "{\"a\":".repeat(65), "}".repeat(65));
        refused(&object);
        let object = format!("{}1{}", "{\"a\":".repeat(64), "}".repeat(64));
        assert_eq!(split_messages(object.as_bytes()).expect("64 deep").len(), 1);
        // Brackets inside strings (escaped quotes included) are text, not nesting.
        let in_string = format!("[\"\\\"{}\"]", "[".repeat(100));
        assert_eq!(
            split_messages(in_string.as_bytes())
                .expect("a string")
                .len(),
            1
        );
    }

    #[test]
    fn rendering() {
        let offset = Offset::parse("0").expect("valid");
        let rec = |s: &'static str| Record {
            offset: offset.clone(),
            data: Bytes::from_static(s.as_bytes()),
        };
        let json = joining(protocol::JSON);
        assert_eq!(&body(&[], json)[..], b"[]");
        assert_eq!(&body(&[rec("1"), rec("{}")], json)[..], b"[1,{}]");
        let text = joining("text/plain");
        assert_eq!(&body(&[rec("ab"), rec("c")], text)[..], b"abc");
        assert_eq!(&body(&[], text)[..], b"");
    }
}
