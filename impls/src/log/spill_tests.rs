//! Full chunks spilled past the memory budget: every read gives what the memory storage (which
//! never spills) gives for the same operations, during spilling too, and spill files go with
//! their streams and with a reopen.

use std::time::Duration;

use bytes::Bytes;
use courier_traits::storage::{
    AppendRequest, ForkFrom, Joining, Offset, ReadFrom, ReadLimits, StreamConfig, StreamName,
    StreamStorage, SubOffset,
};

use super::{LogStorageConfig, LogStreamStorage};
use crate::memory::MemoryStreamStorage;

/// Everything past the streams' growing tails is spilled.
async fn open_spilling_all(dir: &std::path::Path) -> LogStreamStorage {
    LogStreamStorage::open(dir, LogStorageConfig::default().with_max_resident_bytes(0))
        .await
        .expect("open")
}

fn name(text: &str) -> StreamName {
    StreamName::new(text).expect("valid name")
}

fn joining(content_type: &str) -> Joining {
    if content_type == "application/json" {
        Joining::JsonArray
    } else {
        Joining::Concat
    }
}

/// Waits (at most 10 s) until the writer has spilled every queued chunk. The queue empties as
/// the writer takes its last chunk, before the chunk is written and swapped for its spilled
/// twin; the writer answers a group's appends before it spills, and takes the next group
/// only after, so an append made once the queue is empty is answered after that swap.
async fn spilled(store: &LogStreamStorage) {
    let mut empty = false;
    for _ in 0..10_000 {
        if store.inner.residency.resident_bytes() == 0 {
            empty = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(empty, "chunks are still queued after 10 s");
    let barrier = name("spilled-barrier");
    store
        .create(&barrier, StreamConfig::default(), vec![])
        .await
        .expect("the barrier stream");
    store
        .append(&barrier, AppendRequest::record("after the spilling"))
        .await
        .expect("an append after the spilling");
}

fn spill_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("spill-"))
        })
        .count()
}

/// The streams of the tests: small records (packed chunks), 10 KiB ones (a first chunk too
/// large to pack), JSON messages; each a few chunks long and a growing tail.
fn streams() -> Vec<(StreamName, &'static str, Vec<Bytes>)> {
    let small = (0..1000)
        .map(|i| Bytes::from(format!("r{i}-{}", "x".repeat(i % 50))))
        .collect();
    let large = (0..300)
        .map(|i| Bytes::from(format!("{i:05}").repeat(2048)))
        .collect();
    let json = (0..600)
        .map(|i| Bytes::from(format!("{{\"i\":{i}}}")))
        .collect();
    vec![
        (name("small"), "application/octet-stream", small),
        (name("large"), "application/octet-stream", large),
        (name("json"), "application/json", json),
    ]
}

/// Creates `streams` in `store`, appending their records one by one.
async fn fill(store: &dyn StreamStorage, streams: &[(StreamName, &'static str, Vec<Bytes>)]) {
    for (stream, content_type, records) in streams {
        store
            .create(
                stream,
                StreamConfig::with_content_type(*content_type),
                vec![],
            )
            .await
            .expect("create");
        for record in records {
            store
                .append(stream, AppendRequest::record(record.clone()))
                .await
                .expect("append");
        }
    }
}

/// The offset of record `index` of `stream`, as `store` numbers it.
async fn offset_of(store: &dyn StreamStorage, stream: &StreamName, index: usize) -> Option<Offset> {
    if index == 0 {
        return None;
    }
    let limits = ReadLimits {
        max_records: index,
        max_bytes: usize::MAX,
    };
    let batch = store.read(stream, None, limits).await.expect("read");
    assert_eq!(batch.records.len(), index);
    Some(batch.next_offset)
}

#[tokio::test]
async fn records_spilled_past_the_budget_read_back_as_the_memory_storage_reads_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_spilling_all(dir.path()).await;
    let control = MemoryStreamStorage::new();
    let streams = streams();
    fill(&store, &streams).await;
    fill(&control, &streams).await;
    spilled(&store).await;
    let memory = &store.inner.memory;
    assert_eq!(memory.spilled_chunks(&name("small")), 3);
    assert_eq!(memory.spilled_chunks(&name("large")), 1);
    assert_eq!(memory.spilled_chunks(&name("json")), 2);
    assert!(spill_files(dir.path()) >= 2, "several spill files");

    for (stream, _, records) in &streams {
        let starts = [
            0,
            1,
            255,
            256,
            300,
            511,
            512,
            599,
            767,
            768,
            records.len() - 1,
        ];
        for start in starts.into_iter().filter(|&s| s < records.len()) {
            let from = offset_of(&control, stream, start).await;
            for (max_records, max_bytes) in [
                (1, usize::MAX),
                (10, usize::MAX),
                (300, usize::MAX),
                (usize::MAX, usize::MAX),
                (usize::MAX, 3000),
                (usize::MAX, 300 << 10),
            ] {
                let limits = ReadLimits {
                    max_records,
                    max_bytes,
                };
                let case = format!("{stream} from {start}, {max_records} / {max_bytes} B");
                let ours = store
                    .read(stream, from.clone(), limits)
                    .await
                    .expect("read");
                let theirs = control
                    .read(stream, from.clone(), limits)
                    .await
                    .expect("read");
                assert_eq!(ours.records, theirs.records, "{case}");
                assert_eq!(ours.next_offset, theirs.next_offset, "{case}");
                assert_eq!(ours.up_to_date, theirs.up_to_date, "{case}");
                let from = from.clone().map_or(ReadFrom::Start, ReadFrom::After);
                let ours = store
                    .read_joined(stream, from.clone(), limits, joining)
                    .await
                    .expect("joined read");
                let theirs = control
                    .read_joined(stream, from, limits, joining)
                    .await
                    .expect("joined read");
                assert_eq!(ours.body, theirs.body, "joined: {case}");
                assert_eq!(ours.records, theirs.records, "joined: {case}");
                assert_eq!(ours.next_offset, theirs.next_offset, "joined: {case}");
            }
        }
    }

    // A fork whose point lies inside a spilled chunk, by records and by bytes.
    for (fork, sub_offset) in [
        ("by-records", SubOffset::Records(3)),
        ("by-bytes", SubOffset::Bytes(1000)),
    ] {
        let fork = name(fork);
        let config = StreamConfig {
            fork: Some(ForkFrom {
                source: name("small"),
                offset: offset_of(&control, &name("small"), 300).await,
                sub_offset,
            }),
            ..StreamConfig::default()
        };
        store
            .create(&fork, config.clone(), vec![])
            .await
            .expect("fork");
        control.create(&fork, config, vec![]).await.expect("fork");
        let all = ReadLimits {
            max_records: usize::MAX,
            max_bytes: usize::MAX,
        };
        let ours = store.read(&fork, None, all).await.expect("read");
        let theirs = control.read(&fork, None, all).await.expect("read");
        assert_eq!(ours.records, theirs.records, "{fork}");
        // Joined: the source's spilled chunks and the fork's own records, not side by side.
        let ours = store
            .read_joined(&fork, ReadFrom::Start, all, joining)
            .await
            .expect("joined read");
        let theirs = control
            .read_joined(&fork, ReadFrom::Start, all, joining)
            .await
            .expect("joined read");
        assert_eq!(ours.body, theirs.body, "joined: {fork}");
    }
}

/// Two streams appended in turns: their chunks are sealed, and spilled, in turns, so each
/// stream's spilled chunks are not side by side in the file; one appended alone has them side
/// by side. A concatenated read of every record gives the records back to back either way.
#[tokio::test]
async fn concatenated_reads_of_spilled_chunks_side_by_side_or_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_spilling_all(dir.path()).await;
    let (first, second, alone) = (name("first"), name("second"), name("alone"));
    for stream in [&first, &second, &alone] {
        store
            .create(stream, StreamConfig::default(), vec![])
            .await
            .expect("create");
    }
    let record = |stream: &str, i: usize| Bytes::from(format!("{stream}-{i};"));
    let mut expected = [Vec::new(), Vec::new(), Vec::new()];
    for chunk in 0..4 {
        for (n, stream) in [&first, &second].into_iter().enumerate() {
            for i in chunk * 256..(chunk + 1) * 256 {
                let data = record(stream.as_str(), i);
                expected[n].extend_from_slice(&data);
                store
                    .append(stream, AppendRequest::record(data))
                    .await
                    .expect("append");
            }
        }
    }
    for i in 0..1024 {
        let data = record("alone", i);
        expected[2].extend_from_slice(&data);
        store
            .append(&alone, AppendRequest::record(data))
            .await
            .expect("append");
    }
    spilled(&store).await;
    let all = ReadLimits {
        max_records: usize::MAX,
        max_bytes: usize::MAX,
    };
    for (stream, expected) in [&first, &second, &alone].into_iter().zip(&expected) {
        // Four full chunks each.
        assert_eq!(store.inner.memory.spilled_chunks(stream), 4, "{stream}");
        let read = store
            .read_joined(stream, ReadFrom::Start, all, joining)
            .await
            .expect("joined read");
        assert_eq!(read.body, expected[..], "{stream}");
        assert_eq!(read.records, 1024, "{stream}");
    }
}

/// Reads while the writer spills the chunks they read (two tasks, same moment): every record
/// is where it was appended, whether read from memory or from a spill file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_spilling_find_every_record_in_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_spilling_all(dir.path()).await;
    let stream = name("raced");
    let config = StreamConfig::with_content_type("application/octet-stream");
    store.create(&stream, config, vec![]).await.expect("create");
    const RECORDS: usize = 3000;
    let appender = tokio::spawn({
        let (store, stream) = (store.clone(), stream.clone());
        async move {
            for i in 0..RECORDS {
                let record = Bytes::from(format!("{i:06}"));
                store
                    .append(&stream, AppendRequest::record(record))
                    .await
                    .expect("append");
            }
        }
    });
    let page = ReadLimits {
        max_records: 700,
        max_bytes: usize::MAX,
    };
    let mut passes = 0;
    loop {
        let done = appender.is_finished();
        let (mut from, mut seen) = (None, 0);
        loop {
            let batch = store.read(&stream, from, page).await.expect("read");
            for record in &batch.records {
                assert_eq!(
                    record.data,
                    format!("{seen:06}").as_bytes(),
                    "record {seen}"
                );
                seen += 1;
            }
            from = Some(batch.next_offset);
            if batch.up_to_date {
                break;
            }
        }
        passes += 1;
        if done {
            assert_eq!(seen, RECORDS);
            break;
        }
    }
    appender.await.expect("appender");
    spilled(&store).await;
    assert_eq!(store.inner.memory.spilled_chunks(&stream), RECORDS / 256);
    assert!(passes > 1, "reads went on during the appends");
}

/// Spill files are removed once their chunks' streams are gone, and at the next open (which
/// spills anew from the journal); reads after the reopen are whole.
#[tokio::test]
async fn spill_files_go_with_their_streams_and_with_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let streams = streams();
    let control = MemoryStreamStorage::new();
    fill(&control, &streams).await;
    {
        let store = open_spilling_all(dir.path()).await;
        fill(&store, &streams).await;
        spilled(&store).await;
        assert!(spill_files(dir.path()) >= 2);
        store.close().await;
    }
    let store = open_spilling_all(dir.path()).await;
    spilled(&store).await;
    let all = ReadLimits {
        max_records: usize::MAX,
        max_bytes: usize::MAX,
    };
    for (stream, _, _) in &streams {
        let ours = store.read(stream, None, all).await.expect("read");
        let theirs = control.read(stream, None, all).await.expect("read");
        assert_eq!(ours.records, theirs.records, "{stream} after a reopen");
        assert_eq!(
            store.inner.memory.spilled_chunks(stream),
            theirs.records.len() / 256,
            "{stream}: every full chunk spilled again"
        );
    }
    let files = spill_files(dir.path());
    for (stream, _, _) in &streams {
        store.delete(stream).await.expect("delete");
    }
    // The file being filled stays open for the next chunk; every other one is removed.
    let left = spill_files(dir.path());
    assert!(left <= 1, "{left} of {files} spill files left");
}
