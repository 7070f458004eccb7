//! A Durable Streams server in a few lines: streams kept in memory, served on
//! http://127.0.0.1:4437/v1/stream/ until Ctrl-C (which also wakes and answers live readers).
//!
//! ```text
//! cargo run --features streams --example streams_server
//! curl -X PUT -H 'content-type: text/plain' http://127.0.0.1:4437/v1/stream/hello
//! curl -X POST -H 'content-type: text/plain' --data 'hi' http://127.0.0.1:4437/v1/stream/hello
//! curl http://127.0.0.1:4437/v1/stream/hello
//! ```
//! For durable storage use `courier streams` (embedded SQLite by default) or swap the storage
//! below for `SqliteStreamStorage`, `RedisStreamStorage` or `PgStreamStorage`.

use std::sync::Arc;

use courier::impls::memory::MemoryStreamStorage;
use courier::streams::server::{ServerConfig, StreamsServer};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let server = StreamsServer::new(
        Arc::new(MemoryStreamStorage::new()),
        ServerConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:4437").await?;
    println!(
        "serving http://{}/v1/stream/ (Ctrl-C stops)",
        listener.local_addr()?
    );
    server
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
