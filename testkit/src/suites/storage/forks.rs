//! Forks (capability `forks`): reads through the source, sub-offsets, refusals, deletion while forks live.

use bytes::Bytes;
use courier_traits::storage::{
    AppendRequest, CreateOutcome, ForkFrom, ReadLimits, StorageError, StreamConfig, StreamStorage,
    SubOffset,
};

use super::support::*;
use crate::suites::StorageFactory;

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
    assert_refused(
        s.create(&name("sub-over"), fork_at(SubOffset::Records(3)), vec![])
            .await,
        bad_input,
        "records overshoot",
    );
    assert_refused(
        s.create(&name("sub-over-b"), fork_at(SubOffset::Bytes(8)), vec![])
            .await,
        bad_input,
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
    assert_refused(
        s.create(&name("f2"), json_fork, vec![]).await,
        conflict,
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
    assert_refused(
        s.create(&src, text_config(), vec![]).await,
        conflict,
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
