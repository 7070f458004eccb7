//! Whether this node still takes new work: shared by every service so that a shutdown refuses
//! new producers, sends and subscriptions at once, and health checks answer `CLOSE`.

use std::sync::atomic::{AtomicBool, Ordering};

use tonic::Status;

/// The node's serving state.
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
}

impl Lifecycle {
    /// A node taking work.
    pub fn new() -> Lifecycle {
        Lifecycle::default()
    }

    /// From now on, refuse new work.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the node is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// `Unavailable` once draining (spec §2 "Codes": the client retries, elsewhere or later).
    pub fn admit(&self) -> Result<(), Status> {
        if self.is_draining() {
            return Err(Status::unavailable("this broker is shutting down"));
        }
        Ok(())
    }
}
