//! The universal [`MessageBus`] cases. Each takes a [`BusFactory`]; see [`crate::bus_suite!`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier_traits::bus::{
    BusError, Message, MessageBus, MessageId, Published, SubscribeFrom, Subscription, Topic,
};
use courier_traits::error::Classify;
use futures::StreamExt;

use super::{BusFactory, within};
use crate::fixtures::unique_prefix;

fn topic(name: &str) -> Topic {
    Topic::new(&format!("{}/{name}", unique_prefix())).expect("generated topic names are valid")
}

fn payload(tag: &str, i: usize) -> Bytes {
    Bytes::from(format!("{tag}-{i:05}"))
}

/// Receives until `count` distinct messages arrived. Duplicates fail the case on an
/// exactly-once backend and are dropped otherwise; lag and end of stream fail it.
async fn receive(sub: &mut Subscription, count: usize, exactly_once: bool) -> Vec<Message> {
    let mut seen = HashSet::new();
    let mut messages = Vec::with_capacity(count);
    while messages.len() < count {
        let next = within(
            &format!("message {} of {count}", messages.len() + 1),
            sub.next(),
        )
        .await;
        match next {
            None => panic!(
                "subscription ended after {} of {count} messages",
                messages.len()
            ),
            Some(Err(e)) => panic!(
                "subscription error after {} of {count} messages: {e}",
                messages.len()
            ),
            Some(Ok(message)) => {
                if seen.insert(message.id.clone()) {
                    messages.push(message);
                } else {
                    assert!(
                        !exactly_once,
                        "duplicate delivery of {} on an exactly-once backend",
                        message.id
                    );
                }
            }
        }
    }
    messages
}

/// Publishes, retrying retryable errors for up to [`super::EVENT_TIMEOUT`] (servers restarting).
async fn publish_with_retry(bus: &dyn MessageBus, topic: &Topic, payload: Bytes) -> Published {
    let deadline = tokio::time::Instant::now() + super::EVENT_TIMEOUT;
    loop {
        match bus.publish(topic, payload.clone()).await {
            Ok(published) => return published,
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("publish failed: {e}"),
        }
    }
}

fn payloads(messages: &[Message]) -> Vec<Bytes> {
    messages.iter().map(|m| m.payload.clone()).collect()
}

/// Subscribe, publish 100 messages (binary payloads included), receive every one intact,
/// in order where the backend promises order.
pub async fn publish_subscribe<F: BusFactory>(factory: &F) {
    let bus = factory.connect().await;
    let caps = bus.capabilities();
    let topic = topic("pubsub");
    let mut sub = bus
        .subscribe(&topic, SubscribeFrom::Live)
        .await
        .expect("subscribe");
    let mut sent = Vec::new();
    for i in 0..100 {
        let data = if i % 10 == 0 {
            Bytes::from((0..=255u8).collect::<Vec<_>>())
        } else {
            payload("m", i)
        };
        let published = bus.publish(&topic, data.clone()).await.expect("publish");
        sent.push((published.id, data));
    }
    let got = receive(&mut sub, 100, caps.exactly_once).await;
    for message in &got {
        assert_eq!(message.topic, topic);
        let (_, data) = sent
            .iter()
            .find(|(id, _)| *id == message.id)
            .expect("every message has a published id");
        assert_eq!(message.payload, *data, "payload of {} altered", message.id);
    }
    if caps.ordered {
        let sent_ids: Vec<_> = sent.iter().map(|(id, _)| id.clone()).collect();
        let got_ids: Vec<_> = got.iter().map(|m| m.id.clone()).collect();
        assert_eq!(
            got_ids, sent_ids,
            "order of delivery differs from publish order"
        );
    }
}

/// Payloads of 0 B, 1 B, 64 KiB and 512 KiB arrive unchanged.
pub async fn payload_sizes<F: BusFactory>(factory: &F) {
    let bus = factory.connect().await;
    let topic = topic("sizes");
    let mut sub = bus
        .subscribe(&topic, SubscribeFrom::Live)
        .await
        .expect("subscribe");
    let sizes = [0usize, 1, 64 << 10, 512 << 10];
    let mut sent = Vec::new();
    for size in sizes {
        let data = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        let published = bus
            .publish(&topic, data.clone())
            .await
            .unwrap_or_else(|e| panic!("publish {size} B: {e}"));
        sent.push((published.id, data));
    }
    let got = receive(&mut sub, sizes.len(), bus.capabilities().exactly_once).await;
    for (id, data) in sent {
        let message = got.iter().find(|m| m.id == id).expect("delivered");
        assert_eq!(message.payload.len(), data.len());
        assert_eq!(message.payload, data);
    }
}

/// Ids chosen by the publisher reach subscribers unchanged, a key of the caller's as well as a
/// random id; and the bus does not deduplicate: two publishes under one id are both
/// delivered, each with that id.
pub async fn caller_chosen_ids<F: BusFactory>(factory: &F) {
    let bus = factory.connect().await;
    let topic = topic("ids");
    let mut sub = bus
        .subscribe(&topic, SubscribeFrom::Live)
        .await
        .expect("subscribe");
    let key = MessageId::parse(&format!("order:{}", unique_prefix())).expect("valid id");
    let sent = [
        (key.clone(), Bytes::from_static(b"first")),
        (MessageId::random(), Bytes::from_static(b"second")),
        (key, Bytes::from_static(b"first again")),
    ];
    for (id, data) in &sent {
        let published = bus
            .publish_with_id(&topic, id.clone(), data.clone())
            .await
            .expect("publish");
        assert_eq!(published.id, *id, "publish answers with the caller's id");
    }
    // Payloads tell the messages apart here, since two of them share an id.
    let mut missing: Vec<_> = sent.iter().collect();
    while !missing.is_empty() {
        let message = within("a message published with a chosen id", sub.next())
            .await
            .expect("subscription open")
            .expect("no subscription error");
        let (id, _) = sent
            .iter()
            .find(|(_, data)| *data == message.payload)
            .expect("only the payloads sent arrive");
        assert_eq!(
            message.id, *id,
            "delivered under another id than it was published with"
        );
        missing.retain(|(_, data)| *data != message.payload);
    }
}

/// 10 subscribers and 10 concurrent publishers of 50 messages each: every subscriber gets all 500.
pub async fn concurrent_subscribe<F: BusFactory>(factory: &F) {
    let bus = Arc::new(factory.connect().await);
    let exactly_once = bus.capabilities().exactly_once;
    let topic = topic("concurrent");
    let mut subs = Vec::new();
    for _ in 0..10 {
        subs.push(
            bus.subscribe(&topic, SubscribeFrom::Live)
                .await
                .expect("subscribe"),
        );
    }
    let publishers: Vec<_> = (0..10)
        .map(|p| {
            let (bus, topic) = (bus.clone(), topic.clone());
            tokio::spawn(async move {
                for i in 0..50 {
                    bus.publish(&topic, payload(&format!("p{p}"), i))
                        .await
                        .expect("publish");
                }
            })
        })
        .collect();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut sub| {
            tokio::spawn(async move { receive(&mut sub, 500, exactly_once).await.len() })
        })
        .collect();
    for publisher in publishers {
        publisher.await.expect("publisher task");
    }
    for reader in readers {
        assert_eq!(reader.await.expect("reader task"), 500);
    }
}

/// 20 topics, each published and consumed by its own task at once; nothing crosses topics.
pub async fn many_topics<F: BusFactory>(factory: &F) {
    let bus = Arc::new(factory.connect().await);
    let exactly_once = bus.capabilities().exactly_once;
    let tasks: Vec<_> = (0..20)
        .map(|t| {
            let bus = bus.clone();
            tokio::spawn(async move {
                let topic = topic(&format!("many-{t}"));
                let mut sub = bus
                    .subscribe(&topic, SubscribeFrom::Live)
                    .await
                    .expect("subscribe");
                for i in 0..50 {
                    bus.publish(&topic, payload(&format!("t{t}"), i))
                        .await
                        .expect("publish");
                }
                let got = receive(&mut sub, 50, exactly_once).await;
                let prefix = format!("t{t}-");
                assert!(
                    got.iter().all(|m| m.payload.starts_with(prefix.as_bytes())),
                    "a message crossed topics"
                );
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("topic task");
    }
}

/// Five subscribers of one topic each receive all 100 messages.
pub async fn fan_out<F: BusFactory>(factory: &F) {
    let bus = factory.connect().await;
    let caps = bus.capabilities();
    let topic = topic("fanout");
    let mut subs = Vec::new();
    for _ in 0..5 {
        subs.push(
            bus.subscribe(&topic, SubscribeFrom::Live)
                .await
                .expect("subscribe"),
        );
    }
    let sent: Vec<Bytes> = (0..100).map(|i| payload("f", i)).collect();
    for data in &sent {
        bus.publish(&topic, data.clone()).await.expect("publish");
    }
    for sub in &mut subs {
        let got = receive(sub, 100, caps.exactly_once).await;
        let mut got = payloads(&got);
        if !caps.ordered {
            got.sort();
        }
        assert_eq!(got, sent);
    }
}

/// A message on one topic is never delivered to another topic's subscriber.
pub async fn topic_isolation<F: BusFactory>(factory: &F) {
    let bus = factory.connect().await;
    let exactly_once = bus.capabilities().exactly_once;
    let (a, b) = (topic("iso-a"), topic("iso-b"));
    let mut sub_a = bus
        .subscribe(&a, SubscribeFrom::Live)
        .await
        .expect("subscribe a");
    let mut sub_b = bus
        .subscribe(&b, SubscribeFrom::Live)
        .await
        .expect("subscribe b");
    for i in 0..10 {
        bus.publish(&a, payload("a", i)).await.expect("publish a");
    }
    bus.publish(&b, Bytes::from_static(b"b-only"))
        .await
        .expect("publish b");
    let got_b = receive(&mut sub_b, 1, exactly_once).await;
    assert_eq!(
        &got_b[0].payload[..],
        b"b-only",
        "topic b received a message of topic a"
    );
    let got_a = receive(&mut sub_a, 10, exactly_once).await;
    assert!(
        got_a
            .iter()
            .all(|m| m.topic == a && m.payload.starts_with(b"a-"))
    );
}

/// One publisher's 1000 messages reach each of 3 subscribers in publish order.
pub async fn ordering<F: BusFactory>(factory: &F) {
    let bus = factory.connect().await;
    let exactly_once = bus.capabilities().exactly_once;
    let topic = topic("order");
    let mut subs = Vec::new();
    for _ in 0..3 {
        subs.push(
            bus.subscribe(&topic, SubscribeFrom::Live)
                .await
                .expect("subscribe"),
        );
    }
    let sent: Vec<Bytes> = (0..1000).map(|i| payload("o", i)).collect();
    for data in &sent {
        bus.publish(&topic, data.clone()).await.expect("publish");
    }
    for sub in &mut subs {
        assert_eq!(
            payloads(&receive(sub, 1000, exactly_once).await),
            sent,
            "out of order"
        );
    }
}

/// After `close`: existing subscriptions end, subscribe and publish fail with `Closed`, and
/// closing again is not an error.
pub async fn subscribe_after_close<F: BusFactory>(factory: &F) {
    let bus = factory.connect().await;
    let topic = topic("closing");
    let mut sub = bus
        .subscribe(&topic, SubscribeFrom::Live)
        .await
        .expect("subscribe");
    bus.close().await.expect("close");
    loop {
        match within("the subscription to end after close", sub.next()).await {
            None => break,
            Some(Ok(_)) => continue, // messages already buffered may still drain
            Some(Err(e)) => panic!("subscription failed instead of ending: {e}"),
        }
    }
    assert!(matches!(
        bus.subscribe(&topic, SubscribeFrom::Live).await,
        Err(BusError::Closed)
    ));
    assert!(matches!(
        bus.publish(&topic, Bytes::from_static(b"x")).await,
        Err(BusError::Closed)
    ));
    bus.close().await.expect("closing twice is fine");
}

/// Subscriptions opened and dropped concurrently, and concurrent `close` calls, leave the bus
/// consistent: a subscriber opened afterwards receives all 50 messages, and every close succeeds.
pub async fn concurrent_close<F: BusFactory>(factory: &F) {
    let bus = Arc::new(factory.connect().await);
    let exactly_once = bus.capabilities().exactly_once;
    let topic = topic("churn");
    let churn: Vec<_> = (0..10)
        .map(|_| {
            let (bus, topic) = (bus.clone(), topic.clone());
            tokio::spawn(async move {
                let sub = bus
                    .subscribe(&topic, SubscribeFrom::Live)
                    .await
                    .expect("subscribe");
                tokio::task::yield_now().await;
                drop(sub);
            })
        })
        .collect();
    for task in churn {
        task.await.expect("churn task");
    }
    let mut sub = bus
        .subscribe(&topic, SubscribeFrom::Live)
        .await
        .expect("subscribe");
    for i in 0..50 {
        bus.publish(&topic, payload("c", i)).await.expect("publish");
    }
    assert_eq!(receive(&mut sub, 50, exactly_once).await.len(), 50);

    let closers: Vec<_> = (0..5)
        .map(|_| {
            let bus = bus.clone();
            tokio::spawn(async move { bus.close().await })
        })
        .collect();
    for closer in closers {
        closer
            .await
            .expect("closer task")
            .expect("concurrent close succeeds");
    }
    assert!(
        within("the subscription to end", async {
            loop {
                match sub.next().await {
                    None => return true,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => panic!("{e}"),
                }
            }
        })
        .await
    );
}

/// A subscriber that does not read while 5000 messages are published does not block the
/// publisher; when it reads, it is told how many it lost, and received + lost = published.
pub async fn slow_subscriber_lag<F: BusFactory>(factory: &F) {
    const TOTAL: u64 = 5000;
    let bus = factory.connect().await;
    let topic = topic("slow");
    let mut slow = bus
        .subscribe(&topic, SubscribeFrom::Live)
        .await
        .expect("subscribe");
    // Each publish is bounded, not the 5000 together: a publisher blocked by the subscriber
    // stops at its first stuck publish, while a slow server (Postgres under a loaded CI, ~2 ms
    // per publish) still finishes, however long the whole loop takes.
    for i in 0..TOTAL as usize {
        within(
            "a publish while a subscriber does not read (publishers must not block)",
            bus.publish(&topic, payload("s", i)),
        )
        .await
        .expect("publish");
    }
    let (mut received, mut missed) = (0u64, 0u64);
    while received + missed < TOTAL {
        match within(
            "the slow subscriber to account for every message",
            slow.next(),
        )
        .await
        {
            Some(Ok(_)) => received += 1,
            Some(Err(BusError::Lagged { missed: n })) => {
                assert!(n > 0, "a lag report must count at least one message");
                missed += n;
            }
            Some(Err(e)) => panic!("unexpected error: {e}"),
            None => panic!("subscription ended after {received} received + {missed} reported lost"),
        }
    }
    assert!(
        missed > 0,
        "a subscriber 5000 messages behind must be told it lagged"
    );
    assert_eq!(
        received + missed,
        TOTAL,
        "received {received} + reported lost {missed} must equal published"
    );
}

/// Positions increase with publish order, and a subscription from a position replays what
/// followed it (no gap), then continues live.
pub async fn resume_from_position<F: BusFactory>(factory: &F) {
    let bus = factory.connect().await;
    let exactly_once = bus.capabilities().exactly_once;
    let topic = topic("resume");
    let mut published = Vec::new();
    for i in 0..10 {
        published.push(bus.publish(&topic, payload("r", i)).await.expect("publish"));
    }
    let positions: Vec<_> = published
        .iter()
        .map(|p| {
            p.position
                .clone()
                .expect("resume backends return positions")
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions must increase bytewise: {positions:?}"
    );
    let mut sub = bus
        .subscribe(&topic, SubscribeFrom::After(positions[4].clone()))
        .await
        .expect("subscribe from position");
    let replayed = receive(&mut sub, 5, exactly_once).await;
    let expected: Vec<Bytes> = (5..10).map(|i| payload("r", i)).collect();
    assert_eq!(
        payloads(&replayed),
        expected,
        "replay after position 4 must be messages 5..9 in order"
    );
    bus.publish(&topic, payload("r", 10))
        .await
        .expect("publish live");
    let live = receive(&mut sub, 1, exactly_once).await;
    assert_eq!(live[0].payload, payload("r", 10));
}

/// A subscription survives a restart of the server: every message acknowledged before or
/// after the restart is delivered (duplicates allowed unless exactly-once).
pub async fn reconnect_after_restart<F: BusFactory>(factory: &F) {
    let bus = factory.connect().await;
    let exactly_once = bus.capabilities().exactly_once;
    let topic = topic("restart");
    let mut sub = bus
        .subscribe(&topic, SubscribeFrom::Live)
        .await
        .expect("subscribe");
    for i in 0..20 {
        publish_with_retry(&bus, &topic, payload("before", i)).await;
    }
    factory.restart_server().await.expect("restart the server");
    for i in 0..20 {
        publish_with_retry(&bus, &topic, payload("after", i)).await;
    }
    let got = receive(&mut sub, 40, exactly_once).await;
    let mut got = payloads(&got);
    got.sort();
    let mut expected: Vec<Bytes> = (0..20)
        .map(|i| payload("before", i))
        .chain((0..20).map(|i| payload("after", i)))
        .collect();
    expected.sort();
    assert_eq!(got, expected, "messages lost across the restart");
}

/// While the server is down, publishing fails with a retryable error (not a hang, not a
/// permanent error); once it is back, the same instance publishes and delivers again without
/// being recreated.
pub async fn unavailable_while_server_down<F: BusFactory>(factory: &F) {
    let bus = factory.connect().await;
    let exactly_once = bus.capabilities().exactly_once;
    let topic = topic("outage");
    let mut sub = bus
        .subscribe(&topic, SubscribeFrom::Live)
        .await
        .expect("subscribe");
    factory.stop_server().await.expect("stop the server");
    let outcome = within(
        "a publish to a stopped server to fail",
        bus.publish(&topic, payload("down", 0)),
    )
    .await;
    match outcome {
        Err(e) => assert!(
            e.is_retryable(),
            "connection loss must be retryable, got: {e}"
        ),
        Ok(_) => panic!("a publish to a stopped server succeeded"),
    }
    factory
        .start_server()
        .await
        .expect("start the server again");
    publish_with_retry(&bus, &topic, payload("back", 0)).await;
    let got = receive(&mut sub, 1, exactly_once).await;
    assert_eq!(
        got[0].payload,
        payload("back", 0),
        "the subscription recovered by itself"
    );
}

/// Two instances on one backend act as one: a publish through either reaches subscribers of both.
pub async fn multi_node<F: BusFactory>(factory: &F) {
    let (a, b) = (factory.connect().await, factory.connect().await);
    let exactly_once = a.capabilities().exactly_once;
    let topic = topic("nodes");
    let mut on_a = a
        .subscribe(&topic, SubscribeFrom::Live)
        .await
        .expect("subscribe on a");
    let mut on_b = b
        .subscribe(&topic, SubscribeFrom::Live)
        .await
        .expect("subscribe on b");
    a.publish(&topic, Bytes::from_static(b"from-a"))
        .await
        .expect("publish on a");
    b.publish(&topic, Bytes::from_static(b"from-b"))
        .await
        .expect("publish on b");
    for sub in [&mut on_a, &mut on_b] {
        let mut got = payloads(&receive(sub, 2, exactly_once).await);
        got.sort();
        assert_eq!(
            got,
            vec![Bytes::from_static(b"from-a"), Bytes::from_static(b"from-b")]
        );
    }
}
