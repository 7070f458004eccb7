//! [`GrpcChannels`]: one lazily connected tonic channel per server URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tonic::codegen::http::Uri;
use tonic::transport::Endpoint;

use super::direct::{Dialer, DirectChannel};
use super::in_process::InProcessNetwork;
use super::options::ChannelOptions;
use super::{GrpcChannel, GrpcError, normalise_url};

/// A cache of [`GrpcChannel`]s, one per normalised server URL (see [`normalise_url`]), each
/// connected on first use and reconnected by the first call after a failure. Cheap to clone; clones
/// share the cache. A channel multiplexes every call to its server over one HTTP/2
/// connection, so callers should share one `GrpcChannels` rather than make their own.
///
/// `http://` is plaintext; `https://` needs the `grpc-tls` feature and TLS settings
/// ([`GrpcChannels::with_tls`]).
///
/// ```no_run
/// # async fn demo() -> Result<(), courier_impls::grpc::GrpcError> {
/// use courier_impls::grpc::GrpcChannels;
/// use courier_impls::grpc::proto::danube::health_check_client::HealthCheckClient;
///
/// let channels = GrpcChannels::new(Default::default());
/// let client = HealthCheckClient::new(channels.channel("http://127.0.0.1:6650")?);
/// # drop(client); Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct GrpcChannels {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: ChannelOptions,
    dialer: Dialer,
    /// What `https://` channels trust and present; `None`: `https://` URLs are refused.
    #[cfg(feature = "grpc-tls")]
    tls: Option<tonic::transport::ClientTlsConfig>,
    channels: Mutex<HashMap<String, GrpcChannel>>,
}

impl GrpcChannels {
    /// Channels over TCP.
    pub fn new(options: ChannelOptions) -> GrpcChannels {
        GrpcChannels::with_dialer(options, Dialer::Tcp)
    }

    /// Channels to the servers of an in-process `network` (tests: no sockets).
    pub fn in_process(network: InProcessNetwork, options: ChannelOptions) -> GrpcChannels {
        GrpcChannels::with_dialer(options, Dialer::InProcess(network))
    }

    /// Channels over TCP whose `https://` URLs connect with `tls` (the CA to trust, and for
    /// mutual TLS the client's identity). `http://` URLs are refused
    /// ([`GrpcError::InvalidUrl`]): a caller that configured TLS must not be steered into
    /// plaintext by a URL a server handed out (a redirect naming `http://node-b` would
    /// otherwise carry its credentials in clear).
    #[cfg(feature = "grpc-tls")]
    pub fn with_tls(
        options: ChannelOptions,
        tls: tonic::transport::ClientTlsConfig,
    ) -> GrpcChannels {
        GrpcChannels {
            inner: Arc::new(Inner {
                options,
                dialer: Dialer::Tcp,
                tls: Some(tls),
                channels: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn with_dialer(options: ChannelOptions, dialer: Dialer) -> GrpcChannels {
        GrpcChannels {
            inner: Arc::new(Inner {
                options,
                dialer,
                #[cfg(feature = "grpc-tls")]
                tls: None,
                channels: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The channel for `url`, made on first request: equal URLs after normalisation share
    /// one channel (and so one connection). Connecting happens on the first call.
    ///
    /// Errors: [`GrpcError::InvalidUrl`]; [`GrpcError::NoRuntime`] when called outside a Tokio
    /// runtime (a channel's connection runs as a task there).
    pub fn channel(&self, url: &str) -> Result<GrpcChannel, GrpcError> {
        let lock = || {
            self.inner
                .channels
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        // Callers mostly pass a URL in its normal form already (one a channel is cached
        // under): found as is, it needs no parsing (this runs once per call).
        if let Some(channel) = lock().get(url) {
            return Ok(channel.clone());
        }
        let key = normalise_url(url)?;
        let mut channels = lock();
        if let Some(channel) = channels.get(&key) {
            return Ok(channel.clone());
        }
        if let Err(e) = tokio::runtime::Handle::try_current() {
            return Err(GrpcError::NoRuntime(e.to_string()));
        }
        let channel = self.open(&key)?;
        channels.insert(key, channel.clone());
        Ok(channel)
    }

    /// The normalised URLs that have a channel, sorted.
    pub fn urls(&self) -> Vec<String> {
        let channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut urls: Vec<String> = channels.keys().cloned().collect();
        urls.sort();
        urls
    }

    /// Drops the channel for `url` (a node that left): calls already holding it finish, the
    /// next [`channel`](Self::channel) makes a new one. Returns whether there was one.
    pub fn forget(&self, url: &str) -> bool {
        let Ok(key) = normalise_url(url) else {
            return false;
        };
        self.inner
            .channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key)
            .is_some()
    }

    fn open(&self, key: &str) -> Result<GrpcChannel, GrpcError> {
        let options = &self.inner.options;
        if !key.starts_with("https://") {
            self.check_plaintext(key)?;
            let uri: Uri = key
                .parse()
                .map_err(|e| GrpcError::invalid_url(key, format!("not a URL: {e}")))?;
            let channel = DirectChannel::new(key, &uri, self.inner.dialer.clone(), options.clone())
                .ok_or_else(|| GrpcError::invalid_url(key, "no scheme or host"))?;
            return Ok(GrpcChannel::direct(channel));
        }
        // TLS stays with tonic's channel (its rustls connector).
        let mut endpoint = Endpoint::from_shared(key.to_owned())
            .map_err(|e| GrpcError::invalid_url(key, e.to_string()))?
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true);
        endpoint = self.tls_endpoint(key, endpoint)?;
        if let Some(interval) = options.keep_alive_interval.filter(|i| !i.is_zero()) {
            endpoint = endpoint
                .http2_keep_alive_interval(interval)
                .keep_alive_timeout(options.keep_alive_timeout)
                .keep_alive_while_idle(options.keep_alive_while_idle);
        }
        Ok(GrpcChannel::tonic(endpoint.connect_lazy()))
    }
}

/// Why a TLS-configured cache refuses an `http://` URL.
const PLAINTEXT_REFUSED: &str = "TLS is configured, so plaintext http:// is refused \
    (credentials and messages would travel in clear); use https://";

impl GrpcChannels {
    /// Whether `http://` URLs are refused: TLS is configured ([`with_tls`](Self::with_tls)).
    pub fn refuses_plaintext(&self) -> bool {
        #[cfg(feature = "grpc-tls")]
        {
            self.inner.tls.is_some()
        }
        #[cfg(not(feature = "grpc-tls"))]
        {
            false
        }
    }

    /// Errors with [`GrpcError::InvalidUrl`] when `url` is plaintext and these channels
    /// refuse plaintext ([`refuses_plaintext`](Self::refuses_plaintext)): a check for callers
    /// that attach credentials to a request before its channel is chosen.
    pub fn check_plaintext(&self, url: &str) -> Result<(), GrpcError> {
        let https = url
            .trim_start()
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
        if self.refuses_plaintext() && !https {
            return Err(GrpcError::invalid_url(url, PLAINTEXT_REFUSED));
        }
        Ok(())
    }

    #[cfg(feature = "grpc-tls")]
    fn tls_endpoint(&self, key: &str, endpoint: Endpoint) -> Result<Endpoint, GrpcError> {
        let Some(tls) = &self.inner.tls else {
            return Err(GrpcError::invalid_url(
                key,
                "https needs TLS settings (GrpcChannels::with_tls)",
            ));
        };
        endpoint
            .tls_config(tls.clone())
            .map_err(|e| GrpcError::invalid_url(key, format!("TLS settings refused: {e}")))
    }

    #[cfg(not(feature = "grpc-tls"))]
    fn tls_endpoint(&self, key: &str, _: Endpoint) -> Result<Endpoint, GrpcError> {
        // normalise_url refuses https without the feature; kept as a second guard.
        Err(GrpcError::invalid_url(
            key,
            "https needs the grpc-tls feature",
        ))
    }
}
