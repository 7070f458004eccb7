//! A message as one value (an etcd value, a Redis pub/sub payload): its id, then the payload.
//!
//! Two layouts. An id of 32 hex digits (every id [`MessageId::random`] makes) is written as
//! it is, followed by the payload: the layout of the versions before ids could be chosen, so
//! nodes of both versions read each other's frames during an upgrade. Any other id (the
//! caller's own) is written as a zero byte, the id's length in one byte, the id, then the
//! payload; a zero byte never starts a frame of the first layout.

use courier_traits::bus::{MAX_MESSAGE_ID_LEN, MessageId};

const HEX_ID_LEN: usize = 32;
const TAGGED: u8 = 0;

// The length of a tagged id must fit in its one byte.
const _: () = assert!(MAX_MESSAGE_ID_LEN <= u8::MAX as usize);

fn is_hex_id(id: &[u8]) -> bool {
    id.len() == HEX_ID_LEN && id.iter().all(u8::is_ascii_hexdigit)
}

pub(crate) fn encode(id: &MessageId, payload: &[u8]) -> Vec<u8> {
    let id = id.as_str().as_bytes();
    let mut value = Vec::with_capacity(2 + id.len() + payload.len());
    if !is_hex_id(id) {
        value.push(TAGGED);
        // `MessageId` holds at most MAX_MESSAGE_ID_LEN bytes, which fits (checked above).
        value.push(id.len() as u8);
    }
    value.extend_from_slice(id);
    value.extend_from_slice(payload);
    value
}

pub(crate) fn decode(value: &[u8]) -> Option<(MessageId, &[u8])> {
    let (id, payload) = match value.split_first() {
        Some((&TAGGED, rest)) => {
            let (&len, rest) = rest.split_first()?;
            rest.split_at_checked(usize::from(len))?
        }
        _ => value
            .split_at_checked(HEX_ID_LEN)
            .filter(|(id, _)| is_hex_id(id))?,
    };
    let id = MessageId::parse(std::str::from_utf8(id).ok()?).ok()?;
    Some((id, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_keep_the_untagged_layout() {
        let id = MessageId::random();
        let value = encode(&id, b"payload");
        assert_eq!(&value[..HEX_ID_LEN], id.as_str().as_bytes());
        assert_eq!(decode(&value), Some((id, &b"payload"[..])));
    }

    #[test]
    fn chosen_ids_round_trip() {
        for id in ["order-42", "x", &"y".repeat(MAX_MESSAGE_ID_LEN)] {
            let id = MessageId::parse(id).expect("valid id");
            for payload in [&b""[..], b"payload", &[0u8; 40]] {
                assert_eq!(decode(&encode(&id, payload)), Some((id.clone(), payload)));
            }
        }
    }

    #[test]
    fn foreign_values_are_rejected() {
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"short"), None);
        assert_eq!(decode(&[b'z'; 40]), None);
        assert_eq!(decode(&[TAGGED]), None);
        assert_eq!(decode(&[TAGGED, 5, b'a']), None);
        assert_eq!(decode(&[TAGGED, 0, b'a']), None);
        assert_eq!(decode(b"\0\x03a b"), None);
    }
}
