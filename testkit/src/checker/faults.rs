//! The fault schedule: while the workload runs, inject one fault at a time, heal it, wait, repeat.
//!
//! What a fault does to the system under test is the test's business ([`FaultTarget`]); the
//! schedule only picks which fault and when, from the run's seed, and counts what it did. Every
//! fault is healed before the next one starts (a killed node is restarted, a frozen server
//! thawed), so when the schedule ends the system is whole again and the final reads can run.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::rng::Rng;

/// The faults a schedule can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// SIGKILL one service node (its index), then start it again.
    KillNode(usize),
    /// Stop the storage / bus server and start it again (data kept).
    RestartServer,
    /// SIGSTOP the storage / bus server, wait, SIGCONT it.
    FreezeServer(Duration),
    /// Cut every open client connection at once (the loopback [`Proxy`](super::Proxy)).
    DropConnections,
}

impl Fault {
    /// The kind's name, for counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::KillNode(_) => "kill-node",
            Fault::RestartServer => "restart-server",
            Fault::FreezeServer(_) => "freeze-server",
            Fault::DropConnections => "drop-connections",
        }
    }
}

/// Which faults a target supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultKinds {
    /// How many nodes may be killed (0: none, e.g. an in-memory store loses everything).
    pub nodes: usize,
    /// The server can be restarted.
    pub restart_server: bool,
    /// The server can be frozen.
    pub freeze_server: bool,
    /// Connections go through a proxy that can cut them.
    pub drop_connections: bool,
}

/// The system under test, as the fault schedule sees it.
#[async_trait]
pub trait FaultTarget: Send + Sync {
    /// The faults it supports.
    fn kinds(&self) -> FaultKinds;
    /// Injects `fault` and heals it before returning. An error means the system could not be
    /// healed (a node did not come back): the run stops and reports it.
    async fn inject(&self, fault: Fault) -> Result<(), String>;
}

/// What a schedule did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultLog {
    /// Faults injected, by kind.
    pub injected: BTreeMap<&'static str, usize>,
    /// The first fault that could not be healed, if any.
    pub error: Option<String>,
}

impl FaultLog {
    /// Total faults injected.
    pub fn total(&self) -> usize {
        self.injected.values().sum()
    }
}

impl std::fmt::Display for FaultLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} faults", self.total())?;
        let kinds: Vec<String> = self
            .injected
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        if !kinds.is_empty() {
            write!(f, " ({})", kinds.join(", "))?;
        }
        Ok(())
    }
}

/// When and how long faults happen.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Quiet time between two faults: a random duration in this range.
    pub quiet: (Duration, Duration),
    /// How long a freeze lasts: a random duration in this range.
    pub freeze: (Duration, Duration),
    /// Relative chances of kill-node, restart-server, freeze-server and drop-connections
    /// (among the kinds the target supports).
    pub weights: [u64; 4],
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            quiet: (Duration::from_millis(1500), Duration::from_millis(4000)),
            freeze: (Duration::from_secs(2), Duration::from_secs(5)),
            weights: [3, 2, 2, 3],
        }
    }
}

impl Schedule {
    /// Injects random faults into `target` until `until`; each is healed before the next starts.
    /// Stops early at the first fault that cannot be healed.
    pub async fn run(&self, target: &dyn FaultTarget, mut rng: Rng, until: Instant) -> FaultLog {
        let kinds = target.kinds();
        let mut log = FaultLog::default();
        loop {
            let quiet = rng.duration(self.quiet.0, self.quiet.1);
            if Instant::now() + quiet >= until {
                break;
            }
            tokio::time::sleep(quiet).await;
            let Some(fault) = self.pick(kinds, &mut rng) else {
                break;
            };
            eprintln!("checker: fault {fault:?}");
            if let Err(e) = target.inject(fault).await {
                log.error = Some(format!("{fault:?}: {e}"));
                break;
            }
            *log.injected.entry(fault.kind()).or_default() += 1;
        }
        log
    }

    fn pick(&self, kinds: FaultKinds, rng: &mut Rng) -> Option<Fault> {
        let supported = [
            kinds.nodes > 0,
            kinds.restart_server,
            kinds.freeze_server,
            kinds.drop_connections,
        ];
        let mut weights = self.weights;
        for (weight, supported) in weights.iter_mut().zip(supported) {
            if !supported {
                *weight = 0;
            }
        }
        if weights.iter().all(|w| *w == 0) {
            return None;
        }
        Some(match rng.weighted(&weights) {
            0 => Fault::KillNode(rng.below(kinds.nodes as u64) as usize),
            1 => Fault::RestartServer,
            2 => Fault::FreezeServer(rng.duration(self.freeze.0, self.freeze.1)),
            _ => Fault::DropConnections,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Recorder {
        kinds: FaultKinds,
        seen: Mutex<Vec<Fault>>,
    }

    #[async_trait]
    impl FaultTarget for Recorder {
        fn kinds(&self) -> FaultKinds {
            self.kinds
        }
        async fn inject(&self, fault: Fault) -> Result<(), String> {
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(fault);
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_supported_faults_are_injected_and_counted() {
        let target = Recorder {
            kinds: FaultKinds {
                nodes: 0,
                restart_server: false,
                freeze_server: true,
                drop_connections: true,
            },
            seen: Mutex::new(Vec::new()),
        };
        let schedule = Schedule::default();
        let rng = super::super::Seed(5).rng(0);
        let log = schedule
            .run(&target, rng, Instant::now() + Duration::from_secs(120))
            .await;
        let seen = target
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        assert!(seen.len() >= 20, "{seen:?}");
        assert!(
            seen.iter()
                .all(|f| matches!(f, Fault::FreezeServer(_) | Fault::DropConnections))
        );
        assert_eq!(log.total(), seen.len());
        assert!(log.injected.contains_key("freeze-server"));
        assert!(log.injected.contains_key("drop-connections"));
    }
}
