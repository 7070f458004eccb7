//! What `run` measures and for how long, from environment variables (the house style of the
//! other benches' scripts).

use std::str::FromStr;
use std::time::Duration;

use crate::load_client::LoadClient;

/// The settings of one `run`.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `SECTIONS`: any of `accept`, `track`, `e2e` (default all three).
    pub(crate) sections: Vec<String>,
    /// `STORAGES` (default `memory sqlite redis postgres`).
    pub(crate) storages: Vec<String>,
    /// `BATCHES`: events per request (default `50 1000`).
    pub(crate) batches: Vec<usize>,
    /// `CONNS`: concurrent connections to the server, and writers of the ceiling (default 4).
    pub(crate) connections: usize,
    /// `DUR`: seconds of each timed run (default 5).
    pub(crate) duration: Duration,
    /// `ROUNDS`: rounds of server and ceiling per storage and batch size, medians reported
    /// (default 5).
    pub(crate) rounds: usize,
    /// `TRACK_CALLS` (default 1 000 000) and `TRACK_QUEUE`, the SDK's queue capacity
    /// (default 10 000, the SDK's default).
    pub(crate) track_calls: usize,
    /// See [`Settings::track_calls`].
    pub(crate) track_queue: usize,
    /// `E2E_EVENTS` (default 1 000 000), `E2E_BATCH` (default 1000) and `E2E_STORAGES`
    /// (default `memory`).
    pub(crate) e2e_events: u64,
    /// See [`Settings::e2e_events`].
    pub(crate) e2e_batch: usize,
    /// See [`Settings::e2e_events`].
    pub(crate) e2e_storages: Vec<String>,
    /// `LOAD`: the load generator's HTTP client, `raw` (default) or `transport` (see
    /// [`LoadClient`]).
    pub(crate) load: LoadClient,
    /// `LOAD_THREADS`: worker threads of the load generator's own runtime (default 1: a
    /// current-thread runtime, as `wrk -t1`, so the load spends the least CPU beside the
    /// server on the shared cores; 2 or more: a multi-thread runtime, the load of every run
    /// before 2026-12-02).
    pub(crate) load_threads: usize,
    /// `SERVER_BIN`: a `courier` binary whose `courier ingest` is the server; unset: this
    /// binary's own `serve` (the same `IngestServer`).
    pub(crate) server_bin: Option<String>,
}

fn var<T: FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("{name}={text:?} is not valid")),
        Err(_) => Ok(default),
    }
}

fn words(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

impl Settings {
    /// Reads the environment; a value that does not parse is an error naming it.
    pub(crate) fn from_env() -> Result<Settings, String> {
        let batches = words("BATCHES", "50 1000")
            .iter()
            .map(|b| {
                b.parse()
                    .map_err(|_| format!("BATCHES: {b:?} is not a number"))
            })
            .collect::<Result<Vec<usize>, String>>()?;
        let load_threads = var("LOAD_THREADS", 1)?;
        if load_threads == 0 {
            return Err("LOAD_THREADS=0: the load needs at least 1 thread".to_owned());
        }
        Ok(Settings {
            sections: words("SECTIONS", "accept track e2e"),
            storages: words("STORAGES", "memory sqlite redis postgres"),
            batches,
            connections: var("CONNS", 4)?,
            duration: Duration::from_secs_f64(var("DUR", 5.0)?),
            rounds: var("ROUNDS", 5)?,
            track_calls: var("TRACK_CALLS", 1_000_000)?,
            track_queue: var("TRACK_QUEUE", 10_000)?,
            e2e_events: var("E2E_EVENTS", 1_000_000)?,
            e2e_batch: var("E2E_BATCH", 1000)?,
            e2e_storages: words("E2E_STORAGES", "memory"),
            load: var("LOAD", LoadClient::Raw)?,
            load_threads,
            server_bin: std::env::var("SERVER_BIN").ok().filter(|b| !b.is_empty()),
        })
    }

    /// Whether `section` is to run.
    pub(crate) fn runs(&self, section: &str) -> bool {
        self.sections.iter().any(|s| s == section)
    }
}
