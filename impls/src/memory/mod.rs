//! In-process backends (feature `memory`, on by default): [`MemoryBus`] and
//! [`MemoryStreamStorage`], complete against the trait semantics and fast; nothing survives
//! the process, and instances in different processes know nothing of each other.
//!
//! Also in-process transports for tests: [`duplex_pair`], [`in_memory_duplex`] (a
//! [`DuplexTransport`](courier_traits::DuplexTransport) with a server-side acceptor) and
//! [`HandlerTransport`].

mod bus;
mod storage;
mod transport;

pub use bus::{MemoryBus, MemoryBusConfig};
#[cfg(feature = "log")]
pub(crate) use storage::Taken;
#[cfg(feature = "log")]
pub(crate) use storage::{JournalBuffer, Op, ReplayOp, Residency, Spiller};
pub use storage::{MemoryStorageConfig, MemoryStreamStorage};
pub use transport::{
    AcceptedConnection, HandlerTransport, InMemoryAcceptor, InMemoryConnector, duplex_pair,
    in_memory_duplex,
};
