//! The pure check of a hub run. Invariants:
//!
//! * `duplicate`: no client receives a payload twice;
//! * `misrouted`: a unicast reaches no client but its target;
//! * `phantom`: nothing is received that no API call sent;
//! * `failed-write-applied`: a call the API refused delivers nothing;
//! * `lost-broadcast`: an accepted broadcast reaches every client connected from before the call
//!   until the end, exactly once;
//! * `lost-unicast`: a unicast the API reported delivered reaches its target if the target was
//!   connected from before the call until the end.
//!
//! Clients that lost a connection are judged for the first four only (what was sent while they
//! were away is allowed to miss them).

use std::collections::HashMap;

use super::{ClientLog, HubOp, HubRet};
use crate::checker::history::Entry;
use crate::checker::report::Violation;

/// Checks the calls in `history` against what `clients` received; returns the violations and
/// how many client histories were judged.
pub fn check(history: &[Entry<HubOp, HubRet>], clients: &[ClientLog]) -> (Vec<Violation>, usize) {
    let sent: HashMap<&str, &Entry<HubOp, HubRet>> =
        history.iter().map(|e| (e.op.payload(), e)).collect();
    let mut out = Vec::new();
    for client in clients {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for (_, payload) in &client.received {
            *counts.entry(payload).or_default() += 1;
        }
        for (payload, n) in &counts {
            if *n > 1 {
                out.push(Violation::new(
                    "duplicate",
                    format!("client {} received {payload} {n} times", client.id),
                ));
            }
            match sent.get(payload) {
                None => out.push(Violation::new(
                    "phantom",
                    format!("client {} received {payload}, which nobody sent", client.id),
                )),
                Some(entry) => {
                    if let HubOp::Unicast { target, .. } = &entry.op
                        && *target != client.id
                    {
                        out.push(Violation::new(
                            "misrouted",
                            format!(
                                "unicast #{} for {target} was received by {}",
                                entry.id, client.id
                            ),
                        ));
                    }
                    if entry.failed() {
                        out.push(Violation::new(
                            "failed-write-applied",
                            format!(
                                "call #{} was refused but client {} received {payload}",
                                entry.id, client.id
                            ),
                        ));
                    }
                }
            }
        }
        for entry in history {
            if !client.connected_throughout_since(entry.invoked) {
                continue;
            }
            let expected = match (&entry.op, entry.ok()) {
                (HubOp::Broadcast { .. }, Some(_)) => Some("lost-broadcast"),
                (HubOp::Unicast { target, .. }, Some(HubRet { delivered: true }))
                    if *target == client.id =>
                {
                    Some("lost-unicast")
                }
                _ => None,
            };
            if let Some(invariant) = expected
                && !counts.contains_key(entry.op.payload())
            {
                out.push(Violation::new(
                    invariant,
                    format!(
                        "call #{} ({}) was accepted; client {}, connected throughout, never received it",
                        entry.id,
                        entry.op.payload(),
                        client.id
                    ),
                ));
            }
        }
    }
    (out, clients.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::history::{History, Outcome};

    fn broadcast(h: &History<HubOp, HubRet>, payload: &str, outcome: Outcome<HubRet>) {
        let id = h.invoke(
            0,
            HubOp::Broadcast {
                payload: payload.into(),
            },
        );
        h.complete(id, outcome);
    }

    fn client(id: &str, connected_at: u64, received: &[&str]) -> ClientLog {
        ClientLog {
            id: id.into(),
            connected_at: Some(connected_at),
            disconnects: Vec::new(),
            received: received.iter().map(|p| (100, (*p).to_owned())).collect(),
        }
    }

    fn invariants(h: &History<HubOp, HubRet>, clients: &[ClientLog]) -> Vec<&'static str> {
        check(&h.entries(), clients)
            .0
            .iter()
            .map(|v| v.invariant)
            .collect()
    }

    #[test]
    fn exactly_once_passes_and_duplicates_and_losses_are_caught() {
        let h = History::new();
        let early = h.tick();
        broadcast(&h, "b1", Outcome::Ok(HubRet { delivered: false }));
        broadcast(&h, "b2", Outcome::Info("timeout".into()));
        broadcast(&h, "b3", Outcome::Fail("400".into()));
        let id = h.invoke(
            0,
            HubOp::Unicast {
                payload: "u1".into(),
                target: "x".into(),
            },
        );
        h.complete(id, Outcome::Ok(HubRet { delivered: true }));

        let good = [
            client("x", early, &["b1", "u1"]),
            client("y", early, &["b1", "b2"]),
        ];
        assert_eq!(invariants(&h, &good), Vec::<&str>::new());

        let twice = [client("x", early, &["b1", "u1", "b1"])];
        assert_eq!(invariants(&h, &twice), vec!["duplicate"]);

        let lost = [client("x", early, &["u1"])];
        assert_eq!(invariants(&h, &lost), vec!["lost-broadcast"]);

        let misrouted = [client("y", early, &["b1", "u1"])];
        assert_eq!(invariants(&h, &misrouted), vec!["misrouted"]);

        let refused = [client("y", early, &["b1", "b3"])];
        assert_eq!(invariants(&h, &refused), vec!["failed-write-applied"]);

        let phantom = [client("y", early, &["b1", "zz"])];
        assert_eq!(invariants(&h, &phantom), vec!["phantom"]);
    }

    #[test]
    fn clients_that_joined_late_or_lost_their_connection_may_miss_messages() {
        let h = History::new();
        let early = h.tick();
        broadcast(&h, "b1", Outcome::Ok(HubRet { delivered: false }));
        let late = client("late", h.tick(), &[]);
        let mut dropped = client("dropped", early, &[]);
        dropped.disconnects.push(h.tick());
        assert_eq!(invariants(&h, &[late, dropped]), Vec::<&str>::new());
    }
}
