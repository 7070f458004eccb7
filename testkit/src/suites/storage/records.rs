//! Appending and reading records: sizes, offsets, paging, writer sequences, concurrent writers.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use courier_traits::storage::{
    AppendRequest, ReadLimits, StorageError, StreamConfig, StreamStorage,
};

use super::support::*;
use crate::suites::{StorageFactory, within};

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
            assert_refused(
                s.append(&n, AppendRequest::record(record)).await,
                too_large,
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
