//! Connections that go silent are closed.
//!
//! - A client whose host vanishes (no FIN, no RST: power lost, network dropped) is noticed by
//!   the broker's HTTP/2 pings: its connection is closed, its consumer stream ends, and the
//!   reliable message it held unacked goes to another consumer at once, not after the ack
//!   timeout. An Exclusive subscription it held passes to a consumer of another name. The
//!   vanishing is a TCP proxy that stops moving bytes and keeps its sockets open.
//! - A connection that never sends its HTTP/2 preface is closed 30 s after it was accepted.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use courier_impls::grpc::proto::danube::consumer_request::SubscriptionType;
use courier_impls::grpc::proto::danube::consumer_service_client::ConsumerServiceClient;
use courier_impls::grpc::proto::danube::producer_service_client::ProducerServiceClient;
use courier_impls::grpc::proto::danube::{ConsumerRequest, ReceiveRequest, StreamMessage};
use support::messages::{reliable_producer, stream_message};
use support::node::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::Streaming;
use tonic::transport::Channel;

const TOPIC: &str = "/default/vanishing";
/// Pings every 200 ms, a connection closed after 200 ms without an answer.
const KEEP_ALIVE: Duration = Duration::from_millis(200);
/// Far above twice the keep-alive, far below the 30 s ack timeout.
const NOTICED_WITHIN: Duration = Duration::from_secs(5);
const BOUND: Duration = Duration::from_secs(10);

/// A TCP proxy to `upstream` that moves bytes until `freeze` is set to true, then moves none
/// and keeps every socket open, as a vanished host would.
struct FreezableProxy {
    addr: SocketAddr,
    freeze: watch::Sender<bool>,
    _tasks: JoinSet<()>,
}

impl FreezableProxy {
    async fn start(upstream: SocketAddr) -> FreezableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (freeze, frozen) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut pumps = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                pumps.spawn(pump(client_read, server_write, frozen.clone()));
                pumps.spawn(pump(server_read, client_write, frozen.clone()));
            }
        });
        FreezableProxy {
            addr,
            freeze,
            _tasks: tasks,
        }
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut frozen: watch::Receiver<bool>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = from.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            },
            () = async { drop(frozen.wait_for(|frozen| *frozen).await) } => {
                // Hold both sockets, move nothing.
                std::future::pending::<()>().await;
            }
        }
    }
}

async fn channel(url: String) -> Channel {
    Channel::from_shared(url)
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

async fn subscribe(channel: &Channel, name: &str) -> Streaming<StreamMessage> {
    try_subscribe(channel, name, SubscriptionType::Shared)
        .await
        .expect("subscribed")
}

/// Consumer `name` on the topic's subscription of `kind`, receiving; the broker's refusal as
/// is.
async fn try_subscribe(
    channel: &Channel,
    name: &str,
    kind: SubscriptionType,
) -> Result<Streaming<StreamMessage>, tonic::Status> {
    let mut consumers = ConsumerServiceClient::new(channel.clone());
    let consumer_id = consumers
        .subscribe(ConsumerRequest {
            request_id: 1,
            topic_name: TOPIC.into(),
            consumer_name: name.into(),
            subscription: format!("{kind:?}").to_lowercase(),
            subscription_type: kind.into(),
            key_filters: Vec::new(),
        })
        .await?
        .into_inner()
        .consumer_id;
    Ok(consumers
        .receive_messages(ReceiveRequest {
            request_id: 2,
            consumer_id,
        })
        .await
        .expect("stream")
        .into_inner())
}

/// A reliable producer on the topic (creating the topic).
async fn producer(channel: &Channel) -> u64 {
    ProducerServiceClient::new(channel.clone())
        .create_producer(reliable_producer(TOPIC, "p", 3))
        .await
        .expect("producer")
        .into_inner()
        .producer_id
}

async fn send(channel: &Channel, producer_id: u64, payload: &str) {
    ProducerServiceClient::new(channel.clone())
        .send_message(stream_message(TOPIC, producer_id, "p", 4, payload))
        .await
        .expect("sent");
}

async fn next(stream: &mut Streaming<StreamMessage>, within: Duration) -> StreamMessage {
    tokio::time::timeout(within, stream.message())
        .await
        .expect("a delivery in time")
        .expect("no error")
        .expect("the stream goes on")
}

/// A node pinging every `keep_alive`, a channel straight to it, and one through a proxy that
/// can vanish.
async fn behind_a_proxy(keep_alive: Duration) -> (Node, Channel, FreezableProxy, Channel) {
    let node = Node::start("http", |config| config.keep_alive = keep_alive).await;
    let broker: SocketAddr = node
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let direct = channel(node.url.clone()).await;
    let proxy = FreezableProxy::start(broker).await;
    let vanishing = channel(format!("http://{}", proxy.addr)).await;
    (node, direct, proxy, vanishing)
}

#[tokio::test]
async fn an_unacked_message_of_a_consumer_whose_host_vanished_goes_to_another_consumer() {
    let (node, direct, proxy, vanishing) = behind_a_proxy(KEEP_ALIVE).await;

    // The only consumer gets the message and never acks it.
    let producer_id = producer(&direct).await;
    let mut first = subscribe(&vanishing, "first").await;
    send(&direct, producer_id, "held").await;
    assert_eq!(next(&mut first, BOUND).await.payload.as_ref(), b"held");

    // Its host vanishes; another consumer joins the subscription.
    proxy.freeze.send(true).expect("the proxy runs");
    let mut second = subscribe(&direct, "second").await;
    let redelivered = next(&mut second, NOTICED_WITHIN).await;
    assert_eq!(
        redelivered.payload.as_ref(),
        b"held",
        "the unacked message comes again once the vanished consumer's connection is closed"
    );
    node.stop().await;
}

/// An Exclusive subscription held by a consumer whose host vanished refuses a consumer of
/// another name only until the broker's pings find the connection dead; then the newcomer
/// takes the subscription and the message the vanished one held.
#[tokio::test]
async fn an_exclusive_subscription_held_by_a_vanished_consumer_passes_to_another() {
    // Pings every second: the first refusal below cannot race the close.
    let keep_alive = Duration::from_secs(1);
    let (node, direct, proxy, vanishing) = behind_a_proxy(keep_alive).await;

    let producer_id = producer(&direct).await;
    let mut holder = try_subscribe(&vanishing, "holder", SubscriptionType::Exclusive)
        .await
        .expect("subscribed");
    send(&direct, producer_id, "held").await;
    assert_eq!(next(&mut holder, BOUND).await.payload.as_ref(), b"held");

    proxy.freeze.send(true).expect("the proxy runs");
    let frozen_at = tokio::time::Instant::now();
    let refusal = try_subscribe(&direct, "newcomer", SubscriptionType::Exclusive)
        .await
        .expect_err("refused while the holder's connection is open");
    assert_eq!(
        refusal.code(),
        tonic::Code::FailedPrecondition,
        "{refusal:?}"
    );
    let mut newcomer = loop {
        match try_subscribe(&direct, "newcomer", SubscriptionType::Exclusive).await {
            Ok(stream) => break stream,
            Err(status) => {
                assert!(
                    frozen_at.elapsed() < NOTICED_WITHIN,
                    "still refused {:?} after the holder vanished: {status:?}",
                    frozen_at.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(
        frozen_at.elapsed() >= keep_alive,
        "taken over before a ping could have gone unanswered: {:?}",
        frozen_at.elapsed()
    );
    let redelivered = next(&mut newcomer, NOTICED_WITHIN).await;
    assert_eq!(redelivered.payload.as_ref(), b"held");
    node.stop().await;
}

/// A connection that sends nothing, or only part of the HTTP/2 preface, is closed 30 s after
/// it was accepted (paused clock).
#[tokio::test(start_paused = true)]
async fn a_connection_without_its_preface_is_closed_after_30_s() {
    let node = Node::start("http", |_| {}).await;
    let broker: SocketAddr = node
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    for sent in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
        let mut tcp = tokio::net::TcpStream::connect(broker)
            .await
            .expect("connect");
        let since = tokio::time::Instant::now();
        tcp.write_all(sent).await.expect("send");
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(300), tcp.read_to_end(&mut got))
            .await
            .expect("the broker closes the connection")
            .expect("read");
        let waited = since.elapsed();
        assert!(
            (Duration::from_secs(30)..Duration::from_secs(31)).contains(&waited),
            "sent {sent:?}: closed after {waited:?}"
        );
    }
    node.stop().await;
}
