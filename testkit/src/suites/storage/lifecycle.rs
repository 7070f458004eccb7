//! Creating, closing and deleting streams, and the errors for missing streams and bad input.

use std::time::Duration;

use bytes::Bytes;
use courier_traits::storage::{
    AppendRequest, CreateOutcome, Expiry, Offset, ReadLimits, StorageError, StreamConfig,
    StreamStorage,
};

use super::support::*;
use crate::suites::StorageFactory;

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
    let empty = assert_refused(
        s.append(&n, AppendRequest::records(vec![])).await,
        bad_input,
        "empty append",
    );
    assert!(empty.to_string().contains("record"), "{empty}");
    let foreign = Offset::parse("not-an-offset-of-this-stream").expect("well-formed");
    assert_refused(
        s.read(&n, Some(foreign.clone()), ReadLimits::default())
            .await,
        bad_input,
        "read from a foreign offset",
    );
    assert_refused(
        s.wait(&n, &foreign, Duration::from_millis(10)).await,
        bad_input,
        "wait on a foreign offset",
    );
    let (records, _) = read_all(&s, &n, None).await;
    assert_eq!(data(&records), vec![Bytes::from_static(b"kept")]);
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
