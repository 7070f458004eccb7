//! B8: two `courier broker --cluster true` processes on one Redis and on one Postgres (testkit
//! servers, loopback): the owner answers lookups `Connect` and the other `Redirect`; the other
//! refuses producers `Unavailable`; an owner stopped (SIGSTOP) past its lease has its topic
//! claimed by the other, and on waking (SIGCONT) answers health `CLOSE` and redirects; an
//! owner killed (SIGKILL) has its topic claimed back after the lease.

use std::path::Path;
use std::time::Duration;

use courier::impls::grpc::proto::danube::discovery_client::DiscoveryClient;
use courier::impls::grpc::proto::danube::health_check_client::HealthCheckClient;
use courier::impls::grpc::proto::danube::health_check_request::ClientType;
use courier::impls::grpc::proto::danube::health_check_response::ClientStatus;
use courier::impls::grpc::proto::danube::producer_service_client::ProducerServiceClient;
use courier::impls::grpc::proto::danube::topic_lookup_response::LookupType;
use courier::impls::grpc::proto::danube::{
    DispatchStrategy, HealthCheckRequest, MsgId, ProducerAccessMode, ProducerRequest,
    StreamMessage, TopicLookupRequest, TopicLookupResponse,
};
use courier_testkit::fixtures::{Postgres, Redis};
use tokio::process::Child;

#[path = "broker/node.rs"]
mod node;
use node::{channel, free_port, start_broker, url};

const TOPIC: &str = "/default/cluster-orders";
/// Short so the takeover is seen within the test's bounds; renewals well inside it.
const LEASE: &str = "1500ms";
const RENEW_EVERY: &str = "250ms";

/// Starts a cluster node on `port` over `storage`.
async fn start(port: u16, storage: &str, log: &Path) -> Child {
    let args = ["--storage", storage, "--cluster", "true"];
    let timing = ["--lease", LEASE, "--renew-every", RENEW_EVERY];
    start_broker(port, &[&args[..], &timing[..]].concat(), log).await
}

async fn lookup(port: u16) -> TopicLookupResponse {
    DiscoveryClient::new(channel(port))
        .topic_lookup(TopicLookupRequest {
            request_id: 3,
            topic: TOPIC.into(),
        })
        .await
        .expect("lookup")
        .into_inner()
}

async fn create(port: u16) -> Result<u64, tonic::Status> {
    let response = ProducerServiceClient::new(channel(port))
        .create_producer(ProducerRequest {
            request_id: 2,
            producer_name: "p1".into(),
            topic_name: TOPIC.into(),
            schema_ref: None,
            producer_access_mode: ProducerAccessMode::Shared.into(),
            dispatch_strategy: DispatchStrategy::Reliable.into(),
        })
        .await?;
    Ok(response.into_inner().producer_id)
}

async fn send(port: u16, producer_id: u64) -> Result<(), tonic::Status> {
    let message = StreamMessage {
        request_id: 4,
        msg_id: Some(MsgId {
            producer_id,
            topic_name: TOPIC.into(),
            ..MsgId::default()
        }),
        payload: b"m".to_vec().into(),
        producer_name: "p1".into(),
        ..StreamMessage::default()
    };
    ProducerServiceClient::new(channel(port))
        .send_message(message)
        .await
        .map(|_| ())
}

async fn producer_health(port: u16, producer_id: u64) -> i32 {
    HealthCheckClient::new(channel(port))
        .health_check(HealthCheckRequest {
            request_id: 5,
            client: ClientType::Producer.into(),
            id: producer_id,
        })
        .await
        .expect("health")
        .into_inner()
        .status
}

/// Polls `check` every 100 ms for at most `limit`; panics naming `what` if it never holds.
async fn until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {limit:?}");
}

fn signal(child: &Child, signal: i32) {
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .expect("running");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, signal) };
}

async fn two_nodes_share_topics(storage: &str, dir: &Path) {
    let (a_port, b_port) = (free_port(), free_port());
    let log = dir.join("brokers.log");
    let a = start(a_port, storage, &log).await;
    let mut b = start(b_port, storage, &log).await;

    let producer_id = create(a_port)
        .await
        .expect("a creates the topic and claims it");
    send(a_port, producer_id).await.expect("a serves it");
    let at_a = lookup(a_port).await;
    assert_eq!(at_a.response_type, i32::from(LookupType::Connect));
    assert_eq!(at_a.connect_url, url(a_port));
    let at_b = lookup(b_port).await;
    assert_eq!(at_b.response_type, i32::from(LookupType::Redirect));
    assert_eq!(
        (
            at_b.broker_url.as_str(),
            at_b.connect_url.as_str(),
            at_b.proxy
        ),
        (url(a_port).as_str(), url(a_port).as_str(), false)
    );
    let refused = create(b_port).await.expect_err("b does not serve it");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let refused = send(b_port, producer_id)
        .await
        .expect_err("b does not serve it");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(
        producer_health(a_port, producer_id).await,
        i32::from(ClientStatus::Ok)
    );

    // a stops renewing (paused): after its lease b's lookup claims the topic.
    signal(&a, libc::SIGSTOP);
    until(
        "b claims after a's lease",
        Duration::from_secs(15),
        || async { lookup(b_port).await.response_type == i32::from(LookupType::Connect) },
    )
    .await;
    send(b_port, producer_id).await.expect("b serves it now");
    // a wakes: its next renewal sees b's newer claim.
    signal(&a, libc::SIGCONT);
    until("a answers CLOSE", Duration::from_secs(10), || async {
        producer_health(a_port, producer_id).await == i32::from(ClientStatus::Close)
    })
    .await;
    let at_a = lookup(a_port).await;
    assert_eq!(at_a.response_type, i32::from(LookupType::Redirect));
    assert_eq!(at_a.connect_url, url(b_port));
    let refused = send(a_port, producer_id)
        .await
        .expect_err("a no longer serves it");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    // b killed: a claims the topic back once b's lease runs out.
    b.kill().await.expect("kill -9 b");
    until(
        "a claims after b's lease",
        Duration::from_secs(15),
        || async { lookup(a_port).await.response_type == i32::from(LookupType::Connect) },
    )
    .await;
    create(a_port).await.expect("a serves it again");
    send(a_port, producer_id).await.expect("a serves it again");
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b8_two_nodes_on_one_redis() {
    let redis = Redis::start().await.expect("redis fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    two_nodes_share_topics(&redis.url(), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b8_two_nodes_on_one_postgres() {
    let postgres = Postgres::start().await.expect("postgres fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    two_nodes_share_topics(&postgres.url(), dir.path()).await;
}
