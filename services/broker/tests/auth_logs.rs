//! B10, the logs: no API key, token, signature or signing secret reaches them, while the
//! refusals are logged. A binary of its own: the test captures the server's events with a
//! subscriber on its thread, and under `cargo test` the other auth tests, running at the same
//! time in the same process, made those events miss it.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use support::auth::{
    CONSUMER_KEY, PRODUCER_KEY, SECRET, auth, authenticate, channel, create_producer, lookup,
};
use support::node::Node;
use tonic::Code;

/// A log sink for one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn no_key_token_or_secret_reaches_the_logs() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    // Current-thread runtime: the server's tasks log on this thread, into this subscriber.
    let _guard = courier_testkit::logs::set_default_subscriber(subscriber);
    let node = Node::start("http", |config| config.auth = Some(auth(true))).await;
    let channel = channel(&node).await;
    let token = authenticate(&channel, PRODUCER_KEY).await.expect("token");
    let _ = authenticate(&channel, "wrong-key-9a8b7c").await;
    assert_eq!(lookup(&channel, Some(&token)).await, Code::NotFound);
    assert_eq!(
        create_producer(&channel, CONSUMER_KEY).await,
        Code::PermissionDenied
    );
    assert_eq!(
        lookup(&channel, Some("wrong-key-9a8b7c")).await,
        Code::Unauthenticated
    );
    let forged = format!("{token}x");
    assert_eq!(lookup(&channel, Some(&forged)).await, Code::Unauthenticated);
    node.stop().await;
    let logs = String::from_utf8_lossy(&captured.0.lock().expect("logs")).into_owned();
    assert!(
        logs.contains("call refused"),
        "the refusals were logged:\n{logs}"
    );
    let signature = token.rsplit('.').next().expect("signature");
    for secret in [
        PRODUCER_KEY,
        CONSUMER_KEY,
        "wrong-key-9a8b7c",
        &String::from_utf8_lossy(SECRET),
        &token,
        signature,
    ] {
        assert!(!logs.contains(secret), "{secret:?} logged:\n{logs}");
    }
}
