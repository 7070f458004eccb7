//! `read_joined` of [`SqliteStreamStorage`] against what the trait's default builds from
//! `read` and `head`, from the recent-records cache and from SQLite alike.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use courier_traits::clock::ManualClock;
use courier_traits::storage::{
    AppendRequest, Expiry, ForkFrom, JoinedBatch, Joining, ReadFrom, ReadLimits, StorageError,
    StreamConfig, StreamName, StreamStorage, SubOffset,
};

use super::{SqliteStorageConfig, SqliteStreamStorage};

fn joining(content_type: &str) -> Joining {
    if content_type == "application/json" {
        Joining::JsonArray
    } else {
        Joining::Concat
    }
}

fn temp_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "courier-sqlite-{what}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ))
}

/// What the trait's default answers: `read` joined, or from the tail `head`'s tail.
async fn by_default(
    store: &SqliteStreamStorage,
    name: &StreamName,
    from: &ReadFrom,
    limits: ReadLimits,
) -> JoinedBatch {
    match from {
        ReadFrom::Tail => {
            let head = store.head(name).await.expect("head");
            JoinedBatch::empty_at_tail(head, joining)
        }
        ReadFrom::Start => {
            let batch = store.read(name, None, limits).await.expect("read");
            JoinedBatch::from_batch(batch, joining)
        }
        ReadFrom::After(offset) => {
            let batch = store
                .read(name, Some(offset.clone()), limits)
                .await
                .expect("read");
            JoinedBatch::from_batch(batch, joining)
        }
    }
}

/// Every start and limit of `name`, open and then closed, answers as the default does.
async fn check_every_read(store: &SqliteStreamStorage, name: &StreamName) {
    let limits = [
        ReadLimits::default(),
        ReadLimits {
            max_records: 2,
            max_bytes: 1 << 20,
        },
        // The first record is always whole; then records while they fit.
        ReadLimits {
            max_records: 100,
            max_bytes: 1,
        },
        ReadLimits {
            max_records: 100,
            max_bytes: 7,
        },
    ];
    let all = store
        .read(name, None, ReadLimits::default())
        .await
        .expect("read");
    let mut starts = vec![ReadFrom::Start, ReadFrom::Tail];
    starts.extend(
        all.records
            .iter()
            .map(|r| ReadFrom::After(r.offset.clone())),
    );
    for closed in [false, true] {
        if closed {
            store
                .append(name, AppendRequest::close_only())
                .await
                .expect("close");
        }
        for from in &starts {
            for limit in limits {
                let ours = store
                    .read_joined(name, from.clone(), limit, joining)
                    .await
                    .expect("joined");
                let default = by_default(store, name, from, limit).await;
                assert_eq!(
                    ours, default,
                    "{name} from {from:?} {limit:?} closed {closed}"
                );
            }
        }
    }
}

/// Joined reads answer what the default answers, whether the cache holds the stream (records
/// appended by this instance) or SQLite does (the cache off, or records created with the
/// stream, which the cache never holds), for a fork too.
#[tokio::test]
async fn joined_reads_answer_what_read_and_head_answer() {
    for recent_bytes in [32 << 20, 0] {
        let dir = temp_dir("joined");
        let config = SqliteStorageConfig::default().with_recent_bytes(recent_bytes);
        let store = SqliteStreamStorage::connect(dir.join("s.db"), config)
            .await
            .expect("connect");
        for (stream, content_type, records) in [
            ("text", "text/plain", vec!["ab", "", "cde", "f", "ghij"]),
            (
                "json",
                "application/json",
                vec!["1", "{\"a\":[2]}", "\"x\"", "[]"],
            ),
            ("empty", "application/json", vec![]),
        ] {
            let config = StreamConfig::with_content_type(content_type);
            // Half created with the stream, half appended.
            let (initial, appended) = records.split_at(records.len() / 2);
            let initial: Vec<Bytes> = initial.iter().map(|r| Bytes::from(*r)).collect();
            for name in [stream.to_string(), format!("{stream}-appended")] {
                let name = StreamName::new(&name).expect("valid");
                let (initial, appended) = if name.as_str() == stream {
                    (initial.clone(), appended)
                } else {
                    (Vec::new(), &records[..])
                };
                store
                    .create(&name, config.clone(), initial)
                    .await
                    .expect("create");
                for record in appended {
                    store
                        .append(&name, AppendRequest::record(*record))
                        .await
                        .expect("append");
                }
                let source_tail = store.head(&name).await.expect("head").next_offset;
                // A fork holds its source's records as of the fork, and its own after.
                let fork = StreamName::new(&format!("{name}-fork")).expect("valid");
                let fork_config = StreamConfig {
                    fork: Some(ForkFrom {
                        source: name.clone(),
                        offset: Some(source_tail),
                        sub_offset: SubOffset::default(),
                    }),
                    ..StreamConfig::default()
                };
                store
                    .create(&fork, fork_config, vec![])
                    .await
                    .expect("fork");
                check_every_read(&store, &name).await;
                store
                    .append(&fork, AppendRequest::record("7"))
                    .await
                    .expect("append to the fork");
                check_every_read(&store, &fork).await;
            }
        }
        let missing = StreamName::new("missing").expect("valid");
        for from in [ReadFrom::Start, ReadFrom::Tail] {
            let read = store
                .read_joined(&missing, from, ReadLimits::default(), joining)
                .await;
            assert!(
                matches!(read, Err(StorageError::NotFound { .. })),
                "{read:?}"
            );
        }
        let text = StreamName::new("text").expect("valid");
        let past_tail = ReadFrom::After(crate::rules::index_offset::encode(1000));
        let read = store
            .read_joined(&text, past_tail, ReadLimits::default(), joining)
            .await;
        assert!(
            matches!(read, Err(StorageError::UnknownOffset { .. })),
            "{read:?}"
        );
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A joined read, from the tail too, is a read: it resets an idle TTL; once the window has
/// passed the stream is gone for it.
#[tokio::test]
async fn a_joined_read_resets_an_idle_ttl_and_an_expired_stream_is_not_found() {
    for recent_bytes in [32 << 20, 0] {
        let dir = temp_dir("joined-ttl");
        let clock = ManualClock::new(1_000_000);
        let config = SqliteStorageConfig::default()
            .with_recent_bytes(recent_bytes)
            .with_clock(clock.shared());
        let store = SqliteStreamStorage::connect(dir.join("s.db"), config)
            .await
            .expect("connect");
        let name = StreamName::new("ttl").expect("valid");
        let config = StreamConfig {
            expiry: Expiry::Ttl(Duration::from_secs(60)),
            ..StreamConfig::with_content_type("text/plain")
        };
        store.create(&name, config, vec![]).await.expect("create");
        store
            .append(&name, AppendRequest::record("a"))
            .await
            .expect("append");
        for from in [ReadFrom::Tail, ReadFrom::Start] {
            clock.advance(Duration::from_secs(59));
            store
                .read_joined(&name, from, ReadLimits::default(), joining)
                .await
                .expect("live");
        }
        // 118 s since the append, 59 since the last read.
        clock.advance(Duration::from_secs(59));
        store.head(&name).await.expect("still live");
        clock.advance(Duration::from_secs(1));
        let read = store
            .read_joined(&name, ReadFrom::Tail, ReadLimits::default(), joining)
            .await;
        assert!(
            matches!(read, Err(StorageError::NotFound { .. })),
            "{read:?}"
        );
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A cached read larger than what is joined under the cache's lock is joined after it from
/// handles to its records: the same body.
#[tokio::test]
async fn a_large_cached_read_joins_as_a_small_one() {
    let dir = temp_dir("joined-large");
    let store = SqliteStreamStorage::connect(dir.join("s.db"), SqliteStorageConfig::default())
        .await
        .expect("connect");
    let name = StreamName::new("large").expect("valid");
    let config = StreamConfig::with_content_type("application/octet-stream");
    store.create(&name, config, vec![]).await.expect("create");
    let records: Vec<Bytes> = (0..5u8)
        .map(|i| Bytes::from(vec![b'a' + i; 100 << 10]))
        .collect();
    for record in &records {
        store
            .append(&name, AppendRequest::record(record.clone()))
            .await
            .expect("append");
    }
    let limits = ReadLimits {
        max_records: 1000,
        max_bytes: 10 << 20,
    };
    let ours = store
        .read_joined(&name, ReadFrom::Start, limits, joining)
        .await
        .expect("joined");
    assert_eq!(ours.body, records.concat());
    assert_eq!(
        ours,
        by_default(&store, &name, &ReadFrom::Start, limits).await
    );
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
