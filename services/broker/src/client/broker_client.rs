//! [`BrokerClient`] and its builder: the entry point, shared by every producer and consumer
//! made from it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use courier_impls::grpc::{ChannelOptions, GrpcChannels, InProcessNetwork, normalise_url};
use courier_impls::retry::LinearBackoff;
use courier_traits::error::InvalidInput;
use courier_traits::retry::RetryPolicy;

use super::consumer::ConsumerBuilder;
use super::core::ClientCore;
use super::credentials::{Credentials, KeyTokens, bearer};
use super::error::BrokerError;
use super::producer::ProducerBuilder;
use super::schemas::SchemaClient;
use super::send_stream::SendStreams;
use super::tls::Tls;

/// Default deadline of each unary call.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Health checks every 5 s, as danube-client does.
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// A client of a broker that speaks Danube's protocol. Cheap to clone; clones share one
/// connection per broker node.
///
/// ```no_run
/// # async fn demo() -> Result<(), courier_broker::client::BrokerError> {
/// use futures::StreamExt;
/// use courier_broker::client::BrokerClient;
///
/// let client = BrokerClient::builder().service_url("http://127.0.0.1:6650").build().await?;
/// let producer = client.producer("/default/orders").name("p1").reliable().create().await?;
/// let sequence = producer.send("hello").key("k").await?;
/// let mut consumer = client
///     .consumer("/default/orders")
///     .name("c1")
///     .subscription("s")
///     .shared()
///     .subscribe()
///     .await?;
/// while let Some(message) = consumer.next().await {
///     let message = message?;
///     message.ack().await?;
/// }
/// # let _ = sequence; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct BrokerClient {
    core: Arc<ClientCore>,
    /// The send streams its producers share, one per broker.
    send_streams: Arc<SendStreams>,
}

impl BrokerClient {
    /// A builder; [`service_url`](BrokerClientBuilder::service_url) is required.
    pub fn builder() -> BrokerClientBuilder {
        BrokerClientBuilder::default()
    }

    /// A producer on `topic` (`/namespace/topic`).
    pub fn producer(&self, topic: impl Into<String>) -> ProducerBuilder {
        ProducerBuilder::new(self.core.clone(), self.send_streams.clone(), topic.into())
    }

    /// A consumer of `topic` (`/namespace/topic`; a partitioned topic by its base name).
    pub fn consumer(&self, topic: impl Into<String>) -> ConsumerBuilder {
        ConsumerBuilder::new(self.core.clone(), topic.into())
    }

    /// The schema registry (at the service URL).
    pub fn schemas(&self) -> SchemaClient {
        SchemaClient::new(self.core.clone())
    }

    /// The service URL (normalised).
    pub fn service_url(&self) -> &str {
        &self.core.service_url
    }

    /// How many background tasks (health checks, partition receivers) this client's
    /// producers and consumers are running: 0 once they are all closed or dropped.
    pub fn running_tasks(&self) -> usize {
        self.core.live_tasks.load(Ordering::SeqCst)
    }
}

/// Configures a [`BrokerClient`].
#[must_use = "a builder does nothing until build() is awaited"]
pub struct BrokerClientBuilder {
    service_url: Option<String>,
    policy: Arc<dyn RetryPolicy>,
    channel_options: ChannelOptions,
    network: Option<InProcessNetwork>,
    call_timeout: Duration,
    health_interval: Duration,
    tls: Option<Tls>,
    api_key: Option<String>,
    token: Option<String>,
}

impl Default for BrokerClientBuilder {
    fn default() -> BrokerClientBuilder {
        BrokerClientBuilder {
            service_url: None,
            policy: Arc::new(LinearBackoff::default()),
            channel_options: ChannelOptions::default(),
            network: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            health_interval: DEFAULT_HEALTH_INTERVAL,
            tls: None,
            api_key: None,
            token: None,
        }
    }
}

impl std::fmt::Debug for BrokerClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerClientBuilder")
            .field("service_url", &self.service_url)
            .field("call_timeout", &self.call_timeout)
            .field("tls", &self.tls)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl BrokerClientBuilder {
    /// The broker to start from (`http://host:port`, or `https://host:port` with
    /// [`tls`](Self::tls)): partitions are listed there, topic lookups fall back to it and
    /// API keys are exchanged there.
    pub fn service_url(mut self, url: impl Into<String>) -> Self {
        self.service_url = Some(url.into());
        self
    }

    /// The retry policy for every call (default: [`LinearBackoff::default`]: 5 retries,
    /// 200 ms steps, 5 s cap, 50–100 % jitter, as danube-client). Retried are connection
    /// failures, `Unavailable`, `DeadlineExceeded` and `ResourceExhausted`.
    pub fn retry(mut self, policy: impl RetryPolicy + 'static) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// How channels connect (connect timeout, keep-alive).
    pub fn channel_options(mut self, options: ChannelOptions) -> Self {
        self.channel_options = options;
        self
    }

    /// TLS for `https://` brokers: the CA to trust and, for mutual TLS, the client's
    /// certificate ([`Tls`]). TCP only (not with [`in_process`](Self::in_process)).
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Mutual TLS from PEM files: the brokers' CA, the client's certificate and key.
    pub fn mtls(
        self,
        ca: impl Into<std::path::PathBuf>,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.tls(Tls::ca(ca).identity(cert, key))
    }

    /// Authenticate with an API key: exchanged for a token by `AuthService/Authenticate` at
    /// the service URL on first use, refreshed after 80 % of the token's life and once when a
    /// call answers `Unauthenticated`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Authenticate with a token made elsewhere, sent as is (never refreshed).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Connects through an in-process network instead of TCP (tests).
    pub fn in_process(mut self, network: InProcessNetwork) -> Self {
        self.network = Some(network);
        self
    }

    /// The deadline of each unary call (default 10 s).
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Time between health checks of a producer or consumer (default 5 s).
    pub fn health_interval(mut self, interval: Duration) -> Self {
        self.health_interval = interval;
        self
    }

    /// The client. Nothing connects yet: the first producer or consumer does.
    ///
    /// Errors: [`BrokerError::InvalidInput`] for a missing or unusable service URL, an
    /// unreadable TLS file, both an API key and a token, or a token that cannot be a header.
    pub async fn build(self) -> Result<BrokerClient, BrokerError> {
        let url = self.service_url.unwrap_or_default();
        let service_url = normalise_url(&url)
            .map_err(|e| InvalidInput::new("service URL", &url, e.to_string()))?;
        let channels = match (self.network, &self.tls) {
            (Some(_), Some(_)) => {
                return Err(InvalidInput::new(
                    "tls",
                    "in_process",
                    "TLS runs over TCP only; leave in_process out",
                )
                .into());
            }
            (Some(network), None) => GrpcChannels::in_process(network, self.channel_options),
            (None, Some(tls)) => GrpcChannels::with_tls(self.channel_options, tls.client_config()?),
            (None, None) => GrpcChannels::new(self.channel_options),
        };
        let credentials = match (self.api_key, self.token) {
            (Some(_), Some(_)) => {
                return Err(InvalidInput::new(
                    "credentials",
                    "api_key and token",
                    "give an API key or a token, not both",
                )
                .into());
            }
            (Some(key), None) => Credentials::ApiKey(KeyTokens::new(
                key,
                service_url.clone(),
                channels.clone(),
                self.call_timeout,
            )),
            (None, Some(token)) => Credentials::Static(
                bearer(&token)
                    .map_err(|e| InvalidInput::new("token", "<redacted>", e.to_string()))?,
            ),
            (None, None) => Credentials::None,
        };
        Ok(BrokerClient {
            core: Arc::new(ClientCore::new(
                service_url,
                channels,
                self.policy,
                self.call_timeout,
                self.health_interval,
                credentials,
            )),
            send_streams: Arc::new(SendStreams::default()),
        })
    }
}
