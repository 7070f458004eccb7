//! Which partition a message goes to: round-robin without a key, FNV-1a of the key with one
//! (the same choice danube-client makes, so both clients put a key on the same partition).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Picks partitions for one producer.
#[derive(Debug)]
pub(crate) struct PartitionRouter {
    partitions: usize,
    next: AtomicUsize,
}

impl PartitionRouter {
    /// A router over `partitions` partitions (at least 1).
    pub(crate) fn new(partitions: usize) -> PartitionRouter {
        PartitionRouter {
            partitions: partitions.max(1),
            next: AtomicUsize::new(0),
        }
    }

    /// The partition for a message with routing key `key`, or the next in turn without one.
    pub(crate) fn partition(&self, key: Option<&str>) -> usize {
        match key {
            Some(key) => (fnv1a(key) % self.partitions as u64) as usize,
            None => self.next.fetch_add(1, Ordering::Relaxed) % self.partitions,
        }
    }
}

/// 64-bit FNV-1a of `key`'s bytes.
pub(crate) fn fnv1a(key: &str) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    key.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // From the FNV reference test suite (64-bit FNV-1a).
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn keys_stick_to_a_partition_and_no_key_rotates() {
        let router = PartitionRouter::new(3);
        let turns: Vec<usize> = (0..7).map(|_| router.partition(None)).collect();
        assert_eq!(turns, [0, 1, 2, 0, 1, 2, 0]);
        for key in ["order-1", "order-2", "customer-42", ""] {
            let first = router.partition(Some(key));
            assert_eq!(first, (fnv1a(key) % 3) as usize);
            assert!(
                (0..5).all(|_| router.partition(Some(key)) == first),
                "{key}"
            );
        }
        let single = PartitionRouter::new(1);
        assert_eq!(single.partition(Some("x")), 0);
        assert_eq!(single.partition(None), 0);
        assert_eq!(PartitionRouter::new(0).partition(None), 0, "clamped to 1");
    }
}
