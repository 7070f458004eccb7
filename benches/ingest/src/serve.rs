//! The child process: an `IngestServer` on a storage, on an ephemeral loopback port, with one
//! API key per app; answers the parent's questions about its streams on stdin/stdout.
//!
//! Protocol (one line each way): it prints `listening ADDR` once serving, then for each line
//! read: `count APP` → `records=N`; `verify APP N` → `records=R distinct=D missing=M
//! duplicates=X` over the `seq` parameter of the app's events (0..N expected once each);
//! `quit` or end of input → graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use courier_ingest::server::{
    ApiKeyChecker, IngestConfig, IngestServer, KeyDigest, KeyRecord, MemoryKeyStore,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::stream_check;

/// Requests per second and burst of the per-app token bucket. The default (1 000/s) would cap
/// the load at a rate the storage may exceed: what is measured is the server's own cost, not
/// its limiter.
pub(crate) const RATE_LIMIT: u32 = 10_000_000;

/// Runs the server on `spec` with `apps` (`APP=KEY`) until told to quit.
pub(crate) async fn serve(spec: &str, apps: &[String]) -> Result<(), String> {
    let storage = crate::backends::open(spec).await?;
    let keys = MemoryKeyStore::new();
    for (i, entry) in apps.iter().enumerate() {
        let (app, key) = entry
            .split_once('=')
            .ok_or_else(|| format!("expected APP=KEY, got {entry:?}"))?;
        keys.insert(KeyRecord {
            id: format!("bench-{i}"),
            app_id: app.to_owned(),
            name: "bench".to_owned(),
            digest: KeyDigest::of_key(key),
            revoked: false,
        });
    }
    let config = IngestConfig::default().with_rate_limit(RATE_LIMIT, RATE_LIMIT);
    let server = IngestServer::new(
        Arc::clone(&storage),
        ApiKeyChecker::new(Arc::new(keys)),
        config,
    )
    .map_err(|e| format!("ingest server: {e}"))?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("addr: {e}"))?;
    let (quit_tx, quit_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = quit_rx.await;
    }));
    let mut stdout = tokio::io::stdout();
    say(&mut stdout, &format!("listening {addr}")).await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.map_err(|e| format!("stdin: {e}"))? {
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["count", app] => stream_check::check(&*storage, app, None).await,
            ["verify", app, n] => match n.parse() {
                Ok(n) => stream_check::check(&*storage, app, Some(n)).await,
                Err(e) => Err(format!("bad count {n:?}: {e}")),
            },
            ["quit"] => break,
            [] => continue,
            _ => Err(format!("unknown command {line:?}")),
        };
        say(
            &mut stdout,
            &answer.unwrap_or_else(|e| format!("error {e}")),
        )
        .await?;
    }
    let _ = quit_tx.send(());
    match tokio::time::timeout(Duration::from_secs(10), serving).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(format!("serve: {e}")),
        Ok(Err(e)) => Err(format!("server task: {e}")),
        Err(_) => Err("server did not stop within 10 s".into()),
    }
}

async fn say(stdout: &mut tokio::io::Stdout, line: &str) -> Result<(), String> {
    let write = async {
        stdout.write_all(format!("{line}\n").as_bytes()).await?;
        stdout.flush().await
    };
    write.await.map_err(|e| format!("stdout: {e}"))
}
