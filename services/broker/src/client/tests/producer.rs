//! Producers: retries with the policy's backoff, permanent refusals, giving up, re-lookup
//! and fallback, re-registration after CLOSE and after a spent budget, partition routing.

use courier_impls::grpc::InProcessNetwork;
use courier_impls::retry::LinearBackoff;
use courier_traits::error::{Classify, ErrorClass};
use courier_traits::retry::{RetryContext, RetryDecision, RetryPolicy};
use tonic::Code;

use super::scripted::{ScriptedBroker, URL};
use super::{client, eventually};
use crate::client::routing::fnv1a;
use crate::client::{BrokerClient, BrokerError, Producer};

/// Producer `p` on `/default/t`.
async fn create(client: &BrokerClient) -> Result<Producer, BrokerError> {
    client.producer("/default/t").name("p").create().await
}

/// The delays `policy` picks for the first `retries` retries of a transient error.
fn delays(policy: &LinearBackoff, retries: u32) -> Vec<std::time::Duration> {
    let mut previous = None;
    (1..=retries)
        .map(|attempt| {
            let context = RetryContext {
                attempt,
                elapsed: std::time::Duration::ZERO,
                previous_delay: previous,
                class: ErrorClass::TRANSIENT,
            };
            let RetryDecision::RetryAfter(delay) = policy.decide(&context) else {
                panic!("attempt {attempt}: the default policy retries 5 times");
            };
            previous = Some(delay);
            delay
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn transient_refusals_are_retried_after_the_policys_delays_with_a_lookup_each_time() {
    let broker = ScriptedBroker::start();
    broker.script.fail("CreateProducer", Code::Unavailable, 2);
    broker
        .script
        .fail("CreateProducer", Code::ResourceExhausted, 1);
    let client = client(&broker, LinearBackoff::default().seeded(7)).await;
    let producer = create(&client)
        .await
        .expect("registered on the 4th attempt");
    assert_eq!(producer.producer_ids(), [Some(1)]);

    let creates = broker.script.calls("CreateProducer");
    assert_eq!(creates.len(), 4);
    let gaps: Vec<_> = creates.windows(2).map(|w| w[1].at - w[0].at).collect();
    let expected = delays(&LinearBackoff::default().seeded(7), 3);
    assert_eq!(gaps.len(), expected.len());
    for (gap, delay) in gaps.iter().zip(&expected) {
        // tokio's timer rounds a sleep up to its next millisecond.
        assert!(
            *gap >= *delay && *gap - *delay < std::time::Duration::from_millis(1),
            "waited {gap:?}, the seeded policy says {delay:?}"
        );
    }
    // Linear steps of 200 ms times 50-100 % jitter.
    for (index, gap) in gaps.iter().enumerate() {
        let step = 200 * (index as u64 + 1);
        let millis = gap.as_millis() as u64;
        assert!(
            (step / 2..=step).contains(&millis),
            "retry {index}: {gap:?}"
        );
    }
    assert_eq!(
        broker.script.calls("TopicLookup").len(),
        4,
        "looked up before every attempt"
    );
}

#[tokio::test(start_paused = true)]
async fn refusals_other_than_the_three_try_again_codes_are_not_retried() {
    for code in [
        Code::FailedPrecondition,
        Code::Aborted,
        Code::InvalidArgument,
        Code::NotFound,
        Code::AlreadyExists,
        Code::Internal,
    ] {
        let broker = ScriptedBroker::start();
        broker.script.fail("CreateProducer", code, 1);
        let client = client(&broker, LinearBackoff::default().seeded(1)).await;
        let error = client
            .producer("/default/t")
            .name("p")
            .create()
            .await
            .expect_err("refused");
        assert_eq!(error.code(), Some(code), "{error}");
        assert!(!error.is_retryable());
        assert_eq!(broker.script.calls("CreateProducer").len(), 1, "{code:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_default_policy_gives_up_after_five_retries_with_the_last_error() {
    let broker = ScriptedBroker::start();
    broker.script.fail("CreateProducer", Code::Unavailable, 100);
    let client = client(&broker, LinearBackoff::default().seeded(3)).await;
    let error = create(&client).await.expect_err("gave up");
    assert!(
        matches!(&error, BrokerError::Rpc { operation: "CreateProducer", topic, .. } if topic == "/default/t"),
        "{error}"
    );
    assert_eq!(error.code(), Some(Code::Unavailable));
    assert_eq!(broker.script.calls("CreateProducer").len(), 6);
    assert_eq!(
        client.running_tasks(),
        0,
        "no health check for a failed create"
    );
}

#[tokio::test(start_paused = true)]
async fn bad_builder_input_is_refused_before_any_call() {
    let broker = ScriptedBroker::start();
    let client = client(&broker, LinearBackoff::default()).await;
    for (topic, name, partitions, field) in [
        ("default/t", Some("p"), None, "topic"),
        ("/default/t", None, None, "producer name"),
        ("/default/t", Some(""), None, "producer name"),
        ("/default/t", Some("p"), Some(0), "partitions"),
    ] {
        let mut builder = client.producer(topic);
        if let Some(name) = name {
            builder = builder.name(name);
        }
        if let Some(partitions) = partitions {
            builder = builder.partitions(partitions);
        }
        let error = builder.create().await.expect_err("invalid");
        assert!(
            matches!(&error, BrokerError::InvalidInput(e) if e.field == field),
            "{error}"
        );
    }
    assert!(broker.script.calls("CreateProducer").is_empty());
    let error = BrokerClient::builder()
        .service_url("broker:6650")
        .build()
        .await
        .expect_err("no scheme");
    assert!(matches!(error, BrokerError::InvalidInput(ref e) if e.field == "service URL"));
}

#[tokio::test(start_paused = true)]
async fn a_send_whose_node_is_gone_finds_the_owner_through_the_service_url() {
    let network = InProcessNetwork::new();
    let service = ScriptedBroker::start_on(network.clone(), URL);
    let other = ScriptedBroker::start_on(network.clone(), "http://other.test:6650");
    service.script.redirect_once("http://other.test:6650");
    let client = client(&service, LinearBackoff::default().seeded(5)).await;
    let producer = create(&client).await.expect("created on the other node");
    assert_eq!(other.script.calls("CreateProducer").len(), 1);
    assert!(service.script.calls("CreateProducer").is_empty());

    drop(other);
    // Its graceful stop still serves streams opened before its last GOAWAY: let it finish
    // (a node killed outright closes its connections at once).
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let sequence = producer
        .send("after the move")
        .await
        .expect("sent via the service URL");
    let sent = service.script.sent();
    assert_eq!(sent.len(), 1, "the service node took the send");
    assert_eq!(sent[0].request_id, sequence);
    assert!(
        service.script.calls("TopicLookup").len() >= 2,
        "looked up again at the service URL"
    );
}

#[tokio::test(start_paused = true)]
async fn a_producer_the_broker_closes_registers_again_before_its_next_send() {
    let broker = ScriptedBroker::start();
    let client = client(&broker, LinearBackoff::default().seeded(2)).await;
    let producer = create(&client).await.expect("created");
    producer.send("one").await.expect("sent");
    broker.script.close_client(1);
    let script = broker.script.clone();
    eventually("a health check of producer 1 after CLOSE", || {
        script
            .calls("HealthCheck")
            .iter()
            .filter(|c| c.detail == "1")
            .count()
            >= 2
    })
    .await;
    producer
        .send("two")
        .await
        .expect("sent after re-registering");
    assert_eq!(broker.script.calls("CreateProducer").len(), 2);
    let sent = broker.script.sent();
    let ids: Vec<u64> = sent
        .iter()
        .map(|m| m.msg_id.as_ref().expect("msg_id").producer_id)
        .collect();
    assert_eq!(ids, [1, 2], "the second send carries the new producer id");
    producer.close().await;
    assert_eq!(client.running_tasks(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_send_that_spends_its_retries_registers_again_and_tries_once_more() {
    let broker = ScriptedBroker::start();
    let client = client(&broker, LinearBackoff::default().seeded(4)).await;
    let producer = create(&client).await.expect("created");
    broker.script.fail("SendMessage", Code::Unavailable, 6);
    let sequence = producer
        .send("late")
        .await
        .expect("sent in the second round");
    assert_eq!(broker.script.calls("SendMessage").len(), 7);
    assert_eq!(broker.script.calls("CreateProducer").len(), 2);
    assert_eq!(broker.script.sent()[0].request_id, sequence);

    broker.script.fail("SendMessage", Code::Unavailable, 12);
    let error = producer.send("never").await.expect_err("both rounds spent");
    assert_eq!(error.code(), Some(Code::Unavailable));
    broker.script.fail("SendMessage", Code::InvalidArgument, 1);
    let error = producer.send("refused").await.expect_err("permanent");
    assert_eq!(error.code(), Some(Code::InvalidArgument));
}

#[tokio::test(start_paused = true)]
async fn partitions_take_turns_and_keys_pick_by_fnv1a() {
    let broker = ScriptedBroker::start();
    let client = client(&broker, LinearBackoff::default()).await;
    let producer = client
        .producer("/default/orders")
        .name("p")
        .reliable()
        .partitions(3)
        .create()
        .await
        .expect("created");
    let creates: Vec<String> = broker
        .script
        .calls("CreateProducer")
        .into_iter()
        .map(|c| c.detail)
        .collect();
    assert_eq!(
        creates,
        [
            "/default/orders-part-0",
            "/default/orders-part-1",
            "/default/orders-part-2"
        ]
    );
    for _ in 0..4 {
        producer.send("turn").await.expect("sent");
    }
    for key in ["alpha", "beta", "gamma"] {
        producer
            .send(key.to_owned())
            .key(key)
            .attribute("kind", "keyed")
            .await
            .expect("sent");
    }
    let sent = broker.script.sent();
    let topics: Vec<&str> = sent
        .iter()
        .map(|m| m.msg_id.as_ref().expect("msg_id").topic_name.as_str())
        .collect();
    assert_eq!(
        topics[..4],
        [
            "/default/orders-part-0",
            "/default/orders-part-1",
            "/default/orders-part-2",
            "/default/orders-part-0"
        ]
    );
    for message in &sent[4..] {
        let key = message.routing_key.as_deref().expect("key");
        let partition = fnv1a(key) % 3;
        let id = message.msg_id.as_ref().expect("msg_id");
        assert_eq!(id.topic_name, format!("/default/orders-part-{partition}"));
        assert_eq!(message.producer_name, format!("p-{partition}"));
        assert_eq!(message.payload, key.as_bytes());
        assert_eq!(
            message.attributes.get("kind").map(String::as_str),
            Some("keyed")
        );
        assert_eq!(id.topic_offset, 0, "the broker assigns offsets");
        assert_eq!(id.broker_addr, URL);
    }
}

/// The scripted broker serves Danube's services only, as a Danube broker does: the send stream
/// is `Unimplemented` there, so each message goes as one `SendMessage`, and the stream is not
/// tried again for the producer's later sends.
#[tokio::test(start_paused = true)]
async fn a_broker_without_the_send_stream_gets_one_send_message_per_message() {
    let broker = ScriptedBroker::start();
    let client = client(&broker, LinearBackoff::default().seeded(5)).await;
    let producer = create(&client).await.expect("created");
    for payload in ["a", "b", "c"] {
        producer.send(payload).await.expect("sent with SendMessage");
    }
    let sent: Vec<_> = broker
        .script
        .sent()
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(sent, ["a", "b", "c"]);
    assert_eq!(broker.script.calls("SendMessage").len(), 3);
    producer.close().await;
    assert_eq!(client.running_tasks(), 0);
}
