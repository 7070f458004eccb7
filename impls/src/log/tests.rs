//! The journal file across opens: torn tails, the zeros allocated ahead.

use courier_traits::storage::{AppendRequest, ReadLimits, StreamConfig, StreamName, StreamStorage};

use super::frame::{self, At};
use super::{JOURNAL, LogStorageConfig, LogStreamStorage};

async fn open(dir: &std::path::Path) -> LogStreamStorage {
    LogStreamStorage::open(dir, LogStorageConfig::default())
        .await
        .expect("open")
}

async fn texts(store: &LogStreamStorage, stream: &StreamName) -> Vec<String> {
    let batch = store
        .read(stream, None, ReadLimits::default())
        .await
        .expect("read");
    batch
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect()
}

/// Where each frame of the journal ends, in order.
fn frame_ends(data: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = 0;
    while let At::Frame { next, .. } = frame::at(data, pos) {
        ends.push(next);
        pos = next;
    }
    ends
}

/// A group cut short by a crash (any cut of the journal's last frame, with or without the zeros
/// allocated after it) is cut off at open: what came before is there, and appends go on after it.
#[tokio::test]
async fn a_torn_tail_is_cut_off_and_the_journal_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stream = StreamName::new("s").expect("valid");
    {
        let store = open(dir.path()).await;
        let config = StreamConfig::with_content_type("text/plain");
        store.create(&stream, config, vec![]).await.expect("create");
        for record in ["kept", "torn"] {
            store
                .append(&stream, AppendRequest::record(record))
                .await
                .expect("append");
        }
        store.close().await;
    }
    let journal = dir.path().join(JOURNAL);
    let whole = std::fs::read(&journal).expect("read journal");
    let ends = frame_ends(&whole);
    assert_eq!(ends.len(), 3, "create and two appends: {ends:?}");
    let (kept_end, torn_end) = (ends[1], ends[2]);
    assert!(
        whole[torn_end..].iter().all(|&b| b == 0),
        "zeros allocated ahead"
    );
    for (cut, zeros_after) in [
        (kept_end + 1, 0),
        (kept_end + frame::HEADER, 4096),
        (torn_end - 1, 0),
        // Into the record's bytes: zeros after a cut that only dropped zero bytes would make
        // the frame whole again (and it would rightly be applied).
        (torn_end - 8, 100),
    ] {
        let mut torn = whole[..cut].to_vec();
        torn.resize(cut + zeros_after, 0);
        std::fs::write(&journal, &torn).expect("write torn journal");
        let store = open(dir.path()).await;
        assert_eq!(texts(&store, &stream).await, ["kept"], "cut at {cut}");
        store
            .append(&stream, AppendRequest::record("after"))
            .await
            .expect("append after recovery");
        store.close().await;
        let store = open(dir.path()).await;
        assert_eq!(texts(&store, &stream).await, ["kept", "after"]);
        store.close().await;
    }
}

/// A last frame whose length field was torn into a huge number is a torn tail, found without
/// reserving that many bytes.
#[tokio::test]
async fn a_torn_length_past_the_file_is_a_torn_tail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stream = StreamName::new("s").expect("valid");
    {
        let store = open(dir.path()).await;
        let config = StreamConfig::with_content_type("text/plain");
        store.create(&stream, config, vec![]).await.expect("create");
        store
            .append(&stream, AppendRequest::record("kept"))
            .await
            .expect("append");
        store.close().await;
    }
    let journal = dir.path().join(JOURNAL);
    let mut data = std::fs::read(&journal).expect("read journal");
    let ends = frame_ends(&data);
    data.truncate(ends[1]);
    frame::write(&mut data, |body| body.extend_from_slice(b"torn"));
    let length_field = ends[1] + 8..ends[1] + frame::HEADER;
    data[length_field].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&journal, &data).expect("write");
    let store = open(dir.path()).await;
    assert_eq!(texts(&store, &stream).await, ["kept"]);
    store.close().await;
    assert_eq!(
        std::fs::metadata(&journal).expect("stat").len() as usize,
        ends[1],
        "cut off at the last whole frame"
    );
}

/// The zeros after the last frame are space allocated ahead, not a torn tail: opening keeps
/// them, and the next groups are written over them.
#[tokio::test]
async fn zeros_allocated_ahead_are_kept_and_written_over() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stream = StreamName::new("s").expect("valid");
    let journal = dir.path().join(JOURNAL);
    let store = open(dir.path()).await;
    let config = StreamConfig::with_content_type("text/plain");
    store.create(&stream, config, vec![]).await.expect("create");
    store.close().await;
    let allocated = std::fs::metadata(&journal).expect("stat").len();
    assert!(allocated >= 4 << 20, "allocated ahead: {allocated}");
    for round in 0..3 {
        let store = open(dir.path()).await;
        store
            .append(&stream, AppendRequest::record(format!("r{round}")))
            .await
            .expect("append");
        store.close().await;
        assert_eq!(std::fs::metadata(&journal).expect("stat").len(), allocated);
    }
    let data = std::fs::read(&journal).expect("read");
    assert_eq!(frame_ends(&data).len(), 4);
    let store = open(dir.path()).await;
    assert_eq!(texts(&store, &stream).await, ["r0", "r1", "r2"]);
}

/// A group larger than what is allocated ahead grows the file past it.
#[tokio::test]
async fn a_group_larger_than_the_space_ahead_grows_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stream = StreamName::new("big").expect("valid");
    let store = open(dir.path()).await;
    let config = StreamConfig::with_content_type("application/octet-stream");
    let big = vec![7u8; 9 << 20];
    store
        .create(&stream, config, vec![big.clone().into()])
        .await
        .expect("create");
    store.close().await;
    let store = open(dir.path()).await;
    let batch = store
        .read(
            &stream,
            None,
            ReadLimits {
                max_records: 1,
                max_bytes: 16 << 20,
            },
        )
        .await
        .expect("read");
    assert_eq!(batch.records[0].data.len(), big.len());
    assert!(batch.records[0].data.iter().all(|&b| b == 7));
}

/// A record limit past what the journal's 32-bit lengths hold is lowered to it, so no record
/// is accepted that could not be read back.
#[tokio::test]
async fn the_record_limit_stays_within_the_journals_lengths() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = LogStorageConfig::default().with_max_record_bytes(usize::MAX);
    let store = LogStreamStorage::open(dir.path(), config)
        .await
        .expect("open");
    assert_eq!(
        store.capabilities().max_record_bytes,
        Some(u32::MAX as usize)
    );
}

/// Closing the storage while a compaction is copying waits `compaction_close_wait` for it,
/// then abandons the copy (a large journal's copy would hold the close for as long): the close
/// returns although the copy is held, the unfinished file is removed before the directory is
/// released, the journal is left whole, and the next open compacts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_cancels_a_running_compaction() {
    use super::compaction::gate;
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("temp dir");
    let tmp = dir.path().join(super::REWRITE);
    let compacting = || {
        LogStorageConfig::default()
            .with_compact_dead_bytes(1)
            .with_compaction_close_wait(Duration::from_millis(100))
    };
    let (kept, dead) = (
        StreamName::new("kept").expect("valid"),
        StreamName::new("dead").expect("valid"),
    );
    gate::hold(&tmp);
    let store = LogStreamStorage::open(dir.path(), compacting())
        .await
        .expect("open");
    let config = || StreamConfig::with_content_type("text/plain");
    store.create(&kept, config(), vec![]).await.expect("create");
    store.create(&dead, config(), vec![]).await.expect("create");
    store
        .append(&dead, AppendRequest::record(vec![b'x'; 64 << 10]))
        .await
        .expect("append");
    // The check after this group finds 64 KiB dead, more than the live bytes: a rewrite
    // starts, and is held at its first frame while the next append is journaled.
    store.delete(&dead).await.expect("delete");
    store
        .append(&kept, AppendRequest::record("after"))
        .await
        .expect("append");
    tokio::time::timeout(Duration::from_secs(10), async {
        while !gate::reached(&tmp) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("a compaction started and is held");
    let journal = dir.path().join(JOURNAL);
    let before = std::fs::metadata(&journal).expect("journal").len();
    let closed = tokio::time::timeout(Duration::from_secs(10), store.close()).await;
    gate::release(&tmp);
    closed.expect("the close waited for the held copy");
    assert!(!tmp.exists(), "the unfinished rewrite's file is removed");
    assert_eq!(
        std::fs::metadata(&journal).expect("journal").len(),
        before,
        "the journal is left as it was"
    );
    let store = LogStreamStorage::open(dir.path(), compacting())
        .await
        .expect("reopen");
    assert_eq!(texts(&store, &kept).await, ["after"]);
    assert!(
        store.head(&dead).await.is_err(),
        "the deleted stream stays deleted"
    );
    let shrunk = tokio::time::timeout(Duration::from_secs(10), async {
        while std::fs::metadata(&journal).expect("journal").len() >= 64 << 10 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    store.close().await;
    shrunk.expect("the next open compacted it");
}

/// With periodic syncs (`fsync_every_group(false)`), the last group before the journal goes
/// idle is synced within the period, not at the next group (which may never come).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_journal_is_synced_within_the_period() {
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("temp dir");
    let store = LogStreamStorage::open(
        dir.path(),
        LogStorageConfig::default().with_fsync_every_group(false),
    )
    .await
    .expect("open");
    let stream = StreamName::new("s").expect("valid");
    let config = StreamConfig::with_content_type("text/plain");
    let durability = store.inner.durability.clone();
    store.create(&stream, config, vec![]).await.expect("create");
    // Answered once written. A group that came a period after the last sync was synced with
    // its write (a slow machine): the next one, right after, is not.
    let mut after = durability.syncs();
    for round in 0..3 {
        let before = durability.syncs();
        store
            .append(&stream, AppendRequest::record(format!("r{round}")))
            .await
            .expect("append");
        after = durability.syncs();
        if after == before {
            break;
        }
    }
    // Nothing else is written: only the idle writer can sync it.
    tokio::time::timeout(super::PERIODIC_SYNC + Duration::from_secs(4), async {
        while durability.syncs() <= after {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the idle journal was not synced");
    store.close().await;
}
