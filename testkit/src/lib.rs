//! # courier-testkit
//!
//! Real servers for backend tests, and the universal suites every Courier backend must pass.
//!
//! * [`fixtures`]: [`Redis`](fixtures::Redis), [`Postgres`](fixtures::Postgres) and
//!   [`Etcd`](fixtures::Etcd) start a real server (from the environment, through
//!   testcontainers, or from the native binary) with stop/restart for fault tests; `shared()`
//!   gives a test the run's one shared server of that kind instead (fresh prefix or database
//!   per test), which is what the suites use outside their restart cases.
//! * [`suites`]: one generic test body per trait, stamped into a `#[tokio::test]` per case by
//!   [`bus_suite!`] and [`storage_suite!`]. A backend declares its capabilities; cases it does
//!   not promise are marked ignored with the missing capability as the reason, so test runners
//!   list them by name as skipped.
//! * [`checker`]: a seeded, fault-injecting checker in the style of Jepsen: random operations
//!   from concurrent clients, a recorded history, faults (node kills, server restarts and
//!   freezes, cut connections) and pure checks of the history; for the streams server and the hub.
//! * [`http`]: an HTTP server's connection limits, checked over loopback TCP.

pub mod checker;
pub mod fixtures;
pub mod http;
pub mod logs;
pub mod suites;

#[doc(hidden)]
pub mod __reexport {
    pub use courier_traits::bus::{BusCapabilities, MessageBus};
    pub use courier_traits::storage::{StorageCapabilities, StreamStorage};
}
