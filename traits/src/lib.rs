//! # courier-traits
//!
//! The four traits every Courier backend, transport and service is written against, with
//! their shared types and error taxonomy. No implementations live here: pick them from
//! `courier-impls` by feature flag.
//!
//! | trait | what it is for | module |
//! |---|---|---|
//! | [`MessageBus`] | topic fan-out between tasks, processes and nodes | [`bus`] |
//! | [`StreamStorage`] | named append-only streams with opaque ordered offsets | [`storage`] |
//! | [`RequestTransport`], [`DuplexTransport`] | the client side of the wire | [`transport`] |
//! | [`RetryPolicy`] | whether and when to try again | [`retry`] |
//!
//! Every error type implements [`Classify`]: retryable (with an optional retry-after hint) or
//! permanent, so retry decisions do not depend on which backend failed.
//!
//! ## Feature flags
//!
//! | feature | what it adds |
//! |---|---|
//! | `mocks` | [mockall](https://docs.rs/mockall) mocks of every trait (`MockMessageBus`, `MockStreamStorage`, ...) for unit tests of code written against the traits |
//!
//! ## Testing your code against the traits
//!
//! With `mocks`, each trait has a generated mock:
//!
//! ```
//! # #[cfg(feature = "mocks")] {
//! use courier_traits::bus::{BusCapabilities, MessageBus, MockMessageBus};
//!
//! let mut bus = MockMessageBus::new();
//! bus.expect_capabilities().returning(|| BusCapabilities::NONE);
//! assert_eq!(bus.capabilities(), BusCapabilities::NONE);
//! # }
//! ```
//!
//! For behaviour rather than expectations, use the in-memory backends of `courier-impls`
//! (`MemoryBus`, `MemoryStreamStorage`), which pass the same universal suites as the real ones.

pub mod bus;
pub mod clock;
pub mod error;
pub mod retry;
pub mod storage;
pub mod transport;

pub use bus::{
    BusCapabilities, BusError, Message, MessageBus, MessageId, Position, Published, SubscribeFrom,
    Subscription, Topic,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{BoxError, Classify, ErrorClass, InvalidInput};
pub use retry::{GiveUpReason, RetryContext, RetryDecision, RetryPolicy};
pub use storage::{Offset, StorageError, StreamName, StreamStorage};
pub use transport::{DuplexTransport, RequestTransport, TransportError};

#[cfg(feature = "mocks")]
pub use bus::MockMessageBus;
#[cfg(feature = "mocks")]
pub use retry::MockRetryPolicy;
#[cfg(feature = "mocks")]
pub use storage::MockStreamStorage;
#[cfg(feature = "mocks")]
pub use transport::{
    MockDuplexTransport, MockFrameReceiver, MockFrameSender, MockRequestTransport,
};
