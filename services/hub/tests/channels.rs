//! Channels on one node and on two nodes sharing an in-process bus: overlapping
//! subscriptions deliver once, unsubscribing one of them keeps the others, client publishing
//! follows the channel rules and the connection's grants. Channels over real etcd, Redis
//! and Postgres buses are in `channels_backends.rs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::channels::*;
use common::{assert_quiet, until};
use courier_hub::{ChannelPattern, ChannelRule, ClientGrants, HistoryLimits, Hub, HubConfig};
use courier_impls::memory::{MemoryBus, MemoryStreamStorage};
use courier_traits::bus::MessageBus;
use courier_traits::storage::StreamStorage;
use serde_json::json;

const QUIET: Duration = Duration::from_millis(150);

#[tokio::test(start_paused = true)]
async fn overlapping_subscriptions_deliver_once_and_unsubscribing_one_keeps_the_others() {
    let hub = Hub::new(None, HubConfig::default()).await.expect("hub");
    let mut a = connect(&hub, "a").await;
    let mut b = connect(&hub, "b").await;
    let mut c = connect(&hub, "c").await;
    for pattern in ["chat.room1", "chat.*", "chat.**"] {
        subscribe(&mut a, pattern).await;
    }
    subscribe(&mut b, "chat.*").await;
    subscribe(&mut c, "news.*").await;

    let report = hub
        .publish("chat.room1", &json!({"n": 1}))
        .await
        .expect("publish");
    assert_eq!((report.delivered, report.published), (2, false));
    assert_eq!(publication(&mut a, "chat.room1").await, json!({"n": 1}));
    assert_eq!(publication(&mut b, "chat.room1").await, json!({"n": 1}));
    for conn in [&mut a, &mut b, &mut c] {
        assert_quiet(conn, QUIET).await;
    }

    // Deeper channels match `**` only.
    hub.publish("chat.room1.typing", &json!(2))
        .await
        .expect("publish");
    assert_eq!(publication(&mut a, "chat.room1.typing").await, json!(2));
    assert_quiet(&mut b, QUIET).await;

    let reply = request(&mut a, 5, "unsubscribe", json!({"channel": "chat.*"})).await;
    assert_eq!(reply["data"]["was_subscribed"], true, "{reply}");
    hub.publish("chat.room1", &json!(3)).await.expect("publish");
    assert_eq!(publication(&mut a, "chat.room1").await, json!(3));
    assert_eq!(publication(&mut b, "chat.room1").await, json!(3));
    assert_quiet(&mut a, QUIET).await;
    for pattern in ["chat.room1", "chat.**"] {
        request(&mut a, 6, "unsubscribe", json!({"channel": pattern})).await;
    }
    hub.publish("chat.room1", &json!(4)).await.expect("publish");
    assert_eq!(publication(&mut b, "chat.room1").await, json!(4));
    assert_quiet(&mut a, QUIET).await;

    // Bad names are refused with an error reply; the connection stays.
    let reply = request(&mut c, 7, "subscribe", json!({"channel": "a.**.b"})).await;
    assert_eq!(reply["data"]["code"], "bad_channel", "{reply}");
    assert!(hub.publish("a.*", &json!(1)).await.is_err());
    hub.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn client_publishing_follows_the_channel_rules_and_the_grants() {
    let pattern = |p| ChannelPattern::parse(p).expect(p);
    let config = HubConfig::default()
        .with_channel_rule(ChannelRule::new(pattern("chat.**")).with_client_publish(true));
    let hub = Hub::new(None, config).await.expect("hub");
    let mut open = connect(&hub, "open").await;
    let limited = ClientGrants::none()
        .subscribe(pattern("chat.*"))
        .publish(pattern("chat.lobby"));
    let mut guest = connect_with(&hub, "guest", limited).await;
    subscribe(&mut open, "chat.*").await;
    subscribe(&mut guest, "chat.lobby").await;

    let reply = request(&mut guest, 2, "subscribe", json!({"channel": "chat.**"})).await;
    assert_eq!(reply["data"]["code"], "permission_denied", "{reply}");
    let reply = request(&mut guest, 3, "subscribe", json!({"channel": "news.x"})).await;
    assert_eq!(reply["data"]["code"], "permission_denied", "{reply}");

    // Allowed by the rule and the grant: both subscribers (the publisher too) receive it,
    // the publisher before the reply (local delivery happens before the answer).
    send(
        &mut guest,
        4,
        "publish",
        json!({"channel": "chat.lobby", "data": "hi"}),
    )
    .await;
    assert_eq!(publication(&mut guest, "chat.lobby").await, json!("hi"));
    let reply = reply_to(&mut guest, 4).await;
    assert_eq!(reply["message_type"], "published", "{reply}");
    assert_eq!(publication(&mut open, "chat.lobby").await, json!("hi"));

    // The rule allows chat.other, the guest's grant does not.
    let reply = request(
        &mut guest,
        5,
        "publish",
        json!({"channel": "chat.other", "data": 1}),
    )
    .await;
    assert_eq!(reply["data"]["code"], "permission_denied", "{reply}");
    // No rule allows client publishing on news.*.
    let reply = request(
        &mut open,
        6,
        "publish",
        json!({"channel": "news.x", "data": 1}),
    )
    .await;
    assert_eq!(reply["data"]["code"], "permission_denied", "{reply}");
    assert_quiet(&mut open, QUIET).await;
    hub.shutdown().await;
}

fn cluster_config(node: &str) -> HubConfig {
    HubConfig::default()
        .with_node_id(node)
        .with_heartbeat_interval(Duration::from_millis(100))
        .with_channel_rule(
            ChannelRule::new(ChannelPattern::parse("chat.**").expect("pattern"))
                .with_client_publish(true),
        )
}

#[tokio::test(start_paused = true)]
async fn publications_cross_nodes_once_per_connection() {
    let (_, a, b) = two_nodes(cluster_config).await;
    let mut a1 = connect(&a, "a1").await;
    let mut b1 = connect(&b, "b1").await;
    let mut b2 = connect(&b, "b2").await;
    until("presence", || {
        a.client_count() == 3 && b.client_count() == 3
    })
    .await;
    for pattern in ["chat.room1", "chat.*"] {
        subscribe(&mut a1, pattern).await;
        subscribe(&mut b1, pattern).await;
    }
    subscribe(&mut b2, "news.*").await;

    let report = a
        .publish("chat.room1", &json!("from a"))
        .await
        .expect("publish");
    assert!(report.published);
    assert_eq!(publication(&mut a1, "chat.room1").await, json!("from a"));
    assert_eq!(publication(&mut b1, "chat.room1").await, json!("from a"));

    // A client on b publishes; a's subscriber receives it once, so does the publisher.
    send(
        &mut b1,
        9,
        "publish",
        json!({"channel": "chat.room1", "data": "from b1"}),
    )
    .await;
    assert_eq!(publication(&mut b1, "chat.room1").await, json!("from b1"));
    let reply = reply_to(&mut b1, 9).await;
    assert_eq!(reply["message_type"], "published", "{reply}");
    assert_eq!(publication(&mut a1, "chat.room1").await, json!("from b1"));
    for conn in [&mut a1, &mut b1, &mut b2] {
        assert_quiet(conn, QUIET).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

fn history_config(node: &str, storage: &Arc<MemoryStreamStorage>, max_len: usize) -> HubConfig {
    let storage: Arc<dyn StreamStorage> = storage.clone();
    cluster_config(node)
        .with_history_storage(storage)
        .with_channel_rule(
            ChannelRule::new(ChannelPattern::parse("feed.*").expect("pattern"))
                .with_history(HistoryLimits::new(max_len, Duration::from_secs(3600))),
        )
}

#[tokio::test(start_paused = true)]
async fn a_client_reconnecting_to_the_other_node_recovers_what_it_missed_once_and_in_order() {
    let storage = Arc::new(MemoryStreamStorage::new());
    let (_, a, b) = two_nodes(|node| history_config(node, &storage, 100)).await;
    let mut reader = connect(&a, "reader").await;
    let reply = request(&mut reader, 1, "subscribe", json!({"channel": "feed.x"})).await;
    assert_eq!(reply["message_type"], "subscribed", "{reply}");
    let epoch = reply["data"]["epoch"].as_str().expect("epoch").to_owned();
    for n in 0..2 {
        b.publish("feed.x", &json!(n)).await.expect("publish");
    }
    let mut last = String::new();
    for n in 0..2 {
        let (data, offset, their_epoch) = stored_publication(&mut reader, "feed.x").await;
        assert_eq!((data, &their_epoch), (json!(n), &epoch));
        assert!(offset > last, "offsets grow: {offset} after {last}");
        last = offset;
    }
    // The reader is killed; three publications happen while it is away.
    drop(reader);
    until("reader gone", || !a.is_local("reader")).await;
    for n in 2..5 {
        a.publish("feed.x", &json!(n)).await.expect("publish");
    }
    // It comes back on the other node with its last offset.
    let mut reader = connect(&b, "reader").await;
    let reply = request(
        &mut reader,
        2,
        "subscribe",
        json!({"channel": "feed.x", "since": {"offset": last, "epoch": epoch}}),
    )
    .await;
    assert_eq!(reply["data"]["recovered"], true, "{reply}");
    let recovered = recovered_data(&reply);
    assert_eq!(recovered, [json!(2), json!(3), json!(4)]);
    let tail = reply["data"]["offset"].as_str().expect("offset").to_owned();
    assert_eq!(reply["data"]["publications"][2]["offset"], tail, "{reply}");
    // Live again: the next publication arrives once, after what was recovered.
    a.publish("feed.x", &json!(5)).await.expect("publish");
    let (data, offset, _) = stored_publication(&mut reader, "feed.x").await;
    assert_eq!(data, json!(5));
    assert!(offset > tail);
    assert_quiet(&mut reader, QUIET).await;

    // Nothing missed: recovery answers an empty list, not a resync.
    let mut again = connect(&a, "again").await;
    let reply = request(
        &mut again,
        3,
        "subscribe",
        json!({"channel": "feed.x", "since": {"offset": offset, "epoch": epoch}}),
    )
    .await;
    assert_eq!(reply["data"]["recovered"], true, "{reply}");
    assert_eq!(reply["data"]["publications"], json!([]), "{reply}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn recovery_past_the_history_or_from_another_epoch_answers_resync() {
    let storage = Arc::new(MemoryStreamStorage::new());
    let bus: Arc<dyn MessageBus> = Arc::new(MemoryBus::new());
    let hub = Hub::new(Some(bus), history_config("a", &storage, 3))
        .await
        .expect("hub");
    let mut reader = connect(&hub, "reader").await;
    let reply = request(&mut reader, 1, "subscribe", json!({"channel": "feed.y"})).await;
    let epoch = reply["data"]["epoch"].as_str().expect("epoch").to_owned();
    let start = reply["data"]["offset"].as_str().expect("offset").to_owned();
    for n in 0..4 {
        hub.publish("feed.y", &json!(n)).await.expect("publish");
    }
    let since = |offset: &str, epoch: &str| json!({"channel": "feed.y", "since": {"offset": offset, "epoch": epoch}});
    let mut late = connect(&hub, "late").await;
    // Four missed, three kept.
    let reply = request(&mut late, 2, "subscribe", since(&start, &epoch)).await;
    assert_eq!(
        (&reply["data"]["recovered"], &reply["data"]["resync"]),
        (&json!(false), &json!(true)),
        "{reply}"
    );
    let mut other = connect(&hub, "other").await;
    let reply = request(&mut other, 3, "subscribe", since(&start, "not-the-epoch")).await;
    assert_eq!(reply["data"]["resync"], true, "{reply}");
    // Three missed (after the first): recovered.
    let (_, after_first, _) = stored_publication(&mut reader, "feed.y").await;
    let mut third = connect(&hub, "third").await;
    let reply = request(&mut third, 4, "subscribe", since(&after_first, &epoch)).await;
    assert_eq!(reply["data"]["recovered"], true, "{reply}");
    let recovered = recovered_data(&reply);
    assert_eq!(recovered, [json!(1), json!(2), json!(3)]);
    // An offset the stream never issued.
    let mut fourth = connect(&hub, "fourth").await;
    let reply = request(&mut fourth, 5, "subscribe", since("zzzz", &epoch)).await;
    assert_eq!(reply["data"]["resync"], true, "{reply}");
    hub.shutdown().await;
}

/// Two nodes sharing an in-process bus, configured by `config(node id)`.
async fn two_nodes(config: impl Fn(&str) -> HubConfig) -> (Arc<dyn MessageBus>, Hub, Hub) {
    let bus: Arc<dyn MessageBus> = Arc::new(MemoryBus::new());
    let a = Hub::new(Some(bus.clone()), config("a"))
        .await
        .expect("hub a");
    let b = Hub::new(Some(bus.clone()), config("b"))
        .await
        .expect("hub b");
    (bus, a, b)
}

fn presence_config(node: &str) -> HubConfig {
    cluster_config(node).with_channel_rule(
        ChannelRule::new(ChannelPattern::parse("room.*").expect("pattern")).with_presence(true),
    )
}

#[tokio::test(start_paused = true)]
async fn presence_converges_across_nodes_within_the_stated_bound() {
    let heartbeat = Duration::from_millis(100);
    // The bound the README states: four heartbeat intervals.
    let bound = heartbeat * 4;
    let (bus, a, b) = two_nodes(presence_config).await;
    let mut x = connect(&a, "x").await;
    let mut y = connect(&b, "y").await;
    subscribe(&mut x, "room.1").await;
    presence_event(&mut x, "join", "room.1", "x").await;
    subscribe(&mut y, "room.1").await;
    presence_event(&mut y, "join", "room.1", "y").await;
    presence_event(&mut x, "join", "room.1", "y").await;
    let both = pairs(&[("x", "a"), ("y", "b")]);
    tokio::time::timeout(bound, async {
        while members(&a, "room.1") != both || members(&b, "room.1") != both {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("presence converges");
    // Asked by a client.
    let reply = request(&mut y, 3, "presence", json!({"channel": "room.1"})).await;
    assert_eq!(
        reply["data"]["members"],
        json!([{"client": "x", "node": "a"}, {"client": "y", "node": "b"}]),
        "{reply}"
    );
    // A channel without presence answers an error.
    assert!(a.presence("chat.x").is_err());

    // A node started later learns the others' members from their snapshots.
    let c = Hub::new(Some(bus.clone()), presence_config("c"))
        .await
        .expect("hub c");
    tokio::time::timeout(bound, async {
        while members(&c, "room.1") != both {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the late node learns presence");

    // A client leaving: the others see `leave`.
    let mut z = connect(&c, "z").await;
    subscribe(&mut z, "room.1").await;
    presence_event(&mut z, "join", "room.1", "z").await;
    presence_event(&mut x, "join", "room.1", "z").await;
    presence_event(&mut y, "join", "room.1", "z").await;
    drop(y);
    presence_event(&mut x, "leave", "room.1", "y").await;
    presence_event(&mut z, "leave", "room.1", "y").await;

    // A node that dies without a word (no shutdown): its members leave within the bound.
    drop(c);
    tokio::time::timeout(bound, presence_event(&mut x, "leave", "room.1", "z"))
        .await
        .expect("z leaves within the bound");
    assert_eq!(members(&a, "room.1"), pairs(&[("x", "a")]));
    assert_quiet(&mut x, QUIET).await;
    drop(z);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn pattern_subscriptions_announce_no_presence() {
    let hub = Hub::new(None, presence_config("a")).await.expect("hub");
    let mut watcher = connect(&hub, "watcher").await;
    subscribe(&mut watcher, "room.*").await;
    let mut other = connect(&hub, "other").await;
    subscribe(&mut other, "room.*").await;
    // Only exact subscriptions are members: a pattern's unsubscribe or disconnect says nothing.
    let reply = request(&mut other, 2, "unsubscribe", json!({"channel": "room.*"})).await;
    assert_eq!(reply["data"]["was_subscribed"], true, "{reply}");
    subscribe(&mut other, "room.*").await;
    drop(other);
    assert_quiet(&mut watcher, QUIET).await;
    // An exact subscriber is still announced to the pattern subscriber.
    let mut member = connect(&hub, "member").await;
    subscribe(&mut member, "room.1").await;
    presence_event(&mut watcher, "join", "room.1", "member").await;
    hub.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_recovery_too_large_for_one_message_answers_resync() {
    let storage = Arc::new(MemoryStreamStorage::new());
    let config = history_config("a", &storage, 100_000).with_max_message_bytes(128 * 1024);
    let hub = Hub::new(None, config).await.expect("hub");
    let mut reader = connect(&hub, "reader").await;
    let reply = request(&mut reader, 1, "subscribe", json!({"channel": "feed.big"})).await;
    let (offset, epoch) = (&reply["data"]["offset"], &reply["data"]["epoch"]);
    let since = json!({"channel": "feed.big", "since": {"offset": offset, "epoch": epoch}});
    drop(reader);
    // 17 MiB missed, more than the SDK takes in one message (16 MiB): sent whole, the
    // client would fail to read it, reconnect and ask again forever.
    let chunk = "x".repeat(64 * 1024);
    for _ in 0..17 * 16 {
        hub.publish("feed.big", &json!(chunk))
            .await
            .expect("publish");
    }
    let mut reader = connect(&hub, "reader").await;
    let reply = request(&mut reader, 2, "subscribe", since).await;
    assert_eq!(
        reply["data"]["resync"], true,
        "recovered: {}",
        reply["data"]["recovered"]
    );
    let reason = reply["data"]["reason"].as_str().expect("reason");
    assert!(reason.contains("bytes"), "{reason}");
    hub.shutdown().await;
}

/// The presence events (`join` / `leave`, client) that arrive before `quiet` passes without
/// one; other messages end the wait too.
async fn presence_events(
    conn: &mut courier_traits::transport::DuplexConnection,
) -> Vec<(String, String)> {
    use courier_traits::transport::Frame as Wire;
    let mut events = Vec::new();
    while let Ok(Ok(Some(frame))) = tokio::time::timeout(QUIET, conn.receiver.recv()).await {
        let Wire::Text(text) = frame else { continue };
        let message: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let kind = message["message_type"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let client = message["data"]["client"].as_str().unwrap_or_default();
        events.push((kind, client.to_owned()));
    }
    events
}

#[tokio::test(start_paused = true)]
async fn a_client_reconnecting_to_another_node_before_its_old_connection_ends_stays_present() {
    let (_, a, b) = two_nodes(presence_config).await;
    let mut watcher = connect(&a, "watcher").await;
    subscribe(&mut watcher, "room.1").await;
    presence_event(&mut watcher, "join", "room.1", "watcher").await;
    let mut old = connect(&a, "x").await;
    subscribe(&mut old, "room.1").await;
    presence_event(&mut watcher, "join", "room.1", "x").await;
    // x comes back on b while a still holds its old connection (a closes it as replaced
    // when it hears of the registration, and only then sends x's leave from a).
    let mut new = connect(&b, "x").await;
    subscribe(&mut new, "room.1").await;
    let here = pairs(&[("watcher", "a"), ("x", "b")]);
    until("x present on b only", || {
        members(&a, "room.1") == here && members(&b, "room.1") == here
    })
    .await;
    let events = presence_events(&mut watcher).await;
    let last_of_x = events.iter().rev().find(|(_, client)| client == "x");
    assert!(
        last_of_x.is_none_or(|(kind, _)| kind == "join"),
        "the watcher must not end on x having left: {events:?}"
    );
    drop(old);
    a.shutdown().await;
    b.shutdown().await;
}

/// The stream of `channel`'s history in `epoch`.
fn epoch_stream(channel: &str, epoch: &str) -> courier_traits::storage::StreamName {
    courier_traits::storage::StreamName::new(&format!("hub/channels/{channel}/{epoch}"))
        .expect("name")
}

/// Publications stored in `channel`'s current epoch now.
async fn stored_count(storage: &MemoryStreamStorage, channel: &str) -> usize {
    use courier_traits::storage::{ReadLimits, StreamName};
    let pointer = StreamName::new(&format!("hub/channels/{channel}")).expect("name");
    let info = storage.head(&pointer).await.expect("pointer");
    let epoch = info
        .content_type
        .split("epoch=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .expect("epoch");
    let stream = epoch_stream(channel, epoch);
    let batch = storage
        .read(&stream, None, ReadLimits::default())
        .await
        .expect("read");
    assert!(batch.up_to_date);
    batch.records.len()
}

#[tokio::test(start_paused = true)]
async fn history_is_bounded_and_a_new_epoch_continues_live_delivery_in_order() {
    let storage = Arc::new(MemoryStreamStorage::new());
    let (_, a, b) = two_nodes(|node| history_config(node, &storage, 4)).await;
    let mut reader = connect(&a, "reader").await;
    let reply = request(&mut reader, 1, "subscribe", json!({"channel": "feed.z"})).await;
    let first_epoch = reply["data"]["epoch"].as_str().expect("epoch").to_owned();
    let start = reply["data"]["offset"].as_str().expect("offset").to_owned();
    let mut most_stored = 0;
    for n in 0..30 {
        let publisher = if n % 2 == 0 { &a } else { &b };
        publisher
            .publish("feed.z", &json!(n))
            .await
            .expect("publish");
        most_stored = most_stored.max(stored_count(&storage, "feed.z").await);
    }
    // At most twice max_len, and one more until the append that notices.
    assert!(
        most_stored <= 9,
        "the stream held {most_stored} publications"
    );
    // The live reader got every publication once, in order, across the new epochs.
    let mut epochs = vec![first_epoch.clone()];
    let mut last = start.clone();
    for n in 0..30 {
        let (data, offset, epoch) = stored_publication(&mut reader, "feed.z").await;
        assert_eq!(data, json!(n));
        if epoch == *epochs.last().expect("epoch") {
            assert!(
                offset > last,
                "offsets grow within an epoch: {offset} after {last}"
            );
        } else {
            epochs.push(epoch);
        }
        last = offset;
    }
    assert!(epochs.len() > 2, "the history started again: {epochs:?}");
    // Only the current epoch and the one before keep a stream.
    for epoch in &epochs[..epochs.len() - 2] {
        let gone = storage.head(&epoch_stream("feed.z", epoch)).await;
        assert!(gone.is_err(), "the stream of epoch {epoch} is still there");
    }
    assert_quiet(&mut reader, QUIET).await;
    // A client that last saw the first epoch must resync; one in the current epoch recovers.
    let mut late = connect(&b, "late").await;
    let since = json!({"channel": "feed.z", "since": {"offset": start, "epoch": first_epoch}});
    let reply = request(&mut late, 2, "subscribe", since).await;
    assert_eq!(reply["data"]["resync"], true, "{reply}");
    let current = epochs.last().expect("epoch");
    let since = json!({"channel": "feed.z", "since": {"offset": last, "epoch": current}});
    let mut caught_up = connect(&b, "caught-up").await;
    let reply = request(&mut caught_up, 3, "subscribe", since).await;
    assert_eq!(
        (&reply["data"]["recovered"], &reply["data"]["publications"]),
        (&json!(true), &json!([])),
        "{reply}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_expired_history_starts_a_new_epoch_and_live_delivery_follows_it() {
    use courier_impls::memory::MemoryStorageConfig;
    use courier_traits::clock::ManualClock;
    let clock = ManualClock::starting_now();
    let storage = Arc::new(MemoryStreamStorage::with_config(
        MemoryStorageConfig::default().with_clock(clock.shared()),
    ));
    let bus: Arc<dyn MessageBus> = Arc::new(MemoryBus::new());
    let hub = Hub::new(Some(bus), history_config("a", &storage, 100))
        .await
        .expect("hub");
    let mut reader = connect(&hub, "reader").await;
    let reply = request(&mut reader, 1, "subscribe", json!({"channel": "feed.e"})).await;
    let epoch = reply["data"]["epoch"].as_str().expect("epoch").to_owned();
    hub.publish("feed.e", &json!(1)).await.expect("publish");
    let (_, offset, _) = stored_publication(&mut reader, "feed.e").await;
    // Idle for twice max_age: the epoch's stream expires.
    clock.advance(Duration::from_secs(2 * 3600 + 1));
    hub.publish("feed.e", &json!(2)).await.expect("publish");
    let (data, _, new_epoch) = stored_publication(&mut reader, "feed.e").await;
    assert_eq!(data, json!(2));
    assert_ne!(new_epoch, epoch);
    let mut late = connect(&hub, "late").await;
    let since = json!({"channel": "feed.e", "since": {"offset": offset, "epoch": epoch}});
    let reply = request(&mut late, 2, "subscribe", since).await;
    assert_eq!(reply["data"]["resync"], true, "{reply}");
    assert_eq!(reply["data"]["epoch"], new_epoch, "{reply}");
    hub.shutdown().await;
}
