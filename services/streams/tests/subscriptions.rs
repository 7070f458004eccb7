//! The subscription APIs over HTTP, against a real webhook receiver on loopback: signatures
//! verified with the published JWKS key, unsafe URLs refused, stale generations fenced,
//! pull-wake leases expiring on an injected clock, retries, and a restart on SQLite.

mod support;

use std::sync::Arc;
use std::time::Duration;

use courier_impls::memory::MemoryStreamStorage;
use courier_impls::sqlite::{SqliteStorageConfig, SqliteStreamStorage};
use courier_streams::server::SubscriptionSettings;
use courier_traits::clock::ManualClock;
use std::sync::atomic::{AtomicUsize, Ordering};

use courier_traits::storage::{
    AppendRequest, ForwardingStorage, ReadLimits, StorageError, StreamConfig, StreamInfo,
    StreamName, StreamStorage,
};
use courier_traits::transport::Method;
use serde_json::{Value, json};
use support::{
    Node, Receiver, eventually, signature_verifies, signature_verifies_over, test_settings,
};

fn memory() -> Arc<MemoryStreamStorage> {
    Arc::new(MemoryStreamStorage::new())
}

fn webhook(url: &str) -> Value {
    json!({ "type": "webhook", "pattern": "events/*", "webhook": { "url": url } })
}

fn tail_of(delivery: &Value, path: &str) -> String {
    delivery["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["path"] == path))
        .and_then(|s| s["tail_offset"].as_str())
        .expect("the stream is in the wake")
        .to_owned()
}

#[tokio::test]
async fn deliveries_are_signed_with_the_published_key() {
    let node = Node::start(memory(), test_settings()).await;
    let mut receiver = Receiver::start(json!({ "done": true })).await;
    let (status, created) = node
        .put_subscription("signed", webhook(&receiver.url))
        .await;
    assert_eq!(status, 201, "{created}");
    let jwks = node.jwks().await;
    assert_eq!(
        created["webhook"]["signing"]["kid"], jwks["keys"][0]["kid"],
        "the subscription names the published key"
    );

    node.append("events/a", json!({ "n": 1 })).await;
    let delivery = receiver.next().await;
    assert!(signature_verifies(&delivery, &jwks), "{delivery:?}");
    assert_eq!(delivery.body["subscription_id"], "signed");
    // The signature covers the body: one changed byte and it no longer verifies.
    let mut forged = delivery.raw.to_vec();
    let last = forged.len() - 2;
    forged[last] ^= 1;
    assert!(!signature_verifies_over(
        delivery.signature.as_deref(),
        &forged,
        &jwks
    ));
    // Another key set (another server's) does not verify it either.
    let other = Node::start(memory(), test_settings()).await;
    assert!(!signature_verifies(&delivery, &other.jwks().await));
    other.stop().await;
    node.stop().await;
}

#[tokio::test]
async fn unsafe_webhook_urls_are_refused() {
    let strict = SubscriptionSettings {
        allow_loopback_webhooks: false,
        ..test_settings()
    };
    let node = Node::start(memory(), strict).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "https://[::1]/hook",
        "https://10.0.0.1/hook",
        "https://192.168.1.20/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/hook",
        "https://[fd00::1]/hook",
        "https://[::ffff:10.1.2.3]/hook",
        "https://0.0.0.0/hook",
        "http://1.1.1.1/hook",
    ] {
        let (status, body) = node.put_subscription("unsafe", webhook(url)).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(body["error"]["code"], "WEBHOOK_URL_REJECTED", "{url}");
    }
    node.stop().await;

    // Allowing loopback allows loopback only.
    let node = Node::start(memory(), test_settings()).await;
    let (status, _) = node
        .put_subscription("private", webhook("http://10.0.0.1/hook"))
        .await;
    assert_eq!(status, 400);
    let (status, _) = node
        .put_subscription("local", webhook("http://127.0.0.1:9/hook"))
        .await;
    assert_eq!(status, 201);
    node.stop().await;
}

/// A subscription aimed at a reserved stream could write wake events into another
/// subscription's log and leave it unreadable (500 for good).
#[tokio::test]
async fn reserved_streams_are_refused_as_subscription_targets() {
    let node = Node::start(memory(), test_settings()).await;
    let victim = json!({ "type": "pull-wake", "streams": ["v"], "wake_stream": "vw" });
    assert_eq!(node.put_subscription("victim", victim).await.0, 201);
    for body in [
        json!({ "type": "pull-wake", "streams": ["x"], "wake_stream": "__ds/subscriptions/victim" }),
        json!({ "type": "pull-wake", "streams": ["__ds/subscriptions/victim"], "wake_stream": "w" }),
        json!({ "type": "pull-wake", "pattern": "__ds/**", "wake_stream": "w" }),
    ] {
        let (status, answer) = node.put_subscription("attacker", body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let attacker = json!({ "type": "pull-wake", "streams": ["x"], "wake_stream": "w" });
    assert_eq!(node.put_subscription("attacker", attacker).await.0, 201);
    let add = json!({ "streams": ["__ds/keys"] });
    let path = "/v1/stream/__ds/subscriptions/attacker/streams";
    assert_eq!(node.send(Method::Post, path, &[], Some(add)).await.0, 400);
    node.append("x", json!({"n": 1})).await;
    let (status, victim) = node.get_subscription("victim").await;
    assert_eq!(status, 200, "{victim}");
    node.stop().await;
}

/// Two nodes on one storage: a subscription deleted and created again on one node (same
/// record count, so the other node's cached read position looks "up to date" in the new log)
/// is read afresh on the other; a record a stale node left in the new log is skipped, not a
/// reason to give up loading it.
#[tokio::test]
async fn a_subscription_created_again_is_read_afresh_on_another_node() {
    let storage = memory();
    let a = Node::start(storage.clone(), test_settings()).await;
    let b = Node::start(storage.clone(), test_settings()).await;
    let old = json!({ "type": "pull-wake", "streams": ["x"], "wake_stream": "w1" });
    assert_eq!(a.put_subscription("again", old).await.0, 201);
    let (status, held) = b.get_subscription("again").await;
    assert_eq!((status, held["wake_stream"].clone()), (200, json!("w1")));

    let path = "/v1/stream/__ds/subscriptions/again";
    assert_eq!(a.send(Method::Delete, path, &[], None).await.0, 204);
    let new = json!({ "type": "pull-wake", "streams": ["y"], "wake_stream": "w2" });
    assert_eq!(a.put_subscription("again", new).await.0, 201);
    let (status, seen) = b.get_subscription("again").await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["wake_stream"], "w2", "{seen}");
    assert_eq!(seen["streams"][0]["path"], "y", "{seen}");

    // What a node still holding the old incarnation would append into the new log.
    let log = StreamName::new("__ds/subscriptions/again").expect("name");
    let stale = json!({ "inc": "an-old-incarnation", "events": [] }).to_string();
    storage
        .append(
            &log,
            AppendRequest::record(stale).with_content_type("application/json"),
        )
        .await
        .expect("append");
    let c = Node::start(storage.clone(), test_settings()).await;
    let (status, loaded) = c.get_subscription("again").await;
    assert_eq!(status, 200, "{loaded}");
    assert_eq!(loaded["wake_stream"], "w2", "{loaded}");
    for node in [a, b, c] {
        node.stop().await;
    }
}

/// A memory storage that counts `head` calls: the stream tails subscriptions read.
struct HeadCounting {
    inner: MemoryStreamStorage,
    heads: AtomicUsize,
}

#[async_trait::async_trait]
impl ForwardingStorage for HeadCounting {
    fn inner(&self) -> &dyn StreamStorage {
        &self.inner
    }
    async fn head(&self, name: &StreamName) -> Result<StreamInfo, StorageError> {
        self.heads.fetch_add(1, Ordering::SeqCst);
        self.inner.head(name).await
    }
}

/// All records of `stream` as one text (the logs here are small: one read holds them).
async fn stream_text(storage: &dyn StreamStorage, stream: &str) -> String {
    let name = StreamName::new(stream).expect("name");
    match storage.read(&name, None, ReadLimits::default()).await {
        Ok(batch) => batch
            .records
            .iter()
            .map(|r| String::from_utf8_lossy(&r.data).into_owned())
            .collect(),
        Err(_) => String::new(),
    }
}

/// While a wake is outstanding nothing can start another, so an append to one of N linked
/// streams reads no tails (it read all N per append: N storage calls on every append).
#[tokio::test]
async fn appends_during_a_wake_read_no_stream_tails() {
    const STREAMS: usize = 20;
    let storage = Arc::new(HeadCounting {
        inner: MemoryStreamStorage::new(),
        heads: AtomicUsize::new(0),
    });
    let node = Node::start(storage.clone(), test_settings()).await;
    node.append("fan-wake", json!({ "seed": true })).await;
    let body = json!({ "type": "pull-wake", "pattern": "fan/*", "wake_stream": "fan-wake" });
    assert_eq!(node.put_subscription("fan", body).await.0, 201);
    node.append("fan/0", json!({ "i": 0 })).await;
    eventually("the first append to wake the subscription", || async {
        stream_text(&*storage, "fan-wake").await.contains("\"fan\"")
    })
    .await;

    let before = storage.heads.load(Ordering::SeqCst);
    for i in 1..=STREAMS {
        node.append(&format!("fan/{i}"), json!({ "i": i })).await;
    }
    eventually("every stream to be linked", || async {
        let log = stream_text(&*storage, "__ds/subscriptions/fan").await;
        (1..=STREAMS).all(|i| log.contains(&format!("\"fan/{i}\"")))
    })
    .await;
    let heads = storage.heads.load(Ordering::SeqCst) - before;
    // The appends themselves may look at their stream; the subscription reads nothing more.
    assert!(heads <= STREAMS, "{heads} tails read for {STREAMS} appends");
    node.stop().await;
}

#[tokio::test]
async fn callbacks_ack_and_stale_generations_are_fenced() {
    let node = Node::start(memory(), test_settings()).await;
    let mut receiver = Receiver::start(json!({})).await;
    let (status, _) = node.put_subscription("fence", webhook(&receiver.url)).await;
    assert_eq!(status, 201);
    node.append("events/x", json!({ "n": 1 })).await;
    let first = receiver.next().await.body;
    let token = first["callback_token"].as_str().expect("token").to_owned();
    let generation = first["generation"].as_u64().expect("generation");
    let wake_id = first["wake_id"].clone();
    let tail = tail_of(&first, "events/x");
    let ack = |done: bool| {
        json!({ "wake_id": wake_id, "generation": generation,
                "acks": [{ "stream": "events/x", "offset": tail }], "done": done })
    };

    // A wrong token is not the subscription's: 401, not FENCED.
    let (status, body) = node
        .action("fence", "callback", "not-a-token", ack(true))
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (401, json!("TOKEN_INVALID"))
    );
    // The right token naming another generation is fenced.
    let mut stale = ack(true);
    stale["generation"] = json!(generation + 7);
    let (status, body) = node.action("fence", "callback", &token, stale).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("FENCED"))
    );
    // A heartbeat (not done) keeps the wake, and its ack moves the cursor.
    let (status, body) = node.action("fence", "callback", &token, ack(false)).await;
    assert_eq!(
        (status, body),
        (200, json!({ "ok": true, "next_wake": false }))
    );
    let (status, body) = node.action("fence", "callback", &token, ack(true)).await;
    assert_eq!(
        (status, body),
        (200, json!({ "ok": true, "next_wake": false }))
    );
    // The finished wake's token is fenced from now on.
    let (status, body) = node.action("fence", "callback", &token, ack(true)).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("FENCED"))
    );

    // New data: a new generation with a new token; the old token stays fenced.
    node.append("events/x", json!({ "n": 2 })).await;
    let second = receiver.next().await.body;
    assert_eq!(second["generation"], json!(generation + 1));
    assert_ne!(second["callback_token"], json!(token));
    let mut old = ack(true);
    old["wake_id"] = second["wake_id"].clone();
    old["generation"] = second["generation"].clone();
    let (status, body) = node.action("fence", "callback", &token, old).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("FENCED"))
    );
    node.stop().await;
}

#[tokio::test]
async fn failed_deliveries_are_retried_by_the_policy() {
    let node = Node::start(memory(), test_settings()).await;
    let mut receiver = Receiver::start(json!({ "done": true })).await;
    receiver.fail_next(&[500, 503]);
    node.put_subscription("retry", webhook(&receiver.url)).await;
    node.append("events/r", json!({ "n": 1 })).await;
    let attempts = [
        receiver.next().await,
        receiver.next().await,
        receiver.next().await,
    ];
    // The same wake each time, until the receiver accepts it.
    for attempt in &attempts {
        assert_eq!(attempt.body["generation"], json!(1));
        assert_eq!(attempt.body["wake_id"], attempts[0].body["wake_id"]);
    }
    let tail = tail_of(&attempts[2].body, "events/r");
    eventually("the accepted wake is acknowledged", || async {
        let (_, sub) = node.get_subscription("retry").await;
        sub["streams"][0]["acked_offset"] == json!(tail)
    })
    .await;
    assert!(
        receiver
            .next_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    node.stop().await;
}

#[tokio::test]
async fn pull_wake_leases_expire_on_the_subscription_clock() {
    let clock = ManualClock::new(1_700_000_000_000);
    let settings = SubscriptionSettings {
        clock: Arc::new(clock.clone()),
        // Leases are checked on requests here, not by the background task.
        lease_check_interval: Duration::from_secs(3600),
        ..test_settings()
    };
    let node = Node::start(memory(), settings).await;
    node.append("wake/pool", json!({ "seed": true })).await;
    let (status, _) = node
        .put_subscription(
            "pull",
            json!({ "type": "pull-wake", "pattern": "jobs/*", "wake_stream": "wake/pool",
                    "lease_ttl_ms": 5000 }),
        )
        .await;
    assert_eq!(status, 201);
    let claim = |worker: &'static str| {
        let node = &node;
        async move {
            let path = "/v1/stream/__ds/subscriptions/pull/claim";
            node.send(Method::Post, path, &[], Some(json!({ "worker": worker })))
                .await
        }
    };
    let (status, body) = claim("w1").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("NO_PENDING_WORK"))
    );

    node.append("jobs/1", json!({ "job": 1 })).await;
    eventually("a wake event in the wake stream", || async {
        let (_, events) = node
            .send(Method::Get, "/v1/stream/wake/pool", &[], None)
            .await;
        events
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["subscription_id"] == "pull"))
    })
    .await;
    let (status, first) = claim("w1").await;
    assert_eq!(status, 200, "{first}");
    let (status, busy) = claim("w2").await;
    assert_eq!(status, 409);
    assert_eq!(busy["error"]["current_holder"], "w1");

    // Just before the lease ends the claim holds; once it ends another worker takes over
    // with a new generation, and the first worker's token is fenced.
    clock.advance(Duration::from_millis(4999));
    assert_eq!(claim("w2").await.0, 409);
    clock.advance(Duration::from_millis(1));
    let (status, second) = claim("w2").await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        second["generation"],
        json!(first["generation"].as_u64().expect("gen") + 1)
    );
    let tail = tail_of(&second, "jobs/1");
    let done = |claimed: &Value| {
        json!({ "wake_id": claimed["wake_id"], "generation": claimed["generation"],
                "acks": [{ "stream": "jobs/1", "offset": tail }], "done": true })
    };
    let token1 = first["token"].as_str().expect("token");
    let (status, body) = node.action("pull", "ack", token1, done(&first)).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("FENCED"))
    );

    // A heartbeat (ack without done) extends the lease from now.
    let token2 = second["token"].as_str().expect("token");
    clock.advance(Duration::from_millis(4000));
    let heartbeat = json!({ "wake_id": second["wake_id"], "generation": second["generation"] });
    assert_eq!(node.action("pull", "ack", token2, heartbeat).await.0, 200);
    clock.advance(Duration::from_millis(4000));
    assert_eq!(claim("w3").await.0, 409, "the heartbeat extended the lease");
    let (status, body) = node.action("pull", "ack", token2, done(&second)).await;
    assert_eq!(
        (status, body),
        (200, json!({ "ok": true, "next_wake": false }))
    );
    let (_, sub) = node.get_subscription("pull").await;
    assert_eq!(sub["streams"][0]["acked_offset"], json!(tail));
    node.stop().await;
}

#[tokio::test]
async fn explicit_streams_are_added_and_removed() {
    let node = Node::start(memory(), test_settings()).await;
    let body = json!({ "type": "pull-wake", "streams": ["m/a"], "wake_stream": "w" });
    assert_eq!(node.put_subscription("links", body.clone()).await.0, 201);
    assert_eq!(
        node.put_subscription("links", body).await.0,
        200,
        "identical re-confirm"
    );
    let other = json!({ "type": "pull-wake", "streams": ["m/b"], "wake_stream": "w" });
    let (status, conflict) = node.put_subscription("links", other).await;
    assert_eq!(
        (status, conflict["error"]["code"].clone()),
        (409, json!("SUBSCRIPTION_ALREADY_EXISTS"))
    );
    let path = "/v1/stream/__ds/subscriptions/links/streams";
    let add = json!({ "streams": ["m/b"] });
    assert_eq!(node.send(Method::Post, path, &[], Some(add)).await.0, 204);
    let (_, sub) = node.get_subscription("links").await;
    assert_eq!(sub["streams"].as_array().map(Vec::len), Some(2));
    let remove = "/v1/stream/__ds/subscriptions/links/streams/m%2Fb";
    assert_eq!(node.send(Method::Delete, remove, &[], None).await.0, 204);
    let (_, sub) = node.get_subscription("links").await;
    assert_eq!(
        sub["streams"],
        json!([{ "path": "m/a", "link_type": "explicit", "acked_offset": "-1" }])
    );
    // The reserved streams are not reachable as streams, nor as fork sources.
    let (status, _) = node
        .send(Method::Get, "/v1/stream/__ds/index", &[], None)
        .await;
    assert_eq!(status, 404);
    node.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_subscriptions_acks_and_the_signing_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("streams.db");
    let open = || async {
        Arc::new(
            SqliteStreamStorage::connect(&path, SqliteStorageConfig::default())
                .await
                .expect("sqlite"),
        )
    };
    let mut receiver = Receiver::start(json!({ "done": true })).await;
    let node = Node::start(open().await, test_settings()).await;
    assert_eq!(
        node.put_subscription("durable", webhook(&receiver.url))
            .await
            .0,
        201
    );
    let jwks = node.jwks().await;
    node.append("events/d", json!({ "n": 1 })).await;
    let first = receiver.next().await;
    let tail = tail_of(&first.body, "events/d");
    eventually("the first wake is acknowledged", || async {
        let (_, sub) = node.get_subscription("durable").await;
        sub["streams"][0]["acked_offset"] == json!(tail)
    })
    .await;
    node.stop().await;

    let node = Node::start(open().await, test_settings()).await;
    assert_eq!(node.jwks().await, jwks, "the same key after a restart");
    let (status, sub) = node.get_subscription("durable").await;
    assert_eq!(status, 200);
    assert_eq!(sub["streams"][0]["acked_offset"], json!(tail));
    node.append("events/d", json!({ "n": 2 })).await;
    let second = receiver.next().await;
    assert!(signature_verifies(&second, &jwks));
    assert_eq!(second.body["generation"], json!(2));
    assert_eq!(second.body["streams"][0]["acked_offset"], json!(tail));
    node.stop().await;
}

#[tokio::test]
async fn data_appended_behind_the_servers_back_is_woken_by_the_sweep() {
    // What a node that stopped between storing an append and handing it on leaves behind:
    // data in a subscribed stream that no append hook saw.
    let storage = memory();
    let settings = SubscriptionSettings {
        lease_check_interval: Duration::from_millis(10),
        ..test_settings()
    };
    let node = Node::start(storage.clone(), settings).await;
    let mut receiver = Receiver::start(json!({ "done": true })).await;
    let body =
        json!({ "type": "webhook", "streams": ["quiet/x"], "webhook": { "url": receiver.url } });
    assert_eq!(node.put_subscription("sweep", body).await.0, 201);
    let name = StreamName::new("quiet/x").expect("name");
    storage
        .create(
            &name,
            StreamConfig::with_content_type("application/json"),
            vec![],
        )
        .await
        .expect("create");
    storage
        .append(
            &name,
            AppendRequest::record("{}").with_content_type("application/json"),
        )
        .await
        .expect("append");
    let delivery = receiver.next().await;
    assert_eq!(delivery.body["streams"][0]["path"], "quiet/x");
    assert_eq!(delivery.body["streams"][0]["has_pending"], true);
    node.stop().await;
}

#[tokio::test]
async fn https_receivers_are_called_over_verified_tls() {
    let (mut receiver, certificate) = Receiver::start_tls(json!({ "done": true })).await;
    // A server that does not trust the receiver's certificate does not deliver to it.
    let untrusting = Node::start(memory(), test_settings()).await;
    assert_eq!(
        untrusting
            .put_subscription("tls", webhook(&receiver.url))
            .await
            .0,
        201
    );
    untrusting.append("events/t", json!({ "n": 1 })).await;
    assert!(
        receiver
            .next_within(Duration::from_millis(500))
            .await
            .is_none()
    );
    untrusting.stop().await;

    let settings = SubscriptionSettings {
        webhook_root_certificates: vec![certificate],
        ..test_settings()
    };
    let node = Node::start(memory(), settings).await;
    assert_eq!(
        node.put_subscription("tls", webhook(&receiver.url)).await.0,
        201
    );
    node.append("events/t", json!({ "n": 1 })).await;
    let delivery = receiver.next().await;
    assert!(signature_verifies(&delivery, &node.jwks().await));
    node.stop().await;
}

#[tokio::test]
async fn a_stream_older_than_the_pattern_joins_at_its_new_data() {
    let node = Node::start(memory(), test_settings()).await;
    node.append("events/old", json!({ "before": true })).await;
    let tail_before = node.tail("/v1/stream/events/old").await;
    let mut receiver = Receiver::start(json!({ "done": true })).await;
    assert_eq!(
        node.put_subscription("late", webhook(&receiver.url))
            .await
            .0,
        201
    );
    node.append("events/old", json!({ "after": true })).await;
    let wake = receiver.next().await.body;
    // What the stream held before it joined is not pending.
    assert_eq!(wake["streams"][0]["acked_offset"], json!(tail_before));
    node.append("events/new", json!({ "first": true })).await;
    let wake = receiver.next().await.body;
    let new = wake["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["path"] == "events/new"))
        .expect("events/new in the wake")
        .clone();
    // A stream created after the subscription: reading from its acked offset gives all of it.
    let acked = new["acked_offset"].as_str().expect("offset");
    let read = format!("/v1/stream/events/new?offset={acked}");
    let (_, messages) = node.send(Method::Get, &read, &[], None).await;
    assert_eq!(messages, json!([{ "first": true }]));
    node.stop().await;
}
