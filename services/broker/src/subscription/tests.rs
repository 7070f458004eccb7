//! The engine's rules, one test each, with a manual clock (spec B3 subscriptions, B4 logic).

use std::time::Duration;

use courier_traits::clock::{Clock, ManualClock};
use courier_traits::error::Classify;

use super::*;

use SubscriptionType::{Exclusive, Failover, KeyShared, Shared};

const START_MS: u64 = 1_000_000;

fn reliable(kind: SubscriptionType) -> (ReliableSubscription<String>, ManualClock) {
    reliable_with(kind, SubscriptionConfig::default())
}

fn reliable_with(
    kind: SubscriptionType,
    config: SubscriptionConfig,
) -> (ReliableSubscription<String>, ManualClock) {
    let clock = ManualClock::new(START_MS);
    (
        ReliableSubscription::new(kind, config, clock.shared(), 0),
        clock,
    )
}

/// Offers `count` messages `m<offset>` with key `key`, from the subscription's next offset.
fn offer(sub: &mut ReliableSubscription<String>, count: u64, key: &str) {
    for _ in 0..count {
        let offset = sub.next_offset();
        assert!(sub.offer(offset, key, format!("m{offset}")));
    }
}

/// Everything consumer `id` can poll now, as (offset, redeliveries).
fn drain(sub: &mut ReliableSubscription<String>, id: u64) -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    while let Some(delivery) = sub.poll(id) {
        assert_eq!(delivery.message, format!("m{}", delivery.offset));
        out.push((delivery.offset, delivery.redeliveries));
        assert!(out.len() <= 10_000, "bounded");
    }
    out
}

fn attach(sub: &mut ReliableSubscription<String>, kind: SubscriptionType, id: u64, name: &str) {
    sub.subscribe(kind, id, name, Vec::new()).expect("attaches");
    sub.open_stream(id).expect("attached");
}

fn first(deliveries: &[(u64, u32)]) -> Vec<u64> {
    deliveries.iter().map(|(offset, _)| *offset).collect()
}

#[test]
fn exclusive_refuses_another_name_and_the_same_name_takes_over() {
    let (mut sub, _) = reliable(Exclusive);
    attach(&mut sub, Exclusive, 1, "a");
    let refused = sub.subscribe(Exclusive, 2, "b", Vec::new());
    assert_eq!(
        refused,
        Err(SubscribeError::ExclusiveHeld {
            holder: "a".to_owned()
        })
    );
    assert!(!refused.expect_err("refused").is_retryable());
    offer(&mut sub, 3, "k");
    assert_eq!(first(&drain(&mut sub, 1)), [0, 1, 2]);
    sub.ack(0);

    let attached = sub
        .subscribe(Exclusive, 3, "a", Vec::new())
        .expect("takes over");
    assert_eq!(
        attached,
        Attached {
            consumer_id: 3,
            replaced: Some(1)
        }
    );
    assert!(!sub.holds(1));
    assert_eq!(sub.consumers(), [3]);
    // The old consumer's unacked messages go to the new one at once, as redeliveries.
    assert_eq!(drain(&mut sub, 3), [(1, 1), (2, 1)]);
    assert_eq!(sub.poll(1), None);
}

#[test]
fn exclusive_whose_stream_ended_is_replaced_by_another_name() {
    let (mut sub, _) = reliable(Exclusive);
    attach(&mut sub, Exclusive, 1, "a");
    // Subscribed but never streamed still holds it.
    sub.subscribe(Exclusive, 5, "b", Vec::new())
        .expect_err("held while waiting for its stream");
    sub.close_stream(1);
    let attached = sub.subscribe(Exclusive, 2, "b", Vec::new()).expect("free");
    assert_eq!(attached.replaced, Some(1));
}

#[test]
fn another_type_is_refused() {
    for (existing, requested) in [
        (Shared, Exclusive),
        (Exclusive, Failover),
        (Failover, KeyShared),
    ] {
        let (mut sub, _) = reliable(existing);
        let error = sub
            .subscribe(requested, 1, "c", Vec::new())
            .expect_err("type mismatch");
        assert_eq!(
            error,
            SubscribeError::TypeMismatch {
                existing,
                requested
            }
        );
        let mut live = LiveSubscription::<String>::new(existing, &SubscriptionConfig::default());
        assert!(live.subscribe(requested, 1, "c", Vec::new()).is_err());
        assert!(sub.is_empty());
    }
    let (mut sub, _) = reliable(Shared);
    attach(&mut sub, Shared, 1, "c");
    assert_eq!(
        sub.subscribe(Shared, 1, "c", Vec::new()),
        Err(SubscribeError::DuplicateId { consumer_id: 1 })
    );
    assert_eq!(
        sub.open_stream(9),
        Err(SubscribeError::UnknownConsumer { consumer_id: 9 })
    );
    assert!(SubscribeError::UnknownConsumer { consumer_id: 9 }.is_retryable());
}

#[test]
fn shared_goes_round_robin_over_present_consumers() {
    let (mut sub, _) = reliable(Shared);
    attach(&mut sub, Shared, 1, "a");
    attach(&mut sub, Shared, 2, "b");
    attach(&mut sub, Shared, 3, "c");
    offer(&mut sub, 6, "k");
    assert_eq!(first(&drain(&mut sub, 1)), [0, 3]);
    assert_eq!(first(&drain(&mut sub, 2)), [1, 4]);
    assert_eq!(first(&drain(&mut sub, 3)), [2, 5]);
    // A consumer whose stream ended is skipped.
    sub.close_stream(2);
    offer(&mut sub, 4, "k");
    let one = drain(&mut sub, 1);
    let three = drain(&mut sub, 3);
    assert_eq!(
        one.len() + three.len(),
        4 + 2,
        "and its 2 unacked are shared out"
    );
    assert!(one.contains(&(1, 1)) || three.contains(&(1, 1)));
    assert_eq!(sub.poll(2), None);
}

#[test]
fn failover_serves_the_first_connected_and_hands_over_on_its_disconnect() {
    let (mut sub, _) = reliable(Failover);
    attach(&mut sub, Failover, 1, "primary");
    attach(&mut sub, Failover, 2, "standby");
    offer(&mut sub, 4, "k");
    assert_eq!(sub.poll(2), None, "the standby gets nothing");
    assert_eq!(
        first(&[sub.poll(1).map(|d| (d.offset, 0)).expect("0")]),
        [0]
    );
    sub.close_stream(1);
    // The sent one is redelivered, the queued ones move, in offset order.
    assert_eq!(drain(&mut sub, 2), [(0, 1), (1, 0), (2, 0), (3, 0)]);
    // Back, the first connected is active again for new messages.
    sub.open_stream(1).expect("attached");
    offer(&mut sub, 1, "k");
    assert_eq!(first(&drain(&mut sub, 1)), [4]);
    assert!(sub.remove(1));
    offer(&mut sub, 1, "k");
    assert_eq!(
        first(&drain(&mut sub, 2)),
        [4, 5],
        "4 was unacked by the removed one"
    );
}

#[test]
fn key_shared_keeps_a_key_on_one_consumer_in_order() {
    let (mut sub, _) = reliable(KeyShared);
    for id in 1..=3 {
        attach(&mut sub, KeyShared, id, "c");
    }
    let keys = ["a", "b", "c", "d", "e", "f", "g", "h"];
    for _round in 0..3 {
        for key in keys {
            let offset = sub.next_offset();
            sub.offer(offset, key, format!("m{offset}"));
        }
    }
    let mut owner = std::collections::HashMap::new();
    let mut used = std::collections::HashSet::new();
    for id in 1..=3 {
        let got = first(&drain(&mut sub, id));
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
        if !got.is_empty() {
            used.insert(id);
        }
        for offset in got {
            let key = keys[(offset % 8) as usize];
            assert_eq!(*owner.entry(key).or_insert(id), id, "key {key} stays put");
        }
    }
    assert_eq!(owner.len(), 8);
    assert!(used.len() >= 2, "keys spread: {owner:?}");
}

#[test]
fn key_shared_respects_filters_and_holds_unmatched_keys() {
    let (mut sub, _) = reliable(KeyShared);
    sub.subscribe(KeyShared, 1, "eu", vec!["eu-*".to_owned()])
        .expect("attaches");
    sub.open_stream(1).expect("attached");
    sub.subscribe(KeyShared, 2, "us", vec!["us-?".to_owned()])
        .expect("attaches");
    sub.open_stream(2).expect("attached");
    sub.offer(0, "eu-west", "m0".to_owned());
    sub.offer(1, "us-1", "m1".to_owned());
    sub.offer(2, "ap-1", "m2".to_owned());
    sub.offer(3, "eu-east", "m3".to_owned());
    assert_eq!(first(&drain(&mut sub, 1)), [0, 3]);
    assert_eq!(first(&drain(&mut sub, 2)), [1]);
    // Nobody takes ap-1: it waits, holding the cursor, until a consumer accepts it.
    sub.ack(0);
    sub.ack(1);
    sub.ack(3);
    assert_eq!(sub.cursor(), 2);
    sub.subscribe(KeyShared, 3, "all", Vec::new())
        .expect("attaches");
    assert_eq!(
        first(&drain(&mut sub, 3)),
        [2],
        "buffered before its stream opens"
    );
    sub.ack(2);
    assert_eq!(sub.cursor(), 4);
}

#[test]
fn the_window_bounds_what_is_read_and_nothing_is_read_for_nobody() {
    let config = SubscriptionConfig {
        max_unacked: 3,
        ..SubscriptionConfig::default()
    };
    let (mut sub, _) = reliable_with(Shared, config);
    assert_eq!(sub.capacity(), 0, "no consumer");
    sub.subscribe(Shared, 1, "a", Vec::new()).expect("attaches");
    assert_eq!(sub.capacity(), 3, "a waiting consumer buffers");
    offer(&mut sub, 3, "k");
    assert_eq!(sub.capacity(), 0);
    assert!(sub.has_pending(1));
    sub.open_stream(1).expect("attached");
    let got = drain(&mut sub, 1);
    assert_eq!(sub.capacity(), 0, "sent but unacked still counts");
    sub.ack(got[1].0);
    assert_eq!(sub.capacity(), 1);
    sub.close_stream(1);
    assert_eq!(sub.capacity(), 0, "its stream ended");
}

#[test]
fn acks_are_idempotent_and_the_cursor_is_the_acked_prefix() {
    // A subscription resuming at a durable cursor of 10.
    let clock = ManualClock::new(START_MS);
    let mut sub =
        ReliableSubscription::new(Shared, SubscriptionConfig::default(), clock.shared(), 10);
    attach(&mut sub, Shared, 1, "a");
    assert_eq!(sub.cursor(), 10);
    assert!(!sub.offer(9, "k", "m9".to_owned()), "below the cursor");
    offer(&mut sub, 4, "k");
    assert_eq!(first(&drain(&mut sub, 1)), [10, 11, 12, 13]);
    assert!(sub.ack(11));
    assert!(sub.ack(12));
    assert_eq!(sub.cursor(), 10, "10 is not acked");
    assert!(!sub.ack(11), "again: a no-op");
    assert!(!sub.ack(5), "long settled");
    assert!(!sub.ack(99), "never read");
    assert!(sub.ack(10));
    assert_eq!(sub.cursor(), 13);
    assert!(sub.ack(13));
    assert_eq!(sub.cursor(), 14);
    assert_eq!(sub.next_deadline_ms(), None, "no timers left");
}

#[test]
fn a_nack_redelivers_after_the_default_delay_doubling_to_the_cap() {
    let config = SubscriptionConfig {
        max_redeliveries: 20,
        ..SubscriptionConfig::default()
    };
    let (mut sub, clock) = reliable_with(Exclusive, config);
    attach(&mut sub, Exclusive, 1, "a");
    offer(&mut sub, 1, "k");
    assert_eq!(drain(&mut sub, 1), [(0, 0)]);
    let mut expected = Vec::new();
    let mut waited = Vec::new();
    for failure in 1..=9u32 {
        assert!(sub.nack(0, None, "busy"));
        assert!(!sub.nack(0, None, "again"), "not sent now: ignored");
        let due = sub.next_deadline_ms().expect("a timer");
        waited.push(due - clock.now_ms());
        expected.push((1_000u64 << (failure - 1)).min(60_000));
        clock.set_ms(due - 1);
        sub.tick();
        assert_eq!(sub.poll(1), None, "not before the delay");
        clock.set_ms(due);
        sub.tick();
        assert_eq!(drain(&mut sub, 1), [(0, failure)]);
    }
    assert_eq!(waited, expected);
    assert_eq!(*waited.last().expect("nine"), 60_000);
}

#[test]
fn a_nack_with_a_delay_waits_that_long_and_zero_is_at_once() {
    let (mut sub, clock) = reliable(Shared);
    attach(&mut sub, Shared, 1, "a");
    offer(&mut sub, 2, "k");
    drain(&mut sub, 1);
    assert!(sub.nack(0, Some(Duration::from_millis(250)), ""));
    assert!(sub.nack(1, Some(Duration::ZERO), ""));
    assert_eq!(drain(&mut sub, 1), [(1, 1)]);
    clock.advance(Duration::from_millis(249));
    sub.tick();
    assert_eq!(sub.poll(1), None);
    clock.advance(Duration::from_millis(1));
    sub.tick();
    assert_eq!(drain(&mut sub, 1), [(0, 1)]);
    assert!(!sub.nack(7, None, ""), "unknown offset");
}

#[test]
fn a_client_chosen_nack_delay_is_capped_at_the_longest_default() {
    let (mut sub, clock) = reliable(Shared);
    attach(&mut sub, Shared, 1, "a");
    offer(&mut sub, 1, "k");
    drain(&mut sub, 1);
    assert!(sub.nack(0, Some(Duration::from_millis(u64::MAX)), "later"));
    let due = sub.next_deadline_ms().expect("a timer");
    assert_eq!(due - clock.now_ms(), 60_000);
    clock.set_ms(due);
    sub.tick();
    assert_eq!(drain(&mut sub, 1), [(0, 1)]);
}

#[test]
fn an_unacked_message_comes_again_after_the_ack_timeout() {
    let (mut sub, clock) = reliable(Shared);
    attach(&mut sub, Shared, 1, "a");
    offer(&mut sub, 2, "k");
    assert_eq!(drain(&mut sub, 1), [(0, 0), (1, 0)]);
    sub.ack(1);
    assert_eq!(sub.next_deadline_ms(), Some(START_MS + 30_000));
    clock.advance(Duration::from_millis(29_999));
    sub.tick();
    assert_eq!(sub.poll(1), None);
    clock.advance(Duration::from_millis(1));
    sub.tick();
    assert_eq!(drain(&mut sub, 1), [(0, 1)]);
    // A new timeout from the redelivery.
    assert_eq!(sub.next_deadline_ms(), Some(START_MS + 60_000));
    sub.ack(0);
    assert_eq!(sub.next_deadline_ms(), None);
    assert_eq!(sub.cursor(), 2);
}

#[test]
fn a_closed_stream_redelivers_at_once_when_it_reopens() {
    let (mut sub, _) = reliable(Exclusive);
    attach(&mut sub, Exclusive, 1, "a");
    offer(&mut sub, 3, "k");
    assert_eq!(sub.poll(1).map(|d| d.offset), Some(0));
    assert_eq!(sub.poll(1).map(|d| d.offset), Some(1));
    sub.ack(0);
    sub.close_stream(1);
    assert_eq!(sub.poll(1), None, "nothing while detached");
    assert_eq!(sub.capacity(), 0);
    sub.open_stream(1).expect("same id");
    // 1 was sent: a redelivery; 2 was only queued: a first delivery.
    assert_eq!(drain(&mut sub, 1), [(1, 1), (2, 0)]);
}

#[test]
fn the_sixth_failure_dead_letters_and_the_cursor_moves_on() {
    let (mut sub, clock) = reliable(Shared);
    attach(&mut sub, Shared, 1, "a");
    offer(&mut sub, 2, "k");
    assert_eq!(drain(&mut sub, 1), [(0, 0), (1, 0)]);
    sub.ack(1);
    // Failures of every kind count: timeout, Nack, stream end.
    for failure in 1..=5u32 {
        match failure % 3 {
            0 => {
                clock.advance(Duration::from_secs(30));
                sub.tick();
            }
            1 => {
                assert!(sub.nack(0, Some(Duration::ZERO), "bad"));
            }
            _ => {
                sub.close_stream(1);
                sub.open_stream(1).expect("same id");
            }
        }
        assert_eq!(drain(&mut sub, 1), [(0, failure)]);
        assert!(sub.take_dead_letters().is_empty());
    }
    assert_eq!(sub.cursor(), 0);
    assert!(sub.nack(0, None, "still bad"));
    assert_eq!(
        sub.take_dead_letters(),
        [DeadLetter {
            offset: 0,
            message: "m0".to_owned(),
            deliveries: 6,
            reason: "nacked: still bad".to_owned(),
        }]
    );
    assert!(sub.take_dead_letters().is_empty(), "taken once");
    assert_eq!(sub.cursor(), 2);
    assert_eq!(sub.poll(1), None);
    assert_eq!(sub.next_deadline_ms(), None);
    assert!(!sub.ack(0), "settled by the dead letter");
}

#[test]
fn a_timeout_dead_letter_names_the_timeout() {
    let config = SubscriptionConfig {
        max_redeliveries: 0,
        ..SubscriptionConfig::default()
    };
    let (mut sub, clock) = reliable_with(Shared, config);
    attach(&mut sub, Shared, 1, "a");
    offer(&mut sub, 1, "k");
    drain(&mut sub, 1);
    clock.advance(Duration::from_secs(30));
    sub.tick();
    let dead = sub.take_dead_letters();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.contains("ack timeout of 30s"),
        "{}",
        dead[0].reason
    );
}

#[test]
fn order_holds_except_for_redeliveries_which_come_first() {
    let (mut sub, _) = reliable(Exclusive);
    attach(&mut sub, Exclusive, 1, "a");
    offer(&mut sub, 3, "k");
    drain(&mut sub, 1);
    offer(&mut sub, 3, "k");
    assert!(sub.nack(1, Some(Duration::ZERO), ""));
    assert_eq!(first(&drain(&mut sub, 1)), [1, 3, 4, 5]);
}

#[test]
fn live_queues_are_bounded_and_drops_are_counted() {
    let config = SubscriptionConfig {
        consumer_queue: 2,
        ..SubscriptionConfig::default()
    };
    let mut sub = LiveSubscription::new(Shared, &config);
    assert_eq!(sub.offer("k", 0), Offered::Unrouted, "no consumer");
    sub.subscribe(Shared, 1, "a", Vec::new()).expect("attaches");
    sub.subscribe(Shared, 2, "b", Vec::new()).expect("attaches");
    let placed: Vec<Offered> = (1..=6).map(|m| sub.offer("k", m)).collect();
    assert_eq!(
        placed,
        [
            Offered::Queued(1),
            Offered::Queued(2),
            Offered::Queued(1),
            Offered::Queued(2),
            Offered::Dropped(1),
            Offered::Dropped(2),
        ]
    );
    assert_eq!(sub.dropped(), 3);
    sub.open_stream(1).expect("attached");
    assert!(sub.has_pending(1));
    assert_eq!(sub.poll(1), Some(1));
    assert_eq!(sub.poll(1), Some(3));
    assert_eq!(sub.poll(1), None);
    sub.close_stream(2);
    assert_eq!(sub.offer("k", 7), Offered::Queued(1), "2 gets nothing new");
    assert_eq!(sub.poll(2), Some(2), "what it had stays");
    assert!(sub.remove(2));
    assert!(!sub.has_pending(2));
}

#[test]
fn live_exclusive_failover_and_key_shared_place_like_reliable() {
    let config = SubscriptionConfig::default();
    let mut exclusive = LiveSubscription::new(Exclusive, &config);
    exclusive
        .subscribe(Exclusive, 1, "a", Vec::new())
        .expect("attaches");
    assert!(exclusive.subscribe(Exclusive, 2, "b", Vec::new()).is_err());
    assert_eq!(exclusive.offer("k", 1), Offered::Queued(1));
    let attached = exclusive
        .subscribe(Exclusive, 3, "a", Vec::new())
        .expect("takes over");
    assert_eq!(attached.replaced, Some(1));
    assert_eq!(exclusive.poll(1), None, "its queue went with it");
    assert_eq!(exclusive.offer("k", 2), Offered::Queued(3));

    let mut failover = LiveSubscription::new(Failover, &config);
    failover
        .subscribe(Failover, 1, "a", Vec::new())
        .expect("ok");
    failover
        .subscribe(Failover, 2, "b", Vec::new())
        .expect("ok");
    assert_eq!(failover.offer("k", 1), Offered::Queued(1));
    failover.close_stream(1);
    assert_eq!(failover.offer("k", 2), Offered::Queued(2));

    let mut keyed = LiveSubscription::new(KeyShared, &config);
    keyed
        .subscribe(KeyShared, 1, "a", vec!["a-*".to_owned()])
        .expect("ok");
    assert_eq!(keyed.offer("a-1", 1), Offered::Queued(1));
    assert_eq!(keyed.offer("b-1", 2), Offered::Unrouted);
    assert_eq!(keyed.dropped(), 1);
    assert_eq!(keyed.consumers(), [1]);
    assert!(keyed.holds(1));
    assert_eq!(keyed.kind(), KeyShared);
}
