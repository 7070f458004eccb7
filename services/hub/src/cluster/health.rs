//! Whether this node's bus answers: a flag every bus call updates, since when it has worked,
//! and a probe that asks the bus now within a deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use courier_traits::bus::{BusError, MessageBus, Topic};
use futures::future::{BoxFuture, FutureExt, Shared};
// The runtime's clock (not std's): tests can pause and move it.
use tokio::time::Instant;

use crate::locks::lock;
use crate::metrics::Metrics;

/// How long one health probe's answer is reused. `/health` needs no key and may be called
/// often; each probe is a write to the bus.
const PROBE_REUSE: Duration = Duration::from_secs(1);

/// A probe in flight or done, shared by every caller that asks meanwhile.
type Probe = Shared<BoxFuture<'static, Result<(), String>>>;

pub(crate) struct BusHealth {
    healthy: AtomicBool,
    /// When the bus last started working (after an outage, or at start): other nodes' silence
    /// counts from then, not while we could not hear them.
    healthy_since: Mutex<Instant>,
    metrics: Arc<Metrics>,
    /// The latest health probe and when it started.
    probe: Mutex<Option<(Instant, Probe)>>,
}

impl BusHealth {
    pub(crate) fn new(metrics: Arc<Metrics>) -> BusHealth {
        BusHealth {
            healthy: AtomicBool::new(true),
            healthy_since: Mutex::new(Instant::now()),
            metrics,
            probe: Mutex::new(None),
        }
    }

    pub(crate) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Since when the bus has worked without interruption.
    pub(crate) fn healthy_since(&self) -> Instant {
        *lock(&self.healthy_since)
    }

    /// A bus call succeeded.
    pub(crate) fn ok(&self) {
        if !self.healthy.swap(true, Ordering::Relaxed) {
            *lock(&self.healthy_since) = Instant::now();
            tracing::info!("cluster bus answers again");
        }
    }

    /// A bus call (`what`) failed.
    pub(crate) fn failed(&self, what: &str, error: &BusError) {
        Metrics::inc(&self.metrics.bus_errors);
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %error, "cluster bus {what} failed: delivering locally, retrying in the background");
        } else {
            tracing::debug!(error = %error, "cluster bus {what} failed again");
        }
    }

    /// Asks the bus now whether it works: a write of `payload` to `topic` that must be
    /// accepted within `deadline`. The flag [`healthy`](Self::healthy) only changes when a
    /// call fails, and a frozen backend fails nothing for as long as its client's timeout;
    /// this answers within the deadline. Callers within [`PROBE_REUSE`] of a probe share its
    /// answer.
    pub(crate) async fn probe(
        &self,
        bus: &Arc<dyn MessageBus>,
        topic: &Topic,
        payload: Bytes,
        deadline: Duration,
    ) -> bool {
        let (probe, started_here) = {
            let mut slot = lock(&self.probe);
            match &*slot {
                Some((started, probe))
                    if started.elapsed() < PROBE_REUSE || probe.peek().is_none() =>
                {
                    (probe.clone(), false)
                }
                _ => {
                    let bus = bus.clone();
                    let topic = topic.clone();
                    let probe = async move {
                        match tokio::time::timeout(deadline, bus.publish(&topic, payload)).await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err(format!("no answer within {deadline:?}")),
                        }
                    }
                    .boxed()
                    .shared();
                    *slot = Some((Instant::now(), probe.clone()));
                    (probe, true)
                }
            }
        };
        let answer = probe.await;
        // One caller records the answer, so one probe counts as one bus error at most.
        if started_here {
            match &answer {
                Ok(()) => self.ok(),
                Err(message) => self.failed(
                    "health probe",
                    &BusError::Unavailable {
                        message: message.clone(),
                        source: None,
                    },
                ),
            }
        }
        answer.is_ok()
    }
}
