//! Keyed appends (capability `keyed_append`): durable dedup by key within a window on the
//! storage's clock, repeats inside one call, callers on two nodes, outages and failed calls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier_traits::clock::ManualClock;
use courier_traits::error::Classify;
use courier_traits::storage::{
    AppendRequest, KeyedOutcome, KeyedRecord, StorageError, StreamName, StreamStorage,
};

use super::support::*;
use crate::suites::StorageFactory;

const WINDOW: Duration = Duration::from_secs(60);

fn manual_clock<F: StorageFactory>(factory: &F) -> ManualClock {
    factory.clock().expect(
        "the keyed cases need the factory's storages to decide the dedup window against a \
         manual clock (StorageFactory::clock)",
    )
}

/// A record whose data is its tag, so a read shows which caller's record was written.
fn keyed(key: &str, tag: &str) -> KeyedRecord {
    KeyedRecord::new(key, tag, tag.to_owned()).expect("valid keyed record")
}

async fn append_keyed(
    s: &dyn StreamStorage,
    n: &StreamName,
    records: Vec<KeyedRecord>,
) -> Vec<KeyedOutcome> {
    let count = records.len();
    let outcomes = s
        .append_keyed(n, records, WINDOW)
        .await
        .unwrap_or_else(|e| panic!("keyed append to {n}: {e}"));
    assert_eq!(outcomes.len(), count, "one outcome per record");
    outcomes
}

fn dup(tag: &str) -> KeyedOutcome {
    KeyedOutcome::Duplicate { tag: tag.into() }
}

fn is_appended(outcome: &KeyedOutcome) -> bool {
    matches!(outcome, KeyedOutcome::Appended { .. })
}

async fn stored_data(s: &dyn StreamStorage, n: &StreamName) -> Vec<Bytes> {
    data(&read_all(s, n, None).await.0)
}

fn bytes(tags: &[&str]) -> Vec<Bytes> {
    tags.iter().map(|t| Bytes::from(t.to_string())).collect()
}

/// A key committed within the window is a duplicate answering the original tag; once the
/// window has passed on the storage's clock the key is written again, with its new tag. The
/// offsets answered are where the records are read.
pub async fn keyed_window_expiry<F: StorageFactory>(factory: &F) {
    let clock = manual_clock(factory);
    let s = factory.connect().await;
    let n = name("keyed-window");
    create(&s, &n, text_config()).await;
    let first = append_keyed(&s, &n, vec![keyed("a", "a1"), keyed("b", "b1")]).await;
    assert!(first.iter().all(is_appended), "{first:?}");
    let (records, _) = read_all(&s, &n, None).await;
    let offsets: Vec<KeyedOutcome> = records
        .iter()
        .map(|r| KeyedOutcome::Appended {
            offset: r.offset.clone(),
        })
        .collect();
    assert_eq!(first, offsets, "an appended record's offset reads it first");

    clock.advance(WINDOW - Duration::from_millis(1));
    let again = append_keyed(&s, &n, vec![keyed("b", "b2"), keyed("a", "a2")]).await;
    assert_eq!(
        again,
        vec![dup("b1"), dup("a1")],
        "1 ms before the window ends"
    );

    clock.advance(Duration::from_millis(1));
    let after = append_keyed(&s, &n, vec![keyed("a", "a3")]).await;
    assert!(is_appended(&after[0]), "the window has passed: {after:?}");
    assert_eq!(
        append_keyed(&s, &n, vec![keyed("a", "a4")]).await,
        vec![dup("a3")],
        "the key now answers the record that committed it again"
    );
    assert_eq!(stored_data(&s, &n).await, bytes(&["a1", "b1", "a3"]));
}

/// Repeats of a key inside one call are duplicates of its first occurrence, whether that one
/// is written or is itself a duplicate of a stored key; an empty call writes nothing.
pub async fn keyed_repeats_in_one_call<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("keyed-repeats");
    create(&s, &n, text_config()).await;
    let outcomes = append_keyed(
        &s,
        &n,
        vec![
            keyed("a", "t1"),
            keyed("b", "t2"),
            keyed("a", "t3"),
            keyed("a", "t4"),
        ],
    )
    .await;
    assert!(is_appended(&outcomes[0]) && is_appended(&outcomes[1]));
    assert_eq!(outcomes[2..], [dup("t1"), dup("t1")]);
    assert_ne!(outcomes[0], outcomes[1], "two records, two offsets");

    let outcomes = append_keyed(
        &s,
        &n,
        vec![keyed("b", "t5"), keyed("c", "t6"), keyed("b", "t7")],
    )
    .await;
    assert_eq!(outcomes[0], dup("t2"));
    assert!(is_appended(&outcomes[1]));
    assert_eq!(outcomes[2], dup("t2"), "a repeat of a stored duplicate");
    assert_eq!(append_keyed(&s, &n, vec![]).await, vec![]);
    assert_eq!(stored_data(&s, &n).await, bytes(&["t1", "t2", "t6"]));
}

/// Callers on two instances (two nodes) sending the same keys at once: each key is written
/// exactly once, and every other caller is told it is a duplicate with the winner's tag.
pub async fn keyed_concurrent_nodes<F: StorageFactory>(factory: &F) {
    const KEYS: usize = 20;
    const CALLERS_PER_NODE: usize = 3;
    let nodes = [
        Arc::new(factory.connect().await),
        Arc::new(factory.connect().await),
    ];
    let n = name("keyed-nodes");
    create(&*nodes[0], &n, text_config()).await;
    let mut calls = tokio::task::JoinSet::new();
    for (node, storage) in nodes.iter().enumerate() {
        for caller in 0..CALLERS_PER_NODE {
            let storage = storage.clone();
            let n = n.clone();
            // Each caller sends the keys in its own rotation, so the calls overlap on
            // different keys first.
            let records: Vec<KeyedRecord> = (0..KEYS)
                .map(|i| (i + caller * 7 + node * 3) % KEYS)
                .map(|k| keyed(&format!("k{k:02}"), &format!("k{k:02}-n{node}c{caller}")))
                .collect();
            calls.spawn(async move {
                let outcomes = append_keyed(&*storage, &n, records.clone()).await;
                records.into_iter().zip(outcomes).collect::<Vec<_>>()
            });
        }
    }
    let mut winners: HashMap<String, String> = HashMap::new();
    let mut duplicates: Vec<(String, String)> = Vec::new();
    while let Some(joined) = crate::suites::within("the keyed callers", calls.join_next()).await {
        for (record, outcome) in joined.expect("a caller panicked") {
            match outcome {
                KeyedOutcome::Appended { .. } => {
                    if let Some(other) = winners.insert(record.key.clone(), record.tag.clone()) {
                        panic!(
                            "key {} written twice: {other} and {}",
                            record.key, record.tag
                        );
                    }
                }
                KeyedOutcome::Duplicate { tag } => duplicates.push((record.key, tag)),
            }
        }
    }
    assert_eq!(winners.len(), KEYS, "every key written once: {winners:?}");
    assert_eq!(duplicates.len(), KEYS * (2 * CALLERS_PER_NODE - 1));
    for (key, tag) in &duplicates {
        assert_eq!(
            Some(tag),
            winners.get(key),
            "duplicate of {key} names the winner"
        );
    }
    let mut stored = stored_data(&*nodes[1], &n).await;
    stored.sort();
    let mut expected: Vec<Bytes> = winners.into_values().map(Bytes::from).collect();
    expected.sort();
    assert_eq!(stored, expected, "exactly the winners' records are stored");
}

/// A call that fails writes nothing and commits no key: a missing stream, a closed one, a
/// record over the size limit or a bad key among good records. Retrying the good records
/// then writes them all.
pub async fn keyed_failure_writes_nothing<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let missing = name("keyed-missing");
    assert_refused(
        s.append_keyed(&missing, vec![keyed("a", "a")], WINDOW)
            .await,
        |e| matches!(e, StorageError::NotFound { .. }),
        "a keyed append to a missing stream",
    );

    let n = name("keyed-fail");
    create(&s, &n, text_config()).await;
    let good = || vec![keyed("a", "a1"), keyed("b", "b1")];
    let mut with_bad_key = good();
    with_bad_key.push(KeyedRecord {
        key: String::new(),
        tag: "empty".into(),
        data: Bytes::from_static(b"x"),
    });
    assert_refused(
        s.append_keyed(&n, with_bad_key, WINDOW).await,
        bad_input,
        "an empty key",
    );
    if let Some(limit) = s.capabilities().max_record_bytes {
        let mut with_large = good();
        with_large.push(KeyedRecord {
            key: "large".into(),
            tag: "large".into(),
            data: Bytes::from(vec![b'x'; limit + 1]),
        });
        assert_refused(
            s.append_keyed(&n, with_large, WINDOW).await,
            too_large,
            "a record over the limit",
        );
    }
    assert_eq!(
        stored_data(&s, &n).await,
        Vec::<Bytes>::new(),
        "nothing written"
    );
    let outcomes = append_keyed(&s, &n, good()).await;
    assert!(
        outcomes.iter().all(is_appended),
        "no key was committed: {outcomes:?}"
    );

    append(&s, &n, AppendRequest::close_only()).await;
    assert_refused(
        s.append_keyed(&n, vec![keyed("c", "c1")], WINDOW).await,
        |e| matches!(e, StorageError::Closed { .. }),
        "a keyed append to a closed stream",
    );
    assert_eq!(stored_data(&s, &n).await, bytes(&["a1", "b1"]));
}

/// Keys survive a restart of the server: a retry after it is still a duplicate.
pub async fn keyed_survives_server_restart<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("keyed-restart");
    create(&s, &n, text_config()).await;
    append_keyed(&s, &n, vec![keyed("a", "a1"), keyed("b", "b1")]).await;
    factory.restart_server().await.expect("restart the server");
    let deadline = tokio::time::Instant::now() + crate::suites::EVENT_TIMEOUT;
    let outcomes = loop {
        match s
            .append_keyed(&n, vec![keyed("a", "a2"), keyed("c", "c2")], WINDOW)
            .await
        {
            Ok(outcomes) => break outcomes,
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("keyed append after restart: {e}"),
        }
    };
    assert_eq!(outcomes[0], dup("a1"), "the key survived the restart");
    assert!(is_appended(&outcomes[1]));
    assert_eq!(stored_data(&s, &n).await, bytes(&["a1", "b1", "c2"]));
}
