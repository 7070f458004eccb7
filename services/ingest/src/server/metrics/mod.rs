//! Prometheus metrics: the ingestion server's set, [`IngestMetrics`], on the services' shared
//! [`Registry`] (`courier_impls::metrics`), served as `GET /metrics`.

use std::sync::Arc;
use std::time::Duration;

pub use courier_impls::metrics::{
    Counter, CounterFamily, Family, Histogram, HistogramFamily, Registry, TEXT_FORMAT,
};

/// Events per request: from a single event to the 10 000 limit.
const EVENT_BUCKETS: [f64; 9] = [
    1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1_000.0, 5_000.0, 10_000.0,
];
/// Decoded body bytes: 1 KiB to the 10 MiB limit.
const BYTE_BUCKETS: [f64; 8] = [
    1_024.0,
    4_096.0,
    16_384.0,
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    10_485_760.0,
];
/// Keyed append latency: 1 ms to the default 10 s timeout.
const SECONDS_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The metric set of the spec, prefixed `courier_ingest_`.
#[derive(Debug)]
pub struct IngestMetrics {
    registry: Registry,
    requests: Arc<CounterFamily>,
    events: Arc<CounterFamily>,
    request_events: Arc<Histogram>,
    request_bytes: Arc<Histogram>,
    append_seconds: Arc<Histogram>,
    auth_failures: Arc<CounterFamily>,
}

/// Why a request failed authentication, as `auth_failures_total{reason}` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `X-API-Key`.
    Missing,
    /// Not 64 lowercase hex digits (a misconfigured client).
    Malformed,
    /// Well-formed but unknown or revoked (the client gets one answer for all, as upstream).
    UnknownOrRevoked,
    /// The key store could not be asked (answered 503).
    StoreUnavailable,
}

impl AuthFailure {
    fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::UnknownOrRevoked => "unknown_or_revoked",
            Self::StoreUnavailable => "store_unavailable",
        }
    }
}

impl Default for IngestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl IngestMetrics {
    /// Every metric at zero.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = registry.counter_family(
            "courier_ingest_requests_total",
            "Ingestion requests answered, by HTTP status.",
            &["status"],
        );
        let events = registry.counter_family(
            "courier_ingest_events_total",
            "Events of answered requests: stored (accepted), already stored (duplicate), refused (rejected).",
            &["outcome"],
        );
        // The outcomes are known: show them at 0 before the first event.
        for outcome in ["accepted", "duplicate", "rejected"] {
            events.with(&[outcome]);
        }
        let request_events = registry.histogram(
            "courier_ingest_request_events",
            "Events per parsed request.",
            &EVENT_BUCKETS,
        );
        let request_bytes = registry.histogram(
            "courier_ingest_request_bytes",
            "Request body bytes after decompression.",
            &BYTE_BUCKETS,
        );
        let append_seconds = registry.histogram(
            "courier_ingest_append_seconds",
            "Duration of the keyed append of a request's valid events, failures included.",
            &SECONDS_BUCKETS,
        );
        let auth_failures = registry.counter_family(
            "courier_ingest_auth_failures_total",
            "Requests refused by the API key check, by reason.",
            &["reason"],
        );
        Self {
            registry,
            requests,
            events,
            request_events,
            request_bytes,
            append_seconds,
            auth_failures,
        }
    }

    /// Counts a request answered with `status`.
    pub fn request(&self, status: u16) {
        self.requests.with(&[&status.to_string()]).inc();
    }

    /// Counts the events of one answered request.
    pub fn events(&self, accepted: usize, duplicate: usize, rejected: usize) {
        for (outcome, n) in [
            ("accepted", accepted),
            ("duplicate", duplicate),
            ("rejected", rejected),
        ] {
            if n > 0 {
                self.events
                    .with(&[outcome])
                    .add(u64::try_from(n).unwrap_or(u64::MAX));
            }
        }
    }

    /// Records a parsed request of `events` events.
    pub fn request_events(&self, events: usize) {
        self.request_events.observe(events as f64);
    }

    /// Records a request body of `bytes` (after decompression).
    pub fn request_bytes(&self, bytes: usize) {
        self.request_bytes.observe(bytes as f64);
    }

    /// Records one keyed append's duration.
    pub fn append(&self, took: Duration) {
        self.append_seconds.observe(took.as_secs_f64());
    }

    /// Counts a failed key check.
    pub fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures.with(&[reason.label()]).inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        self.registry.render()
    }
}
