//! A randomized, seeded, fault-injecting checker in the style of Jepsen, bounded in time.
//!
//! A run: several clients issue random operations against a service (through a trait the test
//! implements, so the testkit knows no service crate), every invocation and completion goes
//! into a [`History`], a fault [`Schedule`] meanwhile kills nodes, restarts or freezes the
//! server and cuts connections through a [`Proxy`], and once everything is healed pure checker
//! functions judge the history ([`streams::check`], [`hub::check`]). The [`Seed`] is printed
//! at the start and in every failure message (`COURIER_CHECKER_SEED` replays it;
//! `COURIER_CHECKER_SECS` sets the length of the run).

mod faults;
mod history;
pub mod hub;
mod proxy;
mod report;
mod rng;
pub mod streams;

pub use faults::{Fault, FaultKinds, FaultLog, FaultTarget, Schedule};
pub use history::{Entry, History, OpId, Outcome, Tally, top_reasons};
pub use proxy::Proxy;
pub use report::{RunReport, Violation};
pub use rng::{Rng, SECS_ENV, SEED_ENV, Seed, run_duration};
