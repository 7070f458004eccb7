//! Whether this node still takes new work: shared by every service so that a shutdown refuses
//! new producers, sends and subscriptions at once, and health checks answer `CLOSE`.

use tokio_util::sync::CancellationToken;
use tonic::Status;

/// The node's serving state.
#[derive(Debug, Default)]
pub struct Lifecycle {
    /// Cancelled once draining: calls that stay open (a producer's send stream) end on it, or
    /// the graceful shutdown would wait for them forever.
    draining: CancellationToken,
}

impl Lifecycle {
    /// A node taking work.
    pub fn new() -> Lifecycle {
        Lifecycle::default()
    }

    /// From now on, refuse new work.
    pub fn drain(&self) {
        self.draining.cancel();
    }

    /// Whether the node is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Completes once the node starts draining.
    pub fn draining(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.draining.clone().cancelled_owned()
    }

    /// `Unavailable` once draining (spec §2 "Codes": the client retries, elsewhere or later).
    pub fn admit(&self) -> Result<(), Status> {
        if self.is_draining() {
            return Err(Status::unavailable("this broker is shutting down"));
        }
        Ok(())
    }
}
