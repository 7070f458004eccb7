//! Drives a Courier broker with the published danube-client, unchanged.
//!
//! usage: courier-interop-danube http://127.0.0.1:6650 [SCENARIO...]
//!
//! The scenario `tls_api_key` drives a second broker, serving TLS with `auth.mode: jwt`,
//! named by the environment: COURIER_INTEROP_TLS_URL (https://...), COURIER_INTEROP_TLS_CA
//! (the CA's PEM file) and COURIER_INTEROP_API_KEY (a key in that broker's keys file);
//! scripts/interop-danube makes the certificates and the key and starts that broker.
//!
//! Runs every scenario (or the named ones), each within a time limit, prints PASS or FAIL
//! with the reason for each, and exits non-zero if any failed. Topic names carry a run id, so
//! runs against a broker with durable storage do not see each other's messages.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use danube_client::{CompatibilityMode, Consumer, DanubeClient, Producer, SchemaType, SubType};
use danube_core::message::StreamMessage;
use tokio::sync::mpsc::Receiver;

/// The longest a scenario may take.
const SCENARIO_LIMIT: Duration = Duration::from_secs(60);
/// How long to wait for one message that should come.
const MESSAGE_WAIT: Duration = Duration::from_secs(10);
/// How long to watch for messages that should not come.
const QUIET_WAIT: Duration = Duration::from_secs(2);

type Outcome = Result<(), String>;
type Scenario = fn(Ctx) -> Pin<Box<dyn Future<Output = Outcome>>>;

/// What each scenario gets: the client and a prefix for unique topic names.
#[derive(Clone)]
struct Ctx {
    client: DanubeClient,
    run: String,
    tls: Option<TlsTarget>,
}

/// The TLS broker of the `tls_api_key` scenario.
#[derive(Clone)]
struct TlsTarget {
    url: String,
    ca: String,
    api_key: String,
    /// A token minted by `courier broker token` for that key.
    token: String,
}

impl TlsTarget {
    fn from_env() -> Option<TlsTarget> {
        Some(TlsTarget {
            url: std::env::var("COURIER_INTEROP_TLS_URL").ok()?,
            ca: std::env::var("COURIER_INTEROP_TLS_CA").ok()?,
            api_key: std::env::var("COURIER_INTEROP_API_KEY").ok()?,
            token: std::env::var("COURIER_INTEROP_TOKEN").ok()?,
        })
    }
}

impl Ctx {
    fn topic(&self, name: &str) -> String {
        format!("/interop/{name}-{}", self.run)
    }
}

const SCENARIOS: [(&str, Scenario); 9] = [
    ("produce_reliable", |c| Box::pin(produce_reliable(c))),
    ("exclusive_consume_ack", |c| {
        Box::pin(exclusive_consume_ack(c))
    }),
    ("shared_spread", |c| Box::pin(shared_spread(c))),
    ("redelivery_of_unacked", |c| {
        Box::pin(redelivery_of_unacked(c))
    }),
    ("partitioned_topic", |c| Box::pin(partitioned_topic(c))),
    ("non_reliable_topic", |c| Box::pin(non_reliable_topic(c))),
    ("attributes_and_keys", |c| Box::pin(attributes_and_keys(c))),
    ("json_schema_registry", |c| {
        Box::pin(json_schema_registry(c))
    }),
    ("tls_api_key", |c| Box::pin(tls_api_key(c))),
];

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        eprintln!("usage: courier-interop-danube SERVICE_URL [SCENARIO...]");
        return ExitCode::from(2);
    };
    let wanted: Vec<String> = args.collect();
    if let Some(unknown) = wanted
        .iter()
        .find(|w| !SCENARIOS.iter().any(|(name, _)| name == w))
    {
        let names: Vec<&str> = SCENARIOS.iter().map(|(name, _)| *name).collect();
        eprintln!(
            "unknown scenario {unknown:?}; scenarios: {}",
            names.join(" ")
        );
        return ExitCode::from(2);
    }
    let client = match DanubeClient::builder().service_url(&url).build().await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("FAIL building the client for {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        .to_string();
    let ctx = Ctx {
        client,
        run,
        tls: TlsTarget::from_env(),
    };
    let mut failed = Vec::new();
    for (name, scenario) in SCENARIOS {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        let started = std::time::Instant::now();
        let outcome = match tokio::time::timeout(SCENARIO_LIMIT, scenario(ctx.clone())).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("did not finish within {SCENARIO_LIMIT:?}")),
        };
        let took = started.elapsed();
        match outcome {
            Ok(()) => println!("PASS {name} ({took:.1?})"),
            Err(reason) => {
                println!("FAIL {name} ({took:.1?}): {reason}");
                failed.push(name);
            }
        }
    }
    if failed.is_empty() {
        println!("all scenarios passed");
        ExitCode::SUCCESS
    } else {
        println!("failed: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}

fn check(condition: bool, what: impl FnOnce() -> String) -> Outcome {
    if condition { Ok(()) } else { Err(what()) }
}

async fn producer(
    ctx: &Ctx,
    topic: &str,
    reliable: bool,
    partitions: Option<usize>,
) -> Result<Producer, String> {
    let mut builder = ctx
        .client
        .new_producer()
        .with_topic(topic)
        .with_name("interop-p");
    if reliable {
        builder = builder.with_reliable_dispatch();
    }
    if let Some(partitions) = partitions {
        builder = builder.with_partitions(partitions);
    }
    let mut producer = builder
        .build()
        .map_err(|e| format!("producer build: {e}"))?;
    producer
        .create()
        .await
        .map_err(|e| format!("producer create on {topic}: {e}"))?;
    Ok(producer)
}

async fn consumer(
    ctx: &Ctx,
    topic: &str,
    name: &str,
    subscription: &str,
    kind: SubType,
) -> Result<(Consumer, Receiver<StreamMessage>), String> {
    let mut consumer = ctx
        .client
        .new_consumer()
        .with_topic(topic)
        .with_consumer_name(name)
        .with_subscription(subscription)
        .with_subscription_type(kind)
        .build()
        .map_err(|e| format!("consumer build: {e}"))?;
    consumer
        .subscribe()
        .await
        .map_err(|e| format!("subscribe {name} to {topic}/{subscription}: {e}"))?;
    let receiver = consumer
        .receive()
        .await
        .map_err(|e| format!("receive for {name}: {e}"))?;
    Ok((consumer, receiver))
}

async fn send(producer: &Producer, payload: String) -> Result<u64, String> {
    producer
        .send(payload.clone().into_bytes(), None)
        .await
        .map_err(|e| format!("send {payload:?}: {e}"))
}

async fn next(receiver: &mut Receiver<StreamMessage>, what: &str) -> Result<StreamMessage, String> {
    match tokio::time::timeout(MESSAGE_WAIT, receiver.recv()).await {
        Ok(Some(message)) => Ok(message),
        Ok(None) => Err(format!("{what}: the consumer's channel closed")),
        Err(_) => Err(format!("{what}: nothing within {MESSAGE_WAIT:?}")),
    }
}

async fn quiet(receiver: &mut Receiver<StreamMessage>, what: &str) -> Outcome {
    match tokio::time::timeout(QUIET_WAIT, receiver.recv()).await {
        Ok(Some(message)) => Err(format!(
            "{what}: unexpected message {:?} at offset {}",
            text(&message),
            message.msg_id.topic_offset
        )),
        Ok(None) | Err(_) => Ok(()),
    }
}

fn text(message: &StreamMessage) -> String {
    String::from_utf8_lossy(&message.payload).into_owned()
}

/// Reliable produce: every send answers, with its sequence id.
async fn produce_reliable(ctx: Ctx) -> Outcome {
    let topic = ctx.topic("produce");
    let producer = producer(&ctx, &topic, true, None).await?;
    let mut sequences = Vec::new();
    for i in 0..10 {
        sequences.push(send(&producer, format!("m{i}")).await?);
    }
    let distinct: BTreeSet<u64> = sequences.iter().copied().collect();
    check(distinct.len() == sequences.len(), || {
        format!("sequence ids repeat: {sequences:?}")
    })
}

/// Exclusive subscription on a reliable topic: everything in order with dense offsets and
/// the subscribed topic in msg_id; another consumer name is refused; acked messages are not
/// delivered again after a reconnect.
async fn exclusive_consume_ack(ctx: Ctx) -> Outcome {
    let topic = ctx.topic("exclusive");
    let producer = producer(&ctx, &topic, true, None).await?;
    let (mut first, mut receiver) =
        consumer(&ctx, &topic, "c1", "excl", SubType::Exclusive).await?;
    for i in 0..5 {
        send(&producer, format!("m{i}")).await?;
    }
    let mut offsets = Vec::new();
    for i in 0..5 {
        let message = next(&mut receiver, &format!("message {i}")).await?;
        check(text(&message) == format!("m{i}"), || {
            format!("message {i} is {:?}", text(&message))
        })?;
        check(message.msg_id.topic_name == topic, || {
            format!(
                "msg_id.topic_name {:?}, subscribed to {topic}",
                message.msg_id.topic_name
            )
        })?;
        offsets.push(message.msg_id.topic_offset);
        first
            .ack(&message)
            .await
            .map_err(|e| format!("ack {i}: {e}"))?;
    }
    check(offsets.windows(2).all(|w| w[1] == w[0] + 1), || {
        format!("offsets not dense: {offsets:?}")
    })?;

    let refused = consumer(&ctx, &topic, "c2", "excl", SubType::Exclusive).await;
    check(refused.is_err(), || {
        "a second consumer name on an Exclusive subscription was accepted".into()
    })?;

    first.close().await;
    let (mut again, mut receiver) =
        consumer(&ctx, &topic, "c1", "excl", SubType::Exclusive).await?;
    quiet(&mut receiver, "after acking everything and reconnecting").await?;
    send(&producer, "after".into()).await?;
    let message = next(&mut receiver, "the message after the reconnect").await?;
    check(text(&message) == "after", || {
        format!("got {:?}", text(&message))
    })?;
    again.ack(&message).await.map_err(|e| format!("ack: {e}"))?;
    again.close().await;
    Ok(())
}

/// Shared subscription: two consumers split the messages, none twice.
async fn shared_spread(ctx: Ctx) -> Outcome {
    let topic = ctx.topic("shared");
    let producer = producer(&ctx, &topic, true, None).await?;
    let (mut a, mut receiver_a) = consumer(&ctx, &topic, "a", "shared", SubType::Shared).await?;
    let (mut b, mut receiver_b) = consumer(&ctx, &topic, "b", "shared", SubType::Shared).await?;
    let total = 10;
    for i in 0..total {
        send(&producer, format!("m{i}")).await?;
    }
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut per_consumer = [0usize; 2];
    while seen.len() < total {
        let (message, who) = tokio::select! {
            m = next(&mut receiver_a, "shared delivery to a") => (m?, 0),
            m = next(&mut receiver_b, "shared delivery to b") => (m?, 1),
        };
        let consumer = if who == 0 { &mut a } else { &mut b };
        consumer
            .ack(&message)
            .await
            .map_err(|e| format!("ack: {e}"))?;
        per_consumer[who] += 1;
        if seen
            .insert(text(&message), if who == 0 { "a" } else { "b" })
            .is_some()
        {
            return Err(format!("{:?} delivered twice", text(&message)));
        }
    }
    check(per_consumer.iter().all(|n| *n > 0), || {
        format!(
            "one consumer got everything: a {}, b {}",
            per_consumer[0], per_consumer[1]
        )
    })?;
    a.close().await;
    b.close().await;
    Ok(())
}

/// Reliable redelivery: what a consumer received but did not ack goes to the next consumer
/// of the subscription once the first goes away.
async fn redelivery_of_unacked(ctx: Ctx) -> Outcome {
    let topic = ctx.topic("redelivery");
    let producer = producer(&ctx, &topic, true, None).await?;
    let (mut first, mut receiver) =
        consumer(&ctx, &topic, "first", "redeliver", SubType::Shared).await?;
    for i in 0..3 {
        send(&producer, format!("m{i}")).await?;
    }
    let m0 = next(&mut receiver, "m0").await?;
    first.ack(&m0).await.map_err(|e| format!("ack m0: {e}"))?;
    next(&mut receiver, "m1 (left unacked)").await?;
    next(&mut receiver, "m2 (left unacked)").await?;
    first.close().await;
    drop(receiver);

    let (mut second, mut receiver) =
        consumer(&ctx, &topic, "second", "redeliver", SubType::Shared).await?;
    let mut again = BTreeSet::new();
    for _ in 0..2 {
        let message = next(&mut receiver, "a redelivered message").await?;
        second
            .ack(&message)
            .await
            .map_err(|e| format!("ack: {e}"))?;
        again.insert(text(&message));
    }
    let expected: BTreeSet<String> = ["m1".to_string(), "m2".to_string()].into();
    check(again == expected, || {
        format!("redelivered {again:?}, expected {expected:?}")
    })?;
    quiet(&mut receiver, "after the redeliveries (m0 was acked)").await?;
    second.close().await;
    Ok(())
}

/// Partitioned topic: the producer spreads over <topic>-part-<i>, the consumer of the base
/// name receives from every partition and acks there.
async fn partitioned_topic(ctx: Ctx) -> Outcome {
    let topic = ctx.topic("partitioned");
    let producer = producer(&ctx, &topic, true, Some(3)).await?;
    let (mut consumer, mut receiver) =
        consumer(&ctx, &topic, "c", "parts", SubType::Exclusive).await?;
    for i in 0..9 {
        send(&producer, format!("m{i}")).await?;
    }
    let mut by_partition: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for i in 0..9 {
        let message = next(&mut receiver, &format!("partitioned message {i}")).await?;
        consumer
            .ack(&message)
            .await
            .map_err(|e| format!("ack: {e}"))?;
        by_partition
            .entry(message.msg_id.topic_name.clone())
            .or_default()
            .push(message.msg_id.topic_offset);
    }
    let expected: Vec<String> = (0..3).map(|i| format!("{topic}-part-{i}")).collect();
    let got: Vec<String> = by_partition.keys().cloned().collect();
    check(got == expected, || {
        format!("partitions {got:?}, expected {expected:?}")
    })?;
    for (partition, offsets) in &by_partition {
        check(offsets == &[0, 1, 2], || {
            format!("{partition}: offsets {offsets:?}")
        })?;
    }
    consumer.close().await;
    Ok(())
}

/// Non-reliable topic: live messages reach a connected consumer.
async fn non_reliable_topic(ctx: Ctx) -> Outcome {
    let topic = ctx.topic("live");
    let producer = producer(&ctx, &topic, false, None).await?;
    let (mut consumer, mut receiver) =
        consumer(&ctx, &topic, "c", "live", SubType::Exclusive).await?;
    // The subscription exists once subscribe returns; give the stream a moment to open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..5 {
        send(&producer, format!("m{i}")).await?;
    }
    for i in 0..5 {
        let message = next(&mut receiver, &format!("live message {i}")).await?;
        check(text(&message) == format!("m{i}"), || {
            format!("live message {i} is {:?}", text(&message))
        })?;
        consumer
            .ack(&message)
            .await
            .map_err(|e| format!("ack (a no-op): {e}"))?;
    }
    consumer.close().await;
    Ok(())
}

/// Attributes and routing keys travel unchanged.
async fn attributes_and_keys(ctx: Ctx) -> Outcome {
    let topic = ctx.topic("attrs");
    let producer = producer(&ctx, &topic, true, None).await?;
    let (mut consumer, mut receiver) =
        consumer(&ctx, &topic, "c", "attrs", SubType::Exclusive).await?;
    let attributes = std::collections::HashMap::from([("kind".to_string(), "test".to_string())]);
    producer
        .send_with_key(b"keyed".to_vec(), Some(attributes.clone()), "k-1")
        .await
        .map_err(|e| format!("send_with_key: {e}"))?;
    let message = next(&mut receiver, "the keyed message").await?;
    check(message.attributes == attributes, || {
        format!("attributes {:?}", message.attributes)
    })?;
    check(message.routing_key.as_deref() == Some("k-1"), || {
        format!("routing key {:?}", message.routing_key)
    })?;
    check(message.producer_name == "interop-p", || {
        format!("producer name {:?}", message.producer_name)
    })?;
    consumer
        .ack(&message)
        .await
        .map_err(|e| format!("ack: {e}"))?;
    consumer.close().await;
    Ok(())
}

const USERS_V1: &str =
    r#"{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}"#;
/// V1 plus an optional property: compatible.
const USERS_V2: &str = r#"{"type":"object","properties":{"id":{"type":"integer"},"name":{"type":"string"}},"required":["id"]}"#;
/// A new required property: not backward compatible.
const USERS_NEEDS_EMAIL: &str = r#"{"type":"object","properties":{"id":{"type":"integer"},"email":{"type":"string"}},"required":["id","email"]}"#;

/// The schema registry: register a JSON schema (again: the same id), check compatibility
/// (compatible, incompatible with reasons, compatible under mode none), register a second
/// version, and produce with the latest and a pinned version: deliveries carry the schema id
/// and the version each producer resolved.
async fn json_schema_registry(ctx: Ctx) -> Outcome {
    let schemas = ctx.client.schema();
    let subject = format!("interop-users-{}", ctx.run);
    let register = |definition: &'static str| {
        schemas
            .register_schema(subject.clone())
            .with_type(SchemaType::JsonSchema)
            .with_schema_data(definition.as_bytes().to_vec())
            .with_description("interop users")
            .execute()
    };
    let id = register(USERS_V1)
        .await
        .map_err(|e| format!("register v1: {e}"))?;
    let again = register(USERS_V1)
        .await
        .map_err(|e| format!("register v1 again: {e}"))?;
    check(again == id, || {
        format!("re-registration got id {again}, first {id}")
    })?;

    let compatible = schemas
        .check_compatibility(
            &subject,
            USERS_V2.as_bytes().to_vec(),
            SchemaType::JsonSchema,
            None,
        )
        .await
        .map_err(|e| format!("check v2: {e}"))?;
    check(compatible.is_compatible, || {
        format!(
            "an added optional property was refused: {:?}",
            compatible.errors
        )
    })?;
    let incompatible = schemas
        .check_compatibility(
            &subject,
            USERS_NEEDS_EMAIL.as_bytes().to_vec(),
            SchemaType::JsonSchema,
            None,
        )
        .await
        .map_err(|e| format!("check the required field: {e}"))?;
    check(
        !incompatible.is_compatible && incompatible.errors.iter().any(|e| e.contains("email")),
        || format!("a new required field was not refused with a reason: {incompatible:?}"),
    )?;
    let under_none = schemas
        .check_compatibility(
            &subject,
            USERS_NEEDS_EMAIL.as_bytes().to_vec(),
            SchemaType::JsonSchema,
            Some(CompatibilityMode::None),
        )
        .await
        .map_err(|e| format!("check under mode none: {e}"))?;
    check(under_none.is_compatible, || {
        format!("mode none refused: {:?}", under_none.errors)
    })?;

    register(USERS_V2)
        .await
        .map_err(|e| format!("register v2: {e}"))?;
    let versions = schemas
        .list_versions(&subject)
        .await
        .map_err(|e| format!("list versions: {e}"))?;
    check(versions == [1, 2], || format!("versions {versions:?}"))?;
    let latest = schemas
        .get_latest_schema(&subject)
        .await
        .map_err(|e| format!("latest: {e}"))?;
    check(
        latest.version == 2 && latest.schema_definition == USERS_V2.as_bytes(),
        || {
            format!(
                "latest is version {} with {:?}",
                latest.version,
                latest.schema_definition_as_string()
            )
        },
    )?;

    let topic = ctx.topic("schemas");
    let mut producers = Vec::new();
    for (name, pinned) in [("latest", None), ("pinned", Some(1))] {
        let mut builder = ctx
            .client
            .new_producer()
            .with_topic(&topic)
            .with_name(format!("interop-{name}"))
            .with_reliable_dispatch();
        builder = match pinned {
            None => builder.with_schema_subject(&subject),
            Some(version) => builder.with_schema_version(&subject, version),
        };
        let mut producer = builder
            .build()
            .map_err(|e| format!("{name} producer: {e}"))?;
        producer
            .create()
            .await
            .map_err(|e| format!("{name} producer create: {e}"))?;
        producers.push((name, pinned.unwrap_or(2), producer));
    }
    let (mut consumer, mut receiver) =
        consumer(&ctx, &topic, "c1", "schemas", SubType::Exclusive).await?;
    for (name, version, producer) in &producers {
        send(producer, format!(r#"{{"id":1,"name":"{name}"}}"#)).await?;
        let message = next(&mut receiver, &format!("the {name} producer's message")).await?;
        let expected = (Some(id), Some(*version));
        check(
            (message.schema_id, message.schema_version) == expected,
            || {
                format!(
                    "{name}: delivered with schema ({:?}, {:?}), expected {expected:?}",
                    message.schema_id, message.schema_version
                )
            },
        )?;
        consumer
            .ack(&message)
            .await
            .map_err(|e| format!("ack: {e}"))?;
    }
    consumer.close().await;
    Ok(())
}

/// Over TLS (the CA from the script) with `auth.mode: jwt`: a client without credentials is
/// refused; one with `with_api_key` (which sends the key itself as the bearer token) produces
/// and consumes, every lookup answering the broker's `https://` URL; one with `with_token` (a
/// JWT minted by `courier broker token`) produces to the same subscription.
async fn tls_api_key(ctx: Ctx) -> Outcome {
    let Some(target) = ctx.tls.clone() else {
        return Err("needs COURIER_INTEROP_TLS_URL, COURIER_INTEROP_TLS_CA, \
                    COURIER_INTEROP_API_KEY and COURIER_INTEROP_TOKEN (scripts/interop-danube \
                    sets them)"
            .to_owned());
    };
    let builder = || {
        DanubeClient::builder()
            .service_url(&target.url)
            .with_tls(&target.ca)
            .map_err(|e| format!("with_tls({}): {e}", target.ca))
    };
    let anonymous = builder()?
        .build()
        .await
        .map_err(|e| format!("client without a key: {e}"))?;
    let anonymous = Ctx {
        client: anonymous,
        run: ctx.run.clone(),
        tls: None,
    };
    let topic = ctx.topic("tls");
    match producer(&anonymous, &topic, true, None).await {
        Err(e) if e.to_lowercase().contains("unauthenticated") || e.contains("Bearer") => {}
        Err(e) => {
            return Err(format!(
                "without a key: refused, but not as unauthenticated: {e}"
            ));
        }
        Ok(_) => return Err("a producer without credentials was created".to_owned()),
    }
    #[allow(deprecated)] // with_api_key is with_token under another name: the key is the bearer.
    let keyed = builder()?
        .with_api_key(target.api_key.clone())
        .build()
        .await
        .map_err(|e| format!("client with the key: {e}"))?;
    let keyed = Ctx {
        client: keyed,
        run: ctx.run.clone(),
        tls: None,
    };
    let keyed_producer = producer(&keyed, &topic, true, None).await?;
    let (mut subscriber, mut receiver) =
        consumer(&keyed, &topic, "tls-c", "tls-sub", SubType::Exclusive).await?;
    for i in 0..3 {
        send(&keyed_producer, format!("tls{i}")).await?;
    }
    for i in 0..3 {
        let message = next(&mut receiver, "over TLS").await?;
        check(text(&message) == format!("tls{i}"), || {
            format!("message {i} was {:?}", text(&message))
        })?;
        check(message.msg_id.broker_addr.starts_with("https://"), || {
            format!("broker_addr {:?} is not https", message.msg_id.broker_addr)
        })?;
        subscriber
            .ack(&message)
            .await
            .map_err(|e| format!("ack over TLS: {e}"))?;
    }

    // A pre-made token (a JWT from `courier broker token`), what Danube clients since 0.11 send.
    let tokened = builder()?
        .with_token(target.token.clone())
        .build()
        .await
        .map_err(|e| format!("client with the token: {e}"))?;
    let tokened = Ctx {
        client: tokened,
        run: ctx.run.clone(),
        tls: None,
    };
    let token_producer = producer(&tokened, &topic, true, None).await?;
    send(&token_producer, "with a token".to_owned()).await?;
    let message = next(&mut receiver, "sent with a token").await?;
    check(text(&message) == "with a token", || {
        format!("the token's message was {:?}", text(&message))
    })?;
    subscriber
        .ack(&message)
        .await
        .map_err(|e| format!("ack of the token's message: {e}"))?;
    Ok(())
}
