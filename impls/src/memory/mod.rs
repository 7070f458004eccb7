//! In-process backends (feature `memory`, on by default): [`MemoryBus`] and
//! [`MemoryStreamStorage`]. Complete against the trait semantics and fast; nothing survives
//! the process, and instances in different processes know nothing of each other.

mod bus;
mod storage;

pub use bus::{MemoryBus, MemoryBusConfig};
pub use storage::{MemoryStorageConfig, MemoryStreamStorage};
