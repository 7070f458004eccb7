//! The bus payload of a frame crossing nodes.
//!
//! ```text
//! 'B' | 'U'   broadcast or unicast
//! kind        0 text, 1 binary
//! n, origin   the publishing node's id (n <= 255 bytes)
//! [unicast]   2-byte big-endian length, target client id
//! payload     the frame's bytes, unchanged
//! ```
//! A binary header rather than JSON keeps a broadcast's payload from being copied through an
//! encoder on every node.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{Frame, FrameKind};

/// A decoded bus frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) origin: String,
    pub(crate) target: Option<String>,
    pub(crate) kind: FrameKind,
    pub(crate) payload: Bytes,
}

pub(crate) fn encode(origin: &str, target: Option<&str>, frame: &Frame) -> Bytes {
    let payload = frame.payload();
    let mut out = BytesMut::with_capacity(
        4 + origin.len() + target.map_or(0, |t| t.len() + 2) + payload.len(),
    );
    out.put_u8(if target.is_some() { b'U' } else { b'B' });
    out.put_u8(match frame.kind() {
        FrameKind::Text => 0,
        FrameKind::Binary => 1,
    });
    // Node ids are validated to at most 64 bytes, client ids to 128.
    out.put_u8(origin.len() as u8);
    out.put_slice(origin.as_bytes());
    if let Some(target) = target {
        out.put_u16(target.len() as u16);
        out.put_slice(target.as_bytes());
    }
    out.put_slice(payload);
    out.freeze()
}

pub(crate) fn decode(bytes: &Bytes) -> Option<Envelope> {
    let tag = *bytes.first()?;
    let kind = match *bytes.get(1)? {
        0 => FrameKind::Text,
        1 => FrameKind::Binary,
        _ => return None,
    };
    let origin_len = usize::from(*bytes.get(2)?);
    let mut at = 3;
    let origin = std::str::from_utf8(bytes.get(at..at + origin_len)?)
        .ok()?
        .to_owned();
    at += origin_len;
    let target = match tag {
        b'B' => None,
        b'U' => {
            let len = usize::from(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]));
            at += 2;
            let target = std::str::from_utf8(bytes.get(at..at + len)?)
                .ok()?
                .to_owned();
            at += len;
            Some(target)
        }
        _ => return None,
    };
    let payload = bytes.slice(at..);
    if kind == FrameKind::Text && std::str::from_utf8(&payload).is_err() {
        return None;
    }
    Some(Envelope {
        origin,
        target,
        kind,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let b = encode("node-a", None, &Frame::text("hello"));
        let e = decode(&b).expect("decodes");
        assert_eq!(
            (e.origin.as_str(), e.target, e.kind),
            ("node-a", None, FrameKind::Text)
        );
        assert_eq!(&e.payload[..], b"hello");
        let u = encode("n", Some("alice"), &Frame::binary(vec![0, 255]));
        let e = decode(&u).expect("decodes");
        assert_eq!(e.target.as_deref(), Some("alice"));
        assert_eq!(
            (e.kind, &e.payload[..]),
            (FrameKind::Binary, &[0u8, 255][..])
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            &b""[..],
            b"X0",
            b"B\x05\x01n",
            b"B\x00\x09short",
            b"U\x00\x01n\x00\x09ab",
        ] {
            assert!(decode(&Bytes::copy_from_slice(bad)).is_none(), "{bad:?}");
        }
    }
}
