//! The gRPC module end to end: generated Danube stubs and a small test server (Danube's
//! HealthCheck and ConsumerService traits), over loopback TCP and over the in-process network.

use std::time::Duration;

use bytes::Bytes;
use courier_traits::error::Classify;
use courier_traits::transport::{Method, Request, RequestTransport, ResponseBody};
use futures::StreamExt;
use futures::stream::BoxStream;
use prost::Message;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Status};

use super::proto::danube::consumer_service_client::ConsumerServiceClient;
use super::proto::danube::consumer_service_server::{ConsumerService, ConsumerServiceServer};
use super::proto::danube::health_check_client::HealthCheckClient;
use super::proto::danube::health_check_response::ClientStatus;
use super::proto::danube::health_check_server::{HealthCheck, HealthCheckServer};
use super::proto::danube::{
    AckRequest, AckResponse, ConsumerRequest, ConsumerResponse, HealthCheckRequest,
    HealthCheckResponse, MsgId, NackRequest, NackResponse, ReceiveRequest, StreamMessage,
};
use super::{Call, ChannelOptions, GrpcChannels, GrpcError, GrpcTransport, InProcessNetwork};

/// Health-check id the test server never answers.
const SLOW: u64 = 1_000;
/// Health-check id the test server refuses with InvalidArgument.
const REFUSE: u64 = 1_001;
/// `ReceiveRequest::request_id` asking the server to stall after its messages.
const STALL: u64 = 7;

/// Answers health checks by id, and streams `consumer_id` messages on ReceiveMessages.
struct TestService;

#[tonic::async_trait]
impl HealthCheck for TestService {
    async fn health_check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, Status> {
        let echo = request.metadata().get("x-echo").cloned();
        match request.get_ref().id {
            SLOW => futures::future::pending().await,
            REFUSE => Err(Status::invalid_argument("id 1001 is refused")),
            _ => {
                let mut response = tonic::Response::new(HealthCheckResponse {
                    status: ClientStatus::Ok.into(),
                });
                if let Some(echo) = echo {
                    response.metadata_mut().insert("x-echo", echo);
                }
                Ok(response)
            }
        }
    }
}

#[tonic::async_trait]
impl ConsumerService for TestService {
    type ReceiveMessagesStream = BoxStream<'static, Result<StreamMessage, Status>>;

    async fn receive_messages(
        &self,
        request: tonic::Request<ReceiveRequest>,
    ) -> Result<tonic::Response<Self::ReceiveMessagesStream>, Status> {
        let ReceiveRequest {
            request_id,
            consumer_id,
        } = request.into_inner();
        let messages = futures::stream::iter((0..consumer_id).map(|offset| Ok(message(offset))));
        Ok(tonic::Response::new(if request_id == STALL {
            messages.chain(futures::stream::pending()).boxed()
        } else {
            messages.boxed()
        }))
    }

    async fn subscribe(
        &self,
        _: tonic::Request<ConsumerRequest>,
    ) -> Result<tonic::Response<ConsumerResponse>, Status> {
        Err(Status::unimplemented("the test server only streams"))
    }

    async fn ack(
        &self,
        _: tonic::Request<AckRequest>,
    ) -> Result<tonic::Response<AckResponse>, Status> {
        Err(Status::unimplemented("the test server only streams"))
    }

    async fn nack(
        &self,
        _: tonic::Request<NackRequest>,
    ) -> Result<tonic::Response<NackResponse>, Status> {
        Err(Status::unimplemented("the test server only streams"))
    }
}

fn message(offset: u64) -> StreamMessage {
    StreamMessage {
        msg_id: Some(MsgId {
            topic_offset: offset,
            topic_name: "/default/t".into(),
            ..MsgId::default()
        }),
        payload: Bytes::from(format!("m{offset}")),
        ..StreamMessage::default()
    }
}

/// A running test server; dropping it aborts the server task.
struct TestServer {
    url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl TestServer {
    async fn tcp() -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        TestServer::serve(url, TcpIncoming::from(listener))
    }

    fn in_process(network: &InProcessNetwork, url: &str) -> TestServer {
        let listener = network.listen(url).expect("listen");
        TestServer::serve(url.to_owned(), listener)
    }

    fn serve<I, IO>(url: String, incoming: I) -> TestServer
    where
        I: futures::Stream<Item = Result<IO, std::io::Error>> + Send + 'static,
        IO: tokio::io::AsyncRead
            + tokio::io::AsyncWrite
            + tonic::transport::server::Connected
            + Unpin
            + Send
            + 'static,
    {
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            Server::builder()
                .add_service(HealthCheckServer::new(TestService))
                .add_service(ConsumerServiceServer::new(TestService))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        TestServer {
            url,
            shutdown: Some(shutdown),
            task,
        }
    }

    /// Stops the server gracefully (bounded), closing its connections.
    async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The two ways to reach a test server.
#[derive(Clone, Copy, Debug)]
enum Net {
    Loopback,
    InProcess,
}

const NETS: [Net; 2] = [Net::Loopback, Net::InProcess];

/// A started server and channels that reach it.
async fn setup(net: Net) -> (TestServer, GrpcChannels, InProcessNetwork) {
    let network = InProcessNetwork::new();
    match net {
        Net::Loopback => (
            TestServer::tcp().await,
            GrpcChannels::new(ChannelOptions::default()),
            network,
        ),
        Net::InProcess => (
            TestServer::in_process(&network, "http://broker.test:6650"),
            GrpcChannels::in_process(network.clone(), ChannelOptions::default()),
            network,
        ),
    }
}

async fn health(
    channels: &GrpcChannels,
    call: &Call,
    id: u64,
) -> Result<HealthCheckResponse, GrpcError> {
    let mut client = HealthCheckClient::new(channels.channel(call.url())?);
    let request = HealthCheckRequest {
        id,
        ..HealthCheckRequest::default()
    };
    call.unary(client.health_check(call.request(request))).await
}

#[tokio::test]
async fn unary_call_answers_over_both_networks() {
    for net in NETS {
        let (server, channels, _network) = setup(net).await;
        let call = Call::new(&server.url).deadline(Duration::from_secs(10));
        let answer = health(&channels, &call, 1).await.expect("health check");
        assert_eq!(answer.status(), ClientStatus::Ok, "{net:?}");
        let refused = health(&channels, &call, REFUSE).await.expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument, "{net:?}");
        assert!(!refused.is_retryable(), "{net:?}");
        server.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn deadline_exceeded_in_process_is_a_retryable_timeout() {
    let (server, channels, _network) = setup(Net::InProcess).await;
    // The clock is paused: tokio jumps to the deadline once everything waits.
    let call = Call::new(&server.url).deadline(Duration::from_secs(30));
    let error = health(&channels, &call, SLOW).await.expect_err("no answer");
    assert!(
        matches!(error, GrpcError::Timeout(d) if d == Duration::from_secs(30)),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(error.code(), Code::DeadlineExceeded);
    // The channel still works after a call timed out on it.
    let answer = health(&channels, &call, 1).await.expect("after a timeout");
    assert_eq!(answer.status(), ClientStatus::Ok);
}

#[tokio::test]
async fn deadline_exceeded_over_loopback_is_a_retryable_timeout() {
    let (server, channels, _network) = setup(Net::Loopback).await;
    // Connect first, so the deadline below measures the unanswered call alone.
    let call = Call::new(&server.url).deadline(Duration::from_secs(10));
    health(&channels, &call, 1).await.expect("warm up");
    let short = Call::new(&server.url).deadline(Duration::from_millis(200));
    let error = health(&channels, &short, SLOW)
        .await
        .expect_err("no answer");
    assert!(matches!(error, GrpcError::Timeout(_)), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn server_down_is_retryable_unavailable() {
    // Nothing listens: a port that was just freed, and an in-process URL nobody listens on.
    let free = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", free.local_addr().expect("address"));
    drop(free);
    let network = InProcessNetwork::new();
    for (channels, url) in [
        (GrpcChannels::new(ChannelOptions::default()), url),
        (
            GrpcChannels::in_process(network.clone(), ChannelOptions::default()),
            "http://nobody.test:1".to_owned(),
        ),
    ] {
        let call = Call::new(&url).deadline(Duration::from_secs(10));
        let error = health(&channels, &call, 1).await.expect_err("no server");
        assert!(
            matches!(&error, GrpcError::Connect { url: u, .. } if *u == url),
            "{error:?}"
        );
        assert!(error.is_retryable());
        assert_eq!(error.code(), Code::Unavailable);
    }
    // A server that answered once, then stopped.
    for net in NETS {
        let (server, channels, _network) = setup(net).await;
        let call = Call::new(&server.url).deadline(Duration::from_secs(10));
        health(&channels, &call, 1).await.expect("server up");
        server.stop().await;
        let error = health(&channels, &call, 1).await.expect_err("server down");
        assert!(error.is_retryable(), "{net:?}: {error:?}");
        assert_eq!(error.code(), Code::Unavailable, "{net:?}: {error:?}");
    }
}

#[tokio::test]
async fn equal_urls_share_one_channel_and_one_connection() {
    let network = InProcessNetwork::new();
    let server = TestServer::in_process(&network, "http://broker.test:6650");
    let channels = GrpcChannels::in_process(network.clone(), ChannelOptions::default());
    for spelling in [
        "http://broker.test:6650",
        "HTTP://Broker.Test:6650/",
        " http://broker.test:6650 ",
    ] {
        let call = Call::new(spelling).deadline(Duration::from_secs(10));
        health(&channels, &call, 1).await.expect(spelling);
    }
    assert_eq!(channels.urls(), ["http://broker.test:6650"]);
    assert_eq!(network.connections(), 1, "one HTTP/2 connection for all");

    // Clones share the cache; another URL gets its own channel.
    let other = TestServer::in_process(&network, "http://other.test:6650");
    let clone = channels.clone();
    let call = Call::new(&other.url).deadline(Duration::from_secs(10));
    health(&clone, &call, 1).await.expect("other server");
    assert_eq!(
        channels.urls(),
        ["http://broker.test:6650", "http://other.test:6650"]
    );
    assert_eq!(network.connections(), 2);

    // A forgotten URL is dialled anew.
    assert!(channels.forget("http://other.test:6650/"));
    assert!(!channels.forget("http://other.test:6650"));
    health(&channels, &call, 1).await.expect("new channel");
    assert_eq!(network.connections(), 3);
    server.stop().await;
    other.stop().await;
}

async fn receive(
    channels: &GrpcChannels,
    call: &Call,
    count: u64,
    request_id: u64,
) -> Vec<Result<StreamMessage, GrpcError>> {
    let mut client = ConsumerServiceClient::new(channels.channel(call.url()).expect("channel"));
    let request = ReceiveRequest {
        request_id,
        consumer_id: count,
    };
    let stream = call
        .server_streaming(client.receive_messages(call.request(request)))
        .await
        .expect("stream starts");
    // Bounded: the server sends `count` messages (and at most an error after them).
    stream.take(count as usize + 2).collect().await
}

#[tokio::test]
async fn server_stream_delivers_every_message_then_ends() {
    for net in NETS {
        let (server, channels, _network) = setup(net).await;
        let call = Call::new(&server.url).deadline(Duration::from_secs(10));
        let items = receive(&channels, &call, 5, 0).await;
        let offsets: Vec<u64> = items
            .into_iter()
            .map(|m| m.expect("message").msg_id.expect("msg_id").topic_offset)
            .collect();
        assert_eq!(offsets, [0, 1, 2, 3, 4], "{net:?}");
        let none = receive(&channels, &call, 0, 0).await;
        assert!(none.is_empty(), "{net:?}");
        server.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_server_stream_ends_with_a_timeout_at_the_deadline() {
    let (server, channels, _network) = setup(Net::InProcess).await;
    let call = Call::new(&server.url).deadline(Duration::from_secs(5));
    let items = receive(&channels, &call, 3, STALL).await;
    assert_eq!(items.len(), 4, "three messages, then the timeout");
    assert!(items[..3].iter().all(Result::is_ok));
    assert!(
        matches!(items[3], Err(GrpcError::Timeout(d)) if d == Duration::from_secs(5)),
        "{:?}",
        items[3]
    );
}

#[tokio::test]
async fn request_transport_carries_unary_and_streaming_calls_as_bytes() {
    for net in NETS {
        let (server, channels, _network) = setup(net).await;
        let transport = GrpcTransport::new(channels, &server.url)
            .expect("transport")
            .default_deadline(Some(Duration::from_secs(10)));

        let body = HealthCheckRequest {
            id: 1,
            ..HealthCheckRequest::default()
        }
        .encode_to_vec();
        let response = transport
            .send(
                Request::new(Method::Post, "/danube.HealthCheck/HealthCheck")
                    .header("x-echo", "hello")
                    .body(body),
            )
            .await
            .expect("answered");
        assert_eq!(response.status, 200, "{net:?}");
        assert_eq!(response.header("x-echo"), Some("hello"), "{net:?}");
        let bytes = response.body.collect(1 << 20).await.expect("body");
        let answer = HealthCheckResponse::decode(bytes).expect("decodes");
        assert_eq!(answer.status(), ClientStatus::Ok);

        let refused = HealthCheckRequest {
            id: REFUSE,
            ..HealthCheckRequest::default()
        };
        let response = transport
            .send(
                Request::new(Method::Post, "/danube.HealthCheck/HealthCheck")
                    .body(refused.encode_to_vec()),
            )
            .await
            .expect("a refusal is an answer");
        assert_eq!(response.status, 400, "{net:?}");
        assert_eq!(response.header("grpc-status"), Some("3"));
        assert_eq!(response.header("grpc-message"), Some("id 1001 is refused"));

        let stream = ReceiveRequest {
            request_id: 0,
            consumer_id: 3,
        };
        let response = transport
            .send(
                Request::new(Method::Post, "/danube.ConsumerService/ReceiveMessages")
                    .body(stream.encode_to_vec()),
            )
            .await
            .expect("stream starts");
        let ResponseBody::Stream(chunks) = response.body else {
            panic!("a gRPC body is a stream of messages");
        };
        let offsets: Vec<u64> = chunks
            .take(5)
            .map(|chunk| {
                let message = StreamMessage::decode(chunk.expect("chunk")).expect("decodes");
                message.msg_id.expect("msg_id").topic_offset
            })
            .collect()
            .await;
        assert_eq!(offsets, [0, 1, 2], "{net:?}");

        let unknown = transport
            .send(Request::new(Method::Post, "/danube.Nothing/Here"))
            .await
            .expect("answered");
        assert_eq!(unknown.header("grpc-status"), Some("12"), "Unimplemented");

        let get = transport
            .send(Request::new(Method::Get, "/danube.HealthCheck/HealthCheck"))
            .await
            .expect_err("gRPC is POST");
        assert!(!get.is_retryable());
        server.stop().await;
    }
}

#[test]
fn channels_outside_a_runtime_are_an_error_not_a_panic() {
    let channels = GrpcChannels::new(ChannelOptions::default());
    let error = channels
        .channel("http://127.0.0.1:1")
        .expect_err("no runtime");
    assert!(matches!(error, GrpcError::NoRuntime(_)), "{error:?}");
    assert!(channels.urls().is_empty());
}

#[tokio::test]
async fn one_live_listener_per_in_process_url() {
    let network = InProcessNetwork::new();
    let first = network.listen("http://a.test:1").expect("first");
    assert!(network.listen("HTTP://A.test:1/").is_err(), "taken");
    drop(first);
    let _second = network.listen("http://a.test:1").expect("free again");
}

/// Why plaintext channels bypass tonic's `Channel`: there, every call in flight is a task
/// (tower's `Buffer` worker hands it to hyper, which spawns one per request to await its
/// answer), so each call costs task hand-offs and wake-ups. On a direct channel the caller's
/// own task carries its call; the connection is one task whatever the number of calls.
#[test]
fn calls_in_flight_take_no_task_each() {
    // The server runs on a runtime of its own, so that the client's runtime counts only the
    // client's tasks.
    let (address_sender, address) = std::sync::mpsc::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let server = TestServer::tcp().await;
            address_sender.send(server.url.clone()).expect("send URL");
            let _ = stopped.await;
            server.stop().await;
        });
    });
    let url = address
        .recv_timeout(Duration::from_secs(30))
        .expect("server URL");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    runtime.block_on(async {
        let channels = GrpcChannels::new(ChannelOptions::default());
        let call = Call::new(&url).deadline(Duration::from_secs(30));
        health(&channels, &call, 1).await.expect("server up");
        // 20 calls the server never answers, all in flight at once (polled here, not spawned).
        let mut calls: futures::stream::FuturesUnordered<_> =
            (0..20).map(|_| health(&channels, &call, SLOW)).collect();
        let nothing = tokio::time::timeout(Duration::from_millis(300), calls.next()).await;
        assert!(nothing.is_err(), "no answer to SLOW calls");
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        assert!(
            tasks <= 1,
            "{tasks} tasks for one connection and 20 calls in flight"
        );
    });
    // Closes the connection, so the server's graceful stop need not wait for the calls.
    drop(runtime);
    let _ = stop.send(());
    server.join().expect("server thread");
}

/// A peer that stops answering (its process hung, the network dropped it) is noticed by the
/// keep-alive pings while a call is open: the call fails, as a retryable broken connection,
/// long before its own deadline.
#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_answering_is_noticed_by_keep_alive_pings() {
    let network = InProcessNetwork::new();
    let mut listener = network.listen("http://silent.test:1").expect("listen");
    // Accepts connections and never reads nor writes them.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(connection) = listener.next().await {
            held.push(connection);
        }
    });
    let options = ChannelOptions {
        keep_alive_interval: Some(Duration::from_secs(20)),
        keep_alive_timeout: Duration::from_secs(10),
        ..ChannelOptions::default()
    };
    let channels = GrpcChannels::in_process(network.clone(), options);
    let call = Call::new("http://silent.test:1").deadline(Duration::from_secs(3600));
    let started = tokio::time::Instant::now();
    let error = health(&channels, &call, 1).await.expect_err("no answer");
    let waited = started.elapsed();
    assert!(matches!(error, GrpcError::Broken { .. }), "{error:?}");
    assert!(error.is_retryable());
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(60),
        "noticed after {waited:?}"
    );
    silent.abort();
}

/// A zero keep-alive interval means no pings, for both kinds of channel (a zero period made
/// the connection's task panic on every dial, so every call failed).
#[tokio::test]
async fn a_zero_keep_alive_interval_means_no_pings() {
    let network = InProcessNetwork::new();
    let server = TestServer::in_process(&network, "http://zero.test:6650");
    let options = ChannelOptions {
        keep_alive_interval: Some(Duration::ZERO),
        ..ChannelOptions::default()
    };
    let channels = GrpcChannels::in_process(network.clone(), options);
    let call = Call::new(&server.url).deadline(Duration::from_secs(10));
    for id in 1..=3 {
        let answer = health(&channels, &call, id).await.expect("health check");
        assert_eq!(answer.status(), ClientStatus::Ok);
    }
    server.stop().await;
}
