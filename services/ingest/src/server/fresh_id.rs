//! Fresh event ids (UUIDv7) and idempotency keys (UUIDv4) drawn from the thread's CSPRNG.
//!
//! `uuid`'s own `now_v7`/`new_v4` read the operating system's random source (a `getrandom`
//! system call) for every UUID; the server makes one per event without an id, so that call
//! was a measurable share of an event's cost. `rand`'s thread generator (ChaCha, seeded and
//! reseeded from the same source) gives bytes of the same quality without a system call.
//! The v7 ids are time-sortable at millisecond precision (RFC 9562's method without a
//! counter): events of the same millisecond have no defined order among themselves.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use uuid::{Builder, Uuid};

/// A UUIDv7 for now, as its lowercase hyphenated text.
pub(crate) fn event_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut random = [0_u8; 10];
    rand::rng().fill_bytes(&mut random);
    text(Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
}

/// A UUIDv4, as its lowercase hyphenated text.
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
    fn ids_are_v7_and_keys_v4_each_fresh() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis();
        let (a, b) = (event_id(), event_id());
        assert_ne!(a, b);
        let id = Uuid::parse_str(&a).expect("uuid");
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = id.get_timestamp().expect("v7 time").to_unix();
        let millis = u128::from(secs) * 1000 + u128::from(nanos / 1_000_000);
        assert!(
            millis >= before && millis < before + 60_000,
            "{millis} vs {before}"
        );
        assert_eq!(a, id.to_string(), "lowercase hyphenated");

        let (k1, k2) = (idempotency_key(), idempotency_key());
        assert_ne!(k1, k2);
        let key = Uuid::parse_str(&k1).expect("uuid");
        assert_eq!(key.get_version_num(), 4);
        assert_eq!(key.get_variant(), uuid::Variant::RFC4122);
    }
}
