//! The universal [`StreamStorage`] cases. Each takes a [`StorageFactory`]; see
//! [`crate::storage_suite!`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use courier_traits::error::Classify;
use courier_traits::storage::{
    AppendOutcome, AppendRequest, CreateOutcome, Expiry, ForkFrom, Offset, ProducerStamp,
    ReadBatch, ReadLimits, Record, StorageError, StreamConfig, StreamName, StreamStorage,
    SubOffset, WaitOutcome,
};

use super::{StorageFactory, within};
use crate::fixtures::unique_prefix;

const TEXT: &str = "text/plain";

pub(super) fn name(label: &str) -> StreamName {
    StreamName::new(&format!("{}/{label}", unique_prefix()))
        .expect("generated stream names are valid")
}

pub(super) fn text_config() -> StreamConfig {
    StreamConfig::with_content_type(TEXT)
}

pub(super) fn rec(tag: &str, i: usize) -> Bytes {
    Bytes::from(format!("{tag}-{i:04}"))
}

pub(super) fn stamp(id: &str, epoch: u64, seq: u64) -> ProducerStamp {
    ProducerStamp::new(id, epoch, seq).expect("valid stamp")
}

/// A fork of `source` at its tail, inheriting its content type.
pub(super) fn fork_at_tail(source: &StreamName) -> StreamConfig {
    StreamConfig {
        fork: Some(ForkFrom {
            source: source.clone(),
            offset: None,
            sub_offset: SubOffset::None,
        }),
        ..StreamConfig::default()
    }
}

pub(super) async fn create(s: &dyn StreamStorage, name: &StreamName, config: StreamConfig) {
    match s.create(name, config, vec![]).await {
        Ok(CreateOutcome::Created(_)) => {}
        other => panic!("create {name}: expected Created, got {other:?}"),
    }
}

pub(super) async fn append(
    s: &dyn StreamStorage,
    name: &StreamName,
    request: AppendRequest,
) -> AppendOutcome {
    s.append(name, request)
        .await
        .unwrap_or_else(|e| panic!("append to {name}: {e}"))
}

/// Creates an empty text stream and returns its tail offset.
async fn create_tail(s: &dyn StreamStorage, name: &StreamName) -> Offset {
    match s.create(name, text_config(), vec![]).await {
        Ok(outcome) => outcome.info().next_offset.clone(),
        Err(e) => panic!("create {name}: {e}"),
    }
}

/// Starts a `wait` on its own task, so the test can append meanwhile.
fn spawn_wait<S: StreamStorage + 'static>(
    s: &Arc<S>,
    name: &StreamName,
    after: &Offset,
    timeout: Duration,
) -> tokio::task::JoinHandle<Result<WaitOutcome, StorageError>> {
    let (s, name, after) = (s.clone(), name.clone(), after.clone());
    tokio::spawn(async move { s.wait(&name, &after, timeout).await })
}

/// Every record from `from` on, following `next_offset` until up to date. A read that is not
/// up to date yet returns nothing fails the case (records lost below the tail), instead of
/// looping forever.
pub(super) async fn read_all(
    s: &dyn StreamStorage,
    name: &StreamName,
    from: Option<Offset>,
) -> (Vec<Record>, ReadBatch) {
    let mut records = Vec::new();
    let mut from = from;
    loop {
        let batch = s
            .read(name, from.clone(), ReadLimits::default())
            .await
            .unwrap_or_else(|e| panic!("read {name}: {e}"));
        records.extend(batch.records.iter().cloned());
        if batch.up_to_date {
            return (records, batch);
        }
        assert!(
            !batch.records.is_empty(),
            "read {name} from {from:?}: no records, yet not up to date (records missing below \
             the tail {:?})",
            batch.next_offset
        );
        from = Some(batch.next_offset.clone());
    }
}

pub(super) fn data(records: &[Record]) -> Vec<Bytes> {
    records.iter().map(|r| r.data.clone()).collect()
}

fn assert_code(
    result: Result<impl std::fmt::Debug, StorageError>,
    status: u16,
    what: &str,
) -> StorageError {
    match result {
        Err(e) if e.http_status() == status => e,
        other => panic!("{what}: expected an error with status {status}, got {other:?}"),
    }
}

/// Creating twice with the same configuration reports `AlreadyExists` and changes nothing.
pub async fn create_is_idempotent<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("idem");
    let first = s
        .create(&n, text_config(), vec![rec("init", 0)])
        .await
        .expect("create");
    assert!(matches!(first, CreateOutcome::Created(_)));
    assert_eq!(first.info().content_type, TEXT);
    let again = s
        .create(&n, text_config(), vec![rec("ignored", 1)])
        .await
        .expect("re-create");
    match again {
        CreateOutcome::AlreadyExists(info) => {
            assert_eq!(info.next_offset, first.info().next_offset)
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let (records, _) = read_all(&s, &n, None).await;
    assert_eq!(
        data(&records),
        vec![rec("init", 0)],
        "initial records are written once"
    );
    let untyped = name("default-type");
    let info = s
        .create(&untyped, StreamConfig::default(), vec![])
        .await
        .expect("create")
        .info()
        .clone();
    assert_eq!(
        info.content_type,
        courier_traits::storage::DEFAULT_CONTENT_TYPE
    );
}

/// A different content type, expiry or closed flag conflicts with the existing stream.
pub async fn create_conflicts<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("conflict");
    create(&s, &n, text_config()).await;
    let json = StreamConfig::with_content_type("application/json");
    assert!(matches!(
        s.create(&n, json, vec![]).await,
        Err(StorageError::ConfigConflict { .. })
    ));
    let closed = StreamConfig {
        closed: true,
        ..text_config()
    };
    assert!(matches!(
        s.create(&n, closed.clone(), vec![]).await,
        Err(StorageError::ConfigConflict { .. })
    ));
    if s.capabilities().ttl {
        let ttl = StreamConfig {
            expiry: Expiry::Ttl(Duration::from_secs(60)),
            ..text_config()
        };
        assert!(matches!(
            s.create(&n, ttl, vec![]).await,
            Err(StorageError::ConfigConflict { .. })
        ));
    }
    // A stream created closed matches only a closed re-create.
    let c = name("created-closed");
    let info = s
        .create(&c, closed.clone(), vec![rec("only", 0)])
        .await
        .expect("create closed")
        .info()
        .clone();
    assert!(info.closed);
    assert!(matches!(
        s.create(&c, closed, vec![]).await,
        Ok(CreateOutcome::AlreadyExists(_))
    ));
    assert!(matches!(
        s.create(&c, text_config(), vec![]).await,
        Err(StorageError::ConfigConflict { .. })
    ));
}

/// Every operation on a missing stream is `NotFound`, naming the stream.
pub async fn missing_stream_errors<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("missing");
    let not_found =
        |e: StorageError| matches!(e, StorageError::NotFound { ref stream } if *stream == n);
    assert!(not_found(
        s.append(&n, AppendRequest::record("x"))
            .await
            .expect_err("append")
    ));
    assert!(not_found(
        s.read(&n, None, ReadLimits::default())
            .await
            .expect_err("read")
    ));
    assert!(not_found(s.head(&n).await.expect_err("head")));
    assert!(not_found(s.delete(&n).await.expect_err("delete")));
    let other = name("exists");
    let tail = create_tail(&s, &other).await;
    assert!(not_found(
        s.wait(&n, &tail, Duration::from_millis(10))
            .await
            .expect_err("wait")
    ));
}

/// Bad input gets a 400-class error that names it; nothing already stored is lost.
pub async fn invalid_input_is_named<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("input");
    create(&s, &n, text_config()).await;
    append(&s, &n, AppendRequest::record("kept")).await;
    let empty = assert_code(
        s.append(&n, AppendRequest::records(vec![])).await,
        400,
        "empty append",
    );
    assert!(empty.to_string().contains("record"), "{empty}");
    let foreign = Offset::parse("not-an-offset-of-this-stream").expect("well-formed");
    assert_code(
        s.read(&n, Some(foreign.clone()), ReadLimits::default())
            .await,
        400,
        "read from a foreign offset",
    );
    assert_code(
        s.wait(&n, &foreign, Duration::from_millis(10)).await,
        400,
        "wait on a foreign offset",
    );
    let (records, _) = read_all(&s, &n, None).await;
    assert_eq!(data(&records), vec![Bytes::from_static(b"kept")]);
}

/// Records of 0 B to 4 MiB come back byte for byte (sizes above the backend's limit are
/// refused with 413 instead).
pub async fn round_trip_sizes<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let limit = s.capabilities().max_record_bytes.unwrap_or(usize::MAX);
    let n = name("sizes");
    create(&s, &n, StreamConfig::default()).await;
    let mut expected = Vec::new();
    for size in [0usize, 1, 100, 64 << 10, 1 << 20, 4 << 20] {
        let record = Bytes::from((0..size).map(|i| (i * 31 % 256) as u8).collect::<Vec<_>>());
        if size > limit {
            assert_code(
                s.append(&n, AppendRequest::record(record)).await,
                413,
                "record above the limit",
            );
            continue;
        }
        append(&s, &n, AppendRequest::record(record.clone())).await;
        expected.push(record);
    }
    let (records, _) = read_all(&s, &n, None).await;
    assert_eq!(records.len(), expected.len());
    for (got, want) in records.iter().zip(&expected) {
        assert_eq!(got.data.len(), want.len());
        assert!(
            got.data == want,
            "a {} B record came back altered",
            want.len()
        );
    }
}

/// Offsets strictly increase, sort bytewise, and agree between append, read and head.
pub async fn offsets_strictly_increase<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("offsets");
    let created = s.create(&n, text_config(), vec![]).await.expect("create");
    let mut previous = created.info().next_offset.clone();
    let mut firsts = Vec::new();
    for i in 0..100 {
        let outcome = append(&s, &n, AppendRequest::record(rec("o", i))).await;
        let first = outcome
            .first_offset
            .clone()
            .expect("an append of data reports its first offset");
        assert_eq!(
            first, previous,
            "a record starts where the previous append ended"
        );
        assert!(
            outcome.next_offset > previous,
            "next offset must grow: {previous} then {}",
            outcome.next_offset
        );
        previous = outcome.next_offset;
        firsts.push(first);
    }
    let (records, batch) = read_all(&s, &n, None).await;
    assert_eq!(
        records.iter().map(|r| r.offset.clone()).collect::<Vec<_>>(),
        firsts
    );
    assert_eq!(batch.next_offset, previous);
    assert_eq!(s.head(&n).await.expect("head").next_offset, previous);
    assert!(firsts.iter().all(|o| o.as_str().len() < 256));
}

/// Reading from any record's offset returns exactly that record and everything after it.
pub async fn read_from_every_offset<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("every");
    create(&s, &n, text_config()).await;
    for chunk in 0..10 {
        let records = (0..3).map(|i| rec("e", chunk * 3 + i)).collect();
        append(&s, &n, AppendRequest::records(records)).await;
    }
    let (all, tail) = read_all(&s, &n, None).await;
    assert_eq!(all.len(), 30);
    for (i, record) in all.iter().enumerate() {
        let (suffix, _) = read_all(&s, &n, Some(record.offset.clone())).await;
        assert_eq!(
            data(&suffix),
            data(&all[i..]),
            "read from record {i}'s offset"
        );
    }
    let at_tail = s
        .read(&n, Some(tail.next_offset.clone()), ReadLimits::default())
        .await
        .expect("read at tail");
    assert!(at_tail.records.is_empty() && at_tail.up_to_date);
    assert_eq!(
        at_tail.next_offset, tail.next_offset,
        "at the tail, next offset is the requested one"
    );
}

/// Reads bounded by record count or bytes page through the stream exactly; only the last
/// page is up to date. A record larger than `max_bytes` still comes back whole.
pub async fn read_limits_page_through<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("pages");
    create(&s, &n, text_config()).await;
    let expected: Vec<Bytes> = (0..50)
        .map(|i| Bytes::from(format!("{i:04}").repeat(256)))
        .collect();
    for record in &expected {
        append(&s, &n, AppendRequest::record(record.clone())).await;
    }
    for limits in [
        ReadLimits {
            max_records: 7,
            max_bytes: usize::MAX,
        },
        ReadLimits {
            max_records: 1000,
            max_bytes: 3000,
        },
    ] {
        let mut from = None;
        let mut got = Vec::new();
        loop {
            let batch = s.read(&n, from.clone(), limits).await.expect("read page");
            assert!(
                !batch.records.is_empty() || batch.up_to_date,
                "a page before the tail must make progress"
            );
            assert!(batch.records.len() <= limits.max_records);
            got.extend(data(&batch.records));
            if batch.up_to_date {
                break;
            }
            from = Some(batch.next_offset);
        }
        assert_eq!(got, expected, "paging with {limits:?}");
    }
    let tiny = s
        .read(
            &n,
            None,
            ReadLimits {
                max_records: 10,
                max_bytes: 1,
            },
        )
        .await
        .expect("read");
    assert_eq!(
        tiny.records.len(),
        1,
        "the first record is returned even when larger than max_bytes"
    );
}

/// `wait` returns at once when data lies past the offset, and is woken by an append, by a
/// close, and by a delete.
pub async fn wait_wakeups<F: StorageFactory>(factory: &F) {
    let s = Arc::new(factory.connect().await);
    let n = name("wake");
    let start = create_tail(&s, &n).await;
    let long = Duration::from_secs(15);

    let waiter = spawn_wait(&s, &n, &start, long);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = append(&s, &n, AppendRequest::record("wake up")).await;
    assert_eq!(
        within("wait woken by append", waiter)
            .await
            .expect("task")
            .expect("wait"),
        WaitOutcome::Ready
    );
    assert_eq!(
        s.wait(&n, &start, long).await.expect("wait"),
        WaitOutcome::Ready,
        "data already past the offset"
    );

    let waiter = spawn_wait(&s, &n, &after.next_offset, long);
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&s, &n, AppendRequest::close_only()).await;
    assert_eq!(
        within("wait woken by close", waiter)
            .await
            .expect("task")
            .expect("wait"),
        WaitOutcome::Closed
    );
    assert_eq!(
        s.wait(&n, &after.next_offset, long).await.expect("wait"),
        WaitOutcome::Closed,
        "closed at the tail"
    );

    let d = name("wake-delete");
    let tail = create_tail(&s, &d).await;
    let waiter = spawn_wait(&s, &d, &tail, long);
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.delete(&d).await.expect("delete");
    let result = within("wait woken by delete", waiter).await.expect("task");
    assert!(
        matches!(result, Err(StorageError::NotFound { .. })),
        "deleted while waiting: {result:?}"
    );
}

/// With nothing appended, `wait` returns `TimedOut` after its timeout.
pub async fn wait_times_out<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("timeout");
    let tail = create_tail(&s, &n).await;
    let started = tokio::time::Instant::now();
    assert_eq!(
        s.wait(&n, &tail, Duration::from_millis(300))
            .await
            .expect("wait"),
        WaitOutcome::TimedOut
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "returned before its timeout"
    );
}

/// Close: with or without data, idempotent, final; reads report closed only at the end.
pub async fn close_semantics<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("close");
    create(&s, &n, text_config()).await;
    append(&s, &n, AppendRequest::record("a")).await;
    let closing = append(&s, &n, AppendRequest::record("b").and_close()).await;
    assert!(closing.closed);
    let again = append(&s, &n, AppendRequest::close_only()).await;
    assert!(
        again.closed && again.next_offset == closing.next_offset,
        "closing again is idempotent"
    );
    match s.append(&n, AppendRequest::record("c")).await {
        Err(StorageError::Closed { next_offset, .. }) => {
            assert_eq!(next_offset, closing.next_offset)
        }
        other => panic!("append after close: expected Closed, got {other:?}"),
    }
    let head = s.head(&n).await.expect("head");
    assert!(head.closed);
    let partial = s
        .read(
            &n,
            None,
            ReadLimits {
                max_records: 1,
                ..ReadLimits::default()
            },
        )
        .await
        .expect("read");
    assert!(
        !partial.closed,
        "a partial read of a closed stream is not closed"
    );
    let (records, end) = read_all(&s, &n, None).await;
    assert_eq!(
        data(&records),
        vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
        "data before the close signal"
    );
    assert!(end.closed && end.up_to_date);
    let eof = s
        .read(&n, Some(end.next_offset.clone()), ReadLimits::default())
        .await
        .expect("read at the end");
    assert!(
        eof.records.is_empty() && eof.closed,
        "reading the final offset reports closed"
    );
    // Content type is not checked on a close-only append.
    let m = name("close-any-type");
    create(&s, &m, text_config()).await;
    append(
        &s,
        &m,
        AppendRequest::close_only().with_content_type("application/json"),
    )
    .await;
}

/// The writer sequence must sort strictly above the last accepted one, bytewise.
pub async fn writer_seq<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("wseq");
    create(&s, &n, text_config()).await;
    append(&s, &n, AppendRequest::record("1").with_writer_seq("2")).await;
    let regression = s
        .append(&n, AppendRequest::record("x").with_writer_seq("10"))
        .await;
    assert!(
        matches!(regression, Err(StorageError::WriterSeqRegression { .. })),
        "\"10\" sorts below \"2\""
    );
    let m = name("wseq2");
    create(&s, &m, text_config()).await;
    append(&s, &m, AppendRequest::record("1").with_writer_seq("09")).await;
    append(&s, &m, AppendRequest::record("2").with_writer_seq("10")).await;
    let repeat = s
        .append(&m, AppendRequest::record("x").with_writer_seq("10"))
        .await;
    assert!(
        matches!(repeat, Err(StorageError::WriterSeqRegression { .. })),
        "a repeated value is rejected"
    );
    append(&s, &m, AppendRequest::record("3")).await; // appends without a writer seq are unaffected
    let (records, _) = read_all(&s, &m, None).await;
    assert_eq!(records.len(), 3, "rejected appends wrote nothing");
}

/// A deleted stream is gone; creating it again gives a fresh, empty stream.
pub async fn delete_and_recreate<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("recreate");
    create(&s, &n, text_config()).await;
    append(&s, &n, AppendRequest::record("old")).await;
    s.delete(&n).await.expect("delete");
    assert!(matches!(
        s.head(&n).await,
        Err(StorageError::NotFound { .. })
    ));
    create(&s, &n, StreamConfig::with_content_type("application/json")).await;
    let (records, batch) = read_all(&s, &n, None).await;
    assert!(
        records.is_empty(),
        "a re-created stream has none of the old data"
    );
    assert_eq!(batch.content_type, "application/json");
}

/// 8 concurrent writers x 50 appends: nothing lost or duplicated, each writer's order kept,
/// offsets strictly increasing.
pub async fn concurrent_writers<F: StorageFactory>(factory: &F) {
    let s = Arc::new(factory.connect().await);
    let n = name("writers");
    create(&*s, &n, text_config()).await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (s, n) = (s.clone(), n.clone());
            tokio::spawn(async move {
                for i in 0..50 {
                    s.append(&n, AppendRequest::record(rec(&format!("w{w}"), i)))
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for writer in writers {
        within("a writer to finish", writer)
            .await
            .expect("writer task");
    }
    let (records, _) = read_all(&*s, &n, None).await;
    assert_eq!(records.len(), 400, "lost or duplicated records");
    assert!(
        records.windows(2).all(|w| w[0].offset < w[1].offset),
        "offsets must strictly increase"
    );
    let mut per_writer: HashMap<String, Vec<usize>> = HashMap::new();
    for record in &records {
        let text = String::from_utf8_lossy(&record.data).into_owned();
        let (writer, i) = text.split_once('-').expect("tagged record");
        per_writer
            .entry(writer.to_owned())
            .or_default()
            .push(i.parse().expect("index"));
    }
    assert_eq!(per_writer.len(), 8);
    for (writer, seq) in per_writer {
        assert_eq!(
            seq,
            (0..50).collect::<Vec<_>>(),
            "writer {writer}'s records lost, duplicated or reordered"
        );
    }
}

/// A TTL is an idle window: reads and appends keep the stream alive, `head` does not; once
/// idle past it the stream is gone and can be created anew.
pub async fn ttl_sliding_window<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let ttl = Duration::from_secs(2);
    let n = name("ttl");
    let config = StreamConfig {
        expiry: Expiry::Ttl(ttl),
        ..text_config()
    };
    let info = s
        .create(&n, config.clone(), vec![])
        .await
        .expect("create")
        .info()
        .clone();
    assert_eq!(
        info.expiry,
        Expiry::Ttl(ttl),
        "head reports the configured window"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.read(&n, None, ReadLimits::default())
        .await
        .expect("read resets the window");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.head(&n).await.expect("alive: last read was 1.2 s ago");
    append(&s, &n, AppendRequest::record("keep")).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.head(&n).await.expect("alive: last append was 1.2 s ago");
    tokio::time::sleep(Duration::from_millis(1300)).await; // 2.5 s idle; head did not reset it
    assert!(
        matches!(s.head(&n).await, Err(StorageError::NotFound { .. })),
        "expired after the idle window"
    );
    assert!(matches!(
        s.read(&n, None, ReadLimits::default()).await,
        Err(StorageError::NotFound { .. })
    ));
    create(&s, &n, config).await;
}

/// An absolute expiry passes whatever happens before it.
pub async fn absolute_expiry<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("expires");
    let at = SystemTime::now() + Duration::from_millis(1500);
    create(
        &s,
        &n,
        StreamConfig {
            expiry: Expiry::At(at),
            ..text_config()
        },
    )
    .await;
    append(&s, &n, AppendRequest::record("soon gone")).await;
    s.read(&n, None, ReadLimits::default())
        .await
        .expect("read before expiry");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(matches!(
        s.head(&n).await,
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        s.append(&n, AppendRequest::record("late")).await,
        Err(StorageError::NotFound { .. })
    ));
    create(&s, &n, text_config()).await;
}

/// A producer's retry of an accepted seq writes nothing and acknowledges the highest seq.
pub async fn producer_dedup<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("dedup");
    create(&s, &n, text_config()).await;
    for seq in 0..3u64 {
        let outcome = append(
            &s,
            &n,
            AppendRequest::record(rec("p", seq as usize)).with_producer(stamp("p1", 0, seq)),
        )
        .await;
        assert!(!outcome.duplicate);
        assert_eq!(outcome.producer.map(|p| (p.epoch, p.seq)), Some((0, seq)));
    }
    let retry = append(
        &s,
        &n,
        AppendRequest::record("retry of 1").with_producer(stamp("p1", 0, 1)),
    )
    .await;
    assert!(retry.duplicate, "seq 1 again is a duplicate");
    assert_eq!(
        retry.producer.map(|p| (p.epoch, p.seq)),
        Some((0, 2)),
        "acknowledges the highest accepted seq"
    );
    // Producers are independent of each other.
    append(
        &s,
        &n,
        AppendRequest::record("other").with_producer(stamp("p2", 0, 0)),
    )
    .await;
    let (records, _) = read_all(&s, &n, None).await;
    assert_eq!(
        data(&records),
        vec![
            rec("p", 0),
            rec("p", 1),
            rec("p", 2),
            Bytes::from_static(b"other")
        ]
    );
}

/// Gaps, stale epochs and new epochs follow the idempotent-producer rules.
pub async fn producer_epochs_and_gaps<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("epochs");
    create(&s, &n, text_config()).await;
    let send = |epoch, seq| {
        AppendRequest::record(format!("{epoch}/{seq}")).with_producer(stamp("p", epoch, seq))
    };
    assert!(matches!(
        s.append(&n, send(0, 5)).await,
        Err(StorageError::ProducerSeqGap {
            expected: 0,
            received: 5
        })
    ));
    append(&s, &n, send(0, 0)).await;
    append(&s, &n, send(0, 1)).await;
    assert!(matches!(
        s.append(&n, send(0, 3)).await,
        Err(StorageError::ProducerSeqGap {
            expected: 2,
            received: 3
        })
    ));
    assert!(matches!(
        s.append(&n, send(1, 4)).await,
        Err(StorageError::ProducerEpochStart { epoch: 1, seq: 4 })
    ));
    let bumped = append(&s, &n, send(1, 0)).await;
    assert_eq!(bumped.producer.map(|p| (p.epoch, p.seq)), Some((1, 0)));
    match s.append(&n, send(0, 2)).await {
        Err(
            e @ StorageError::StaleProducerEpoch {
                current: 1,
                received: 0,
            },
        ) => assert_eq!(e.http_status(), 403),
        other => panic!("old epoch: expected StaleProducerEpoch, got {other:?}"),
    }
    let (records, _) = read_all(&s, &n, None).await;
    assert_eq!(records.len(), 3, "rejected appends wrote nothing");
}

/// The append that closed a stream, retried with the same stamp, is a duplicate; any other
/// stamp gets `Closed`.
pub async fn producer_close_retry<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("close-retry");
    create(&s, &n, text_config()).await;
    append(
        &s,
        &n,
        AppendRequest::record("a").with_producer(stamp("p", 0, 0)),
    )
    .await;
    let closing = append(
        &s,
        &n,
        AppendRequest::record("b")
            .and_close()
            .with_producer(stamp("p", 0, 1)),
    )
    .await;
    assert!(closing.closed);
    let retry = append(
        &s,
        &n,
        AppendRequest::record("b, sent again")
            .and_close()
            .with_producer(stamp("p", 0, 1)),
    )
    .await;
    assert!(
        retry.duplicate && retry.closed,
        "a retry of the closing append is acknowledged"
    );
    let retry_no_body = append(
        &s,
        &n,
        AppendRequest::close_only().with_producer(stamp("p", 0, 1)),
    )
    .await;
    assert!(retry_no_body.duplicate && retry_no_body.closed);
    let other = s
        .append(
            &n,
            AppendRequest::record("c").with_producer(stamp("p", 0, 2)),
        )
        .await;
    assert!(
        matches!(other, Err(StorageError::Closed { .. })),
        "{other:?}"
    );
    let (records, _) = read_all(&s, &n, None).await;
    assert_eq!(records.len(), 2);
}

/// An append that fails validation does not advance the producer's state.
pub async fn failed_append_keeps_producer_state<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("failed");
    create(&s, &n, text_config()).await;
    let wrong = AppendRequest::record("{}")
        .with_content_type("application/json")
        .with_producer(stamp("p", 0, 0));
    assert!(matches!(
        s.append(&n, wrong).await,
        Err(StorageError::ContentTypeMismatch { .. })
    ));
    let right = append(
        &s,
        &n,
        AppendRequest::record("ok")
            .with_content_type(TEXT)
            .with_producer(stamp("p", 0, 0)),
    )
    .await;
    assert!(
        !right.duplicate,
        "seq 0 was not consumed by the failed append"
    );
}

/// A fork reads the source up to the fork point, then its own appends; later source appends
/// are invisible to it; offsets share the source's space; chains of forks work.
pub async fn fork_reads<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let src = name("fork-src");
    create(&s, &src, text_config()).await;
    let mut offsets = Vec::new();
    for i in 0..5 {
        offsets.push(
            append(&s, &src, AppendRequest::record(rec("s", i)))
                .await
                .next_offset,
        );
    }
    let fork = name("fork");
    let config = StreamConfig {
        content_type: None,
        fork: Some(ForkFrom {
            source: src.clone(),
            offset: Some(offsets[2].clone()),
            sub_offset: SubOffset::None,
        }),
        ..StreamConfig::default()
    };
    let info = s
        .create(&fork, config.clone(), vec![])
        .await
        .expect("fork")
        .info()
        .clone();
    assert_eq!(info.content_type, TEXT, "content type is inherited");
    assert_eq!(
        info.next_offset, offsets[2],
        "the fork's tail is the fork point"
    );
    assert!(matches!(
        s.create(&fork, config, vec![]).await,
        Ok(CreateOutcome::AlreadyExists(_))
    ));
    append(&s, &fork, AppendRequest::record("own")).await;
    append(&s, &src, AppendRequest::record("source-later")).await;
    let (records, _) = read_all(&s, &fork, None).await;
    assert_eq!(
        data(&records),
        vec![
            rec("s", 0),
            rec("s", 1),
            rec("s", 2),
            Bytes::from_static(b"own")
        ]
    );
    let (from_fork_point, _) = read_all(&s, &fork, Some(offsets[1].clone())).await;
    assert_eq!(
        data(&from_fork_point),
        vec![rec("s", 2), Bytes::from_static(b"own")],
        "source offsets work on the fork"
    );
    // Producer and writer-seq state are not inherited, and a fork of a fork works.
    append(
        &s,
        &src,
        AppendRequest::record("x").with_producer(stamp("p", 0, 0)),
    )
    .await;
    let chained = name("fork-of-fork");
    let config = StreamConfig {
        fork: Some(ForkFrom {
            source: fork.clone(),
            offset: None,
            sub_offset: SubOffset::None,
        }),
        ..StreamConfig::default()
    };
    s.create(&chained, config, vec![])
        .await
        .expect("fork of a fork");
    let fresh = append(
        &s,
        &chained,
        AppendRequest::record("y").with_producer(stamp("p", 0, 0)),
    )
    .await;
    assert!(!fresh.duplicate, "producer state is not inherited");
    let (records, _) = read_all(&s, &chained, None).await;
    assert_eq!(records.len(), 5);
}

/// Sub-offsets fork a number of records or bytes past the fork offset (a record cut in the
/// middle is inherited truncated); overshooting is refused.
pub async fn fork_sub_offsets<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let src = name("sub-src");
    let start = create_tail(&s, &src).await;
    append(
        &s,
        &src,
        AppendRequest::records(vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"defg"),
        ]),
    )
    .await;
    let fork_at = |sub_offset| StreamConfig {
        fork: Some(ForkFrom {
            source: src.clone(),
            offset: Some(start.clone()),
            sub_offset,
        }),
        ..StreamConfig::default()
    };
    let by_records = name("sub-records");
    s.create(&by_records, fork_at(SubOffset::Records(1)), vec![])
        .await
        .expect("fork by records");
    assert_eq!(
        data(&read_all(&s, &by_records, None).await.0),
        vec![Bytes::from_static(b"abc")]
    );
    let by_bytes = name("sub-bytes");
    s.create(&by_bytes, fork_at(SubOffset::Bytes(5)), vec![])
        .await
        .expect("fork by bytes");
    let inherited: Vec<u8> = data(&read_all(&s, &by_bytes, None).await.0).concat();
    assert_eq!(inherited, b"abcde", "five bytes past the fork offset");
    assert_code(
        s.create(&name("sub-over"), fork_at(SubOffset::Records(3)), vec![])
            .await,
        400,
        "records overshoot",
    );
    assert_code(
        s.create(&name("sub-over-b"), fork_at(SubOffset::Bytes(8)), vec![])
            .await,
        400,
        "bytes overshoot",
    );
}

/// Forks of missing or deleted sources, and with a different content type, are refused.
pub async fn fork_errors<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let missing = name("no-source");
    assert!(matches!(
        s.create(&name("f1"), fork_at_tail(&missing), vec![]).await,
        Err(StorageError::ForkSourceNotFound { .. })
    ));
    let src = name("typed-src");
    create(&s, &src, text_config()).await;
    let json_fork = StreamConfig {
        content_type: Some("application/json".into()),
        ..fork_at_tail(&src)
    };
    assert_code(
        s.create(&name("f2"), json_fork, vec![]).await,
        409,
        "fork with another content type",
    );
    // Keep the source alive through a fork, delete it: forking it again is refused.
    s.create(&name("keeper"), fork_at_tail(&src), vec![])
        .await
        .expect("fork");
    s.delete(&src).await.expect("delete source");
    assert!(matches!(
        s.create(&name("f3"), fork_at_tail(&src), vec![]).await,
        Err(StorageError::ForkSourceGone { .. })
    ));
}

/// Deleting a source with live forks soft-deletes it (Gone, name blocked, data kept for the
/// forks); deleting the last fork reclaims it, up the chain.
pub async fn fork_delete_lifecycle<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let src = name("life-src");
    create(&s, &src, text_config()).await;
    append(&s, &src, AppendRequest::record("inherited")).await;
    let fork = name("life-fork");
    let config = StreamConfig {
        fork: Some(ForkFrom {
            source: src.clone(),
            offset: None,
            sub_offset: SubOffset::None,
        }),
        ..StreamConfig::default()
    };
    s.create(&fork, config, vec![]).await.expect("fork");
    s.delete(&src)
        .await
        .expect("delete source with a live fork");
    assert!(matches!(s.head(&src).await, Err(StorageError::Gone { .. })));
    assert!(matches!(
        s.read(&src, None, ReadLimits::default()).await,
        Err(StorageError::Gone { .. })
    ));
    assert!(matches!(
        s.append(&src, AppendRequest::record("x")).await,
        Err(StorageError::Gone { .. })
    ));
    assert!(matches!(
        s.delete(&src).await,
        Err(StorageError::Gone { .. })
    ));
    assert_code(
        s.create(&src, text_config(), vec![]).await,
        409,
        "re-create on a soft-deleted name",
    );
    let (records, _) = read_all(&s, &fork, None).await;
    assert_eq!(
        data(&records),
        vec![Bytes::from_static(b"inherited")],
        "the fork still reads inherited data"
    );
    s.delete(&fork).await.expect("delete the fork");
    assert!(
        matches!(s.head(&src).await, Err(StorageError::NotFound { .. })),
        "source reclaimed with its last fork"
    );
    create(&s, &src, text_config()).await;
}

/// Every acknowledged append survives a restart of the server, and the same storage instance
/// recovers by itself.
pub async fn survives_server_restart<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("restart");
    create(&s, &n, text_config()).await;
    for i in 0..20 {
        append(&s, &n, AppendRequest::record(rec("r", i))).await;
    }
    factory.restart_server().await.expect("restart the server");
    let deadline = tokio::time::Instant::now() + super::EVENT_TIMEOUT;
    loop {
        match s.append(&n, AppendRequest::record(rec("r", 20))).await {
            Ok(_) => break,
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("append after restart: {e}"),
        }
    }
    let (records, _) = read_all(&s, &n, None).await;
    assert_eq!(
        data(&records),
        (0..21).map(|i| rec("r", i)).collect::<Vec<_>>(),
        "acknowledged appends lost"
    );
}

/// While the server is down, an append fails with a retryable error (not a hang, not a
/// permanent error, nothing half-written); once it is back, the same instance appends and
/// reads again without being recreated.
pub async fn unavailable_while_server_down<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("outage");
    create(&s, &n, text_config()).await;
    append(&s, &n, AppendRequest::record("before")).await;
    factory.stop_server().await.expect("stop the server");
    match within(
        "an append to a stopped server to fail",
        s.append(&n, AppendRequest::record("down")),
    )
    .await
    {
        Err(e) => assert!(
            e.is_retryable(),
            "connection loss must be retryable, got: {e}"
        ),
        Ok(_) => panic!("an append to a stopped server succeeded"),
    }
    factory
        .start_server()
        .await
        .expect("start the server again");
    let deadline = tokio::time::Instant::now() + super::EVENT_TIMEOUT;
    loop {
        match s.append(&n, AppendRequest::record("after")).await {
            Ok(_) => break,
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("append after the server came back: {e}"),
        }
    }
    let (records, _) = read_all(&s, &n, None).await;
    assert_eq!(
        data(&records),
        vec![Bytes::from_static(b"before"), Bytes::from_static(b"after")]
    );
}

/// Two instances on one backend act as one: an append through one wakes a wait on the other.
pub async fn wait_across_nodes<F: StorageFactory>(factory: &F) {
    let (a, b) = (Arc::new(factory.connect().await), factory.connect().await);
    let n = name("nodes");
    let tail = create_tail(&a, &n).await;
    let waiter = spawn_wait(&a, &n, &tail, Duration::from_secs(15));
    tokio::time::sleep(Duration::from_millis(200)).await;
    append(&b, &n, AppendRequest::record("from b")).await;
    assert_eq!(
        within("a wait on node a woken by node b", waiter)
            .await
            .expect("task")
            .expect("wait"),
        WaitOutcome::Ready
    );
    let (records, _) = read_all(&*a, &n, None).await;
    assert_eq!(data(&records), vec![Bytes::from_static(b"from b")]);
}
