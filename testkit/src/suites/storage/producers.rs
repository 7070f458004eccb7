//! Idempotent producers (capability `producers`): deduplication, epochs, gaps, retries of a close.

use bytes::Bytes;
use courier_traits::storage::{AppendRequest, StorageError, StreamStorage};

use super::support::*;
use crate::suites::StorageFactory;

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
        Err(StorageError::StaleProducerEpoch {
            current: 1,
            received: 0,
        }) => {}
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
