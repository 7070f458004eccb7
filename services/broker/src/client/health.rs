//! Health checks (spec §1 rule 6): while a producer or consumer is attached to a broker, a
//! task asks `HealthCheck` now and every interval; `CLOSE` invalidates the [`Attachment`], so
//! the owner re-creates or resubscribes.

use std::sync::{Arc, Mutex, PoisonError};

use courier_impls::grpc::proto::danube::HealthCheckRequest;
use courier_impls::grpc::proto::danube::health_check_client::HealthCheckClient;
use courier_impls::grpc::proto::danube::health_check_request::ClientType;
use courier_impls::grpc::proto::danube::health_check_response::ClientStatus;
use courier_traits::error::Classify;
use tokio_util::sync::CancellationToken;

use super::core::ClientCore;
use super::error::BrokerError;

/// One producer or consumer registration on a broker: its id and the URL it was made at.
/// `valid` is cancelled when the broker answers `CLOSE`, when the owner replaces it, or when
/// the owner closes.
#[derive(Clone, Debug)]
pub(crate) struct Attachment {
    pub(crate) id: u64,
    pub(crate) url: String,
    pub(crate) valid: CancellationToken,
}

impl Attachment {
    /// Whether the broker still holds it, as far as this client knows.
    pub(crate) fn is_valid(&self) -> bool {
        !self.valid.is_cancelled()
    }
}

/// The registration a producer or consumer partition currently uses.
#[derive(Debug, Default)]
pub(crate) struct AttachmentSlot(Mutex<Option<Attachment>>);

impl AttachmentSlot {
    /// The registration in use, if any (valid or not).
    pub(crate) fn current(&self) -> Option<Attachment> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The URL of the last registration, else `fallback` (never registered).
    pub(crate) fn url_or(&self, fallback: &str) -> String {
        self.current()
            .map_or_else(|| fallback.to_owned(), |a| a.url)
    }

    /// Puts `attachment` in use; the one it replaces stops being valid (which ends its
    /// health checks).
    pub(crate) fn replace(&self, attachment: Attachment) {
        let previous = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(attachment);
        if let Some(previous) = previous {
            previous.valid.cancel();
        }
    }
}

/// Checks `attachment` until it stops being valid. A `CLOSE` answer cancels it; a permanent
/// error (the broker does not serve health checks) ends the watch; transient errors are
/// tried again at the next interval (the owner's own calls notice a dead node first).
pub(crate) async fn watch(core: Arc<ClientCore>, client: ClientType, attachment: Attachment) {
    loop {
        let check = check_once(&core, client, &attachment);
        let outcome = tokio::select! {
            _ = attachment.valid.cancelled() => return,
            outcome = check => outcome,
        };
        match outcome {
            Ok(ClientStatus::Close) => {
                tracing::info!(id = attachment.id, url = %attachment.url, ?client, "broker answered CLOSE");
                attachment.valid.cancel();
                return;
            }
            Ok(ClientStatus::Ok) => {}
            Err(error) if !error.is_retryable() => {
                tracing::warn!(id = attachment.id, %error, "health checks stopped");
                return;
            }
            Err(error) => tracing::debug!(id = attachment.id, %error, "health check failed"),
        }
        tokio::select! {
            _ = attachment.valid.cancelled() => return,
            _ = tokio::time::sleep(core.health_interval) => {}
        }
    }
}

async fn check_once(
    core: &ClientCore,
    client: ClientType,
    attachment: &Attachment,
) -> Result<ClientStatus, BrokerError> {
    let url = &attachment.url;
    let call = core.call(url);
    let mut health = HealthCheckClient::new(core.channel(url, "HealthCheck", url)?);
    let request = core
        .request(
            &call,
            HealthCheckRequest {
                request_id: core.next_request_id(),
                client: client.into(),
                id: attachment.id,
            },
        )
        .await
        .map_err(|e| BrokerError::rpc("HealthCheck", url, e))?;
    let answer = call
        .unary(health.health_check(request))
        .await
        .map_err(|e| BrokerError::rpc("HealthCheck", url, e))?;
    // An unknown status value is read as OK: only an explicit CLOSE detaches.
    Ok(ClientStatus::try_from(answer.status).unwrap_or(ClientStatus::Ok))
}
