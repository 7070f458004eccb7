//! [`ClientCore`]: what every producer and consumer of one client shares: the channels, the
//! retry policy, deadlines, request building, topic lookups and the retry loop.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use courier_impls::grpc::GrpcChannel;
use courier_impls::grpc::proto::danube::TopicLookupRequest;
use courier_impls::grpc::proto::danube::discovery_client::DiscoveryClient;
use courier_impls::grpc::proto::danube::topic_lookup_response::LookupType;
use courier_impls::grpc::{Call, GrpcChannels, GrpcError, normalise_url};
use courier_impls::retry::{Retry, RetryError, TracingObserver};
use courier_traits::retry::RetryPolicy;
use tokio_util::sync::CancellationToken;

use super::credentials::Credentials;
use super::error::BrokerError;

/// Settings and shared state of one [`BrokerClient`](super::BrokerClient).
pub(crate) struct ClientCore {
    /// The service URL, normalised: where partitions are listed and lookups fall back to.
    pub(crate) service_url: String,
    pub(crate) channels: GrpcChannels,
    pub(crate) policy: Arc<dyn RetryPolicy>,
    /// Deadline of each unary call.
    pub(crate) call_timeout: Duration,
    /// Time between health checks of one producer or consumer.
    pub(crate) health_interval: Duration,
    /// Background tasks running for this client's producers and consumers.
    pub(crate) live_tasks: Arc<AtomicUsize>,
    request_ids: AtomicU64,
    /// What goes into `authorization`.
    credentials: Credentials,
}

impl std::fmt::Debug for ClientCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCore")
            .field("service_url", &self.service_url)
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

impl ClientCore {
    pub(crate) fn new(
        service_url: String,
        channels: GrpcChannels,
        policy: Arc<dyn RetryPolicy>,
        call_timeout: Duration,
        health_interval: Duration,
        credentials: Credentials,
    ) -> ClientCore {
        ClientCore {
            service_url,
            channels,
            policy,
            call_timeout,
            health_interval,
            live_tasks: Arc::new(AtomicUsize::new(0)),
            request_ids: AtomicU64::new(0),
            credentials,
        }
    }

    /// A fresh request id for the client-wide calls (lookups, health checks).
    pub(crate) fn next_request_id(&self) -> u64 {
        self.request_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// A unary call to `url` with the client's deadline.
    pub(crate) fn call(&self, url: &str) -> Call {
        Call::new(url).deadline(self.call_timeout)
    }

    /// A call to `url` without a deadline: server streams that stay open.
    pub(crate) fn streaming_call(&self, url: &str) -> Call {
        Call::new(url)
    }

    /// Wraps `message` for `call` with the client's `authorization: Bearer …` (an API key's
    /// token is fetched or refreshed first). Every request the client sends is made here.
    ///
    /// Errors: [`GrpcError::InvalidUrl`] for an `http://` call of a client with TLS (its
    /// credentials must not travel in clear); what getting a token ended in.
    pub(crate) async fn request<T>(
        &self,
        call: &Call,
        message: T,
    ) -> Result<tonic::Request<T>, GrpcError> {
        self.channels.check_plaintext(call.url())?;
        let mut request = call.request(message);
        if let Some(header) = self.credentials.header().await? {
            request.metadata_mut().insert("authorization", header);
        }
        Ok(request)
    }

    /// The channel to `url` (TLS, when it comes, is chosen by the channel cache).
    pub(crate) fn channel(
        &self,
        url: &str,
        operation: &'static str,
        topic: &str,
    ) -> Result<GrpcChannel, BrokerError> {
        self.channels
            .channel(url)
            .map_err(|e| BrokerError::rpc(operation, topic, e))
    }

    /// Runs `operation` (given the 1-based attempt) under the client's retry policy until it
    /// succeeds, fails permanently, the policy gives up (the last error is returned) or
    /// `cancel` fires ([`BrokerError::Closed`]). `Unauthenticated` with an API key drops its
    /// token and runs the operation once more (the broker may have restarted with another
    /// secret, or the token expired in flight).
    pub(crate) async fn retrying<T, F, Fut>(
        &self,
        cancel: &CancellationToken,
        mut operation: F,
    ) -> Result<T, BrokerError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, BrokerError>>,
    {
        match self.retrying_once(cancel, &mut operation).await {
            Err(error)
                if error.code() == Some(tonic::Code::Unauthenticated)
                    && self.credentials.invalidate() =>
            {
                tracing::debug!("Unauthenticated: fetching a new token and trying once more");
                self.retrying_once(cancel, &mut operation).await
            }
            other => other,
        }
    }

    async fn retrying_once<T, F, Fut>(
        &self,
        cancel: &CancellationToken,
        operation: F,
    ) -> Result<T, BrokerError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, BrokerError>>,
    {
        Retry::new(self.policy.clone())
            .observer(Arc::new(TracingObserver))
            .cancel_on(cancel.clone())
            .run(operation)
            .await
            .map_err(|error| match error {
                RetryError::GaveUp { error, .. } => error,
                RetryError::Cancelled { .. } => BrokerError::Closed,
            })
    }

    /// Where to reach the broker serving `topic`: asks `known` (the URL last used for it, or
    /// the service URL), then the service URL; lookup errors are not fatal (the call that
    /// follows reports what is wrong). A `known` node that cannot be reached at all is
    /// replaced by the service URL, so a client whose node is gone finds the new owner.
    pub(crate) async fn locate(&self, topic: &str, known: &str) -> String {
        let first = self.lookup(known, topic).await;
        let known_unreachable = match first {
            Ok(url) => return url,
            Err(error) => matches!(
                error,
                GrpcError::Connect { .. } | GrpcError::Broken { .. } | GrpcError::Timeout(_)
            ),
        };
        if known == self.service_url {
            return known.to_owned();
        }
        match self.lookup(&self.service_url, topic).await {
            Ok(url) => url,
            Err(_) if known_unreachable => self.service_url.clone(),
            Err(_) => known.to_owned(),
        }
    }

    /// `TopicLookup` at `url`: the node to connect to for `topic` (normalised).
    async fn lookup(&self, url: &str, topic: &str) -> Result<String, GrpcError> {
        let call = self.call(url);
        let mut discovery = DiscoveryClient::new(self.channels.channel(url)?);
        let request = self
            .request(
                &call,
                TopicLookupRequest {
                    request_id: self.next_request_id(),
                    topic: topic.to_owned(),
                },
            )
            .await?;
        let answer = call.unary(discovery.topic_lookup(request)).await?;
        match LookupType::try_from(answer.response_type) {
            Ok(LookupType::Connect | LookupType::Redirect) => {
                let target = if answer.connect_url.is_empty() {
                    &answer.broker_url
                } else {
                    &answer.connect_url
                };
                normalise_url(target)
            }
            Ok(LookupType::Failed) | Err(_) => Err(GrpcError::Status {
                code: tonic::Code::Unavailable,
                message: format!("lookup of {topic} failed (type {})", answer.response_type),
                retry_after: None,
            }),
        }
    }
}
