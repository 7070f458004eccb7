//! `courier ingest`: the event-ingestion server (`POST /v1/events/batch`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use courier::ingest::server::{
    AdminApi, ApiKeyChecker, CombinedKeyStore, IngestConfig, IngestServer, KeyLog, KeyStore,
    Limits, MemoryKeyStore, StorageKeyStore, TailConfig,
};
use serde::Deserialize;

use crate::config::{self, parse_duration};
use crate::storage::{self, STORAGE_FORMS};

/// Default storage: embedded SQLite under `./data`, so events and their dedup keys survive a
/// restart with no server.
const DEFAULT_STORAGE: &str = storage::INGEST_DEFAULT_STORAGE;
const DEFAULT_ADDR: &str = "127.0.0.1:8088";

/// `courier ingest` serves; `courier ingest <SUBCOMMAND>` runs a tool instead (the server flags
/// and a subcommand exclude each other).
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct IngestArgs {
    #[command(subcommand)]
    command: Option<IngestCommand>,
    #[command(flatten)]
    serve: ServeArgs,
}

/// Tools next to the server.
#[derive(Subcommand, Debug)]
pub(crate) enum IngestCommand {
    /// Create, revoke and list API keys in the storage's key log.
    Keys(crate::ingest_keys::KeysArgs),
}

/// Server flags (each also from the environment); they override the config file.
#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// YAML config file (keys: addr, storage, admin_token, keys_file, max_body_bytes,
    /// max_events, max_event_bytes, dedup_window, append_timeout, rate_limit, rate_burst).
    #[arg(long, short, env = "COURIER_INGEST_CONFIG")]
    config: Option<PathBuf>,
    /// Where events go (stream `ingest/<app>`): memory | sqlite:PATH[?sync=normal] | log:DIR | redis://.. | postgres://..
    /// [default: sqlite:./data/ingest.db]
    #[arg(long, env = "COURIER_INGEST_STORAGE")]
    storage: Option<String>,
    /// Address to listen on [default: 127.0.0.1:8088].
    #[arg(long, env = "COURIER_INGEST_ADDR")]
    addr: Option<SocketAddr>,
    /// Bearer token of the admin API and the read routes (off without one).
    #[arg(long, env = "COURIER_INGEST_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<Secret>,
    /// Static API keys: a JSON array of {"app_id","name","sha256"} (SHA-256 hex of each key).
    #[arg(long, env = "COURIER_INGEST_KEYS_FILE")]
    keys_file: Option<PathBuf>,
    /// Largest request body after decompression, in bytes [default: 10485760].
    #[arg(long, env = "COURIER_INGEST_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Most events in one request [default: 10000].
    #[arg(long, env = "COURIER_INGEST_MAX_EVENTS")]
    max_events: Option<usize>,
    /// Largest event, in bytes of its JSON; a larger one is rejected alone [default: 262144].
    #[arg(long, env = "COURIER_INGEST_MAX_EVENT_BYTES")]
    max_event_bytes: Option<usize>,
    /// How long an idempotency key suppresses repeats, e.g. 24h [default: 24h].
    #[arg(long, env = "COURIER_INGEST_DEDUP_WINDOW", value_parser = parse_duration)]
    dedup_window: Option<Duration>,
    /// How long a request's append may take before it answers 503 [default: 10s].
    #[arg(long, env = "COURIER_INGEST_APPEND_TIMEOUT", value_parser = parse_duration)]
    append_timeout: Option<Duration>,
    /// Requests per second per app, per node [default: 1000].
    #[arg(long, env = "COURIER_INGEST_RATE_LIMIT")]
    rate_limit: Option<u32>,
    /// Burst of the per-app token bucket [default: 2000].
    #[arg(long, env = "COURIER_INGEST_RATE_BURST")]
    rate_burst: Option<u32>,
}

/// A value that must never reach a log: `Debug` and `Display` print a placeholder.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl Secret {
    /// The value itself, for the one place that compares it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err("the admin token is empty".into());
        }
        Ok(Secret(text.to_owned()))
    }
}

/// The `courier ingest` config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    addr: Option<SocketAddr>,
    storage: Option<String>,
    admin_token: Option<Secret>,
    keys_file: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    max_events: Option<usize>,
    max_event_bytes: Option<usize>,
    #[serde(default, with = "config::duration")]
    dedup_window: Option<Duration>,
    #[serde(default, with = "config::duration")]
    append_timeout: Option<Duration>,
    rate_limit: Option<u32>,
    rate_burst: Option<u32>,
}

/// Every setting, resolved: flag, then environment, then file, then default.
struct Settings {
    addr: SocketAddr,
    storage: String,
    admin_token: Option<Secret>,
    keys_file: Option<PathBuf>,
    server: IngestConfig,
}

impl Settings {
    fn resolve(args: ServeArgs, file: FileConfig) -> Result<Settings, String> {
        let addr = match args.addr.or(file.addr) {
            Some(addr) => addr,
            None => DEFAULT_ADDR.parse().map_err(|e| format!("{e}"))?,
        };
        let defaults = IngestConfig::default();
        let mut limits = Limits::default();
        if let Some(bytes) = args.max_body_bytes.or(file.max_body_bytes) {
            limits = limits.with_max_body_bytes(bytes);
        }
        if let Some(events) = args.max_events.or(file.max_events) {
            limits = limits.with_max_events(events);
        }
        if let Some(bytes) = args.max_event_bytes.or(file.max_event_bytes) {
            limits = limits.with_max_event_bytes(bytes);
        }
        let rate = args
            .rate_limit
            .or(file.rate_limit)
            .unwrap_or(defaults.rate_per_second);
        let burst = args
            .rate_burst
            .or(file.rate_burst)
            .unwrap_or(defaults.rate_burst);
        if rate == 0 || burst == 0 {
            return Err("rate_limit and rate_burst must be at least 1".into());
        }
        let server = IngestConfig::default()
            .with_limits(limits)
            .with_dedup_window(
                args.dedup_window
                    .or(file.dedup_window)
                    .unwrap_or(defaults.dedup_window),
            )
            .with_append_timeout(
                args.append_timeout
                    .or(file.append_timeout)
                    .unwrap_or(defaults.append_timeout),
            )
            .with_rate_limit(rate, burst);
        Ok(Settings {
            addr,
            storage: args
                .storage
                .or(file.storage)
                .unwrap_or_else(|| DEFAULT_STORAGE.to_owned()),
            admin_token: args.admin_token.or(file.admin_token),
            keys_file: args.keys_file.or(file.keys_file),
            server,
        })
    }
}

pub(crate) async fn run(args: IngestArgs) -> Result<(), String> {
    match args.command {
        None => serve(args.serve).await,
        Some(IngestCommand::Keys(args)) => crate::ingest_keys::run(args).await,
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let file: FileConfig = config::load(args.config.as_deref())?;
    let settings = Settings::resolve(args, file)?;
    let file_keys = match &settings.keys_file {
        Some(path) => Some(MemoryKeyStore::from_keys_file(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let storage = storage::open(&settings.storage)
        .await
        .map_err(|e| format!("{e}\n  (--storage takes {STORAGE_FORMS})"))?;
    // Keys: the storage's key log (followed, so revocations through other nodes hold here),
    // plus the static keys file if one is given.
    let log = Arc::new(
        KeyLog::open(Arc::clone(&storage))
            .await
            .map_err(|e| format!("cannot read the key log: {e}"))?,
    );
    let log_keys = Arc::new(StorageKeyStore::start(
        Arc::clone(&log),
        TailConfig::default(),
    ));
    let keys: Arc<dyn KeyStore> = match file_keys {
        Some(file_keys) => Arc::new(CombinedKeyStore::new(vec![
            log_keys.clone(),
            Arc::new(file_keys),
        ])),
        None => log_keys.clone(),
    };
    let admin = AdminApi::new(settings.admin_token.as_ref().map(Secret::expose), log);
    let server = IngestServer::new(storage, ApiKeyChecker::new(keys), settings.server.clone())
        .map_err(|e| e.to_string())?
        .with_admin(admin);
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.addr))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let config = &settings.server;
    tracing::info!(
        addr = %local,
        storage = %storage::redacted(&settings.storage),
        max_events = config.limits.max_events,
        max_body_bytes = config.limits.max_body_bytes,
        dedup_window = ?config.dedup_window,
        rate_limit = config.rate_per_second,
        rate_burst = config.rate_burst,
        "ingest server listening on http://{local}/v1/events/batch"
    );
    server
        .serve(listener, crate::shutdown::signal())
        .await
        .map_err(|e| format!("server failed: {e}"))?;
    log_keys.close().await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ingest: IngestArgs,
    }

    fn settings(argv: &[&str], yaml: &str) -> Settings {
        let cli = Cli::try_parse_from(std::iter::once("ingest").chain(argv.iter().copied()))
            .expect("flags parse");
        let file: FileConfig = serde_yaml_ng::from_str(yaml).expect("yaml parses");
        Settings::resolve(cli.ingest.serve, file).expect("settings resolve")
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let s = settings(
            &["--addr", "127.0.0.1:9000", "--max-events", "50"],
            "addr: 127.0.0.1:9001\nmax_events: 60\nmax_event_bytes: 1024\ndedup_window: 1h\n",
        );
        assert_eq!(s.addr.port(), 9000);
        assert_eq!(s.server.limits.max_events, 50);
        assert_eq!(s.server.limits.max_event_bytes, 1024);
        assert_eq!(s.server.dedup_window, Duration::from_secs(3600));
        assert_eq!(s.storage, DEFAULT_STORAGE);
        assert_eq!(
            s.server.rate_per_second,
            IngestConfig::default().rate_per_second
        );
    }

    #[test]
    fn defaults_without_flags_or_file() {
        let s = settings(&[], "");
        assert_eq!(s.addr, DEFAULT_ADDR.parse::<SocketAddr>().expect("addr"));
        assert!(s.admin_token.is_none() && s.keys_file.is_none());
        assert_eq!(s.server.limits, Limits::default());
    }

    #[test]
    fn unknown_file_key_is_an_error() {
        let error = serde_yaml_ng::from_str::<FileConfig>("dedup_windw: 1h\n")
            .err()
            .map(|e| e.to_string());
        assert!(
            error.as_deref().is_some_and(|e| e.contains("dedup_windw")),
            "{error:?}"
        );
    }

    #[test]
    fn a_zero_rate_is_refused() {
        let cli = Cli::try_parse_from(["ingest", "--rate-limit", "0"]).expect("flags parse");
        assert!(Settings::resolve(cli.ingest.serve, FileConfig::default()).is_err());
    }

    #[test]
    fn the_admin_token_never_prints() {
        let s = settings(&["--admin-token", "hunter2"], "");
        let token = s.admin_token.expect("token");
        assert_eq!(token.expose(), "hunter2");
        assert!(!format!("{token:?}").contains("hunter2"));
    }
}
