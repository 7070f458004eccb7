//! The random hub workload: senders call the API while faults happen, then the run waits for
//! deliveries to settle and checks.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{HubApi, HubClients, HubOp, HubRet};
use crate::checker::faults::{FaultTarget, Schedule};
use crate::checker::history::History;
use crate::checker::report::RunReport;
use crate::checker::rng::Seed;

/// The shape of a hub run.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Concurrent API callers.
    pub senders: usize,
    /// How long they call (faults stop at the same time).
    pub duration: Duration,
    /// Upper bound of calls per sender.
    pub max_ops_per_sender: usize,
    /// Pause between two calls of one sender.
    pub pace: Duration,
    /// How long accepted messages may take to arrive once the faults are healed.
    pub settle: Duration,
    /// How long to keep listening after everything arrived, to catch late duplicates.
    pub linger: Duration,
    /// The fault schedule.
    pub schedule: Schedule,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            senders: 3,
            duration: Duration::from_secs(25),
            max_ops_per_sender: 2_000,
            pace: Duration::from_millis(50),
            settle: Duration::from_secs(30),
            linger: Duration::from_secs(3),
            schedule: Schedule::default(),
        }
    }
}

impl Workload {
    /// Runs senders against `api` while the schedule injects faults into `target`, waits for
    /// deliveries to settle, and checks what `clients` received. `history` is the clock the
    /// clients record with (they must be connected before the run starts to be judged for
    /// exactly-once delivery).
    pub async fn run(
        &self,
        name: &str,
        api: Arc<dyn HubApi>,
        clients: &dyn HubClients,
        target: &dyn FaultTarget,
        history: Arc<History<HubOp, HubRet>>,
        seed: Seed,
    ) -> RunReport {
        let until = Instant::now() + self.duration;
        let ids = clients.ids();
        let mut senders = JoinSet::new();
        for sender in 0..self.senders {
            let (api, history, ids) = (api.clone(), history.clone(), ids.clone());
            let mut rng = seed.rng(sender as u64 + 1);
            let (max_ops, pace) = (self.max_ops_per_sender, self.pace);
            senders.spawn(async move {
                for n in 0..max_ops {
                    if Instant::now() >= until {
                        break;
                    }
                    let payload = format!("m{sender}-{n}");
                    let op = match rng.pick(&ids) {
                        Some(target) if rng.percent(40) => HubOp::Unicast {
                            payload,
                            target: target.clone(),
                        },
                        _ => HubOp::Broadcast { payload },
                    };
                    let node = rng.below(api.nodes().max(1) as u64) as usize;
                    let id = history.invoke(sender, op.clone());
                    let outcome = api.call(node, &op).await;
                    history.complete(id, outcome);
                    tokio::time::sleep(pace).await;
                }
            });
        }
        let faults = self.schedule.run(target, seed.rng(0), until).await;
        while senders.join_next().await.is_some() {}
        eprintln!(
            "checker {name}: calls done ({} calls, {faults}); waiting for deliveries",
            history.len()
        );
        let entries = history.entries();
        let settle_until = Instant::now() + self.settle;
        loop {
            let (violations, _) = super::check(&entries, &clients.logs());
            let missing = violations.iter().any(|v| v.invariant.starts_with("lost-"));
            if !missing || Instant::now() >= settle_until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(self.linger).await;
        RunReport::new(
            name,
            seed,
            &entries,
            faults,
            super::check(&entries, &clients.logs()),
        )
    }
}
