//! The hub checker: broadcasts and unicasts with unique payloads through the hub's API, clients
//! that record what they receive, and the pure [`check`] of both.
//!
//! The test implements [`HubApi`] (the HTTP API of its nodes) and [`HubClients`] (its WebSocket
//! clients, each recording into a [`ClientLog`] with ticks of the run's [`History`] clock, so
//! deliveries and disconnections are ordered against the API calls).
//!
//! [`History`]: crate::checker::History

mod check;
mod model;
mod workload;

pub use check::check;
pub use model::{ClientLog, ClientRecorder, HubApi, HubClients, HubOp, HubRet};
pub use workload::Workload;
