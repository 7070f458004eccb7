//! The consumer service's clock: milliseconds on tokio's clock, so the engine's deadlines and
//! the pump's sleeps agree, and tests drive both with tokio's paused time.

use std::time::Duration;

use courier_traits::clock::Clock;
use tokio::time::Instant;

/// Milliseconds since the service started, on tokio's clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    /// A clock reading 0 now. Call within a tokio runtime.
    pub(crate) fn start() -> TokioClock {
        TokioClock {
            origin: Instant::now(),
        }
    }

    /// How long until `deadline_ms` on this clock (zero if it passed).
    pub(crate) fn until(&self, deadline_ms: u64) -> Duration {
        Duration::from_millis(deadline_ms.saturating_sub(self.now_ms()))
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}
