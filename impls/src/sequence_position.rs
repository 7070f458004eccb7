//! Positions of buses that number their messages with one counter (a Postgres sequence, an
//! etcd revision): the number zero-padded to 20 digits, so positions sort as numbers do.

use courier_traits::InvalidInput;
use courier_traits::bus::{BusError, Position};

/// The position of message number `n`.
pub(crate) fn position(n: i64) -> Position {
    Position::new(format!("{n:020}"))
}

/// The number of `position`; `InvalidInput` naming `what` (`a PgBus sequence number`, `an
/// etcd revision`) if it is not one.
pub(crate) fn number(position: &Position, what: &str) -> Result<i64, BusError> {
    position
        .as_str()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            InvalidInput::new("position", position.as_str(), format!("not {what}")).into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_sort_like_numbers_and_round_trip() {
        let numbers = [0, 1, 9, 10, 1_000, i64::MAX];
        let positions: Vec<Position> = numbers.iter().copied().map(position).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        for (n, p) in numbers.iter().zip(&positions) {
            assert_eq!(number(p, "a number").expect("ours"), *n);
        }
        for foreign in ["", "-1", "x", "1-2"] {
            let err = number(&Position::new(foreign), "an etcd revision").expect_err(foreign);
            assert!(err.to_string().contains("not an etcd revision"), "{err}");
        }
    }
}
