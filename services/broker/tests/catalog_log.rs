//! The catalog and the topic logs on real storages: topics survive a restart, creation rules,
//! and the writer's dense offsets under concurrent sends and competing writers.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use courier_broker::catalog::{
    Catalog, CatalogError, Dispatch, decode_record, topic_log_config, topic_log_stream,
};
use courier_broker::directory::{Owner, TopicView};
use courier_broker::topic::TopicName;
use courier_broker::writer::{Appended, AppendedSink, TopicWriter};
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

/// When a [`HeldStorage`] holds an append.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// Before the append reaches the storage: it is not stored.
    Before,
    /// After the append committed: it is stored, but its answer waits.
    After,
}

/// A memory storage that notes which task made each append (and how many records it held),
/// to see the writer group sends, and can hold the next append until released, to look at
/// the writer mid-append.
struct HeldStorage {
    inner: MemoryStreamStorage,
    appends: std::sync::Mutex<Vec<(Option<tokio::task::Id>, usize)>>,
    hold_next: std::sync::Mutex<Option<Hold>>,
    /// Notified once a held append is waiting.
    held: tokio::sync::Notify,
    release: tokio::sync::Semaphore,
}

impl HeldStorage {
    fn new() -> Arc<HeldStorage> {
        Arc::new(HeldStorage {
            inner: MemoryStreamStorage::new(),
            appends: std::sync::Mutex::new(Vec::new()),
            hold_next: std::sync::Mutex::new(None),
            held: tokio::sync::Notify::new(),
            release: tokio::sync::Semaphore::new(0),
        })
    }

    fn appends(&self) -> Vec<(Option<tokio::task::Id>, usize)> {
        self.appends.lock().expect("appends").clone()
    }

    async fn wait_held(&self) {
        self.held.notified().await;
    }

    async fn pass(&self, hold: Option<Hold>) {
        if hold.is_some() {
            self.held.notify_one();
            self.release.acquire().await.expect("open").forget();
        }
    }
}

#[async_trait::async_trait]
impl ForwardingStorage for HeldStorage {
    fn inner(&self) -> &dyn StreamStorage {
        &self.inner
    }
    async fn append(
        &self,
        name: &StreamName,
        request: AppendRequest,
    ) -> Result<AppendOutcome, StorageError> {
        self.appends
            .lock()
            .expect("appends")
            .push((tokio::task::try_id(), request.records.len()));
        let hold = self.hold_next.lock().expect("hold").take();
        // An append takes a round trip on every real storage (another thread, the network):
        // only while one is in flight can concurrent sends queue up behind it. Appended
        // without ever yielding, each send would find none in flight and go alone.
        tokio::task::yield_now().await;
        if hold == Some(Hold::Before) {
            self.pass(hold).await;
        }
        let outcome = self.inner.append(name, request).await;
        if hold == Some(Hold::After) {
            self.pass(hold).await;
        }
        outcome
    }
}

/// A writer on a fresh log of a held memory storage.
async fn held_writer(name: &TopicName) -> (Arc<HeldStorage>, Arc<TopicWriter>) {
    let held = HeldStorage::new();
    let storage: Arc<dyn StreamStorage> = held.clone();
    let stream = topic_log_stream(name);
    storage
        .create(&stream, topic_log_config(), Vec::new())
        .await
        .expect("log");
    (held, Arc::new(TopicWriter::start(storage, stream)))
}

#[tokio::test]
async fn concurrent_sends_are_grouped_into_few_appends_with_dense_offsets() {
    let name = topic("/default/busy");
    let (held, writer) = held_writer(&name).await;
    let storage: &dyn StreamStorage = &held.inner;
    let stream = writer.stream().clone();
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
    let appends = held.appends().len();
    assert!(
        appends < SENDS,
        "grouped: {appends} appends for {SENDS} sends"
    );
    let stored = log(storage, &stream).await;
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

/// Producers that each wait for their answer come back one after another (each a round trip
/// later, here a few scheduler turns apart): the writer still groups them instead of
/// appending each alone as it arrives.
#[tokio::test(start_paused = true)]
async fn producers_returning_one_by_one_are_still_grouped() {
    let name = topic("/default/staggered");
    let (held, writer) = held_writer(&name).await;
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
    let appends = held.appends().len();
    assert!(
        appends <= sends / 4,
        "{appends} appends for {sends} sends of {PRODUCERS} producers"
    );
    let stored = log(&held.inner, writer.stream()).await;
    assert_eq!(offsets(&stored), (0..sends as u64).collect::<Vec<_>>());
    writer.stop().await;
}

/// A lone producer never waits for company, and once the others stopped (for longer than
/// the writer counts them active) neither does the last one.
#[tokio::test(start_paused = true)]
async fn a_lone_producer_is_not_delayed() {
    let name = topic("/default/lone");
    let (_, writer) = held_writer(&name).await;
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

/// A subscription as the writer sees it: keeps what it is handed.
#[derive(Default)]
struct Handed {
    appends: std::sync::Mutex<Vec<Appended>>,
    stopped: AtomicBool,
}

impl Handed {
    fn following(writer: &TopicWriter) -> Arc<Handed> {
        let handed = Arc::new(Handed::default());
        writer.follow(Arc::downgrade(&handed) as Weak<dyn AppendedSink>);
        handed
    }

    fn taken(&self) -> Vec<Appended> {
        self.appends.lock().expect("appends").clone()
    }
}

impl AppendedSink for Handed {
    fn appended(&self, appended: &Appended) -> bool {
        self.appends.lock().expect("appends").push(appended.clone());
        true
    }

    fn writer_stopped(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

/// A lone producer's sends are appended from the sender's own task (not handed to the writer
/// task and back), still with dense offsets, and each append still reaches the
/// subscriptions.
#[tokio::test]
async fn a_lone_send_is_appended_on_its_own_task_with_dense_offsets_and_handed_on() {
    let name = topic("/default/alone");
    let (held, writer) = held_writer(&name).await;
    let handed = Handed::following(&writer);
    let sender = {
        let writer = writer.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let mut offsets = Vec::new();
            for i in 0..5 {
                let offset = writer
                    .append(message_of(&name, 1, format!("m{i}")))
                    .await
                    .expect("durable");
                offsets.push(offset);
            }
            (tokio::task::id(), offsets)
        })
    };
    let (sender_id, answered) = sender.await.expect("sender");
    assert_eq!(answered, vec![0, 1, 2, 3, 4]);
    let appends = held.appends();
    assert_eq!(appends.len(), 5, "one append per lone send");
    for (task, records) in appends {
        assert_eq!(task, Some(sender_id), "appended on the sender's own task");
        assert_eq!(records, 1);
    }
    let appended = handed.taken();
    assert_eq!(appended.len(), 5, "each append handed on");
    let mut previous_end = None;
    for (expected, append) in (0..5u64).zip(appended) {
        assert_eq!(append.first_offset, expected);
        assert_eq!(
            offsets(&append.messages),
            vec![expected],
            "topic_offset set"
        );
        assert_eq!(
            append.messages[0].payload.as_ref(),
            format!("m{expected}").as_bytes()
        );
        if let Some(end) = previous_end {
            assert!(append.continues(&end), "each append continues the last");
        }
        previous_end = Some(append.next_position.clone());
    }
    let stored = log(&held.inner, writer.stream()).await;
    assert_eq!(offsets(&stored), vec![0, 1, 2, 3, 4]);
    assert!(!handed.stopped.load(Ordering::SeqCst));
    writer.stop().await;
    assert!(
        handed.stopped.load(Ordering::SeqCst),
        "told the writer stopped"
    );
}

/// Sends that come while a lone send's append is in flight wait for it, then go together in
/// one append of the writer task, after it, with the next offsets.
#[tokio::test]
async fn sends_during_an_append_in_flight_join_the_writer_batch_after_it() {
    let name = topic("/default/joined");
    let (held, writer) = held_writer(&name).await;
    let handed = Handed::following(&writer);
    *held.hold_next.lock().expect("hold") = Some(Hold::After);
    let first = {
        let writer = writer.clone();
        let message = message_of(&name, 1, "first".into());
        tokio::spawn(async move { (tokio::task::id(), writer.append(message).await) })
    };
    held.wait_held().await;
    let others: Vec<_> = (2..7u64)
        .map(|p| {
            let writer = writer.clone();
            let message = message_of(&name, p, format!("p{p}"));
            tokio::spawn(async move { writer.append(message).await })
        })
        .collect();
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        held.appends().len(),
        1,
        "the others wait for the append in flight"
    );
    held.release.add_permits(1);
    let (first_task, first_offset) = first.await.expect("first");
    assert_eq!(first_offset.expect("durable"), 0);
    let mut answered = BTreeSet::new();
    for other in others {
        answered.insert(other.await.expect("task").expect("durable"));
    }
    assert_eq!(answered, (1..6).collect::<BTreeSet<u64>>());
    let appends = held.appends();
    assert_eq!(appends.len(), 2, "the five went in one append");
    assert_eq!(appends[0], (Some(first_task), 1));
    assert_ne!(
        appends[1].0,
        Some(first_task),
        "appended by the writer task"
    );
    assert_eq!(appends[1].1, 5);
    let handed: Vec<u64> = handed.taken().iter().map(|a| a.first_offset).collect();
    assert_eq!(handed, vec![0, 1], "handed on in log order");
    let stored = log(&held.inner, writer.stream()).await;
    assert_eq!(offsets(&stored), (0..6).collect::<Vec<_>>());
    writer.stop().await;
}

/// A lone send whose caller is dropped mid-append (the RPC cancelled) leaves the writer
/// usable with dense offsets, whether its append was stored (the next append loses the
/// writer-sequence race and re-reads the tail) or not.
#[tokio::test]
async fn a_lone_send_dropped_mid_append_keeps_the_next_offsets_dense() {
    let name = topic("/default/dropped");
    let (held, writer) = held_writer(&name).await;
    let mut expected_log = Vec::new();
    for (round, hold) in [Hold::After, Hold::Before, Hold::After]
        .into_iter()
        .enumerate()
    {
        *held.hold_next.lock().expect("hold") = Some(hold);
        let dropped = {
            let writer = writer.clone();
            let message = message_of(&name, 1, format!("dropped{round}"));
            tokio::spawn(async move { writer.append(message).await })
        };
        held.wait_held().await;
        dropped.abort();
        assert!(dropped.await.expect_err("aborted").is_cancelled());
        // Dropped with its caller, the held append never takes this permit (it is taken
        // back below): had it gone on elsewhere, it would.
        held.release.add_permits(1);
        if hold == Hold::After {
            expected_log.push(format!("dropped{round}"));
        }
        for i in 0..3 {
            let payload = format!("r{round}-{i}");
            let offset = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                writer.append(message_of(&name, 1, payload.clone())),
            )
            .await
            .expect("the writer goes on")
            .expect("durable");
            assert_eq!(offset, expected_log.len() as u64, "{payload}");
            expected_log.push(payload);
        }
        if let Ok(unused) = held.release.try_acquire() {
            unused.forget();
        }
    }
    let stored = log(&held.inner, writer.stream()).await;
    assert_eq!(
        offsets(&stored),
        (0..expected_log.len() as u64).collect::<Vec<_>>()
    );
    let payloads: Vec<String> = stored
        .iter()
        .map(|m| String::from_utf8(m.payload.to_vec()).expect("utf-8"))
        .collect();
    assert_eq!(payloads, expected_log);
    writer.stop().await;
}
