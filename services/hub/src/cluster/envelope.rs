//! The bus payload of a frame crossing nodes.
//!
//! ```text
//! 'b' | 'u' | 'c'   broadcast, unicast or channel publication
//! kind        0 text, 1 binary
//! n, origin   the publishing node's id (n <= 255 bytes)
//! boot, seq   two 8-byte big-endian numbers: the envelope id (see below)
//! [unicast]   2-byte big-endian length, target client id
//! [channel]   2-byte big-endian length, channel name
//! payload     the frame's bytes, unchanged
//! ```
//! Channel publications travel on the broadcast topic and share its sequence numbers, so
//! they are de-duplicated and ordered with broadcasts; nodes of a version before channels
//! ignore the unknown tag.
//! A binary header rather than JSON keeps a broadcast's payload from being copied through an
//! encoder on every node.
//!
//! The id is chosen by the sending node: `boot` is random per start of the node, `seq` counts
//! up from 1, so (origin, boot, seq) is unique across nodes and restarts. It stays with the
//! bytes when a publish is retried, so a receiver recognises a frame the bus stored twice (a
//! publish whose answer was lost and that was sent again): the bus's own message id differs
//! between the two copies. Tags `B` / `U` are the format before ids (no boot and seq), still
//! read so frames from nodes of the earlier version are delivered.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{Frame, FrameKind};

/// Which frame of its sender an envelope carries; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EnvelopeId {
    /// Random per start of the sending node.
    pub(crate) boot: u64,
    /// Counts the sender's frames of one kind (broadcast or unicast) from 1.
    pub(crate) seq: u64,
}

/// A decoded bus frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) origin: String,
    /// `None` from nodes of the version before ids.
    pub(crate) id: Option<EnvelopeId>,
    pub(crate) target: Option<String>,
    /// The channel of a publication (tag `c`).
    pub(crate) channel: Option<String>,
    pub(crate) kind: FrameKind,
    pub(crate) payload: Bytes,
}

pub(crate) fn encode(origin: &str, id: EnvelopeId, target: Option<&str>, frame: &Frame) -> Bytes {
    let tag = if target.is_some() { b'u' } else { b'b' };
    encode_tagged(tag, origin, id, target, frame)
}

/// A channel publication's envelope.
pub(crate) fn encode_channel(origin: &str, id: EnvelopeId, channel: &str, frame: &Frame) -> Bytes {
    encode_tagged(b'c', origin, id, Some(channel), frame)
}

fn encode_tagged(
    tag: u8,
    origin: &str,
    id: EnvelopeId,
    target: Option<&str>,
    frame: &Frame,
) -> Bytes {
    let payload = frame.payload();
    let mut out = BytesMut::with_capacity(
        20 + origin.len() + target.map_or(0, |t| t.len() + 2) + payload.len(),
    );
    out.put_u8(tag);
    out.put_u8(match frame.kind() {
        FrameKind::Text => 0,
        FrameKind::Binary => 1,
    });
    // Node ids are validated to at most 64 bytes, client ids to 128, channels to 255.
    out.put_u8(origin.len() as u8);
    out.put_slice(origin.as_bytes());
    out.put_u64(id.boot);
    out.put_u64(id.seq);
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
    let id = match tag {
        b'b' | b'u' | b'c' => {
            let boot = u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?);
            let seq = u64::from_be_bytes(bytes.get(at + 8..at + 16)?.try_into().ok()?);
            at += 16;
            Some(EnvelopeId { boot, seq })
        }
        _ => None,
    };
    let name = match tag {
        b'B' | b'b' => None,
        b'U' | b'u' | b'c' => {
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
    let (target, channel) = if tag == b'c' {
        (None, name)
    } else {
        (name, None)
    };
    let payload = bytes.slice(at..);
    if kind == FrameKind::Text && std::str::from_utf8(&payload).is_err() {
        return None;
    }
    Some(Envelope {
        origin,
        id,
        target,
        channel,
        kind,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: EnvelopeId = EnvelopeId {
        boot: 0x0102_0304_0506_0708,
        seq: u64::MAX - 1,
    };

    #[test]
    fn round_trips() {
        let b = encode("node-a", ID, None, &Frame::text("hello"));
        let e = decode(&b).expect("decodes");
        assert_eq!(
            (e.origin.as_str(), e.id, e.target, e.kind),
            ("node-a", Some(ID), None, FrameKind::Text)
        );
        assert_eq!(&e.payload[..], b"hello");
        let u = encode("n", ID, Some("alice"), &Frame::binary(vec![0, 255]));
        let e = decode(&u).expect("decodes");
        assert_eq!((e.id, e.target.as_deref()), (Some(ID), Some("alice")));
        assert_eq!(
            (e.kind, &e.payload[..]),
            (FrameKind::Binary, &[0u8, 255][..])
        );
    }

    #[test]
    fn channel_publications_round_trip() {
        let c = encode_channel("n", ID, "chat.room1", &Frame::text("{}"));
        let e = decode(&c).expect("decodes");
        assert_eq!(
            (e.id, e.target, e.channel.as_deref(), &e.payload[..]),
            (Some(ID), None, Some("chat.room1"), &b"{}"[..])
        );
    }

    #[test]
    fn reads_frames_of_the_format_before_ids() {
        let b = decode(&Bytes::from_static(b"B\x00\x01nhello")).expect("decodes");
        assert_eq!(
            (b.origin.as_str(), b.id, b.target, &b.payload[..]),
            ("n", None, None, &b"hello"[..])
        );
        let u = decode(&Bytes::from_static(b"U\x01\x01n\x00\x02ab\xff")).expect("decodes");
        assert_eq!(
            (u.id, u.target.as_deref(), u.kind, &u.payload[..]),
            (None, Some("ab"), FrameKind::Binary, &[0xffu8][..])
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
            b"b\x00\x01n\x00\x00\x00\x01",
        ] {
            assert!(decode(&Bytes::copy_from_slice(bad)).is_none(), "{bad:?}");
        }
    }
}
