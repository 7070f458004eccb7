//! Property test of the reliable engine: any sequence of subscribes, stream opens and closes,
//! removals, offers, polls, acks, nacks and clock moves keeps its invariants, and never panics.

use std::collections::BTreeSet;
use std::time::Duration;

use courier_traits::clock::{Clock, ManualClock};
use proptest::prelude::*;

use super::*;

#[derive(Clone, Debug)]
enum Op {
    Subscribe(u8),
    Open(u8),
    Close(u8),
    Remove(u8),
    Offer(u8),
    Poll(u8),
    Ack(u8),
    Nack(u8, Option<u16>),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4).prop_map(Op::Subscribe),
        (0u8..4).prop_map(Op::Open),
        (0u8..4).prop_map(Op::Close),
        (0u8..4).prop_map(Op::Remove),
        (0u8..4).prop_map(Op::Offer),
        (0u8..4).prop_map(Op::Poll),
        any::<u8>().prop_map(Op::Ack),
        (any::<u8>(), proptest::option::of(0u16..5_000)).prop_map(|(o, d)| Op::Nack(o, d)),
        (0u16..40_000).prop_map(Op::Advance),
    ]
}

fn kind() -> impl Strategy<Value = SubscriptionType> {
    prop_oneof![
        Just(SubscriptionType::Exclusive),
        Just(SubscriptionType::Shared),
        Just(SubscriptionType::Failover),
        Just(SubscriptionType::KeyShared),
    ]
}

proptest! {
    #[test]
    fn the_reliable_engine_keeps_its_invariants(kind in kind(), ops in proptest::collection::vec(op(), 1..200)) {
        let clock = ManualClock::new(0);
        let config = SubscriptionConfig { max_unacked: 8, ..SubscriptionConfig::default() };
        let mut sub = ReliableSubscription::new(kind, config, clock.shared(), 0);
        // Offsets settled by an ack or a dead letter.
        let mut settled = BTreeSet::new();
        let mut last_cursor = 0;
        for op in ops {
            match op {
                Op::Subscribe(c) => {
                    // Names by id, so Exclusive refusals happen too.
                    let _ = sub.subscribe(kind, u64::from(c), &format!("c{}", c % 2), Vec::new());
                }
                Op::Open(c) => {
                    let _ = sub.open_stream(u64::from(c));
                }
                Op::Close(c) => sub.close_stream(u64::from(c)),
                Op::Remove(c) => {
                    sub.remove(u64::from(c));
                }
                Op::Offer(key) => {
                    if sub.capacity() > 0 {
                        let offset = sub.next_offset();
                        let key = format!("k{key}");
                        prop_assert!(sub.offer(offset, &key, offset));
                    }
                }
                Op::Poll(c) => {
                    if let Some(delivery) = sub.poll(u64::from(c)) {
                        prop_assert_eq!(delivery.message, delivery.offset);
                        prop_assert!(!settled.contains(&delivery.offset), "settled came again");
                        prop_assert!(delivery.redeliveries <= 5);
                    }
                }
                Op::Ack(offset) => {
                    if sub.ack(u64::from(offset)) {
                        settled.insert(u64::from(offset));
                    }
                }
                Op::Nack(offset, delay) => {
                    sub.nack(u64::from(offset), delay.map(|d| Duration::from_millis(u64::from(d))), "r");
                }
                Op::Advance(ms) => {
                    clock.advance(Duration::from_millis(u64::from(ms)));
                    sub.tick();
                    // Everything due ran.
                    if let Some(due) = sub.next_deadline_ms() {
                        prop_assert!(due > clock.now_ms());
                    }
                }
            }
            for dead in sub.take_dead_letters() {
                prop_assert_eq!(dead.deliveries, 6);
                prop_assert!(settled.insert(dead.offset), "dead-lettered twice");
            }
            let cursor = sub.cursor();
            prop_assert!(cursor >= last_cursor, "the cursor never moves back");
            prop_assert!(cursor <= sub.next_offset());
            // Everything below the cursor is settled; the window holds the rest.
            prop_assert!((last_cursor..cursor).all(|o| settled.contains(&o)));
            let in_flight = (cursor..sub.next_offset()).filter(|o| !settled.contains(o)).count();
            prop_assert!(in_flight <= 8);
            last_cursor = cursor;
        }
    }
}
