//! `courier ingest` processes on shared storage (spec cases I8 and I9): a batch sent twice,
//! then concurrently to two processes on one SQLite file, one real Redis and one real Postgres,
//! answers the same event ids and is stored once; N events sent across a graceful restart
//! (SIGTERM) and a `kill -9`, then all replayed, are stored exactly N times.

#[path = "ingest/node.rs"]
mod node;

use std::path::Path;
use std::time::Duration;

use courier_testkit::fixtures::{Postgres, Redis};
use node::{
    APP, IngestNode, Steps, accepted_ids, batch_json, copies_by_key, post_batch, stored_events,
};

fn sqlite_spec(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("ingest.db").display())
}

// ---- I8 -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i8_dedup_across_two_processes_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    same_batch_twice_then_concurrently(&sqlite_spec(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i8_dedup_across_two_processes_on_redis() {
    let redis = Redis::start().await.expect("redis fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    same_batch_twice_then_concurrently(&redis.url(), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i8_dedup_across_two_processes_on_postgres() {
    let postgres = Postgres::start().await.expect("postgres fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    same_batch_twice_then_concurrently(&postgres.url(), dir.path()).await;
}

/// Batch sizes of I8.
const I8_EVENTS: usize = 200;
/// Copies of the second batch in flight at once, alternating between the two processes.
const I8_RACERS: usize = 6;

async fn same_batch_twice_then_concurrently(storage: &str, dir: &Path) {
    let steps = Steps::start();
    let a = IngestNode::start(storage, dir).await;
    let b = IngestNode::start(storage, dir).await;

    steps.step("the same batch twice to one process");
    let first = batch_json("i8-first", 0..I8_EVENTS);
    let (status, body) = a.post_batch(&first).await.expect("first post");
    let ids = accepted_ids(status, &body, I8_EVENTS);
    let (status, body) = a.post_batch(&first).await.expect("second post");
    assert_eq!(
        accepted_ids(status, &body, I8_EVENTS),
        ids,
        "a repeat answers the original ids"
    );
    // And through the other process, which never saw it.
    let (status, body) = b.post_batch(&first).await.expect("post to b");
    assert_eq!(accepted_ids(status, &body, I8_EVENTS), ids);

    steps.step("one batch concurrently to both processes");
    let second = batch_json("i8-second", 0..I8_EVENTS);
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..I8_RACERS {
        let http = if i % 2 == 0 { a.client() } else { b.client() };
        let body = second.clone();
        racers.spawn(async move { post_batch(&http, &body).await });
    }
    let mut answers = Vec::new();
    while let Some(joined) = racers.join_next().await {
        let (status, body) = joined.expect("racer task").expect("racer post");
        answers.push(accepted_ids(status, &body, I8_EVENTS));
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "every concurrent copy answers the same event ids"
    );

    steps.step("the stream holds one copy of each");
    let records = stored_events(storage, APP).await;
    assert_eq!(records.len(), 2 * I8_EVENTS, "one record per event");
    let copies = copies_by_key(&records);
    assert!(copies.values().all(|&n| n == 1), "a key stored twice");
    // Each record is the one whose id was answered.
    let answered: std::collections::HashSet<&str> =
        ids.iter().chain(&answers[0]).map(String::as_str).collect();
    for record in &records {
        let id = record["id"].as_str().expect("record id");
        assert!(answered.contains(id), "stored id {id} was never answered");
    }
    steps.step("done");
}

// ---- I9 -----------------------------------------------------------------------------------

/// How the process is stopped in the middle of the load.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Graceful,
    Kill9,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i9_graceful_restart_and_replay_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    restart_and_replay(&sqlite_spec(dir.path()), dir.path(), Stop::Graceful).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i9_kill9_and_replay_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    restart_and_replay(&sqlite_spec(dir.path()), dir.path(), Stop::Kill9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i9_graceful_restart_and_replay_on_redis() {
    let redis = Redis::start().await.expect("redis fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    restart_and_replay(&redis.url(), dir.path(), Stop::Graceful).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i9_kill9_and_replay_on_redis() {
    let redis = Redis::start().await.expect("redis fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    restart_and_replay(&redis.url(), dir.path(), Stop::Kill9).await;
}

// A schema of its own on the run's shared Postgres: only the process restarts, not the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i9_graceful_restart_and_replay_on_postgres() {
    let postgres = Postgres::shared().await.expect("postgres fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = node::postgres_spec(&postgres.url()).await;
    restart_and_replay(&spec, dir.path(), Stop::Graceful).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i9_kill9_and_replay_on_postgres() {
    let postgres = Postgres::shared().await.expect("postgres fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = node::postgres_spec(&postgres.url()).await;
    restart_and_replay(&spec, dir.path(), Stop::Kill9).await;
}

/// N = BATCHES × BATCH_EVENTS events.
const BATCHES: usize = 40;
const BATCH_EVENTS: usize = 50;
/// The process is stopped once this many batches were acknowledged.
const STOP_AFTER: usize = 15;

async fn restart_and_replay(storage: &str, dir: &Path, stop: Stop) {
    let steps = Steps::start();
    let batches: Vec<String> = (0..BATCHES)
        .map(|b| batch_json("i9", b * BATCH_EVENTS..(b + 1) * BATCH_EVENTS))
        .collect();
    let mut node = IngestNode::start(storage, dir).await;

    steps.step("load; stop the process mid-load");
    // Two senders keep requests in flight while the process stops.
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::channel::<usize>(BATCHES);
    let mut senders = tokio::task::JoinSet::new();
    for lane in 0..2 {
        let http = node.client();
        let mine: Vec<String> = batches.iter().skip(lane).step_by(2).cloned().collect();
        let acked = acked_tx.clone();
        senders.spawn(async move {
            for body in mine {
                match post_batch(&http, &body).await {
                    Ok((200, _)) => {
                        let _ = acked.send(1).await;
                    }
                    // The process is going away: what it did not acknowledge is replayed.
                    _ => return,
                }
            }
        });
    }
    drop(acked_tx);
    let mut acked = 0;
    while acked < STOP_AFTER {
        match tokio::time::timeout(node::WAIT, acked_rx.recv()).await {
            Ok(Some(n)) => acked += n,
            Ok(None) => break,
            Err(_) => panic!("no acknowledgement in {:?}", node::WAIT),
        }
    }
    // kill -9 restarts on the same port after a pause in which the senders find it gone; the
    // graceful stop waits for them before a new process starts.
    let survivor = match stop {
        Stop::Graceful => {
            if let Err(log) = node.terminate().await {
                panic!("a graceful stop exits 0; log:\n{log}");
            }
            None
        }
        Stop::Kill9 => {
            node.kill9_and_restart(Duration::from_millis(300)).await;
            Some(node)
        }
    };
    while tokio::time::timeout(node::WAIT, senders.join_next())
        .await
        .expect("senders end once the process is gone")
        .is_some()
    {}
    let stored_before = stored_events(storage, APP).await.len();
    steps.step(&format!(
        "stopped ({stop:?}) after {acked}+ acknowledged batches; {stored_before} events stored"
    ));
    // Every acknowledged batch survived the stop.
    assert!(stored_before >= STOP_AFTER * BATCH_EVENTS);

    steps.step("restart on the same storage; replay every batch");
    let node = match survivor {
        Some(node) => node,
        None => IngestNode::start(storage, dir).await,
    };
    for body in &batches {
        let (status, answer) = node.post_batch(body).await.expect("replay post");
        accepted_ids(status, &answer, BATCH_EVENTS);
    }
    let records = stored_events(storage, APP).await;
    assert_eq!(records.len(), BATCHES * BATCH_EVENTS, "exactly N stored");
    let copies = copies_by_key(&records);
    assert_eq!(copies.len(), BATCHES * BATCH_EVENTS);
    assert!(copies.values().all(|&n| n == 1));
    drop(node);
    steps.step("done");
}
