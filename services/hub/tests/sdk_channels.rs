//! The SDK's subscriptions against two real hubs on one in-process bus and one storage: the
//! client's transport is in memory and each connection it makes is registered on the hub the
//! test chooses. Overlapping subscriptions handle each publication once, unsubscribing one
//! keeps the other, and after its node goes away the client resubscribes on the other node
//! and recovers what it missed, applied to its cache in one step. Compression negotiated per
//! connection round-trips and is smaller on the wire.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier_hub::sdk::{Applied, HubClient, Publication};
use courier_hub::{
    AppMessage, ChannelPattern, ChannelRule, ClientOptions, Compression, HistoryLimits, Hub,
    HubConfig,
};
use courier_impls::memory::{MemoryBus, MemoryStreamStorage, in_memory_duplex};
use courier_impls::retry::FixedDelay;
use courier_traits::bus::MessageBus;
use courier_traits::storage::StreamStorage;
use courier_traits::transport::Frame;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

fn config(node: &str, storage: &Arc<dyn StreamStorage>) -> HubConfig {
    HubConfig::default()
        .with_node_id(node)
        .with_heartbeat_interval(Duration::from_millis(100))
        .with_history_storage(storage.clone())
        .with_channel_rule(
            ChannelRule::new(ChannelPattern::parse("feed.*").expect("pattern"))
                .with_history(HistoryLimits::new(100, Duration::from_secs(3600))),
        )
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let wait = async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn data(list: &Mutex<Vec<Publication>>) -> Vec<Value> {
    list.lock()
        .expect("lock")
        .iter()
        .map(|p| p.data.clone())
        .collect()
}

fn numbers(range: std::ops::Range<i64>) -> Vec<Value> {
    range.map(|n| json!(n)).collect()
}

#[tokio::test]
async fn overlapping_subscriptions_resubscribe_and_recover_on_the_other_node() {
    let bus: Arc<dyn MessageBus> = Arc::new(MemoryBus::new());
    let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
    let a = Hub::new(Some(bus.clone()), config("a", &storage))
        .await
        .expect("hub a");
    let b = Hub::new(Some(bus.clone()), config("b", &storage))
        .await
        .expect("hub b");
    let (connector, mut acceptor) = in_memory_duplex(64);
    let (client, _events) = HubClient::builder("ws://unused")
        .client_id("sdk")
        .transport(Arc::new(connector))
        .reconnect(FixedDelay::new(Duration::from_millis(20)))
        .cache(100)
        .connect();
    let cache = client.cache().expect("cache").clone();

    let both = Arc::new(Mutex::new(Vec::<Publication>::new()));
    let applied = Arc::new(Mutex::new(Vec::<Applied>::new()));
    // What the cache held when each message callback ran.
    let cache_seen = Arc::new(Mutex::new(Vec::<usize>::new()));
    let (both_sink, applied_sink, seen_sink, cache_view) = (
        both.clone(),
        applied.clone(),
        cache_seen.clone(),
        cache.clone(),
    );
    let _wide = client
        .subscription_builder()
        .on_message(move |p| {
            both_sink.lock().expect("lock").push(p.clone());
            seen_sink
                .lock()
                .expect("lock")
                .push(cache_view.publications("feed.x").len());
        })
        .on_applied(move |a| applied_sink.lock().expect("lock").push(a.clone()))
        .subscribe(["feed.x", "feed.*"]);
    let narrow_got = Arc::new(Mutex::new(Vec::<Publication>::new()));
    let narrow_sink = narrow_got.clone();
    let narrow = client
        .subscription_builder()
        .on_message(move |p| narrow_sink.lock().expect("lock").push(p.clone()))
        .subscribe(["feed.x"]);

    let first = tokio::time::timeout(WAIT, acceptor.accept())
        .await
        .expect("connects")
        .expect("connection");
    let welcome = AppMessage::new(0, "welcome", json!({"client_id": "sdk", "node": "a"}));
    a.register_with_greeting(
        "sdk",
        first.connection,
        Some(courier_hub::Frame::text(welcome.to_json())),
    )
    .expect("registers");
    until("both patterns applied", || {
        applied.lock().expect("lock").len() == 2
    })
    .await;

    // Published on the other node: each subscription handles each publication once.
    for n in 0..3 {
        b.publish("feed.x", &json!(n)).await.expect("publish");
    }
    until("three publications", || data(&both).len() == 3).await;
    until("narrow has three", || data(&narrow_got).len() == 3).await;
    assert_eq!(data(&both), numbers(0..3));
    assert_eq!(data(&narrow_got), numbers(0..3));

    // Unsubscribing the narrow one keeps the wide one (which also holds feed.x).
    narrow.unsubscribe();
    b.publish("feed.x", &json!(3)).await.expect("publish");
    until("fourth publication", || data(&both).len() == 4).await;
    assert_eq!(
        data(&narrow_got),
        numbers(0..3),
        "no callback after unsubscribe"
    );

    // Node a goes away; three publications happen before the client is back, on node b.
    a.shutdown().await;
    for n in 4..7 {
        b.publish("feed.x", &json!(n)).await.expect("publish");
    }
    let second = tokio::time::timeout(WAIT, acceptor.accept())
        .await
        .expect("reconnects")
        .expect("connection");
    let welcome = AppMessage::new(0, "welcome", json!({"client_id": "sdk", "node": "b"}));
    b.register_with_greeting(
        "sdk",
        second.connection,
        Some(courier_hub::Frame::text(welcome.to_json())),
    )
    .expect("registers");
    until("recovered", || data(&both).len() == 7).await;
    assert_eq!(data(&both), numbers(0..7), "each once, in order");
    let recovered: Vec<Applied> = applied
        .lock()
        .expect("lock")
        .iter()
        .filter(|a| a.channel == "feed.x" && a.recovered > 0)
        .cloned()
        .collect();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!((recovered[0].recovered, recovered[0].resync), (3, false));
    // The recovered batch was in the cache, whole, before its first callback ran.
    assert_eq!(cache_seen.lock().expect("lock")[4..], [7, 7, 7]);
    let cached: Vec<Value> = cache
        .publications("feed.x")
        .into_iter()
        .map(|p| p.data)
        .collect();
    assert_eq!(cached, numbers(0..7));

    // Live again on b.
    b.publish("feed.x", &json!(7)).await.expect("publish");
    until("live after recovery", || data(&both).len() == 8).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(data(&both), numbers(0..8));
    client.close();
    b.shutdown().await;
}

#[tokio::test]
async fn compressed_messages_round_trip_and_are_smaller_on_the_wire() {
    let hub = Hub::new(None, HubConfig::default()).await.expect("hub");
    let gzip = Compression::Gzip { threshold: 256 };
    let large =
        json!({ "rows": (0..200).map(|n| json!({"id": n, "name": "row"})).collect::<Vec<_>>() });

    // On the wire: a raw connection that asked for gzip.
    let (mut raw, server) = courier_impls::memory::duplex_pair(16);
    hub.register_client(
        "raw",
        server,
        ClientOptions::default().with_compression(gzip),
    )
    .expect("registers");
    let text = json!({"message_type": "subscribe", "message_id": 1, "data": {"channel": "big"}});
    raw.sender
        .send(Frame::Text(text.to_string()))
        .await
        .expect("sends");
    let reply = tokio::time::timeout(WAIT, raw.receiver.recv()).await;
    assert!(
        matches!(reply, Ok(Ok(Some(Frame::Text(_))))),
        "small replies stay text: {reply:?}"
    );
    hub.publish("big", &large).await.expect("publish");
    let Ok(Ok(Some(Frame::Binary(wire)))) = tokio::time::timeout(WAIT, raw.receiver.recv()).await
    else {
        panic!("a large message arrives compressed");
    };
    assert_eq!(wire[0], courier_hub::compression::TAG_GZIP);
    let Frame::Text(inflated) = courier_hub::compression::decode(&wire).expect("inflates") else {
        panic!("a text message");
    };
    assert!(
        wire.len() * 4 < inflated.len(),
        "{} vs {} bytes",
        wire.len(),
        inflated.len()
    );
    let message: Value = serde_json::from_str(&inflated).expect("JSON");
    assert_eq!(message["data"]["data"], large);
    hub.push("raw", courier_hub::Frame::binary(vec![9, 9]))
        .await
        .expect("push");
    let pushed = tokio::time::timeout(WAIT, raw.receiver.recv()).await;
    assert!(
        matches!(&pushed, Ok(Ok(Some(Frame::Binary(b)))) if b[..] == [0, 9, 9]),
        "binary pushes are tagged uncompressed: {pushed:?}"
    );

    // Through the SDK, which asks for it and inflates before callbacks.
    let (connector, mut acceptor) = in_memory_duplex(64);
    let (client, _events) = HubClient::builder("ws://unused")
        .client_id("sdk")
        .transport(Arc::new(connector))
        .compression(true)
        .connect();
    let got = Arc::new(Mutex::new(Vec::<Publication>::new()));
    let applied = Arc::new(Mutex::new(0));
    let (sink, applied_sink) = (got.clone(), applied.clone());
    let _sub = client
        .subscription_builder()
        .on_message(move |p| sink.lock().expect("lock").push(p.clone()))
        .on_applied(move |_| *applied_sink.lock().expect("lock") += 1)
        .subscribe(["big"]);
    let accepted = tokio::time::timeout(WAIT, acceptor.accept())
        .await
        .expect("connects")
        .expect("connection");
    assert_eq!(accepted.target, "/ws?client_id=sdk&compress=gzip");
    hub.register_client(
        "sdk",
        accepted.connection,
        ClientOptions::default().with_compression(gzip),
    )
    .expect("registers");
    until("applied", || *applied.lock().expect("lock") == 1).await;
    hub.publish("big", &large).await.expect("publish");
    until("publication", || got.lock().expect("lock").len() == 1).await;
    assert_eq!(got.lock().expect("lock")[0].data, large);
    client.close();
    hub.shutdown().await;
}
