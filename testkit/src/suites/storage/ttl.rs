//! Expiry (capability `ttl`): idle windows and absolute expiry times.

use std::time::{Duration, UNIX_EPOCH};

use courier_traits::clock::{Clock, ManualClock};

use courier_traits::storage::{
    AppendRequest, Expiry, ReadLimits, StorageError, StreamConfig, StreamStorage,
};

use super::support::*;
use crate::suites::StorageFactory;

/// The factory's manual clock: these cases move it rather than sleep through a TTL.
fn manual_clock<F: StorageFactory>(factory: &F) -> ManualClock {
    factory.clock().expect(
        "the ttl cases need the factory's storages to decide expiry against a manual clock \
         (StorageFactory::clock)",
    )
}

/// A TTL is an idle window: reads and appends keep the stream alive, `head` does not; once
/// idle past it the stream is gone and can be created anew.
pub async fn ttl_sliding_window<F: StorageFactory>(factory: &F) {
    let clock = manual_clock(factory);
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
    clock.advance(Duration::from_millis(1200));
    s.read(&n, None, ReadLimits::default())
        .await
        .expect("read resets the window");
    clock.advance(Duration::from_millis(1200));
    s.head(&n).await.expect("alive: last read was 1.2 s ago");
    append(&s, &n, AppendRequest::record("keep")).await;
    clock.advance(Duration::from_millis(1200));
    s.head(&n).await.expect("alive: last append was 1.2 s ago");
    clock.advance(Duration::from_millis(1300)); // 2.5 s idle; head did not reset it
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
    let clock = manual_clock(factory);
    let s = factory.connect().await;
    let n = name("expires");
    let at = UNIX_EPOCH + Duration::from_millis(clock.now_ms()) + Duration::from_millis(1500);
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
    clock.advance(Duration::from_millis(2000));
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
