//! `courier broker` as a process on embedded SQLite: producers create topics and send over
//! real TCP, a SIGKILL loses no acknowledged message, producers re-attach after the restart,
//! offsets stay dense, SIGTERM exits cleanly, promptly even with a metrics scrape
//! half-sent, and `--keep-alive` closes a connection whose pings go unanswered.

use std::path::Path;
use std::time::Duration;

use courier::StreamStorage;
use courier::broker::catalog::{decode_record, topic_log_stream};
use courier::broker::topic::TopicName;
use courier::impls::grpc::GrpcChannel;
use courier::impls::grpc::proto::danube::discovery_client::DiscoveryClient;
use courier::impls::grpc::proto::danube::producer_service_client::ProducerServiceClient;
use courier::impls::grpc::proto::danube::topic_lookup_response::LookupType;
use courier::impls::grpc::proto::danube::{
    DispatchStrategy, MsgId, ProducerAccessMode, ProducerRequest, StreamMessage, TopicLookupRequest,
};
use courier::impls::grpc::{ChannelOptions, GrpcChannels};
use courier::impls::sqlite::{SqliteStorageConfig, SqliteStreamStorage};
use courier::storage::ReadLimits;
use tokio::process::Child;

#[path = "broker/node.rs"]
mod node;
use node::{free_port, metrics_port, start_broker, url};

const TOPIC: &str = "/default/cli-orders";

/// Starts `courier broker` on `port` over the SQLite file `db`.
async fn start(port: u16, db: &Path, log: &Path) -> Child {
    let storage = format!("sqlite:{}", db.display());
    start_broker(port, &["--storage", &storage], log).await
}

fn producers(port: u16) -> ProducerServiceClient<GrpcChannel> {
    let channels = GrpcChannels::new(ChannelOptions::default());
    ProducerServiceClient::new(channels.channel(&url(port)).expect("channel"))
}

fn message(producer_id: u64, request_id: u64) -> StreamMessage {
    StreamMessage {
        request_id,
        msg_id: Some(MsgId {
            producer_id,
            topic_name: TOPIC.into(),
            ..MsgId::default()
        }),
        payload: format!("m{request_id}").into_bytes().into(),
        producer_name: "p1".into(),
        ..StreamMessage::default()
    }
}

async fn send(port: u16, producer_id: u64, request_id: u64) {
    let response = producers(port)
        .send_message(message(producer_id, request_id))
        .await
        .expect("acknowledged")
        .into_inner();
    assert_eq!(response.request_id, request_id);
}

/// SIGTERM, then wait (at most 15 s) for the exit status.
async fn terminate(mut child: Child) -> bool {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
        Ok(Ok(status)) => status.success(),
        _ => {
            let _ = child.kill().await;
            false
        }
    }
}

#[tokio::test]
async fn acknowledged_messages_survive_sigkill_and_producers_reattach() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("broker.db");
    let log = dir.path().join("broker.log");
    let port = free_port();
    let mut child = start(port, &db, &log).await;
    let created = producers(port)
        .create_producer(ProducerRequest {
            request_id: 5,
            producer_name: "p1".into(),
            topic_name: TOPIC.into(),
            schema_ref: None,
            producer_access_mode: ProducerAccessMode::Shared.into(),
            dispatch_strategy: DispatchStrategy::Reliable.into(),
        })
        .await
        .expect("created")
        .into_inner();
    assert_eq!(created.request_id, 5);
    let id = created.producer_id;
    for request_id in 0..3 {
        send(port, id, request_id).await;
    }
    child.kill().await.expect("SIGKILL");

    let child = start(port, &db, &log).await;
    let channels = GrpcChannels::new(ChannelOptions::default());
    let lookup = DiscoveryClient::new(channels.channel(&url(port)).expect("channel"))
        .topic_lookup(TopicLookupRequest {
            request_id: 2,
            topic: TOPIC.into(),
        })
        .await
        .expect("the topic survived")
        .into_inner();
    assert_eq!(lookup.response_type(), LookupType::Connect);
    assert_eq!(lookup.connect_url, url(port));
    send(port, id, 3).await;
    assert!(
        terminate(child).await,
        "SIGTERM exits cleanly\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let storage = SqliteStreamStorage::connect(&db, SqliteStorageConfig::default())
        .await
        .expect("sqlite");
    let stream = topic_log_stream(&TopicName::new(TOPIC).expect("valid"));
    let batch = storage
        .read(&stream, None, ReadLimits::default())
        .await
        .expect("log");
    let stored: Vec<(u64, Vec<u8>)> = batch
        .records
        .iter()
        .map(|record| {
            let message = decode_record(&record.data).expect("a StreamMessage");
            let offset = message.msg_id.expect("msg_id").topic_offset;
            (offset, message.payload.to_vec())
        })
        .collect();
    let expected: Vec<(u64, Vec<u8>)> = (0..4).map(|i| (i, format!("m{i}").into_bytes())).collect();
    assert_eq!(
        stored, expected,
        "every acknowledged message, dense offsets"
    );
}

#[tokio::test]
async fn sigterm_exits_promptly_while_a_metrics_scrape_is_half_sent() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("broker.log");
    let storage = format!("sqlite:{}", dir.path().join("broker.db").display());
    let args = ["--storage", &storage, "--metrics-addr", "127.0.0.1:0"];
    let child = start_broker(free_port(), &args, &log).await;
    // A scraper that sent half a request and went quiet: the stop must not wait for it.
    let mut scraper = tokio::net::TcpStream::connect(("127.0.0.1", metrics_port(&log)))
        .await
        .expect("metrics endpoint");
    scraper
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: broker\r\n")
        .await
        .expect("half a request");
    let stopped_at = std::time::Instant::now();
    assert!(
        terminate(child).await,
        "SIGTERM exits cleanly\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let took = stopped_at.elapsed();
    assert!(took < Duration::from_secs(10), "exited after {took:?}");
    drop(scraper);
}

/// `--keep-alive 1s` reaches the server: a client that opens an HTTP/2 connection and then
/// answers nothing is pinged and, its ping unanswered, closed within seconds (the default
/// would wait 20 s before the first ping).
#[tokio::test]
async fn keep_alive_flag_pings_and_closes_a_silent_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("broker.log");
    let storage = format!("sqlite:{}", dir.path().join("broker.db").display());
    let port = free_port();
    let args = ["--storage", &storage, "--keep-alive", "1s"];
    let child = start_broker(port, &args, &log).await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // The preface and an empty SETTINGS frame, then silence: no ACK, no PING answer.
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("preface");
    let opened_at = std::time::Instant::now();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut received))
        .await
        .expect("the broker closes the silent connection within 10 s")
        .expect("read");
    let closed_after = opened_at.elapsed();
    // The frames the broker sent: 9-byte headers (length, type, flags, stream), then payload.
    let mut frame_types = Vec::new();
    let mut rest = &received[..];
    while rest.len() >= 9 {
        let length = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        frame_types.push(rest[3]);
        rest = &rest[(9 + length).min(rest.len())..];
    }
    const PING: u8 = 0x6;
    assert!(
        frame_types.contains(&PING),
        "pinged before the close; frame types {frame_types:?}"
    );
    assert!(
        closed_after >= Duration::from_secs(1),
        "closed after {closed_after:?}, before a ping was due"
    );
    assert!(terminate(child).await, "SIGTERM exits cleanly");
}
