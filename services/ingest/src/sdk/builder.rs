//! [`IngestClientBuilder`]: the client's options, their defaults, and their validation.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use courier_impls::retry::{ExponentialBackoff, Jitter};
use courier_traits::retry::RetryPolicy;
use courier_traits::transport::RequestTransport;

use super::client::IngestClient;
use super::config::{BATCH_OVERHEAD, Compression, Config, ErrorCallback};
use super::error::{ConfigError, DeliveryError};

/// The largest batch the SDK sends: the server's per-request event limit.
pub const MAX_BATCH_SIZE: usize = 10_000;
/// The largest queue the builder accepts (events held in memory while the server is slow).
pub const MAX_QUEUE_CAPACITY: usize = 1 << 24;
/// Builds an [`IngestClient`]; every option has the default of upstream's Go SDK where it has
/// one. `build()` validates all of them and names the first bad one.
pub struct IngestClientBuilder {
    endpoint: String,
    api_key: String,
    app_id: String,
    batch_size: usize,
    flush_interval: Duration,
    max_retries: u32,
    request_timeout: Duration,
    retry_policy: Option<Arc<dyn RetryPolicy>>,
    queue_capacity: usize,
    max_batch_bytes: usize,
    max_event_bytes: usize,
    compression: Compression,
    shutdown_timeout: Duration,
    device_id: Option<String>,
    transport: Option<Arc<dyn RequestTransport>>,
    on_error: Option<ErrorCallback>,
}

impl fmt::Debug for IngestClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the API key.
        f.debug_struct("IngestClientBuilder")
            .field("endpoint", &self.endpoint)
            .field("app_id", &self.app_id)
            .field("batch_size", &self.batch_size)
            .field("flush_interval", &self.flush_interval)
            .field("queue_capacity", &self.queue_capacity)
            .finish_non_exhaustive()
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn positive(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(invalid(field, "must be greater than zero"));
    }
    Ok(())
}

impl IngestClient {
    /// A builder for a client sending to `endpoint` (`http://host:port`, the batch path is
    /// added) with `api_key` as `X-API-Key`, for application `app_id`.
    pub fn builder(
        endpoint: impl Into<String>,
        api_key: impl Into<String>,
        app_id: impl Into<String>,
    ) -> IngestClientBuilder {
        IngestClientBuilder::new(endpoint.into(), api_key.into(), app_id.into())
    }
}

impl IngestClientBuilder {
    pub(crate) fn new(endpoint: String, api_key: String, app_id: String) -> Self {
        IngestClientBuilder {
            endpoint,
            api_key,
            app_id,
            batch_size: 50,
            flush_interval: Duration::from_secs(30),
            max_retries: 3,
            request_timeout: Duration::from_secs(10),
            retry_policy: None,
            queue_capacity: 10_000,
            max_batch_bytes: 1 << 20,
            max_event_bytes: 256 << 10,
            compression: Compression::None,
            shutdown_timeout: Duration::from_secs(30),
            device_id: None,
            transport: None,
            on_error: None,
        }
    }

    /// Events per request at most (default 50, at most [`MAX_BATCH_SIZE`]).
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = events;
        self
    }

    /// A batch is sent at the latest this long after its first event was taken (default 30 s).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Retries of a failed request after the first attempt (default 3). The retry policy may
    /// stop earlier.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Each attempt gives up after this long (default 10 s); a timeout is retried.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long to wait between attempts (default: exponential from 100 ms, factor 2, cap 10 s,
    /// full jitter). A server's `Retry-After` is a floor whatever the policy answers.
    pub fn retry_policy(mut self, policy: impl RetryPolicy + 'static) -> Self {
        self.retry_policy = Some(Arc::new(policy));
        self
    }

    /// Events `track` can queue before it drops new ones (default 10 000).
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.queue_capacity = events;
        self
    }

    /// Largest request body before compression (default 1 MiB).
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes;
        self
    }

    /// Largest encoded event; larger ones are refused by `track` (default 256 KiB, the
    /// server's per-event limit).
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.max_event_bytes = bytes;
        self
    }

    /// Body compression (default [`Compression::None`]).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// How long `close` may spend delivering what is queued (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The envelope's `device_id` (default: this host's name).
    pub fn device_id(mut self, device_id: impl Into<String>) -> Self {
        self.device_id = Some(device_id.into());
        self
    }

    /// Sends through `transport` instead of HTTP to the endpoint.
    pub fn transport(mut self, transport: Arc<dyn RequestTransport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Called with every terminal failure and per-event rejection (see [`ErrorCallback`]).
    pub fn on_error(mut self, callback: impl Fn(&DeliveryError) + Send + Sync + 'static) -> Self {
        self.on_error = Some(Arc::new(callback));
        self
    }

    /// Validates every option and starts the client's worker task on the current tokio
    /// runtime.
    ///
    /// Errors: [`ConfigError::Invalid`] naming the first bad input, [`ConfigError::NoRuntime`]
    /// outside a runtime.
    pub fn build(self) -> Result<IngestClient, ConfigError> {
        let config = self.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        Ok(IngestClient::start(config, &runtime))
    }

    fn validate(self) -> Result<Config, ConfigError> {
        validate_endpoint(&self.endpoint)?;
        if self.api_key.is_empty() {
            return Err(invalid("api_key", "must not be empty"));
        }
        if !self.api_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "api_key",
                "must be visible ASCII (it is sent as the X-API-Key header)",
            ));
        }
        validate_app_id(&self.app_id)?;
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(invalid(
                "batch_size",
                format!("{} is not within 1..={MAX_BATCH_SIZE}", self.batch_size),
            ));
        }
        positive("flush_interval", self.flush_interval)?;
        positive("request_timeout", self.request_timeout)?;
        if !(1..=MAX_QUEUE_CAPACITY).contains(&self.queue_capacity) {
            return Err(invalid(
                "queue_capacity",
                format!(
                    "{} is not within 1..={MAX_QUEUE_CAPACITY}",
                    self.queue_capacity
                ),
            ));
        }
        if self.max_event_bytes == 0 {
            return Err(invalid("max_event_bytes", "must be greater than zero"));
        }
        if self.max_batch_bytes < self.max_event_bytes.saturating_add(BATCH_OVERHEAD) {
            return Err(invalid(
                "max_batch_bytes",
                format!(
                    "{} cannot hold one event of max_event_bytes ({}) plus {BATCH_OVERHEAD} bytes of batch framing",
                    self.max_batch_bytes, self.max_event_bytes
                ),
            ));
        }
        let device_id = match self.device_id {
            Some(id) => id,
            None => whoami::hostname().map_err(|e| {
                invalid(
                    "device_id",
                    format!("not set, and the host name is unavailable ({e})"),
                )
            })?,
        };
        if device_id.is_empty() || device_id.chars().any(char::is_control) {
            return Err(invalid(
                "device_id",
                "must be non-empty and free of control characters",
            ));
        }
        let transport = match self.transport {
            Some(t) => t,
            None => default_transport(&self.endpoint)?,
        };
        let retry_policy = self.retry_policy.unwrap_or_else(|| {
            Arc::new(
                ExponentialBackoff::new(Duration::from_millis(100))
                    .cap(Duration::from_secs(10))
                    .jitter(Jitter::Full)
                    // The SDK applies max_retries itself, so it also bounds custom policies.
                    .unlimited(),
            )
        });
        Ok(Config {
            api_key: self.api_key,
            app_id: self.app_id,
            device_id,
            batch_size: self.batch_size,
            flush_interval: self.flush_interval,
            max_retries: self.max_retries,
            request_timeout: self.request_timeout,
            retry_policy,
            queue_capacity: self.queue_capacity,
            max_batch_bytes: self.max_batch_bytes,
            max_event_bytes: self.max_event_bytes,
            compression: self.compression,
            shutdown_timeout: self.shutdown_timeout,
            transport,
            on_error: self.on_error,
        })
    }
}

fn validate_endpoint(endpoint: &str) -> Result<(), ConfigError> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| invalid("endpoint", format!("{endpoint:?} is not an http(s):// URL")))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(invalid("endpoint", format!("{endpoint:?} has no host")));
    }
    if endpoint.contains(['?', '#']) || endpoint.chars().any(|c| c.is_whitespace()) {
        return Err(invalid(
            "endpoint",
            format!("{endpoint:?}: a base URL takes no query, fragment or spaces"),
        ));
    }
    Ok(())
}

/// Upstream's app id rule, which the server enforces too.
fn validate_app_id(app_id: &str) -> Result<(), ConfigError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._~:@+=-".contains(c);
    if app_id.is_empty() || app_id.len() > 128 || !app_id.chars().all(allowed) {
        return Err(invalid(
            "app_id",
            format!("{app_id:?} does not match [A-Za-z0-9._~:@+=-]{{1,128}}"),
        ));
    }
    Ok(())
}

#[cfg(feature = "http")]
fn default_transport(endpoint: &str) -> Result<Arc<dyn RequestTransport>, ConfigError> {
    courier_impls::http::HttpTransport::new(endpoint)
        .map(|t| Arc::new(t) as Arc<dyn RequestTransport>)
        .map_err(|e| invalid("endpoint", e.to_string()))
}

#[cfg(not(feature = "http"))]
fn default_transport(_endpoint: &str) -> Result<Arc<dyn RequestTransport>, ConfigError> {
    Err(invalid(
        "transport",
        "required: this build has no `http` feature to make one from the endpoint",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_traits::transport::{Request, Response, TransportError};

    struct Unused;

    #[async_trait::async_trait]
    impl RequestTransport for Unused {
        async fn send(&self, _: Request) -> Result<Response, TransportError> {
            Err(TransportError::Closed)
        }
    }

    fn builder() -> IngestClientBuilder {
        IngestClientBuilder::new("http://127.0.0.1:1".into(), "k".repeat(64), "app-1".into())
            .transport(Arc::new(Unused))
            .device_id("host")
    }

    fn field_of(b: IngestClientBuilder) -> &'static str {
        match b.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            Err(other) => panic!("unexpected {other}"),
            Ok(_) => "accepted",
        }
    }

    #[test]
    fn defaults_are_the_seed_values_and_valid() {
        let config = builder().validate().expect("defaults are valid");
        assert_eq!(config.batch_size, 50);
        assert_eq!(config.flush_interval, Duration::from_secs(30));
        assert_eq!(config.max_retries, 3);
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert_eq!(config.queue_capacity, 10_000);
        assert_eq!(config.max_batch_bytes, 1 << 20);
        assert_eq!(config.max_event_bytes, 256 << 10);
        assert_eq!(config.compression, Compression::None);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
    }

    #[test]
    fn each_bad_input_is_named() {
        let cases: Vec<(IngestClientBuilder, &str)> = vec![
            (builder().batch_size(0), "batch_size"),
            (builder().batch_size(MAX_BATCH_SIZE + 1), "batch_size"),
            (builder().flush_interval(Duration::ZERO), "flush_interval"),
            (builder().request_timeout(Duration::ZERO), "request_timeout"),
            (builder().queue_capacity(0), "queue_capacity"),
            (builder().max_event_bytes(0), "max_event_bytes"),
            (
                builder().max_batch_bytes(1000).max_event_bytes(1000),
                "max_batch_bytes",
            ),
            (builder().device_id(""), "device_id"),
            (builder().device_id("a\nb"), "device_id"),
        ];
        for (b, field) in cases {
            assert_eq!(field_of(b), field);
        }
        let with = |endpoint: &str, key: &str, app: &str| {
            IngestClientBuilder::new(endpoint.into(), key.into(), app.into())
                .transport(Arc::new(Unused))
                .device_id("host")
        };
        assert_eq!(field_of(with("ftp://x", "k", "a")), "endpoint");
        assert_eq!(field_of(with("http://", "k", "a")), "endpoint");
        assert_eq!(field_of(with("http://h/p?q=1", "k", "a")), "endpoint");
        assert_eq!(field_of(with("http://h", "", "a")), "api_key");
        assert_eq!(field_of(with("http://h", "a b", "a")), "api_key");
        assert_eq!(field_of(with("http://h", "k", "")), "app_id");
        assert_eq!(field_of(with("http://h", "k", "a/b")), "app_id");
        assert_eq!(field_of(with("http://h", "k", &"a".repeat(129))), "app_id");
        assert_eq!(
            field_of(with("https://h:8443/prefix", "k", "a.b~c:d@e+f=g-h")),
            "accepted"
        );
    }

    #[test]
    fn device_id_defaults_to_the_host_name() {
        let config = IngestClientBuilder::new("http://h".into(), "k".into(), "a".into())
            .transport(Arc::new(Unused))
            .validate()
            .expect("valid");
        assert!(!config.device_id.is_empty());
        assert_eq!(Some(config.device_id), whoami::hostname().ok());
    }

    #[test]
    fn build_outside_a_runtime_is_an_error() {
        assert!(matches!(builder().build(), Err(ConfigError::NoRuntime)));
    }
}
