//! Offsets that are record indexes: `0000000000000000_` then 16 lowercase hex digits of the
//! index, so bytewise order is numeric.
//!
//! The first part is reserved (always zero). The shape is the reference server's, so the
//! start-of-stream offset is the same string, `0000000000000000_0000000000000000`, that
//! Durable Streams clients (and the official conformance suite) send as "offset zero".

use courier_traits::storage::{Offset, StorageError, StreamName};

/// The reserved first part and its separator.
const PREFIX: &str = "0000000000000000_";

/// The offset of position `index` (0 = before the first record).
pub(crate) fn encode(index: u64) -> Offset {
    // Built inline, without validation or allocation: reads encode one offset per record.
    Offset::from_hex_pair(0, index)
}

/// The position an offset names, if it is one of ours.
pub(crate) fn decode(stream: &StreamName, offset: &Offset) -> Result<u64, StorageError> {
    let unknown = || StorageError::UnknownOffset {
        stream: stream.clone(),
        offset: offset.clone(),
    };
    let hex = offset.as_str().strip_prefix(PREFIX).ok_or_else(unknown)?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(unknown());
    }
    u64::from_str_radix(hex, 16).map_err(|_| unknown())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_offsets_round_trip_and_sort() {
        let name = StreamName::new("s").expect("valid");
        let offsets: Vec<Offset> = [0, 9, 10, 15, 16, 255, 256, u64::MAX]
            .iter()
            .map(|&i| encode(i))
            .collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(offsets[0].as_str(), "0000000000000000_0000000000000000");
        for (o, i) in offsets.iter().zip([0, 9, 10, 15, 16, 255, 256, u64::MAX]) {
            assert_eq!(decode(&name, o).expect("ours"), i);
        }
        for foreign in [
            "00000000000000zz",
            "0001",
            "0000000000000000_00000000000000000",
            "0000000000000000_000000000000000A",
            "0000000000000001_0000000000000000",
            "0000000000000000-0000000000000000",
        ] {
            let o = Offset::parse(foreign).expect("well-formed");
            assert!(decode(&name, &o).is_err(), "{foreign}");
        }
    }
}
