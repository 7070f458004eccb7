//! Courier's send stream (`ProduceStreamService/SendMessages`) end to end: our client against
//! the real [`BrokerServer`] in-process (memory storage), the RPCs it makes counted from the
//! broker's `rpc` spans.

mod support;

use std::collections::HashMap;
use std::future::IntoFuture;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use courier_broker::client::{BrokerClient, BrokerClientBuilder};
use courier_broker::directory::NodeUrls;
use courier_broker::server::{BrokerConfig, BrokerServer, ServeError};
use courier_impls::grpc::{InProcessNetwork, InProcessStream};
use courier_impls::memory::MemoryStreamStorage;
use courier_impls::retry::LinearBackoff;
use courier_traits::error::Classify;
use courier_traits::storage::StreamStorage;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;

const HERE: &str = "http://broker.test:6650";
const SEND_MESSAGE: &str = "/danube.ProducerService/SendMessage";
const SEND_MESSAGES: &str = "/courier_broker.ProduceStreamService/SendMessages";

/// An `rpc` span's `path`, and its `via` (set on the messages of a send stream).
type Span = (String, Option<String>);

/// The RPCs the broker served, from its `rpc` spans: the calls' own (path only) and each
/// message of a send stream (path SendMessage, `via` SendMessages).
#[derive(Clone, Default)]
struct Rpcs {
    seen: Arc<Mutex<Vec<Span>>>,
    next_id: Arc<AtomicU64>,
}

impl Rpcs {
    /// Calls of `path` made as calls (not messages of a stream).
    fn calls(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(p, via)| p == path && via.is_none())
            .count()
    }

    /// Messages handled as a SendMessage inside a send stream.
    fn streamed(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(p, via)| p == SEND_MESSAGE && via.is_some())
            .count()
    }
}

#[derive(Default)]
struct Fields {
    path: Option<String>,
    via: Option<String>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "path" => self.path = Some(format!("{value:?}").trim_matches('"').to_owned()),
            "via" => self.via = Some(format!("{value:?}").trim_matches('"').to_owned()),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "path" => self.path = Some(value.to_owned()),
            "via" => self.via = Some(value.to_owned()),
            _ => {}
        }
    }
}

impl tracing::Subscriber for Rpcs {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        if span.metadata().name() == "rpc" {
            let mut fields = Fields::default();
            span.record(&mut fields);
            if let Some(path) = fields.path {
                self.seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((path, fields.via));
            }
        }
        tracing::span::Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// What the test does to the connections a node accepted.
#[derive(Default)]
struct Link {
    /// The node reads nothing more: what the client sends is dropped (counted).
    swallow: AtomicBool,
    swallowed: AtomicUsize,
    /// Reads and writes fail: the node drops the connection.
    cut: AtomicBool,
    reader: Mutex<Option<Waker>>,
}

impl Link {
    fn wake(&self) {
        if let Some(waker) = self
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            waker.wake();
        }
    }
}

/// A connection the node accepted, breakable by the test.
struct Breakable {
    inner: InProcessStream,
    link: Arc<Link>,
}

impl AsyncRead for Breakable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        *self
            .link
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        loop {
            if self.link.cut.load(Ordering::SeqCst) {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            if !self.link.swallow.load(Ordering::SeqCst) {
                return Pin::new(&mut self.inner).poll_read(cx, buf);
            }
            let mut scratch = [0u8; 4096];
            let mut dropped = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut dropped) {
                Poll::Ready(Ok(())) if dropped.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    self.link
                        .swallowed
                        .fetch_add(dropped.filled().len(), Ordering::SeqCst);
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for Breakable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.link.cut.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Breakable {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

/// A broker node served in-process at [`HERE`] over breakable connections.
struct Node {
    links: Arc<Mutex<Vec<Arc<Link>>>>,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<Result<(), ServeError>>,
}

impl Node {
    async fn start(
        network: &InProcessNetwork,
        storage: Arc<dyn StreamStorage>,
        config: BrokerConfig,
    ) -> Node {
        let server = BrokerServer::open(storage, config).await.expect("open");
        let links: Arc<Mutex<Vec<Arc<Link>>>> = Arc::default();
        let accepted = links.clone();
        let incoming = network.listen(HERE).expect("listen").map(move |stream| {
            stream.map(|inner| {
                let link = Arc::new(Link::default());
                accepted
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(link.clone());
                Breakable { inner, link }
            })
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(server.serve_with_incoming(incoming, async {
            let _ = stopped.await;
        }));
        Node {
            links,
            stop: Some(stop),
            served,
        }
    }

    fn links(&self) -> Vec<Arc<Link>> {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.served.abort();
    }
}

/// A client of the node at [`HERE`], with short retry steps, as `tune` leaves it.
async fn client(
    network: &InProcessNetwork,
    tune: impl FnOnce(BrokerClientBuilder) -> BrokerClientBuilder,
) -> BrokerClient {
    tune(
        BrokerClient::builder()
            .service_url(HERE)
            .in_process(network.clone())
            .retry(LinearBackoff::new(Duration::from_millis(10)))
            .health_interval(Duration::from_millis(50)),
    )
    .build()
    .await
    .expect("client")
}

/// The payloads stored in `topic`'s log, in offset order.
async fn stored(storage: &dyn StreamStorage, topic: &str) -> Vec<String> {
    support::log::stored(storage, topic)
        .await
        .iter()
        .map(|message| String::from_utf8_lossy(&message.payload).into_owned())
        .collect()
}

/// A node on fresh memory storage (with `config`), a client of it, and the RPC record.
async fn setup(
    config: impl FnOnce(&mut BrokerConfig),
) -> (Arc<dyn StreamStorage>, Node, BrokerClient, Rpcs) {
    setup_tuned(config, |builder| builder).await
}

/// [`setup`] with the client's builder as `tune` leaves it.
async fn setup_tuned(
    config: impl FnOnce(&mut BrokerConfig),
    tune: impl FnOnce(BrokerClientBuilder) -> BrokerClientBuilder,
) -> (Arc<dyn StreamStorage>, Node, BrokerClient, Rpcs) {
    let network = InProcessNetwork::new();
    let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
    let mut settings = BrokerConfig::new(NodeUrls::same(HERE).expect("valid"));
    config(&mut settings);
    let node = Node::start(&network, storage.clone(), settings).await;
    let client = client(&network, tune).await;
    (storage, node, client, Rpcs::default())
}

/// Each payload's count in `payloads`.
fn counts(payloads: &[String]) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for payload in payloads {
        *counts.entry(payload.as_str()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn sends_over_the_stream_are_stored_once_each_in_order() {
    let (storage, _node, client, rpcs) = setup(|_| {}).await;
    let _record = courier_testkit::logs::set_default_subscriber(rpcs.clone());
    let producer = client
        .producer("/default/s")
        .name("p")
        .reliable()
        .create()
        .await
        .expect("created");
    let mut sequences = Vec::new();
    for i in 0..20 {
        sequences.push(producer.send(format!("one-{i}")).await.expect("sent"));
    }
    let together = (0..40).map(|i| producer.send(format!("many-{i}")).into_future());
    sequences.extend(
        futures::future::try_join_all(together)
            .await
            .expect("all sent"),
    );
    let mut distinct = sequences.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 60, "each send has its own sequence id");

    let payloads = stored(storage.as_ref(), "/default/s").await;
    assert_eq!(payloads.len(), 60, "{payloads:?}");
    let expected: Vec<String> = (0..20).map(|i| format!("one-{i}")).collect();
    assert_eq!(payloads[..20], expected[..], "sequential sends in order");
    assert!(
        counts(&payloads).values().all(|&n| n == 1),
        "each stored once"
    );
    assert_eq!(rpcs.calls(SEND_MESSAGES), 1, "one stream for the producer");
    assert_eq!(rpcs.streamed(), 60);
    assert_eq!(rpcs.calls(SEND_MESSAGE), 0, "no unary SendMessage");

    producer.close().await;
    assert_eq!(client.running_tasks(), 0, "close() leaves no task running");
}

/// The producers of one client share one send stream to a broker. Their request ids collide
/// (each producer counts its own from 0), and every answer still reaches its own send: none is
/// lost (which a retry would turn into a message stored twice) or crossed.
#[tokio::test]
async fn producers_of_one_client_share_one_stream_and_get_their_own_answers() {
    let (storage, _node, client, rpcs) = setup(|_| {}).await;
    let _record = courier_testkit::logs::set_default_subscriber(rpcs.clone());
    let producer = |topic: &'static str| client.producer(topic).name("p").reliable().create();
    let first = producer("/default/s1").await.expect("created");
    let second = producer("/default/s2").await.expect("created");
    let sends = (0..20).flat_map(|i| {
        [
            first.send(format!("a-{i}")).into_future(),
            second.send(format!("b-{i}")).into_future(),
        ]
    });
    let sequences = futures::future::try_join_all(sends)
        .await
        .expect("all sent");
    for (producer, name) in [(0, "first"), (1, "second")] {
        let mut own: Vec<u64> = sequences
            .iter()
            .skip(producer)
            .step_by(2)
            .copied()
            .collect();
        own.sort_unstable();
        let from = own[0];
        assert_eq!(
            own,
            (from..from + 20).collect::<Vec<u64>>(),
            "{name}: its own ids, once each"
        );
    }
    for (topic, prefix) in [("/default/s1", "a-"), ("/default/s2", "b-")] {
        let payloads = stored(storage.as_ref(), topic).await;
        assert_eq!(payloads.len(), 20, "{topic}: {payloads:?}");
        assert!(
            payloads.iter().all(|p| p.starts_with(prefix)),
            "{payloads:?}"
        );
        assert!(counts(&payloads).values().all(|&n| n == 1), "{payloads:?}");
    }
    assert_eq!(
        client.running_tasks(),
        3,
        "a health check per producer and one stream reader"
    );
    assert_eq!(
        rpcs.calls(SEND_MESSAGES),
        1,
        "one stream for both producers"
    );

    first.close().await;
    second
        .send("b-last")
        .await
        .expect("the stream serves the other producer on");
    second.close().await;
    assert_eq!(
        client.running_tasks(),
        0,
        "the last producer's close stops the reader"
    );
}

#[tokio::test]
async fn per_message_errors_reach_their_own_sender() {
    let (storage, _node, client, rpcs) =
        setup(|config| config.producer.max_message_bytes = 2_048).await;
    let _record = courier_testkit::logs::set_default_subscriber(rpcs.clone());
    let producer = client
        .producer("/default/e")
        .name("p")
        .reliable()
        .create()
        .await
        .expect("created");
    // Small and too large messages interleaved on the one stream, all in flight together.
    let sends = (0..30).map(|i| {
        let payload = if i % 3 == 0 {
            format!("big-{i}-{}", "x".repeat(4_096))
        } else {
            format!("ok-{i}")
        };
        producer.send(payload).into_future()
    });
    let answers = futures::future::join_all(sends).await;
    for (i, answer) in answers.iter().enumerate() {
        if i % 3 == 0 {
            let error = answer.as_ref().expect_err("over max_message_bytes");
            assert_eq!(error.code(), Some(Code::InvalidArgument), "{i}: {error}");
            assert!(!error.is_retryable());
            assert!(error.to_string().contains("SendMessage"), "{error}");
        } else {
            answer.as_ref().expect("a small one is stored");
        }
    }
    let payloads = stored(storage.as_ref(), "/default/e").await;
    let mut expected: Vec<String> = (0..30)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("ok-{i}"))
        .collect();
    let mut got = payloads.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!(
        rpcs.calls(SEND_MESSAGE),
        0,
        "every message went on the stream"
    );
    assert_eq!(rpcs.streamed(), 30);
}

#[tokio::test]
async fn a_stream_broken_mid_flight_loses_and_duplicates_nothing() {
    let (storage, node, client, rpcs) = setup(|_| {}).await;
    let _record = courier_testkit::logs::set_default_subscriber(rpcs.clone());
    let producer = Arc::new(
        client
            .producer("/default/b")
            .name("p")
            .reliable()
            .create()
            .await
            .expect("created"),
    );
    for i in 0..10 {
        producer.send(format!("before-{i}")).await.expect("sent");
    }
    // The node stops reading: the next sends leave the client and are never handled.
    let links = node.links();
    for link in &links {
        link.swallow.store(true, Ordering::SeqCst);
    }
    let in_flight: Vec<_> = (0..5)
        .map(|i| {
            let producer = producer.clone();
            tokio::spawn(async move { producer.send(format!("during-{i}")).await })
        })
        .collect();
    let swallowed = || {
        links
            .iter()
            .map(|l| l.swallowed.load(Ordering::SeqCst))
            .sum::<usize>()
    };
    for _ in 0..1_000 {
        if swallowed() >= 5 * "during-0".len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        swallowed() >= 5 * "during-0".len(),
        "the sends left the client"
    );
    // Then the connection breaks under them.
    for link in &links {
        link.cut.store(true, Ordering::SeqCst);
        link.wake();
    }
    for send in in_flight {
        send.await
            .expect("task")
            .expect("sent again on a new stream");
    }
    for i in 0..10 {
        producer.send(format!("after-{i}")).await.expect("sent");
    }

    let payloads = stored(storage.as_ref(), "/default/b").await;
    assert_eq!(payloads.len(), 25, "{payloads:?}");
    assert!(
        counts(&payloads).values().all(|&n| n == 1),
        "nothing stored twice: {payloads:?}"
    );
    let before: Vec<String> = (0..10).map(|i| format!("before-{i}")).collect();
    let after: Vec<String> = (0..10).map(|i| format!("after-{i}")).collect();
    assert_eq!(payloads[..10], before[..]);
    assert_eq!(payloads[15..], after[..]);
    assert!(
        rpcs.calls(SEND_MESSAGES) >= 2,
        "the sends went again on a new stream"
    );
    assert_eq!(rpcs.calls(SEND_MESSAGE), 0);
    producer.close().await;
    assert_eq!(client.running_tasks(), 0);
}

/// A node that stops answering (its connection reads nothing more) fails a send within the
/// client's call deadline on each attempt, the stream's opening included, instead of holding
/// it; once the connection breaks, sends go on over a new one.
#[tokio::test]
async fn a_stalled_stream_fails_its_send_in_time_and_a_new_one_takes_over() {
    let (storage, node, client, _rpcs) = setup_tuned(
        |_| {},
        |builder| {
            builder
                .call_timeout(Duration::from_millis(200))
                .retry(LinearBackoff::new(Duration::from_millis(10)).max_retries(1))
        },
    )
    .await;
    let producer = client
        .producer("/default/stall")
        .name("p")
        .reliable()
        .create()
        .await
        .expect("created");
    producer.send("before").await.expect("sent");
    let links = node.links();
    for link in &links {
        link.swallow.store(true, Ordering::SeqCst);
    }
    let stalled = tokio::time::timeout(Duration::from_secs(20), producer.send("lost"))
        .await
        .expect("the send ends within its attempts' deadlines")
        .expect_err("nothing answers");
    assert!(stalled.is_retryable(), "{stalled}");
    for link in &links {
        link.cut.store(true, Ordering::SeqCst);
        link.wake();
    }
    producer
        .send("after")
        .await
        .expect("sent on a new connection");
    assert_eq!(
        stored(storage.as_ref(), "/default/stall").await,
        ["before", "after"]
    );
    producer.close().await;
    assert_eq!(client.running_tasks(), 0);
}
