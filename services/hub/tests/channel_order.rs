//! History channels reach every client in stream order, once, when two publishers on two
//! nodes publish at the same moment: a raw WebSocket client (no SDK to reorder for it) on
//! node a, publishers on a and b sharing one storage, and a storage whose append answers
//! late for one publication (committed, but its publisher hears of it after the other
//! node's later publication crossed the bus).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use courier_hub::server::{HubServer, ServerOptions};
use courier_hub::{ChannelPattern, ChannelRule, HistoryLimits, Hub, HubConfig, Metrics};
use courier_impls::memory::{MemoryBus, MemoryStreamStorage};
use courier_traits::bus::MessageBus;
use courier_traits::storage::*;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

/// A real in-memory storage whose append of a record containing `HELD` commits at once but
/// answers only when the test adds a permit (or never).
struct SlowAnswers {
    inner: MemoryStreamStorage,
    committed: Notify,
    answer: Semaphore,
}

const HELD: &str = "held-answer";

#[async_trait]
impl ForwardingStorage for SlowAnswers {
    fn inner(&self) -> &dyn StreamStorage {
        &self.inner
    }
    async fn append(
        &self,
        name: &StreamName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StorageError> {
        let held = request
            .records
            .iter()
            .any(|r| String::from_utf8_lossy(r).contains(HELD));
        let done = self.inner.append(name, request).await?;
        if held {
            self.committed.notify_one();
            self.answer.acquire().await.expect("open").forget();
        }
        Ok(done)
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn node(bus: &Arc<dyn MessageBus>, id: &str, storage: Arc<SlowAnswers>) -> (Hub, String) {
    let config = HubConfig::default()
        .with_node_id(id)
        .with_history_storage(storage)
        .with_channel_rule(
            ChannelRule::new(ChannelPattern::parse("feed.*").expect("pattern"))
                .with_history(HistoryLimits::new(100, Duration::from_secs(3600))),
        );
    let hub = Hub::new(Some(bus.clone()), config).await.expect("hub");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("ws://{}/ws", listener.local_addr().expect("addr"));
    let server = HubServer::new(hub.clone(), ServerOptions::default());
    // Served until the test's runtime ends.
    tokio::spawn(server.serve(listener, std::future::pending::<()>()));
    (hub, url)
}

async fn next_message(socket: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(WAIT, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).expect("JSON"),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

async fn subscribe(url: &str, id: &str, data: Value) -> (Socket, Value) {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{url}?client_id={id}"))
        .await
        .expect("connects");
    let welcome = next_message(&mut socket).await;
    assert_eq!(welcome["message_type"], "welcome", "{welcome}");
    let request = json!({"message_id": 1, "message_type": "subscribe", "data": data});
    socket
        .send(Message::Text(request.to_string().into()))
        .await
        .expect("sends");
    let reply = next_message(&mut socket).await;
    assert_eq!(reply["message_type"], "subscribed", "{reply}");
    (socket, reply)
}

/// The next `count` publications: (data, offset).
async fn publications(socket: &mut Socket, count: usize) -> Vec<(Value, String)> {
    let mut got = Vec::new();
    while got.len() < count {
        let message = next_message(socket).await;
        assert_eq!(message["message_type"], "publication", "{message}");
        let offset = message["data"]["offset"]
            .as_str()
            .expect("offset")
            .to_owned();
        got.push((message["data"]["data"].clone(), offset));
    }
    got
}

async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn assert_quiet(socket: &mut Socket) {
    let quiet = Duration::from_millis(300);
    if let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(quiet, socket.next()).await {
        panic!("unexpected message {text}");
    }
}

#[tokio::test]
async fn concurrent_publishers_on_two_nodes_reach_a_raw_client_in_stream_order_once() {
    let storage = Arc::new(SlowAnswers {
        inner: MemoryStreamStorage::new(),
        committed: Notify::new(),
        answer: Semaphore::new(0),
    });
    let bus: Arc<dyn MessageBus> = Arc::new(MemoryBus::new());
    let (a, a_url) = node(&bus, "a", storage.clone()).await;
    let (b, b_url) = node(&bus, "b", storage.clone()).await;
    let (mut reader, reply) = subscribe(&a_url, "reader", json!({"channel": "feed.x"})).await;
    let start = reply["data"]["offset"].as_str().expect("offset").to_owned();
    let epoch = reply["data"]["epoch"].as_str().expect("epoch").to_owned();

    // Round 1: a's publication is stored first, b's second; a hears of its append only
    // after b's publication reached a over the bus.
    let received = |hub: &Hub| Metrics::get(&hub.metrics().bus_received);
    let publisher = a.clone();
    let first = tokio::spawn(async move {
        publisher
            .publish("feed.x", &json!({"n": 1, "tag": HELD}))
            .await
    });
    storage.committed.notified().await;
    let before = received(&a);
    b.publish("feed.x", &json!({"n": 2}))
        .await
        .expect("publish");
    until("b's publication reached a", || received(&a) > before).await;
    storage.answer.add_permits(1);
    first.await.expect("task").expect("publish");
    let mut got = publications(&mut reader, 2).await;
    assert_eq!(
        (&got[0].0["n"], &got[1].0["n"]),
        (&json!(1), &json!(2)),
        "{got:?}"
    );

    // Round 2: a's publisher never hears of its append (it died between append and
    // delivery): a fills the gap from history.
    let publisher = a.clone();
    let lost = tokio::spawn(async move {
        publisher
            .publish("feed.x", &json!({"n": 3, "tag": HELD}))
            .await
    });
    storage.committed.notified().await;
    b.publish("feed.x", &json!({"n": 4}))
        .await
        .expect("publish");

    got.extend(publications(&mut reader, 2).await);
    let numbers: Vec<Value> = got.iter().map(|(data, _)| data["n"].clone()).collect();
    assert_eq!(numbers, [json!(1), json!(2), json!(3), json!(4)], "{got:?}");
    let mut last = start.clone();
    for (_, offset) in &got {
        assert!(*offset > last, "offsets grow: {offset} after {last}");
        last = offset.clone();
    }
    // The held publication now gets its answer and is published late: nobody gets it twice.
    storage.answer.add_permits(1);
    lost.await.expect("task").expect("publish");
    assert_quiet(&mut reader).await;

    // Round 3: a publication recovered by a client reconnecting to b, whose live copy
    // reaches b over the bus only afterwards, is not delivered to it again.
    let publisher = a.clone();
    let late = tokio::spawn(async move {
        publisher
            .publish("feed.x", &json!({"n": 5, "tag": HELD}))
            .await
    });
    storage.committed.notified().await;
    let since = json!({"channel": "feed.x", "since": {"offset": last, "epoch": epoch}});
    let (mut back, reply) = subscribe(&b_url, "back", since).await;
    assert_eq!(reply["data"]["recovered"], true, "{reply}");
    let recovered: Vec<Value> = reply["data"]["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| p["data"]["n"].clone())
        .collect();
    assert_eq!(recovered, [json!(5)], "{reply}");
    let before = received(&b);
    storage.answer.add_permits(1);
    late.await.expect("task").expect("publish");
    until("the late copy reached b", || received(&b) > before).await;
    a.publish("feed.x", &json!({"n": 6}))
        .await
        .expect("publish");
    let got = publications(&mut back, 1).await;
    assert_eq!(got[0].0["n"], 6, "{got:?}");
    assert_quiet(&mut back).await;
    let got = publications(&mut reader, 2).await;
    let numbers: Vec<Value> = got.iter().map(|(data, _)| data["n"].clone()).collect();
    assert_eq!(numbers, [json!(5), json!(6)], "{got:?}");
    a.shutdown().await;
    b.shutdown().await;
}
