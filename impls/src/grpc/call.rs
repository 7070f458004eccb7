//! [`Call`]: a deadline for a gRPC call made through generated tonic stubs, and its outcome
//! as a [`GrpcError`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::time::{Instant, Sleep};
use tonic::metadata::MetadataMap;
use tonic::{Response, Status, Streaming};

use super::GrpcError;

/// One call's settings: the server URL (named in errors) and an optional deadline. The
/// deadline bounds the whole call, a server stream included, and travels to the server as
/// `grpc-timeout` so it can stop working on an answer nobody waits for.
///
/// ```no_run
/// # async fn demo(channels: courier_impls::grpc::GrpcChannels) -> Result<(), courier_impls::grpc::GrpcError> {
/// use std::time::Duration;
/// use courier_impls::grpc::Call;
/// use courier_impls::grpc::proto::danube::{HealthCheckRequest, health_check_client::HealthCheckClient};
///
/// let url = "http://127.0.0.1:6650";
/// let mut client = HealthCheckClient::new(channels.channel(url)?);
/// let call = Call::new(url).deadline(Duration::from_secs(2));
/// let status = call.unary(client.health_check(call.request(HealthCheckRequest::default()))).await?;
/// # drop(status); Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Call {
    url: String,
    deadline: Option<Duration>,
}

impl Call {
    /// A call to the server at `url` without a deadline.
    pub fn new(url: impl Into<String>) -> Call {
        Call {
            url: url.into(),
            deadline: None,
        }
    }

    /// Gives up after `deadline` (from when [`unary`](Self::unary) or
    /// [`server_streaming`](Self::server_streaming) starts).
    pub fn deadline(mut self, deadline: Duration) -> Call {
        self.deadline = Some(deadline);
        self
    }

    /// Sets the deadline, or removes it with `None`.
    pub fn deadline_opt(mut self, deadline: Option<Duration>) -> Call {
        self.deadline = deadline;
        self
    }

    /// The deadline, if any.
    pub fn get_deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The server URL errors name.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Wraps `message` in a request that carries the deadline to the server.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(deadline) = self.deadline {
            request.set_timeout(deadline);
        }
        request
    }

    /// Awaits a unary call (`client.method(call.request(m))`) within the deadline.
    pub async fn unary<T>(
        &self,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, GrpcError> {
        self.response(call).await.map(Response::into_inner)
    }

    /// Awaits a call's response (message and metadata) within the deadline.
    async fn response<T>(
        &self,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<Response<T>, GrpcError> {
        let outcome = match self.deadline {
            Some(deadline) => tokio::time::timeout(deadline, call)
                .await
                .map_err(|_| GrpcError::Timeout(deadline))?,
            None => call.await,
        };
        outcome.map_err(|status| self.error(status))
    }

    /// Awaits the start of a server-streaming call and returns its messages, ending with
    /// [`GrpcError::Timeout`] if the deadline passes before the server ends the stream.
    pub async fn server_streaming<T>(
        &self,
        call: impl Future<Output = Result<Response<Streaming<T>>, Status>>,
    ) -> Result<GrpcStream<T>, GrpcError> {
        let expires = self.deadline.map(|d| (Instant::now() + d, d));
        let (metadata, streaming, _) = self.response(call).await?.into_parts();
        Ok(GrpcStream {
            inner: Some(streaming),
            metadata,
            url: self.url.clone(),
            deadline: expires.map(|(at, d)| (Box::pin(tokio::time::sleep_until(at)), d)),
        })
    }

    fn error(&self, status: Status) -> GrpcError {
        GrpcError::from_status(status, &self.url, self.deadline)
    }
}

/// The messages of a server-streaming call: `Ok` items, then the end (the server's OK), or
/// one error (its status, a broken connection, the deadline) after which it ends. Dropping
/// it cancels the call.
pub struct GrpcStream<T> {
    inner: Option<Streaming<T>>,
    metadata: MetadataMap,
    url: String,
    deadline: Option<(Pin<Box<Sleep>>, Duration)>,
}

impl<T> GrpcStream<T> {
    /// The metadata the server sent before its messages (its response headers).
    pub fn metadata(&self) -> &MetadataMap {
        &self.metadata
    }
}

impl<T> std::fmt::Debug for GrpcStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcStream")
            .field("url", &self.url)
            .field("open", &self.inner.is_some())
            .finish()
    }
}

impl<T> Stream for GrpcStream<T> {
    type Item = Result<T, GrpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        // Messages already here win over a deadline that passes at the same time.
        let item = match Pin::new(inner).poll_next(cx) {
            Poll::Ready(item) => item,
            Poll::Pending => {
                if let Some((sleep, deadline)) = this.deadline.as_mut()
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    let deadline = *deadline;
                    // Dropping the tonic stream resets the HTTP/2 stream: the server stops.
                    this.inner = None;
                    return Poll::Ready(Some(Err(GrpcError::Timeout(deadline))));
                }
                return Poll::Pending;
            }
        };
        match item {
            Some(Ok(message)) => Poll::Ready(Some(Ok(message))),
            Some(Err(status)) => {
                this.inner = None;
                let deadline = this.deadline.as_ref().map(|(_, d)| *d);
                Poll::Ready(Some(Err(GrpcError::from_status(
                    status, &this.url, deadline,
                ))))
            }
            None => {
                this.inner = None;
                Poll::Ready(None)
            }
        }
    }
}
