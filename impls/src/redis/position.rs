//! Redis Stream entry ids (`<ms>-<seq>`) as positions that sort bytewise: both parts
//! zero-padded to 20 digits.

use courier_traits::InvalidInput;
use courier_traits::bus::{BusError, Position};

/// An entry id, as its two numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct EntryId {
    pub(super) ms: u64,
    pub(super) seq: u64,
}

impl EntryId {
    pub(super) const ZERO: EntryId = EntryId { ms: 0, seq: 0 };

    pub(super) fn parse(id: &str) -> Option<EntryId> {
        let (ms, seq) = id.split_once('-')?;
        Some(EntryId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// As Redis writes it.
    pub(super) fn redis(&self) -> String {
        format!("{}-{}", self.ms, self.seq)
    }

    pub(super) fn position(&self) -> Position {
        Position::new(format!("{:020}-{:020}", self.ms, self.seq))
    }

    pub(super) fn from_position(position: &Position) -> Result<EntryId, BusError> {
        EntryId::parse(position.as_str()).ok_or_else(|| {
            InvalidInput::new("position", position.as_str(), "not a Redis stream entry id").into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_sort_like_entry_ids() {
        let ids = ["0-1", "9-0", "10-0", "10-2", "10-10", "1700000000000-3"];
        let parsed: Vec<EntryId> = ids
            .iter()
            .map(|i| EntryId::parse(i).expect("valid"))
            .collect();
        let positions: Vec<Position> = parsed.iter().map(EntryId::position).collect();
        assert!(parsed.windows(2).all(|w| w[0] < w[1]));
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        for (id, position) in parsed.iter().zip(&positions) {
            assert_eq!(EntryId::from_position(position).expect("ours"), *id);
        }
        assert_eq!(parsed[0].redis(), "0-1");
    }
}
