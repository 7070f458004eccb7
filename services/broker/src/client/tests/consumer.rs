//! Consumers: deliveries from every partition, acks routed by topic, error items, reopening
//! and resubscribing, and tasks that end with `close()`.

use std::time::Duration;

use courier_impls::retry::LinearBackoff;
use courier_traits::error::Classify;
use futures::StreamExt;
use tonic::{Code, Status};

use super::scripted::{ScriptedBroker, message};
use super::{client, eventually};
use crate::client::{BrokerClient, BrokerError, Consumer, ConsumerBuilder};

const PART_0: &str = "/default/t-part-0";
const PART_1: &str = "/default/t-part-1";

/// Consumer `c` of `/default/t` on shared subscription `s`.
fn shared(client: &BrokerClient) -> ConsumerBuilder {
    client.consumer("/default/t").name("c").subscription("s")
}

/// Consumer `c` of `/default/t` on exclusive subscription `s`.
async fn subscribe(client: &BrokerClient) -> Consumer {
    shared(client)
        .exclusive()
        .subscribe()
        .await
        .expect("subscribed")
}

/// The consumer id with an open stream on `topic`, once there is one.
async fn open_stream(broker: &ScriptedBroker, topic: &str) -> u64 {
    let script = broker.script.clone();
    eventually(&format!("a stream open on {topic}"), || {
        script.open_streams().iter().any(|(_, t)| t == topic)
    })
    .await;
    broker
        .script
        .open_streams()
        .into_iter()
        .find(|(_, t)| t == topic)
        .map(|(id, _)| id)
        .expect("open")
}

async fn next(consumer: &mut Consumer) -> Result<crate::client::Message, BrokerError> {
    tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("an item within 5 s")
        .expect("the stream goes on")
}

#[tokio::test(start_paused = true)]
async fn deliveries_from_every_partition_are_acked_and_nacked_where_they_came_from() {
    let broker = ScriptedBroker::start();
    broker.script.set_partitions(&[PART_0, PART_1]);
    let client = client(&broker, LinearBackoff::default()).await;
    let mut consumer = subscribe(&client).await;
    assert_eq!(consumer.partitions(), [PART_0, PART_1]);
    let first = open_stream(&broker, PART_0).await;
    let second = open_stream(&broker, PART_1).await;
    assert!(broker.script.deliver(first, Ok(message(PART_0, 0, "a"))));
    assert!(broker.script.deliver(second, Ok(message(PART_1, 0, "b"))));
    let mut got = [
        next(&mut consumer).await.expect("a"),
        next(&mut consumer).await.expect("b"),
    ];
    got.sort_by(|x, y| x.topic().cmp(y.topic()));
    assert_eq!(got[0].payload(), "a");
    assert_eq!(got[1].payload(), "b");
    got[0].ack().await.expect("ack");
    got[1]
        .nack_with(Duration::from_millis(1500), "later")
        .await
        .expect("nack");
    let acks = broker.script.acks();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].subscription_name, "s");
    assert_eq!(acks[0].msg_id.as_ref().expect("msg_id").topic_name, PART_0);
    let nacks = broker.script.nacks();
    assert_eq!(nacks[0].msg_id.as_ref().expect("msg_id").topic_name, PART_1);
    assert_eq!(nacks[0].delay_ms, Some(1500));
    assert_eq!(nacks[0].reason.as_deref(), Some("later"));

    // A delivery naming a topic this consumer never subscribed to cannot be acked.
    assert!(
        broker
            .script
            .deliver(first, Ok(message("/default/other", 1, "x")))
    );
    let stray = next(&mut consumer).await.expect("delivered");
    let error = stray.ack().await.expect_err("nowhere to ack");
    assert!(
        matches!(&error, BrokerError::NotSubscribed(t) if t == "/default/other"),
        "{error}"
    );
    consumer.close().await;
    let error = got[0].ack().await.expect_err("closed");
    assert!(matches!(error, BrokerError::Closed), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_delivery_without_msg_id_is_an_error_item_and_the_stream_goes_on() {
    let broker = ScriptedBroker::start();
    broker.script.set_partitions(&[PART_0]);
    let client = client(&broker, LinearBackoff::default()).await;
    let mut consumer = subscribe(&client).await;
    let id = open_stream(&broker, PART_0).await;
    let mut broken = message(PART_0, 0, "no id");
    broken.msg_id = None;
    assert!(broker.script.deliver(id, Ok(broken)));
    assert!(broker.script.deliver(id, Ok(message(PART_0, 1, "fine"))));
    let error = next(&mut consumer).await.expect_err("no msg_id");
    assert!(matches!(error, BrokerError::Protocol(_)), "{error}");
    assert!(!error.is_retryable());
    assert_eq!(next(&mut consumer).await.expect("next").payload(), "fine");
}

#[tokio::test(start_paused = true)]
async fn a_permanent_stream_refusal_is_an_item_then_that_partition_ends() {
    let broker = ScriptedBroker::start();
    broker.script.set_partitions(&[PART_0]);
    broker
        .script
        .fail("ReceiveMessages", Code::PermissionDenied, 1);
    let client = client(&broker, LinearBackoff::default()).await;
    let mut consumer = subscribe(&client).await;
    let error = next(&mut consumer).await.expect_err("refused");
    assert_eq!(error.code(), Some(Code::PermissionDenied), "{error}");
    let end = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("ends");
    assert!(end.is_none(), "the only partition ended");
    assert_eq!(client.running_tasks(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_stream_error_mid_way_is_reported_and_a_refused_resubscription_too() {
    let broker = ScriptedBroker::start();
    broker.script.set_partitions(&[PART_0]);
    let client = client(&broker, LinearBackoff::default()).await;
    let mut consumer = subscribe(&client).await;
    let id = open_stream(&broker, PART_0).await;
    // The broker says the consumer is gone for good, then refuses it a new subscription.
    broker.script.close_client(id);
    broker.script.fail("Subscribe", Code::FailedPrecondition, 1);
    let error = next(&mut consumer).await.expect_err("refused");
    assert!(
        matches!(
            &error,
            BrokerError::Rpc {
                operation: "Subscribe",
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.code(), Some(Code::FailedPrecondition));
    assert!(consumer.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn subscribe_refusals_and_missing_topics_fail_subscribe() {
    let broker = ScriptedBroker::start();
    let client = client(&broker, LinearBackoff::default()).await;
    let error = shared(&client)
        .subscribe()
        .await
        .expect_err("no partitions");
    assert!(
        matches!(&error, BrokerError::NoSuchTopic(t) if t == "/default/t"),
        "{error}"
    );

    broker.script.set_partitions(&["/default/elsewhere"]);
    let error = shared(&client)
        .subscribe()
        .await
        .expect_err("foreign partition");
    assert!(matches!(error, BrokerError::Protocol(_)), "{error}");

    broker.script.set_partitions(&[PART_0, PART_1]);
    broker.script.fail("Subscribe", Code::FailedPrecondition, 1);
    let error = shared(&client).subscribe().await.expect_err("refused");
    assert_eq!(error.code(), Some(Code::FailedPrecondition));
    for (name, subscription, field) in [
        (None, Some("s"), "consumer name"),
        (Some("c"), None, "subscription"),
    ] {
        let mut builder = client.consumer("/default/t");
        if let Some(name) = name {
            builder = builder.name(name);
        }
        if let Some(subscription) = subscription {
            builder = builder.subscription(subscription);
        }
        let error = builder.subscribe().await.expect_err("invalid");
        assert!(
            matches!(&error, BrokerError::InvalidInput(e) if e.field == field),
            "{error}"
        );
    }
    assert_eq!(
        client.running_tasks(),
        0,
        "nothing left running after a failed subscribe"
    );
}

#[tokio::test(start_paused = true)]
async fn close_from_a_health_check_resubscribes_and_receiving_goes_on() {
    let broker = ScriptedBroker::start();
    broker.script.set_partitions(&[PART_0]);
    let client = client(&broker, LinearBackoff::default()).await;
    let mut consumer = subscribe(&client).await;
    let first = open_stream(&broker, PART_0).await;
    broker.script.close_client(first);
    let script = broker.script.clone();
    eventually("a second subscription with its stream", || {
        script.open_streams().iter().any(|(id, _)| *id != first)
    })
    .await;
    assert_eq!(broker.script.calls("Subscribe").len(), 2);
    let second = open_stream(&broker, PART_0).await;
    assert_ne!(second, first);
    assert!(
        broker
            .script
            .deliver(second, Ok(message(PART_0, 5, "again")))
    );
    let delivered = next(&mut consumer).await.expect("delivered");
    assert_eq!(delivered.offset(), 5);
    assert_eq!(consumer.consumer_ids()[PART_0], Some(second));
}

#[tokio::test(start_paused = true)]
async fn an_ended_stream_is_reopened_with_the_same_id_and_spent_retries_resubscribe() {
    let broker = ScriptedBroker::start();
    broker.script.set_partitions(&[PART_0]);
    let client = client(&broker, LinearBackoff::default().seeded(9)).await;
    let mut consumer = subscribe(&client).await;
    let id = open_stream(&broker, PART_0).await;
    broker.script.end_stream(id);
    let script = broker.script.clone();
    eventually("the stream reopened", || {
        script.calls("ReceiveMessages").len() == 2
    })
    .await;
    assert!(
        broker
            .script
            .calls("ReceiveMessages")
            .iter()
            .all(|c| c.detail == id.to_string())
    );
    assert_eq!(broker.script.calls("Subscribe").len(), 1);

    // Six failed reopenings spend the default budget: the partition subscribes again.
    broker.script.fail("ReceiveMessages", Code::Unavailable, 6);
    assert!(
        broker
            .script
            .deliver(id, Err(Status::unavailable("node draining")))
    );
    eventually("a new subscription", || {
        script.calls("Subscribe").len() == 2
    })
    .await;
    let second = open_stream(&broker, PART_0).await;
    assert_ne!(second, id);
    assert!(
        broker
            .script
            .deliver(second, Ok(message(PART_0, 0, "back")))
    );
    assert_eq!(
        next(&mut consumer).await.expect("delivered").payload(),
        "back"
    );
}

#[tokio::test(start_paused = true)]
async fn close_ends_every_task_even_one_blocked_on_a_full_channel() {
    let broker = ScriptedBroker::start();
    broker.script.set_partitions(&[PART_0, PART_1]);
    let client = client(&broker, LinearBackoff::default()).await;
    let producer = client
        .producer("/default/p")
        .name("p")
        .partitions(3)
        .create()
        .await
        .expect("created");
    let consumer = subscribe(&client).await;
    let id = open_stream(&broker, PART_0).await;
    open_stream(&broker, PART_1).await;
    assert_eq!(
        client.running_tasks(),
        3 + 2,
        "3 health checks, 2 partition tasks"
    );
    // Nobody reads: the bounded channel fills and partition 0's task waits for room.
    for offset in 0..150 {
        assert!(broker.script.deliver(id, Ok(message(PART_0, offset, "x"))));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    consumer.close().await;
    producer.close().await;
    assert_eq!(client.running_tasks(), 0);
    let error = producer.send("late").await.expect_err("closed");
    assert!(matches!(error, BrokerError::Closed), "{error}");

    // Dropping without close() stops the tasks too.
    let consumer = subscribe(&client).await;
    assert_eq!(client.running_tasks(), 2);
    drop(consumer);
    let counted = client.clone();
    eventually("the dropped consumer's tasks end", || {
        counted.running_tasks() == 0
    })
    .await;
}

const TOPIC: &str = "/default/t";

/// A consumer of `broker` on [`TOPIC`] and the `count` messages it received.
async fn received(
    broker: &ScriptedBroker,
    count: u64,
) -> (BrokerClient, Consumer, Vec<crate::client::Message>) {
    broker.script.set_partitions(&[TOPIC]);
    let client = client(broker, LinearBackoff::default()).await;
    let mut consumer = subscribe(&client).await;
    let id = open_stream(broker, TOPIC).await;
    let mut messages = Vec::new();
    for offset in 0..count {
        assert!(broker.script.deliver(id, Ok(message(TOPIC, offset, "m"))));
        messages.push(next(&mut consumer).await.expect("delivered"));
    }
    (client, consumer, messages)
}

/// The offsets `broker` got Danube `Ack`s for, sorted.
fn danube_acked_offsets(broker: &ScriptedBroker) -> Vec<u64> {
    let mut offsets: Vec<u64> = broker
        .script
        .acks()
        .iter()
        .map(|a| a.msg_id.as_ref().expect("msg_id").topic_offset)
        .collect();
    offsets.sort_unstable();
    offsets
}

#[tokio::test(start_paused = true)]
async fn acks_queued_while_a_call_is_in_flight_share_one_ack_many_call() {
    let broker = ScriptedBroker::start_with_ack_many();
    let (client, consumer, messages) = received(&broker, 50).await;
    let acked = futures::future::join_all(messages.iter().map(|m| m.ack())).await;
    assert!(acked.iter().all(Result::is_ok), "{acked:?}");
    let batches = broker.script.ack_batches();
    assert!(
        batches.len() <= 2,
        "{} AckMany calls for 50 acks made together",
        batches.len()
    );
    let mut offsets: Vec<u64> = batches
        .iter()
        .flat_map(|b| b.topic_offsets.iter().copied())
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..50).collect::<Vec<u64>>());
    assert!(
        batches
            .iter()
            .all(|b| b.topic_name == TOPIC && b.subscription_name == "s")
    );
    assert!(broker.script.acks().is_empty(), "no Danube Ack");
    // The ack task ends with its queue: the partition's task is all that runs.
    eventually("the ack task ends", || client.running_tasks() == 1).await;

    // A lone ack goes at once, alone.
    messages[0].ack().await.expect("acked again");
    assert_eq!(broker.script.ack_batches().len(), batches.len() + 1);
    consumer.close().await;
    let error = messages[1].ack().await.expect_err("closed");
    assert!(matches!(error, BrokerError::Closed), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_refused_ack_many_is_retried_as_one_ack_per_message() {
    let broker = ScriptedBroker::start_with_ack_many();
    let (_client, consumer, messages) = received(&broker, 3).await;
    broker.script.fail("AckMany", Code::NotFound, 1);
    let acked = futures::future::join_all(messages.iter().map(|m| m.ack())).await;
    assert!(acked.iter().all(Result::is_ok), "{acked:?}");
    let offsets = danube_acked_offsets(&broker);
    assert_eq!(offsets, [0, 1, 2], "each message acked on its own");
    // The refusal was about those acks, not the call: the next ones are batched again.
    messages[0].ack().await.expect("acked");
    assert_eq!(broker.script.ack_batches().len(), 1);
    consumer.close().await;
}

#[tokio::test(start_paused = true)]
async fn an_ack_many_refused_where_ack_is_allowed_is_not_made_again() {
    // An older Courier broker with auth on: the unknown call needs a role the consumer lacks.
    let broker = ScriptedBroker::start_with_ack_many();
    let (_client, consumer, messages) = received(&broker, 3).await;
    broker.script.fail("AckMany", Code::PermissionDenied, 10);
    let acked = futures::future::join_all(messages.iter().map(|m| m.ack())).await;
    assert!(acked.iter().all(Result::is_ok), "{acked:?}");
    let acked = futures::future::join_all(messages.iter().map(|m| m.ack())).await;
    assert!(acked.iter().all(Result::is_ok), "{acked:?}");
    assert_eq!(
        broker.script.calls("AckMany").len(),
        1,
        "one refused AckMany, then Ack per message"
    );
    assert_eq!(danube_acked_offsets(&broker).len(), 6);
    consumer.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_broker_without_ack_many_gets_one_danube_ack_per_message() {
    let broker = ScriptedBroker::start();
    let (_client, consumer, messages) = received(&broker, 3).await;
    let acked = futures::future::join_all(messages.iter().map(|m| m.ack())).await;
    assert!(acked.iter().all(Result::is_ok), "{acked:?}");
    messages[2].ack().await.expect("acked");
    let offsets = danube_acked_offsets(&broker);
    assert_eq!(offsets, [0, 1, 2, 2]);
    consumer.close().await;
}
