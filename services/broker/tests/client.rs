//! The Rust client end to end against the real [`BrokerServer`], served in-process on the
//! memory storage: what a producer stores, partition routing, refusals, consumers with acks,
//! redelivery, partitions and live topics, and clients that outlive a restart of their broker.

mod support;

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;
use support::log::stored;

use courier_broker::client::{BrokerClient, BrokerError, Consumer, Message};
use courier_broker::directory::NodeUrls;
use courier_broker::server::{BrokerConfig, BrokerServer, ServeError};
use courier_impls::grpc::InProcessNetwork;
use courier_impls::grpc::proto::danube::StreamMessage;
use courier_impls::memory::MemoryStreamStorage;
use courier_impls::retry::LinearBackoff;
use courier_traits::error::Classify;
use courier_traits::storage::StreamStorage;
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;

const HERE: &str = "http://broker.test:6650";

/// A broker node served in-process at [`HERE`].
struct Node {
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<Result<(), ServeError>>,
}

impl Node {
    async fn start(network: &InProcessNetwork, storage: Arc<dyn StreamStorage>) -> Node {
        let config = BrokerConfig::new(NodeUrls::same(HERE).expect("valid"));
        let server = BrokerServer::open(storage, config).await.expect("open");
        let listener = network.listen(HERE).expect("listen");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(server.serve_with_incoming(listener, async {
            let _ = stopped.await;
        }));
        Node {
            stop: Some(stop),
            served,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.served)
            .await
            .expect("shut down in time")
            .expect("task")
            .expect("served");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.served.abort();
    }
}

/// A client with short retry steps (10 ms), so recoveries take little real time.
async fn client(network: &InProcessNetwork) -> BrokerClient {
    BrokerClient::builder()
        .service_url(HERE)
        .in_process(network.clone())
        .retry(LinearBackoff::new(Duration::from_millis(10)))
        .health_interval(Duration::from_millis(50))
        .build()
        .await
        .expect("client")
}

/// A node on a fresh memory storage and a client of it.
async fn setup() -> (InProcessNetwork, Arc<dyn StreamStorage>, Node, BrokerClient) {
    let network = InProcessNetwork::new();
    let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
    let node = Node::start(&network, storage.clone()).await;
    let client = client(&network).await;
    (network, storage, node, client)
}

/// `send` takes `&self`: sends awaited together on one producer (pipelined over its channel;
/// the broker's topic writer may group them) each get their own answer, and every message is
/// stored once, at dense offsets.
#[tokio::test]
async fn concurrent_sends_from_one_reliable_producer_are_each_stored_once() {
    let (_network, storage, _node, client) = setup().await;
    let producer = client
        .producer("/default/pipelined")
        .name("p")
        .reliable()
        .create()
        .await
        .expect("created");
    let sends = (0..64).map(|i| producer.send(format!("m-{i}")).into_future());
    let sequences = futures::future::try_join_all(sends)
        .await
        .expect("all sent");
    let mut distinct = sequences.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        64,
        "each send answered with its own sequence id"
    );
    let messages = stored(storage.as_ref(), "/default/pipelined").await;
    let offsets: Vec<u64> = messages
        .iter()
        .map(|m| m.msg_id.as_ref().expect("msg_id").topic_offset)
        .collect();
    assert_eq!(offsets, (0..64).collect::<Vec<u64>>(), "dense, no gap");
    let mut payloads: Vec<String> = messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    payloads.sort_unstable();
    let mut expected: Vec<String> = (0..64).map(|i| format!("m-{i}")).collect();
    expected.sort_unstable();
    assert_eq!(payloads, expected, "every message stored once");
}

#[tokio::test]
async fn a_reliable_partitioned_producer_stores_each_message_in_its_partition_with_dense_offsets() {
    let (_network, storage, _node, client) = setup().await;
    let producer = client
        .producer("/default/orders")
        .name("p1")
        .reliable()
        .partitions(2)
        .create()
        .await
        .expect("created");
    let ids = producer.producer_ids();
    assert!(ids.iter().all(Option::is_some), "{ids:?}");
    let mut sequences = std::collections::HashMap::new();
    for i in 0..4 {
        let payload = format!("turn-{i}");
        let sequence = producer.send(payload.clone()).await.expect("sent");
        sequences.insert(payload, sequence);
    }
    producer
        .send("keyed")
        .key("customer-7")
        .attribute("kind", "order")
        .await
        .expect("sent");
    let part = |i: u32| format!("/default/orders-part-{i}");
    let first = stored(storage.as_ref(), &part(0)).await;
    let second = stored(storage.as_ref(), &part(1)).await;
    assert_eq!(first.len() + second.len(), 5);
    for (index, messages) in [&first, &second].into_iter().enumerate() {
        let offsets: Vec<u64> = messages
            .iter()
            .map(|m| m.msg_id.as_ref().expect("msg_id").topic_offset)
            .collect();
        assert_eq!(offsets, (0..messages.len() as u64).collect::<Vec<_>>());
        for message in messages {
            assert_eq!(message.producer_name, format!("p1-{index}"));
        }
    }
    let turns = |messages: &[StreamMessage]| -> Vec<String> {
        messages
            .iter()
            .filter(|m| m.routing_key.is_none())
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect()
    };
    assert_eq!(turns(&first), ["turn-0", "turn-2"], "round-robin");
    assert_eq!(turns(&second), ["turn-1", "turn-3"]);
    let keyed = first
        .iter()
        .chain(&second)
        .find(|m| m.routing_key.as_deref() == Some("customer-7"))
        .expect("stored");
    assert_eq!(
        keyed.attributes.get("kind").map(String::as_str),
        Some("order")
    );
    // The sequence id is the request id the broker echoed for that message.
    for message in first.iter().chain(&second) {
        let payload = String::from_utf8_lossy(&message.payload).into_owned();
        if let Some(sequence) = sequences.get(&payload) {
            assert_eq!(*sequence, message.request_id, "{payload}");
        }
    }
    producer.close().await;
    assert_eq!(client.running_tasks(), 0);
}

#[tokio::test]
async fn the_brokers_refusals_come_back_unretried() {
    let (_network, _storage, _node, client) = setup().await;
    client
        .producer("/default/t")
        .name("p")
        .reliable()
        .create()
        .await
        .expect("created");
    // The topic is reliable; a non-reliable producer is refused.
    let error = client
        .producer("/default/t")
        .name("q")
        .create()
        .await
        .expect_err("dispatch mismatch");
    assert_eq!(error.code(), Some(Code::FailedPrecondition), "{error}");
    assert!(!error.is_retryable());
    let error = client
        .consumer("/default/missing")
        .name("c")
        .subscription("s")
        .subscribe()
        .await
        .expect_err("no such topic");
    assert!(
        matches!(&error, BrokerError::NoSuchTopic(t) if t == "/default/missing"),
        "{error}"
    );
}

#[tokio::test]
async fn a_producer_keeps_sending_across_a_restart_of_its_broker() {
    let (network, storage, node, client) = setup().await;
    let producer = client
        .producer("/default/t")
        .name("p")
        .reliable()
        .create()
        .await
        .expect("created");
    producer.send("before").await.expect("sent");
    node.stop().await;
    let restart = {
        let network = network.clone();
        let storage = storage.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Node::start(&network, storage).await
        })
    };
    producer
        .send("after")
        .await
        .expect("sent once the broker is back");
    let _node = restart.await.expect("restarted");
    let payloads: Vec<String> = stored(storage.as_ref(), "/default/t")
        .await
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(payloads, ["before", "after"]);
}

/// The next delivery, within 10 s.
async fn next(consumer: &mut Consumer) -> Message {
    tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("a delivery within 10 s")
        .expect("the stream goes on")
        .expect("a message, not an error")
}

fn text(message: &Message) -> String {
    String::from_utf8_lossy(message.payload()).into_owned()
}

#[tokio::test]
async fn a_reliable_subscription_gets_everything_once_acked_and_the_unacked_again() {
    let (_network, _storage, _node, client) = setup().await;
    let producer = client
        .producer("/default/r")
        .name("p")
        .reliable()
        .create()
        .await
        .expect("created");
    let subscribe = || {
        client
            .consumer("/default/r")
            .name("c")
            .subscription("s")
            .exclusive()
            .subscribe()
    };
    let mut consumer = subscribe().await.expect("subscribed");
    for i in 0..3 {
        producer.send(format!("m{i}")).await.expect("sent");
    }
    let mut delivered = Vec::new();
    for _ in 0..3 {
        delivered.push(next(&mut consumer).await);
    }
    let texts: Vec<String> = delivered.iter().map(text).collect();
    assert_eq!(texts, ["m0", "m1", "m2"]);
    let offsets: Vec<u64> = delivered.iter().map(Message::offset).collect();
    assert_eq!(offsets, [0, 1, 2]);
    assert!(delivered.iter().all(|m| m.topic() == "/default/r"));
    delivered[0].ack().await.expect("ack");
    consumer.close().await;

    let mut again = subscribe().await.expect("subscribed again");
    let mut redelivered = vec![text(&next(&mut again).await)];
    let second = next(&mut again).await;
    redelivered.push(text(&second));
    redelivered.sort();
    assert_eq!(redelivered, ["m1", "m2"], "the unacked, again");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), again.next())
            .await
            .is_err(),
        "m0 was acked: nothing more"
    );
    again.close().await;
    assert_eq!(
        client.running_tasks(),
        2,
        "only the producer's: its health check and its send stream's reader"
    );
}

#[tokio::test]
async fn a_consumer_of_a_partitioned_topic_receives_and_acks_on_every_partition() {
    let (_network, _storage, _node, client) = setup().await;
    let producer = client
        .producer("/default/parts")
        .name("p")
        .reliable()
        .partitions(2)
        .create()
        .await
        .expect("created");
    let mut consumer = client
        .consumer("/default/parts")
        .name("c")
        .subscription("s")
        .subscribe()
        .await
        .expect("subscribed");
    assert_eq!(
        consumer.partitions(),
        ["/default/parts-part-0", "/default/parts-part-1"]
    );
    for i in 0..4 {
        producer.send(format!("m{i}")).await.expect("sent");
    }
    let mut topics = Vec::new();
    for _ in 0..4 {
        let message = next(&mut consumer).await;
        message.ack().await.expect("acked on its partition");
        topics.push(message.topic().to_owned());
    }
    topics.sort();
    assert_eq!(
        topics,
        [
            "/default/parts-part-0",
            "/default/parts-part-0",
            "/default/parts-part-1",
            "/default/parts-part-1"
        ]
    );
}

#[tokio::test]
async fn a_live_topic_reaches_a_connected_consumer() {
    let (_network, _storage, _node, client) = setup().await;
    let producer = client
        .producer("/default/live")
        .name("p")
        .create()
        .await
        .expect("created");
    let mut consumer = client
        .consumer("/default/live")
        .name("c")
        .subscription("s")
        .subscribe()
        .await
        .expect("subscribed");
    // Live messages reach consumers whose stream is open: give it a moment to open.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..3 {
        producer.send(format!("m{i}")).await.expect("sent");
    }
    let texts = [
        text(&next(&mut consumer).await),
        text(&next(&mut consumer).await),
        text(&next(&mut consumer).await),
    ];
    assert_eq!(texts, ["m0", "m1", "m2"]);
}

#[tokio::test]
async fn a_consumer_resubscribes_on_its_own_after_its_broker_restarts() {
    let (network, storage, node, client) = setup().await;
    let producer = client
        .producer("/default/t")
        .name("p")
        .reliable()
        .create()
        .await
        .expect("created");
    let mut consumer = client
        .consumer("/default/t")
        .name("c")
        .subscription("s")
        .subscribe()
        .await
        .expect("subscribed");
    producer.send("before").await.expect("sent");
    let before = next(&mut consumer).await;
    before.ack().await.expect("acked");
    let first_id = consumer.consumer_ids()["/default/t"];
    node.stop().await;
    let _node = Node::start(&network, storage).await;
    producer
        .send("after")
        .await
        .expect("sent after the restart");
    let after = next(&mut consumer).await;
    assert_eq!(text(&after), "after");
    after.ack().await.expect("acked on the new node");
    assert_ne!(
        consumer.consumer_ids()["/default/t"],
        first_id,
        "subscribed anew"
    );
}

#[tokio::test]
async fn over_loopback_tcp_a_message_goes_from_producer_to_consumer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let config = BrokerConfig::new(NodeUrls::same(&url).expect("valid"));
    let server = BrokerServer::open(Arc::new(MemoryStreamStorage::new()), config)
        .await
        .expect("open");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(server.serve_with_incoming(
        tonic::transport::server::TcpIncoming::from(listener),
        async {
            let _ = stopped.await;
        },
    ));
    let client = BrokerClient::builder()
        .service_url(&url)
        .build()
        .await
        .expect("client");
    let producer = client
        .producer("/default/tcp")
        .name("p")
        .reliable()
        .create()
        .await
        .expect("created");
    let mut consumer = client
        .consumer("/default/tcp")
        .name("c")
        .subscription("s")
        .subscribe()
        .await
        .expect("subscribed");
    producer.send("over tcp").await.expect("sent");
    let message = next(&mut consumer).await;
    assert_eq!(text(&message), "over tcp");
    message.ack().await.expect("acked");
    consumer.close().await;
    producer.close().await;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("stopped in time")
        .expect("task")
        .expect("served");
}

#[tokio::test]
async fn a_key_shared_subscription_keeps_each_key_on_one_consumer() {
    let (_network, _storage, _node, client) = setup().await;
    let producer = client
        .producer("/default/keys")
        .name("p")
        .reliable()
        .create()
        .await
        .expect("created");
    let subscribe = |name: &'static str| {
        client
            .consumer("/default/keys")
            .name(name)
            .subscription("ks")
            .key_shared()
            .subscribe()
    };
    let mut first = subscribe("c1").await.expect("subscribed");
    let mut second = subscribe("c2").await.expect("subscribed");
    for i in 0..20 {
        producer
            .send(format!("m{i}"))
            .key(format!("k{}", i % 4))
            .await
            .expect("sent");
    }
    let mut owner: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
    for _ in 0..20 {
        let (message, who) = tokio::select! {
            m = next(&mut first) => (m, "c1"),
            m = next(&mut second) => (m, "c2"),
        };
        message.ack().await.expect("acked");
        let key = message.key().expect("keyed").to_owned();
        let previous = owner.insert(key.clone(), who);
        assert!(
            previous.is_none_or(|p| p == who),
            "{key} went to {previous:?} and {who}"
        );
    }
    assert_eq!(owner.len(), 4, "{owner:?}");
}
