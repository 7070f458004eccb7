//! The node's Prometheus endpoint end to end: a broker served in-process, a client producing
//! to a partitioned reliable topic, consuming, acking and nacking until a message is
//! dead-lettered, and `GET /metrics` over real loopback HTTP counting all of it.

use std::sync::Arc;
use std::time::Duration;

use courier_broker::client::BrokerClient;
use courier_broker::directory::NodeUrls;
use courier_broker::metrics;
use courier_broker::server::{BrokerConfig, BrokerServer};
use courier_impls::grpc::InProcessNetwork;
use courier_impls::memory::MemoryStreamStorage;
use courier_impls::retry::LinearBackoff;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const HERE: &str = "http://broker.test:6650";
const TOPIC: &str = "/default/metered";

/// `GET path` on `addr`: (status line, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("answered in time")
    .expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.to_owned(), body.to_owned())
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn topic_series(name: &str) -> String {
    format!("courier_broker_{name}{{topic=\"{TOPIC}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_producers_and_consumers_do() {
    let network = InProcessNetwork::new();
    let mut config = BrokerConfig::new(NodeUrls::same(HERE).expect("valid"));
    config.consumer.subscription.max_redeliveries = 1;
    config.consumer.subscription.nack_delay = Duration::from_millis(1);
    let server = BrokerServer::open(Arc::new(MemoryStreamStorage::new()), config)
        .await
        .expect("open");
    let endpoint = server.metrics_endpoint();
    let stop = CancellationToken::new();
    let served = tokio::spawn(server.serve_with_incoming(
        network.listen(HERE).expect("listen"),
        stop.clone().cancelled_owned(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let scraped = tokio::spawn(metrics::serve(
        listener,
        endpoint,
        stop.clone().cancelled_owned(),
    ));

    let client = BrokerClient::builder()
        .service_url(HERE)
        .in_process(network.clone())
        .retry(LinearBackoff::new(Duration::from_millis(10)))
        .build()
        .await
        .expect("client");
    let producer = client
        .producer(TOPIC)
        .name("p")
        .reliable()
        .partitions(2)
        .create()
        .await
        .expect("producer");
    let mut consumer = client
        .consumer(TOPIC)
        .name("c")
        .subscription("s")
        .shared()
        .subscribe()
        .await
        .expect("consumer");
    for index in 0..4 {
        producer.send(format!("m{index}")).await.expect("sent");
    }
    // Ack three; nack "m0" until it is dead-lettered (one redelivery allowed).
    let mut deliveries = 0;
    let (mut nacks, mut acks) = (0, 0);
    while nacks < 2 || acks < 3 {
        let message = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a delivery in time")
            .expect("open")
            .expect("a message");
        deliveries += 1;
        if message.payload().as_ref() == b"m0" {
            message
                .nack_with(Duration::ZERO, "test")
                .await
                .expect("nack");
            nacks += 1;
        } else {
            message.ack().await.expect("ack");
            acks += 1;
        }
    }
    assert_eq!(deliveries, 5, "four messages and one redelivery");

    let mut text = String::new();
    for _ in 0..200 {
        let (head, body) = get(addr, "/metrics").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        text = body;
        if value(&text, &topic_series("messages_dead_lettered_total")) == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expected = [
        ("messages_produced_total", 4.0),
        ("messages_delivered_total", 5.0),
        ("messages_acked_total", 3.0),
        ("messages_nacked_total", 2.0),
        ("messages_redelivered_total", 1.0),
        ("messages_dead_lettered_total", 1.0),
    ];
    for (name, count) in expected {
        assert_eq!(
            value(&text, &topic_series(name)),
            Some(count),
            "{name}\n{text}"
        );
    }
    // One producer and one consumer on each partition, a subscription per partition.
    for (gauge, count) in [
        ("producers", 2.0),
        ("consumers", 2.0),
        ("subscriptions", 2.0),
    ] {
        let series = format!("courier_broker_{gauge}");
        assert_eq!(value(&text, &series), Some(count), "{gauge}\n{text}");
    }
    assert_eq!(
        value(&text, "courier_broker_send_seconds_count"),
        Some(4.0),
        "{text}"
    );
    let (head, _) = get(addr, "/").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    consumer.close().await;
    producer.close().await;
    stop.cancel();
    scraped.await.expect("task").expect("metrics served");
    served.await.expect("task").expect("broker served");
}
