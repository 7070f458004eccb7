//! The catalog and the topic logs on real storages: topics survive a restart, creation rules,
//! and the writer's dense offsets under concurrent sends and competing writers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use courier_broker::catalog::{
    Catalog, CatalogError, Dispatch, decode_record, topic_log_config, topic_log_stream,
};
use courier_broker::directory::{Owner, TopicView};
use courier_broker::topic::TopicName;
use courier_broker::writer::TopicWriter;
use courier_impls::grpc::proto::danube::{MsgId, StreamMessage};
use courier_impls::memory::MemoryStreamStorage;
use courier_impls::sqlite::{SqliteStorageConfig, SqliteStreamStorage};
use courier_traits::storage::{
    AppendOutcome, AppendRequest, ForwardingStorage, ReadLimits, StorageError, StreamName,
    StreamStorage,
};

fn topic(name: &str) -> TopicName {
    TopicName::new(name).expect(name)
}

fn message(topic: &TopicName, payload: String) -> StreamMessage {
    StreamMessage {
        msg_id: Some(MsgId {
            producer_id: 9,
            topic_name: topic.to_string(),
            broker_addr: "http://127.0.0.1:6650".into(),
            topic_offset: 0,
        }),
        payload: payload.into_bytes().into(),
        producer_name: "p".into(),
        ..StreamMessage::default()
    }
}

/// Every record of `stream`, decoded.
async fn log(storage: &dyn StreamStorage, stream: &StreamName) -> Vec<StreamMessage> {
    let mut all = Vec::new();
    let mut from = None;
    loop {
        let batch = storage
            .read(stream, from, ReadLimits::default())
            .await
            .expect("read");
        all.extend(
            batch
                .records
                .iter()
                .map(|r| decode_record(&r.data).expect("a StreamMessage")),
        );
        if batch.up_to_date {
            return all;
        }
        from = Some(batch.next_offset);
    }
}

fn offsets(log: &[StreamMessage]) -> Vec<u64> {
    log.iter()
        .map(|m| m.msg_id.as_ref().expect("msg_id").topic_offset)
        .collect()
}

#[tokio::test]
async fn topics_are_created_once_with_their_rules_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broker.db");
    let open = || async {
        let storage = SqliteStreamStorage::connect(&path, SqliteStorageConfig::default())
            .await
            .expect("sqlite");
        let storage: Arc<dyn StreamStorage> = Arc::new(storage);
        Catalog::open(storage).await.expect("catalog")
    };
    let orders = topic("/default/orders");
    let events = topic("/default/events");
    {
        let catalog = open().await;
        let created = catalog
            .ensure_topic(&orders, Dispatch::Reliable)
            .await
            .expect("created");
        assert_eq!(created.dispatch(), Dispatch::Reliable);
        assert_eq!(created.log_stream(), Some(&topic_log_stream(&orders)));
        let again = catalog
            .ensure_topic(&orders, Dispatch::Reliable)
            .await
            .expect("idempotent");
        assert!(Arc::ptr_eq(&created, &again));
        let mismatch = catalog
            .ensure_topic(&orders, Dispatch::NonReliable)
            .await
            .expect_err("other strategy");
        assert!(
            matches!(
                mismatch,
                CatalogError::DispatchMismatch {
                    existing: Dispatch::Reliable,
                    ..
                }
            ),
            "{mismatch}"
        );
        for index in 0..2 {
            catalog
                .ensure_topic(
                    &events.partition(index).expect("fits"),
                    Dispatch::NonReliable,
                )
                .await
                .expect("partition");
        }
        let plain = catalog
            .ensure_topic(&events, Dispatch::NonReliable)
            .await
            .expect_err("beside its partitions");
        assert!(
            matches!(&plain, CatalogError::PartitionConflict { existing, .. } if *existing == events.partition(0).expect("fits")),
            "{plain}"
        );
        let partition = catalog
            .ensure_topic(&orders.partition(0).expect("fits"), Dispatch::Reliable)
            .await
            .expect_err("beside the plain topic");
        assert!(
            matches!(partition, CatalogError::PartitionConflict { .. }),
            "{partition}"
        );
        assert_eq!(
            created
                .publish(message(&orders, "first".into()))
                .await
                .expect("durable"),
            0
        );
        catalog.stop().await;
    }
    let catalog = open().await;
    let view = catalog.view();
    {
        let state = view.read().expect("lock");
        assert_eq!(state.owner(&orders), Some(Owner::Here));
        assert_eq!(state.partitions(&events), [0, 1]);
        assert_eq!(state.owner(&events), None);
    }
    let reopened = catalog.topic(&orders).expect("survived");
    assert_eq!(reopened.dispatch(), Dispatch::Reliable);
    assert_eq!(
        catalog
            .topic(&events.partition(1).expect("fits"))
            .map(|t| t.dispatch()),
        Some(Dispatch::NonReliable)
    );
    assert_eq!(
        reopened
            .publish(message(&orders, "second".into()))
            .await
            .expect("durable"),
        1,
        "offsets go on after a restart"
    );
    let stored = log(catalog.storage().as_ref(), &topic_log_stream(&orders)).await;
    assert_eq!(offsets(&stored), [0, 1]);
    assert_eq!(stored[1].payload.as_ref(), b"second");
    catalog.stop().await;
}

#[tokio::test]
async fn two_catalogs_on_one_storage_agree_on_a_topic_created_by_both() {
    let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
    let one = Catalog::open(storage.clone()).await.expect("one");
    let two = Catalog::open(storage.clone()).await.expect("two");
    let name = topic("/default/raced");
    let (a, b) = tokio::join!(
        one.ensure_topic(&name, Dispatch::Reliable),
        two.ensure_topic(&name, Dispatch::NonReliable)
    );
    // Exactly one strategy won; the other side was told so.
    match (a, b) {
        (Ok(a), Err(CatalogError::DispatchMismatch { existing, .. })) => {
            assert_eq!(
                (a.dispatch(), existing),
                (Dispatch::Reliable, Dispatch::Reliable)
            )
        }
        (Err(CatalogError::DispatchMismatch { existing, .. }), Ok(b)) => {
            assert_eq!(
                (b.dispatch(), existing),
                (Dispatch::NonReliable, Dispatch::NonReliable)
            )
        }
        (a, b) => panic!("one winner expected: {a:?} / {b:?}"),
    }
    let three = Catalog::open(storage).await.expect("three");
    assert_eq!(three.topics().len(), 1, "one event folded per topic");
}

/// A memory storage that counts appends, to see the writer group sends.
struct CountingStorage {
    inner: MemoryStreamStorage,
    appends: AtomicUsize,
}

#[async_trait::async_trait]
impl ForwardingStorage for CountingStorage {
    fn inner(&self) -> &dyn StreamStorage {
        &self.inner
    }
    async fn append(
        &self,
        name: &StreamName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StorageError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append(name, request).await
    }
}

#[tokio::test]
async fn concurrent_sends_are_grouped_into_few_appends_with_dense_offsets() {
    let counting = Arc::new(CountingStorage {
        inner: MemoryStreamStorage::new(),
        appends: AtomicUsize::new(0),
    });
    let storage: Arc<dyn StreamStorage> = counting.clone();
    let name = topic("/default/busy");
    let stream = topic_log_stream(&name);
    storage
        .create(&stream, topic_log_config(), Vec::new())
        .await
        .expect("log");
    let writer = Arc::new(TopicWriter::start(storage.clone(), stream.clone()));
    const SENDS: usize = 500;
    let sends: Vec<_> = (0..SENDS)
        .map(|i| {
            let writer = writer.clone();
            let message = message(&name, format!("m{i}"));
            tokio::spawn(async move { (i, writer.append(message).await) })
        })
        .collect();
    let mut answered = BTreeSet::new();
    let mut by_offset = vec![String::new(); SENDS];
    for send in sends {
        let (i, offset) = send.await.expect("task");
        let offset = offset.expect("durable");
        assert!(answered.insert(offset), "offset {offset} answered twice");
        by_offset[usize::try_from(offset).expect("small")] = format!("m{i}");
    }
    assert_eq!(answered.len(), SENDS);
    assert_eq!(answered.last(), Some(&(SENDS as u64 - 1)));
    let appends = counting.appends.load(Ordering::SeqCst);
    assert!(
        appends < SENDS,
        "grouped: {appends} appends for {SENDS} sends"
    );
    let stored = log(storage.as_ref(), &stream).await;
    assert_eq!(offsets(&stored), (0..SENDS as u64).collect::<Vec<_>>());
    for (message, payload) in stored.iter().zip(&by_offset) {
        assert_eq!(
            message.payload.as_ref(),
            payload.as_bytes(),
            "answered offset = stored place"
        );
    }
    writer.stop().await;
    let error = writer
        .append(message(&name, "late".into()))
        .await
        .expect_err("stopped");
    assert!(error.to_string().contains("stopped"), "{error}");
}

/// A message of producer `producer` (the writer tells producers apart by `msg_id.producer_id`).
fn message_of(topic: &TopicName, producer: u64, payload: String) -> StreamMessage {
    let mut message = message(topic, payload);
    if let Some(id) = message.msg_id.as_mut() {
        id.producer_id = producer;
    }
    message
}

/// A writer on a fresh log of a counting memory storage.
async fn counted_writer(name: &TopicName) -> (Arc<CountingStorage>, Arc<TopicWriter>) {
    let counting = Arc::new(CountingStorage {
        inner: MemoryStreamStorage::new(),
        appends: AtomicUsize::new(0),
    });
    let storage: Arc<dyn StreamStorage> = counting.clone();
    let stream = topic_log_stream(name);
    storage
        .create(&stream, topic_log_config(), Vec::new())
        .await
        .expect("log");
    (counting, Arc::new(TopicWriter::start(storage, stream)))
}

/// Producers that each wait for their answer come back one after another (each a round trip
/// later, here a few scheduler turns apart): the writer still groups them instead of
/// appending each alone as it arrives.
#[tokio::test(start_paused = true)]
async fn producers_returning_one_by_one_are_still_grouped() {
    let name = topic("/default/staggered");
    let (counting, writer) = counted_writer(&name).await;
    const PRODUCERS: u64 = 8;
    const ROUNDS: usize = 30;
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let writer = writer.clone();
            let name = name.clone();
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    writer
                        .append(message_of(&name, p, format!("p{p}-{round}")))
                        .await
                        .expect("durable");
                    // This producer's round trip: longer for the later ones.
                    for _ in 0..(p + 1) * 3 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("producer");
    }
    let sends = PRODUCERS as usize * ROUNDS;
    let appends = counting.appends.load(Ordering::SeqCst);
    assert!(
        appends <= sends / 4,
        "{appends} appends for {sends} sends of {PRODUCERS} producers"
    );
    let stored = log(&counting.inner, writer.stream()).await;
    assert_eq!(offsets(&stored), (0..sends as u64).collect::<Vec<_>>());
    writer.stop().await;
}

/// A lone producer never waits for company, and once the others stopped (for longer than
/// the writer counts them active) neither does the last one.
#[tokio::test(start_paused = true)]
async fn a_lone_producer_is_not_delayed() {
    let name = topic("/default/lone");
    let (_, writer) = counted_writer(&name).await;
    let started = tokio::time::Instant::now();
    for i in 0..50 {
        writer
            .append(message_of(&name, 1, format!("m{i}")))
            .await
            .expect("durable");
    }
    assert_eq!(started.elapsed(), std::time::Duration::ZERO, "no linger");

    // Eight producers, then only one of them.
    let tasks: Vec<_> = (2..10)
        .map(|p| {
            let writer = writer.clone();
            let name = name.clone();
            tokio::spawn(async move {
                writer
                    .append(message_of(&name, p, "once".into()))
                    .await
                    .expect("durable")
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("producer");
    }
    let alone = tokio::time::Instant::now();
    for i in 0..200 {
        writer
            .append(message_of(&name, 2, format!("after{i}")))
            .await
            .expect("durable");
    }
    let waited = alone.elapsed();
    assert!(
        waited < std::time::Duration::from_millis(100),
        "lingered {waited:?} for producers that stopped"
    );
    let last = tokio::time::Instant::now();
    writer
        .append(message_of(&name, 2, "last".into()))
        .await
        .expect("durable");
    assert_eq!(
        last.elapsed(),
        std::time::Duration::ZERO,
        "forgotten by now"
    );
    writer.stop().await;
}

#[tokio::test]
async fn competing_writers_on_one_log_keep_offsets_dense_and_unique() {
    let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
    let name = topic("/default/shared");
    let stream = topic_log_stream(&name);
    storage
        .create(&stream, topic_log_config(), Vec::new())
        .await
        .expect("log");
    // Two writers stand for two nodes that both believe they own the topic.
    let writers = [
        Arc::new(TopicWriter::start(storage.clone(), stream.clone())),
        Arc::new(TopicWriter::start(storage.clone(), stream.clone())),
    ];
    let mut tasks = Vec::new();
    for round in 0..40 {
        for (w, writer) in writers.iter().enumerate() {
            let writer = writer.clone();
            let message = message(&name, format!("w{w}-{round}"));
            tasks.push(tokio::spawn(async move { writer.append(message).await }));
        }
    }
    let mut answered = BTreeSet::new();
    for task in tasks {
        let offset = task.await.expect("task").expect("durable");
        assert!(answered.insert(offset), "offset {offset} given twice");
    }
    let stored = log(storage.as_ref(), &stream).await;
    assert_eq!(offsets(&stored), (0..80).collect::<Vec<_>>());
    for writer in &writers {
        writer.stop().await;
    }
}

#[tokio::test]
async fn stopping_a_writer_answers_every_queued_send_and_stores_exactly_the_acknowledged() {
    let storage: Arc<dyn StreamStorage> = Arc::new(MemoryStreamStorage::new());
    let name = topic("/default/stopping");
    let stream = topic_log_stream(&name);
    storage
        .create(&stream, topic_log_config(), Vec::new())
        .await
        .expect("log");
    let writer = Arc::new(TopicWriter::start(storage.clone(), stream.clone()));
    let sends: Vec<_> = (0..200)
        .map(|i| {
            let writer = writer.clone();
            let message = message(&name, format!("m{i}"));
            tokio::spawn(async move { (format!("m{i}"), writer.append(message).await) })
        })
        .collect();
    tokio::task::yield_now().await;
    writer.stop().await;
    let mut acknowledged = BTreeSet::new();
    for send in sends {
        let (payload, answer) = tokio::time::timeout(std::time::Duration::from_secs(10), send)
            .await
            .expect("every send is answered")
            .expect("task");
        match answer {
            Ok(offset) => {
                acknowledged.insert((offset, payload));
            }
            Err(error) => assert!(error.to_string().contains("stopped"), "{error}"),
        }
    }
    let stored: BTreeSet<(u64, String)> = log(storage.as_ref(), &stream)
        .await
        .into_iter()
        .map(|m| {
            let offset = m.msg_id.as_ref().expect("msg_id").topic_offset;
            (
                offset,
                String::from_utf8(m.payload.to_vec()).expect("utf-8"),
            )
        })
        .collect();
    assert_eq!(stored, acknowledged, "acknowledged = stored, nothing else");
}
