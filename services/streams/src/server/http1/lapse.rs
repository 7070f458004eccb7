//! The time limit on a connection's reads, restarted on every request but rarely firing.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A connection is closed when a request's head takes longer than this to arrive, counted
/// from the previous answer (or the connection's start), and when a body being read goes this
/// long without a byte. hyper's header timeout, which the connections handed to it keep, is
/// the same 30 s and also counts from the previous answer. Without it a client that sends a
/// few bytes and stops, or opens connections and sends nothing, holds a task and a buffer per
/// connection for ever, and a body stalled midway holds a graceful shutdown up.
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A limit of `limit` from the last [`Lapse::restart`].
///
/// Why not a new timeout per read: a connection restarts its limit once per request, and a
/// timer registered and removed per request is work on the hot path for a limit that almost
/// never fires. Here a restart only notes the instant; the one timer of the connection keeps
/// its earlier deadline, and when it fires early it is set again to the real one. So the
/// timer moves at most once per `limit` on a busy connection.
pub(super) struct Lapse {
    timer: Pin<Box<Sleep>>,
    limit: Duration,
    started: Instant,
}

impl Lapse {
    /// A limit of `limit`, starting now.
    pub(super) fn new(limit: Duration) -> Lapse {
        let started = Instant::now();
        Lapse {
            timer: Box::pin(tokio::time::sleep_until(started + limit)),
            limit,
            started,
        }
    }

    /// Starts the limit again from now.
    pub(super) fn restart(&mut self) {
        self.started = Instant::now();
    }

    /// Completes once `limit` has passed since the last start. Cancel-safe: dropped and
    /// called again, it waits for the same instant.
    pub(super) async fn passed(&mut self) {
        loop {
            self.timer.as_mut().await;
            let due = self.started + self.limit;
            if Instant::now() >= due {
                return;
            }
            self.timer.as_mut().reset(due);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn it_passes_at_the_limit_from_the_last_restart() {
        let begun = Instant::now();
        let mut lapse = Lapse::new(Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(20)).await;
        lapse.restart();
        tokio::time::advance(Duration::from_secs(20)).await;
        lapse.restart();
        lapse.passed().await;
        assert_eq!(begun.elapsed(), Duration::from_secs(70));
        // Without a restart it has passed already.
        lapse.passed().await;
        assert_eq!(begun.elapsed(), Duration::from_secs(70));
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_dropped_midway_loses_nothing() {
        let begun = Instant::now();
        let mut lapse = Lapse::new(Duration::from_secs(30));
        let early = tokio::time::timeout(Duration::from_secs(10), lapse.passed()).await;
        assert!(early.is_err(), "not passed after 10 s");
        lapse.passed().await;
        assert_eq!(begun.elapsed(), Duration::from_secs(30));
    }
}
