//! `courier streams`: the Durable Streams server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use courier::streams::server::{ServerConfig, StreamsServer, SubscriptionSettings};
use serde::Deserialize;

use crate::config::{self, parse_duration};
use crate::storage::{self, STORAGE_FORMS};

/// Default storage: the embedded log under `./data/streams`, so data survives a restart with
/// no server (the fastest durable storage here; older records are read from spill files once the
/// newest pass its memory budget).
const DEFAULT_STORAGE: &str = "log:./data/streams";
/// The default before the log. A database left there by it is used rather than silently left
/// behind by an upgrade.
const EARLIER_DEFAULT_STORAGE: &str = "sqlite:./data/streams.db";
const DEFAULT_ADDR: &str = "127.0.0.1:4437";

/// Flags (each also from the environment); they override the config file.
#[derive(Args, Debug)]
pub(crate) struct StreamsArgs {
    /// YAML config file (keys: addr, storage, long_poll_timeout, sse_reconnect_interval,
    /// max_append_bytes, subscriptions, allow_loopback_webhooks).
    #[arg(long, short, env = "COURIER_STREAMS_CONFIG")]
    config: Option<PathBuf>,
    /// Where streams are kept: memory | sqlite:PATH[?sync=normal] | log:DIR[?sync=normal] |
    /// redis://.. | postgres://.. [default: log:./data/streams, or sqlite:./data/streams.db
    /// where an earlier version left that database and no log directory]
    #[arg(long, env = "COURIER_STREAMS_STORAGE")]
    storage: Option<String>,
    /// Address to listen on [default: 127.0.0.1:4437].
    #[arg(long, env = "COURIER_STREAMS_ADDR")]
    addr: Option<SocketAddr>,
    /// How long a long-poll waits for data, e.g. 500ms, 30s [default: 30s].
    #[arg(long, env = "COURIER_STREAMS_LONG_POLL_TIMEOUT", value_parser = parse_duration)]
    long_poll_timeout: Option<Duration>,
    /// Serve the subscription APIs under /v1/stream/__ds/ (webhook and pull-wake).
    #[arg(long, env = "COURIER_STREAMS_SUBSCRIPTIONS")]
    subscriptions: bool,
    /// Accept webhook URLs on loopback (127.0.0.0/8, ::1, localhost) over plain http: for
    /// tests and local development only. Private, link-local and unspecified targets are
    /// refused regardless. Implies --subscriptions.
    #[arg(long, env = "COURIER_STREAMS_ALLOW_LOOPBACK_WEBHOOKS")]
    allow_loopback_webhooks: bool,
}

/// The `courier streams` config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    addr: Option<SocketAddr>,
    storage: Option<String>,
    #[serde(default, with = "config::duration")]
    long_poll_timeout: Option<Duration>,
    #[serde(default, with = "config::duration")]
    sse_reconnect_interval: Option<Duration>,
    max_append_bytes: Option<usize>,
    subscriptions: Option<bool>,
    allow_loopback_webhooks: Option<bool>,
}

pub(crate) async fn run(args: StreamsArgs) -> Result<(), String> {
    let file: FileConfig = config::load(args.config.as_deref())?;
    let storage_spec = args
        .storage
        .or(file.storage)
        .unwrap_or_else(|| default_storage(Path::new(".")));
    let addr = match args.addr.or(file.addr) {
        Some(addr) => addr,
        None => DEFAULT_ADDR.parse().map_err(|e| format!("{e}"))?,
    };
    let allow_loopback_webhooks =
        args.allow_loopback_webhooks || file.allow_loopback_webhooks.unwrap_or(false);
    let subscriptions =
        (args.subscriptions || file.subscriptions.unwrap_or(false) || allow_loopback_webhooks)
            .then(|| SubscriptionSettings {
                allow_loopback_webhooks,
                ..SubscriptionSettings::default()
            });
    let defaults = ServerConfig::default();
    let server_config = ServerConfig {
        long_poll_timeout: args
            .long_poll_timeout
            .or(file.long_poll_timeout)
            .unwrap_or(defaults.long_poll_timeout),
        sse_reconnect_interval: file
            .sse_reconnect_interval
            .unwrap_or(defaults.sse_reconnect_interval),
        max_append_bytes: file.max_append_bytes.unwrap_or(defaults.max_append_bytes),
        read_limits: defaults.read_limits,
        subscriptions,
    };
    let storage = storage::open(&storage_spec)
        .await
        .map_err(|e| format!("{e}\n  (--storage takes {STORAGE_FORMS})"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(
        addr = %local,
        storage = %storage::redacted(&storage_spec),
        long_poll_timeout = ?server_config.long_poll_timeout,
        subscriptions = server_config.subscriptions.is_some(),
        allow_loopback_webhooks,
        "durable streams server listening on http://{local}/v1/stream/"
    );
    StreamsServer::new(storage, server_config)
        .serve(listener, crate::shutdown::signal())
        .await
        .map_err(|e| format!("server failed: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// The storage when none is named, for a server started in `cwd`: the log, unless the SQLite
/// database of the earlier default is there and the log's directory is not.
fn default_storage(cwd: &Path) -> String {
    let path = |spec: &str| cwd.join(spec.split_once(':').map_or(spec, |(_, p)| p));
    if path(EARLIER_DEFAULT_STORAGE).exists() && !path(DEFAULT_STORAGE).exists() {
        tracing::warn!(
            "using {EARLIER_DEFAULT_STORAGE}, the database an earlier default left here; \
             the default is now {DEFAULT_STORAGE} (pass --storage to choose)"
        );
        return EARLIER_DEFAULT_STORAGE.to_owned();
    }
    DEFAULT_STORAGE.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_log_unless_an_earlier_default_left_a_database_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            default_storage(dir.path()),
            DEFAULT_STORAGE,
            "a fresh directory"
        );
        std::fs::create_dir(dir.path().join("data")).expect("mkdir");
        std::fs::write(dir.path().join("data/streams.db"), b"").expect("db");
        assert_eq!(
            default_storage(dir.path()),
            EARLIER_DEFAULT_STORAGE,
            "an earlier default's database is kept in use"
        );
        std::fs::create_dir(dir.path().join("data/streams")).expect("mkdir");
        assert_eq!(
            default_storage(dir.path()),
            DEFAULT_STORAGE,
            "both: the log, which only this version makes"
        );
    }
}
