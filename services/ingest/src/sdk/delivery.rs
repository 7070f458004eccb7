//! Delivering one batch: the request, retries under the policy with `Retry-After` as a floor,
//! splitting on 413, and reading the per-event outcomes of a 2xx.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier_impls::retry::{Retry, RetryError, RetryEvent, RetryObserver};
use courier_traits::retry::{GiveUpReason, RetryContext, RetryDecision, RetryPolicy};
use courier_traits::transport::{Method, Request, Response, TransportError};
use tokio_util::sync::CancellationToken;

use super::config::{Compression, Config};
use super::error::DeliveryError;
use super::stats::{Counters, bump};

/// The batch endpoint's path, relative to the endpoint URL.
pub const BATCH_PATH: &str = "/v1/events/batch";
/// A 2xx body larger than this is a protocol error (10 000 results fit in well under 2 MiB).
const RESPONSE_LIMIT: usize = 8 << 20;
/// Of an error body, only the start is kept for the report.
const ERROR_BODY_LIMIT: usize = 64 << 10;
const ERROR_EXCERPT_CHARS: usize = 200;

/// Sends batches for one client. Shared by the worker and the delivery future it drives.
pub(crate) struct Delivery {
    pub(crate) config: Arc<Config>,
    pub(crate) counters: Arc<Counters>,
}

/// How the attempts at one request ended.
enum Outcome {
    /// A 2xx with its body.
    Accepted(Bytes),
    /// 413: the body is too large for the server.
    TooLarge,
    /// A terminal status, or retries ran out.
    Failed(DeliveryError),
    /// The shutdown deadline passed first.
    Cancelled,
}

/// What a single attempt produced when the server answered in a way that ends the retries.
enum Answer {
    Accepted(Bytes),
    TooLarge,
}

impl Delivery {
    /// Delivers `events` (encoded envelopes), splitting on 413, and counts each event as sent,
    /// rejected, failed or (if `cancel` fires first) unsent.
    pub(crate) async fn deliver(&self, events: Vec<Bytes>, cancel: CancellationToken) {
        // Depth-first so the halves of a split go out in their original order.
        let mut pending = vec![events];
        while let Some(mut batch) = pending.pop() {
            if cancel.is_cancelled() {
                bump(&self.counters.unsent, batch.len() as u64);
                continue;
            }
            match self.send(&batch, &cancel).await {
                Outcome::Accepted(body) => self.record_results(&batch, &body),
                Outcome::TooLarge if batch.len() > 1 => {
                    let right = batch.split_off(batch.len() / 2);
                    pending.push(right);
                    pending.push(batch);
                }
                Outcome::TooLarge => self.fail(
                    1,
                    DeliveryError::Refused {
                        events: 1,
                        status: 413,
                        message: "a single event is larger than the server accepts".into(),
                    },
                ),
                Outcome::Failed(error) => self.fail(batch.len(), error),
                Outcome::Cancelled => bump(&self.counters.unsent, batch.len() as u64),
            }
        }
    }

    fn fail(&self, events: usize, error: DeliveryError) {
        bump(&self.counters.failed, events as u64);
        tracing::warn!(%error, "courier-ingest: batch failed");
        self.report(&error);
    }

    fn report(&self, error: &DeliveryError) {
        if let Some(callback) = &self.config.on_error {
            callback(error);
        }
    }

    /// Sends one batch until it is accepted, refused, out of retries or cancelled. Every
    /// attempt carries the same body, so the same idempotency keys.
    async fn send(&self, batch: &[Bytes], cancel: &CancellationToken) -> Outcome {
        let request = self.request(batch);
        let policy = SdkPolicy {
            inner: &*self.config.retry_policy,
            max_retries: self.config.max_retries,
        };
        let observer = Arc::new(CountRetries(Arc::clone(&self.counters)));
        let timeout = self.config.request_timeout;
        let transport = &self.config.transport;
        let result = Retry::new(policy)
            .observer(observer)
            .cancel_on(cancel.clone())
            .run(|_attempt| attempt(transport.as_ref(), request.clone(), timeout))
            .await;
        match result {
            Ok(Answer::Accepted(body)) => Outcome::Accepted(body),
            Ok(Answer::TooLarge) => Outcome::TooLarge,
            Err(RetryError::Cancelled { .. }) => Outcome::Cancelled,
            Err(RetryError::GaveUp {
                error:
                    TransportError::Status {
                        status, message, ..
                    },
                reason: GiveUpReason::Permanent,
                ..
            }) => Outcome::Failed(DeliveryError::Refused {
                events: batch.len(),
                status,
                message,
            }),
            Err(RetryError::GaveUp {
                error, attempts, ..
            }) => Outcome::Failed(DeliveryError::RetriesExhausted {
                events: batch.len(),
                attempts,
                error,
            }),
        }
    }

    fn request(&self, batch: &[Bytes]) -> Request {
        let body = batch_body(batch);
        let request = Request::new(Method::Post, BATCH_PATH)
            .header("Content-Type", "application/json")
            .header("X-API-Key", self.config.api_key.as_str())
            .header(
                "User-Agent",
                concat!("courier-ingest-rust/", env!("CARGO_PKG_VERSION")),
            );
        let mut request = match self.config.compression {
            Compression::None => request.body(body),
            Compression::Gzip => match gzip(&body) {
                Ok(compressed) => request.header("Content-Encoding", "gzip").body(compressed),
                // Writing into memory does not fail in practice; plain JSON is always valid.
                Err(_) => request.body(body),
            },
        };
        request.timeout = Some(self.config.request_timeout);
        request
    }

    /// Counts a 2xx's per-event outcomes. A body that is not the protojson response (an
    /// upstream server variant, an empty 202) counts the whole batch as sent: the server took
    /// it, and retrying would only make duplicates.
    fn record_results(&self, batch: &[Bytes], body: &[u8]) {
        let mut rejected = vec![false; batch.len()];
        if let Ok(response) = serde_json::from_slice::<BatchResponse>(body) {
            for result in response.results {
                let Some(index) = usize::try_from(result.index)
                    .ok()
                    .filter(|&i| i < batch.len())
                else {
                    continue;
                };
                if result.status != "rejected" || rejected[index] {
                    continue;
                }
                rejected[index] = true;
                self.report(&DeliveryError::Rejected {
                    index,
                    idempotency_key: idempotency_key_of(&batch[index]),
                    error: result.error,
                });
            }
        }
        let rejected = rejected.iter().filter(|r| **r).count();
        bump(&self.counters.rejected, rejected as u64);
        bump(&self.counters.sent, (batch.len() - rejected) as u64);
    }
}

/// One attempt: the request under the timeout, its status turned into an answer or an error
/// the policy classifies (408, 429 and 5xx retryable with their `Retry-After`).
async fn attempt(
    transport: &dyn courier_traits::transport::RequestTransport,
    request: Request,
    timeout: Duration,
) -> Result<Answer, TransportError> {
    let exchange = async {
        let response = transport.send(request).await?;
        read_answer(response).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| TransportError::Timeout(timeout))?
}

async fn read_answer(response: Response) -> Result<Answer, TransportError> {
    let status = response.status;
    if (200..300).contains(&status) {
        // The server has taken the batch: a body that cannot be read only loses the
        // per-event outcomes (all counted as sent), and a retry would only make duplicates.
        let body = response
            .body
            .collect(RESPONSE_LIMIT)
            .await
            .unwrap_or_default();
        return Ok(Answer::Accepted(body));
    }
    if status == 413 {
        return Ok(Answer::TooLarge);
    }
    let retry_after = response.header("Retry-After").and_then(parse_retry_after);
    let body = response
        .body
        .collect(ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    Err(TransportError::Status {
        status,
        message: String::from_utf8_lossy(&body)
            .chars()
            .take(ERROR_EXCERPT_CHARS)
            .collect(),
        retry_after,
    })
}

/// `Retry-After` as delay-seconds (what Courier's endpoint and upstream send). An HTTP-date
/// is ignored: the policy's own delay applies.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// `{"events":[e1,e2,...]}` from already-encoded envelopes.
pub(crate) fn batch_body(events: &[Bytes]) -> Bytes {
    let len = super::config::BATCH_OVERHEAD
        + events.iter().map(Bytes::len).sum::<usize>()
        + events.len().saturating_sub(1);
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(br#"{"events":["#);
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event);
    }
    body.extend_from_slice(b"]}");
    Bytes::from(body)
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

fn idempotency_key_of(event: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Key {
        #[serde(default)]
        idempotency_key: String,
    }
    serde_json::from_slice::<Key>(event)
        .map(|k| k.idempotency_key)
        .unwrap_or_default()
}

/// The protojson batch response, in JSON names (what protojson servers write) or proto names.
#[derive(serde::Deserialize)]
struct BatchResponse {
    #[serde(default)]
    results: Vec<EventResult>,
}

#[derive(serde::Deserialize)]
struct EventResult {
    #[serde(default)]
    index: i64,
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: String,
}

/// The client's policy under the SDK's own rules: permanent errors stop, at most
/// `max_retries` retries, and a server's retry-after hint is a floor even for custom policies
/// that ignore it.
struct SdkPolicy<'a> {
    inner: &'a dyn RetryPolicy,
    max_retries: u32,
}

impl RetryPolicy for SdkPolicy<'_> {
    fn decide(&self, ctx: &RetryContext) -> RetryDecision {
        if !ctx.class.is_retryable() {
            return RetryDecision::GiveUp(GiveUpReason::Permanent);
        }
        if ctx.attempt > self.max_retries {
            return RetryDecision::GiveUp(GiveUpReason::MaxAttempts);
        }
        match self.inner.decide(ctx) {
            RetryDecision::RetryAfter(delay) => {
                RetryDecision::RetryAfter(delay.max(ctx.class.retry_after().unwrap_or_default()))
            }
            give_up => give_up,
        }
    }

    fn on_success(&self) {
        self.inner.on_success();
    }
}

struct CountRetries(Arc<Counters>);

impl RetryObserver for CountRetries {
    fn on_retry(&self, event: &RetryEvent<'_>) {
        bump(&self.0.retries, 1);
        tracing::debug!(
            attempt = event.attempt,
            delay_ms = event.delay.as_millis() as u64,
            error = %event.error,
            "courier-ingest: retrying batch"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_traits::error::ErrorClass;

    struct Fixed(Duration);
    impl RetryPolicy for Fixed {
        fn decide(&self, _: &RetryContext) -> RetryDecision {
            RetryDecision::RetryAfter(self.0)
        }
    }

    #[test]
    fn sdk_policy_caps_retries_and_floors_at_the_hint() {
        let inner = Fixed(Duration::from_millis(10));
        let policy = SdkPolicy {
            inner: &inner,
            max_retries: 2,
        };
        let hinted = ErrorClass::Transient {
            retry_after: Some(Duration::from_secs(5)),
        };
        let mut ctx = RetryContext::first(hinted);
        assert_eq!(
            policy.decide(&ctx),
            RetryDecision::RetryAfter(Duration::from_secs(5))
        );
        ctx.class = ErrorClass::TRANSIENT;
        ctx.attempt = 2;
        assert_eq!(
            policy.decide(&ctx),
            RetryDecision::RetryAfter(Duration::from_millis(10))
        );
        ctx.attempt = 3;
        assert_eq!(
            policy.decide(&ctx),
            RetryDecision::GiveUp(GiveUpReason::MaxAttempts)
        );
        ctx.attempt = 1;
        ctx.class = ErrorClass::Permanent;
        assert_eq!(
            policy.decide(&ctx),
            RetryDecision::GiveUp(GiveUpReason::Permanent)
        );
    }

    #[test]
    fn batch_body_joins_events() {
        let body = batch_body(&[Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"{}")]);
        assert_eq!(&body[..], br#"{"events":[{"a":1},{}]}"#);
        assert_eq!(&batch_body(&[])[..], br#"{"events":[]}"#);
    }

    #[test]
    fn retry_after_is_delay_seconds() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
