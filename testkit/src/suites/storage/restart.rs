//! Server outages (capability `survives_restart`): acknowledged data survives a restart, and an outage is a retryable error the same instance recovers from.

use std::time::Duration;

use bytes::Bytes;
use courier_traits::error::Classify;
use courier_traits::storage::{AppendRequest, StreamStorage};

use super::support::*;
use crate::suites::{StorageFactory, within};

/// Every acknowledged append survives a restart of the server, and the same storage instance
/// recovers by itself.
pub async fn survives_server_restart<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("restart");
    create(&s, &n, text_config()).await;
    for i in 0..20 {
        append(&s, &n, AppendRequest::record(rec("r", i))).await;
    }
    factory.restart_server().await.expect("restart the server");
    let deadline = tokio::time::Instant::now() + crate::suites::EVENT_TIMEOUT;
    loop {
        match s.append(&n, AppendRequest::record(rec("r", 20))).await {
            Ok(_) => break,
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("append after restart: {e}"),
        }
    }
    let (records, _) = read_all(&s, &n, None).await;
    assert_eq!(
        data(&records),
        (0..21).map(|i| rec("r", i)).collect::<Vec<_>>(),
        "acknowledged appends lost"
    );
}

/// While the server is down, an append fails with a retryable error (not a hang, not a
/// permanent error, nothing half-written); once it is back, the same instance appends and
/// reads again without being recreated.
pub async fn unavailable_while_server_down<F: StorageFactory>(factory: &F) {
    let s = factory.connect().await;
    let n = name("outage");
    create(&s, &n, text_config()).await;
    append(&s, &n, AppendRequest::record("before")).await;
    factory.stop_server().await.expect("stop the server");
    match within(
        "an append to a stopped server to fail",
        s.append(&n, AppendRequest::record("down")),
    )
    .await
    {
        Err(e) => assert!(
            e.is_retryable(),
            "connection loss must be retryable, got: {e}"
        ),
        Ok(_) => panic!("an append to a stopped server succeeded"),
    }
    factory
        .start_server()
        .await
        .expect("start the server again");
    let deadline = tokio::time::Instant::now() + crate::suites::EVENT_TIMEOUT;
    loop {
        match s.append(&n, AppendRequest::record("after")).await {
            Ok(_) => break,
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("append after the server came back: {e}"),
        }
    }
    let (records, _) = read_all(&s, &n, None).await;
    assert_eq!(
        data(&records),
        vec![Bytes::from_static(b"before"), Bytes::from_static(b"after")]
    );
}
