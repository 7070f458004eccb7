//! Helpers shared by the hub's in-memory test binaries: a client on the connection fake,
//! bounded waits.

// Each test binary uses its own subset.
#![allow(dead_code)]

pub(crate) mod channels;

use std::time::Duration;

use courier_hub::Hub;
use courier_impls::memory::duplex_pair;
use courier_traits::transport::{DuplexConnection, Frame as Wire};

/// The longest any single wait in these tests lasts.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// Registers a client `id` on `hub` over the in-memory fake; its client side.
pub(crate) async fn connect(hub: &Hub, id: &str) -> DuplexConnection {
    let (client, server) = duplex_pair(64);
    hub.register(id, server).expect("registers");
    client
}

/// The next text frame the client receives, skipping pings and pongs.
pub(crate) async fn next_text(conn: &mut DuplexConnection) -> String {
    loop {
        match tokio::time::timeout(WAIT, conn.receiver.recv()).await {
            Ok(Ok(Some(Wire::Text(text)))) => return text,
            Ok(Ok(Some(Wire::Ping(_) | Wire::Pong(_)))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Nothing but pings arrives within `quiet`.
pub(crate) async fn assert_quiet(conn: &mut DuplexConnection, quiet: Duration) {
    loop {
        match tokio::time::timeout(quiet, conn.receiver.recv()).await {
            Err(_) => return,
            Ok(Ok(Some(Wire::Ping(_) | Wire::Pong(_)))) => continue,
            Ok(other) => panic!("expected nothing, got {other:?}"),
        }
    }
}

/// Polls `check` every 10 ms until it holds; panics naming `what` after [`WAIT`].
pub(crate) async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let wait = async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}
