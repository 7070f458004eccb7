//! A message as one value (an etcd value, a Redis pub/sub payload): the 32-character hex
//! message id, then the payload.

use courier_traits::bus::MessageId;

const ID_LEN: usize = 32;

pub(crate) fn encode(id: &MessageId, payload: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(ID_LEN + payload.len());
    value.extend_from_slice(id.0.as_bytes());
    value.extend_from_slice(payload);
    value
}

pub(crate) fn decode(value: &[u8]) -> Option<(MessageId, &[u8])> {
    let (id, payload) = value.split_at_checked(ID_LEN)?;
    let id = std::str::from_utf8(id)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))?;
    Some((MessageId(id.to_owned()), payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_foreign_values() {
        let id = MessageId::random();
        let value = encode(&id, b"payload");
        assert_eq!(decode(&value), Some((id, &b"payload"[..])));
        assert_eq!(decode(b"short"), None);
        assert_eq!(decode(&[b'z'; 40]), None);
    }
}
