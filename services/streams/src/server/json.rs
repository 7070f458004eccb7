//! JSON mode: appends are validated and a top-level array is flattened into messages; reads
//! return one JSON array of the messages in range.

use bytes::{BufMut, Bytes, BytesMut};
use courier_traits::storage::Record;
use serde_json::value::RawValue;

use super::reply::Failure;

/// Splits a JSON body into messages, byte-exact: a top-level array gives one message per
/// element (an empty one gives none), any other value is one message.
pub(crate) fn split_messages(body: &[u8]) -> Result<Vec<Bytes>, Failure> {
    let text = std::str::from_utf8(body).map_err(|_| Failure::bad("JSON body is not UTF-8"))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
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

/// The messages as one JSON array.
pub(crate) fn render_array(records: &[Record]) -> Bytes {
    let size = records.iter().map(|r| r.data.len() + 1).sum::<usize>() + 2;
    let mut out = BytesMut::with_capacity(size);
    out.put_u8(b'[');
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(&record.data);
    }
    out.put_u8(b']');
    out.freeze()
}

/// The records' bytes, concatenated (no copy for a single record).
pub(crate) fn concat(records: &[Record]) -> Bytes {
    match records {
        [] => Bytes::new(),
        [one] => one.data.clone(),
        many => {
            let mut out = BytesMut::with_capacity(many.iter().map(|r| r.data.len()).sum());
            for record in many {
                out.put_slice(&record.data);
            }
            out.freeze()
        }
    }
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

    #[test]
    fn rendering() {
        let offset = Offset::parse("0").expect("valid");
        let rec = |s: &'static str| Record {
            offset: offset.clone(),
            data: Bytes::from_static(s.as_bytes()),
        };
        assert_eq!(&render_array(&[])[..], b"[]");
        assert_eq!(&render_array(&[rec("1"), rec("{}")])[..], b"[1,{}]");
        assert_eq!(&concat(&[rec("ab"), rec("c")])[..], b"abc");
    }
}
