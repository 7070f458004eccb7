//! The hub checker's model: the API calls and their results, the system interfaces a test
//! implements, and the clients' delivery logs.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::checker::history::Outcome;

/// One API call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubOp {
    /// `POST /api/v1/broadcast` with `payload`.
    Broadcast {
        /// Unique payload.
        payload: String,
    },
    /// `POST /api/v1/clients/<target>/push` with `payload`.
    Unicast {
        /// Unique payload.
        payload: String,
        /// Client id.
        target: String,
    },
}

impl HubOp {
    /// The payload sent.
    pub fn payload(&self) -> &str {
        match self {
            HubOp::Broadcast { payload } | HubOp::Unicast { payload, .. } => payload,
        }
    }
}

/// The result of an accepted call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubRet {
    /// For a unicast: the API said it was delivered (locally or to the owning node).
    pub delivered: bool,
}

/// The hub's API, as the workload calls it. Unclear results are [`Outcome::Info`].
#[async_trait]
pub trait HubApi: Send + Sync {
    /// How many nodes there are.
    fn nodes(&self) -> usize;
    /// Runs `op` through node `node`.
    async fn call(&self, node: usize, op: &HubOp) -> Outcome<HubRet>;
}

/// The test's clients, as the workload sees them.
pub trait HubClients: Send + Sync {
    /// The ids of every client (unicast targets).
    fn ids(&self) -> Vec<String>;
    /// A copy of every client's log so far.
    fn logs(&self) -> Vec<ClientLog>;
}

/// What one client saw, with ticks of the history's clock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientLog {
    /// Client id.
    pub id: String,
    /// When its first connection was welcomed (`None`: never connected).
    pub connected_at: Option<u64>,
    /// When it lost a connection.
    pub disconnects: Vec<u64>,
    /// Payloads received, with the tick of receipt.
    pub received: Vec<(u64, String)>,
}

impl ClientLog {
    /// True if it was connected from before `tick` without interruption.
    pub fn connected_throughout_since(&self, tick: u64) -> bool {
        self.connected_at.is_some_and(|at| at < tick) && self.disconnects.is_empty()
    }
}

/// A [`ClientLog`] shared between a client's event task and the checker.
#[derive(Debug, Default)]
pub struct ClientRecorder(Mutex<ClientLog>);

impl ClientRecorder {
    /// A recorder for client `id`.
    pub fn new(id: &str) -> ClientRecorder {
        ClientRecorder(Mutex::new(ClientLog {
            id: id.to_owned(),
            ..ClientLog::default()
        }))
    }

    fn with<T>(&self, f: impl FnOnce(&mut ClientLog) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The client was welcomed at `tick` (only the first welcome counts).
    pub fn connected(&self, tick: u64) {
        self.with(|log| {
            log.connected_at.get_or_insert(tick);
        });
    }

    /// The client lost its connection at `tick`.
    pub fn disconnected(&self, tick: u64) {
        self.with(|log| log.disconnects.push(tick));
    }

    /// The client received `payload` at `tick`.
    pub fn received(&self, tick: u64, payload: String) {
        self.with(|log| log.received.push((tick, payload)));
    }

    /// A copy of the log.
    pub fn log(&self) -> ClientLog {
        self.with(|log| log.clone())
    }
}
