//! Cluster mode: nodes exchange frames and presence over any
//! [`MessageBus`](courier_traits::bus::MessageBus).
//!
//! Topics (under the bus's own prefix):
//! * `broadcast` — every broadcast, tagged with the publishing node; a node skips its own
//!   (it already delivered locally), so each client gets a frame once.
//! * `unicast/<node id>` — the inbox of one node: frames for clients it holds. One
//!   subscription per node, not per client: Redis and etcd buses hold a connection or a watch
//!   per subscription, which would not scale to 10 000 clients.
//! * `presence` — joins, leaves, heartbeats and snapshots, from which every node keeps a
//!   [`Directory`](directory::Directory) of who holds which client.
//! * `health` — probe writes of [`Cluster::probe`](node::Cluster::probe) (nobody reads them).
//!
//! Bus failures never stop local delivery. Broadcasts the bus refused are kept in a bounded
//! backlog and re-published in order when it answers again; subscriptions are re-established
//! with the retry policy, resuming from the last position on backends that can.
//!
//! Every frame carries an id chosen by its sender ([`envelope`]); receivers deliver each id
//! once ([`delivered`]), so a frame the bus stored although its publish failed, and that was
//! then re-published, still reaches each client once.
//!
//! Files: [`node`] holds the state the hub owns and shares with the tasks ([`tasks`]): one
//! [`link`] per topic, whose presence messages [`membership`] applies; [`health`] tracks
//! whether the bus answers; [`presence`] and [`envelope`] are the wire formats.

mod delivered;
mod directory;
mod envelope;
mod health;
mod link;
mod membership;
mod node;
mod presence;
mod tasks;

pub(crate) use node::Cluster;
pub(crate) use tasks::start;
