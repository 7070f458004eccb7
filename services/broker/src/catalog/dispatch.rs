//! A topic's dispatch strategy.

use serde::{Deserialize, Serialize};

/// How a topic's messages are dispatched; fixed when the topic is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dispatch {
    /// In-memory fan-out to connected consumers, nothing stored (Danube's default).
    NonReliable,
    /// Stored before the send returns; delivered at least once.
    Reliable,
}

impl std::fmt::Display for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dispatch::NonReliable => "non-reliable",
            Dispatch::Reliable => "reliable",
        })
    }
}
