//! Fresh event ids (UUIDv7), idempotency keys and request ids (UUIDv4) drawn from the
//! thread's CSPRNG.
//!
//! `uuid`'s own `now_v7`/`new_v4` read the operating system's random source (a `getrandom`
//! system call) for every UUID; the server makes one per event without an id, so that call
//! was a measurable share of an event's cost. `rand`'s thread generator (ChaCha, seeded and
//! reseeded from the same source) gives bytes of the same quality without a system call.
//! The v7 ids are time-sortable at millisecond precision (RFC 9562's method without a
//! counter): events of the same millisecond have no defined order among themselves. Their
//! time is the request's arrival (`received_ms`, stored beside them), read once per request
//! rather than from the clock once per event.

use rand::RngCore;
use uuid::{Builder, Uuid};

/// A UUIDv7 of `received_ms` (ms since the Unix epoch), as its lowercase hyphenated text.
pub(crate) fn event_id(received_ms: i64) -> String {
    let millis = u64::try_from(received_ms).unwrap_or_default();
    let mut random = [0_u8; 10];
    rand::rng().fill_bytes(&mut random);
    text(Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
}

/// A UUIDv4, as its lowercase hyphenated text: a fresh idempotency key, or a request's id.
pub(crate) fn idempotency_key() -> String {
    let mut random = [0_u8; 16];
    rand::rng().fill_bytes(&mut random);
    text(Builder::from_random_bytes(random).into_uuid())
}

fn text(uuid: Uuid) -> String {
    let mut buffer = Uuid::encode_buffer();
    uuid.hyphenated().encode_lower(&mut buffer).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_of_the_arrival_and_keys_v4_each_fresh() {
        let received_ms = 1_770_000_000_123;
        let (a, b) = (event_id(received_ms), event_id(received_ms));
        assert_ne!(a, b);
        let id = Uuid::parse_str(&a).expect("uuid");
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = id.get_timestamp().expect("v7 time").to_unix();
        let millis = i64::try_from(secs).expect("secs") * 1000 + i64::from(nanos / 1_000_000);
        assert_eq!(millis, received_ms);
        assert_eq!(a, id.to_string(), "lowercase hyphenated");

        let (k1, k2) = (idempotency_key(), idempotency_key());
        assert_ne!(k1, k2);
        let key = Uuid::parse_str(&k1).expect("uuid");
        assert_eq!(key.get_version_num(), 4);
        assert_eq!(key.get_variant(), uuid::Variant::RFC4122);
    }
}
