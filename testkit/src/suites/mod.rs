//! The universal suites: one generic body per case, run against every backend.
//!
//! A backend test file stamps the suite out with [`bus_suite!`](crate::bus_suite) or
//! [`storage_suite!`](crate::storage_suite), giving a factory and its capabilities as literal
//! `true`/`false` in a fixed order. Each case becomes a `#[tokio::test]`; a case whose
//! capability is `false` is marked `#[ignore = "needs capability …"]`, so `cargo test` and
//! nextest list it by name as skipped. A generated `capabilities_match_declaration` test
//! checks the literals against what the backend itself reports, so a backend can neither skip
//! a case it promises nor claim one it does not run.
//!
//! ```
//! mod memory_bus {
//!     use courier_impls::memory::MemoryBus;
//!     courier_testkit::bus_suite!(
//!         factory = courier_testkit::suites::FnFactory::new(|| async { MemoryBus::new() }),
//!         persistent = false, resume = false, ordered = true, exactly_once = true,
//!         lag_reporting = true, shared = false, survives_restart = false,
//!     );
//! }
//! ```

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use async_trait::async_trait;
use courier_traits::bus::MessageBus;
use courier_traits::clock::ManualClock;
use courier_traits::storage::StreamStorage;

pub mod bus;
mod macros;
pub mod storage;
pub mod storage_races;

/// How long a case waits for one expected event before failing (a hang guard, not a speed check).
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Makes bus instances for the suite. Instances from one factory share a backend, like
/// nodes of one deployment.
#[async_trait]
pub trait BusFactory: Send + Sync {
    /// The bus type under test.
    type Bus: MessageBus + 'static;
    /// A new instance connected to the factory's backend.
    async fn connect(&self) -> Self::Bus;
    /// Stops the backend server, keeping its data (for `survives_restart` cases).
    async fn stop_server(&self) -> Result<(), String> {
        Err("this factory cannot stop its server".into())
    }
    /// Starts the stopped server again on the same address.
    async fn start_server(&self) -> Result<(), String> {
        Err("this factory cannot start its server".into())
    }
    /// Stops and starts the backend server, keeping its data.
    async fn restart_server(&self) -> Result<(), String> {
        self.stop_server().await?;
        self.start_server().await
    }
}

/// Makes storage instances for the suite; instances from one factory share a backend.
#[async_trait]
pub trait StorageFactory: Send + Sync {
    /// The storage type under test.
    type Storage: StreamStorage + 'static;
    /// A new instance connected to the factory's backend.
    async fn connect(&self) -> Self::Storage;
    /// The manual clock every instance of this factory decides expiry against; the `ttl`
    /// cases move it instead of sleeping through a TTL, and fail without one.
    fn clock(&self) -> Option<ManualClock> {
        None
    }
    /// Stops the backend server, keeping its data (for `survives_restart` cases).
    async fn stop_server(&self) -> Result<(), String> {
        Err("this factory cannot stop its server".into())
    }
    /// Starts the stopped server again on the same address.
    async fn start_server(&self) -> Result<(), String> {
        Err("this factory cannot start its server".into())
    }
    /// Stops and starts the backend server, keeping its data.
    async fn restart_server(&self) -> Result<(), String> {
        self.stop_server().await?;
        self.start_server().await
    }
}

/// A factory from a closure, for backends with nothing to restart (in-process ones).
pub struct FnFactory<F, T> {
    make: F,
    _made: PhantomData<fn() -> T>,
}

impl<F, Fut, T> FnFactory<F, T>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = T> + Send,
{
    /// Wraps `make`, called once per `connect`.
    pub fn new(make: F) -> Self {
        FnFactory {
            make,
            _made: PhantomData,
        }
    }
}

#[async_trait]
impl<F, Fut, B> BusFactory for FnFactory<F, B>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = B> + Send,
    B: MessageBus + 'static,
{
    type Bus = B;
    async fn connect(&self) -> B {
        (self.make)().await
    }
}

/// The storage twin of [`FnFactory`] (a separate type so one closure type cannot be both).
pub struct FnStorageFactory<F, T> {
    make: FnFactory<F, T>,
    clock: Option<ManualClock>,
}

impl<F, Fut, T> FnStorageFactory<F, T>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = T> + Send,
{
    /// Wraps `make`, called once per `connect`.
    pub fn new(make: F) -> Self {
        FnStorageFactory {
            make: FnFactory::new(make),
            clock: None,
        }
    }

    /// Declares the manual clock the storages `make` returns decide expiry against (see
    /// [`StorageFactory::clock`]).
    pub fn with_clock(self, clock: ManualClock) -> Self {
        FnStorageFactory {
            clock: Some(clock),
            ..self
        }
    }
}

#[async_trait]
impl<F, Fut, S> StorageFactory for FnStorageFactory<F, S>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = S> + Send,
    S: StreamStorage + 'static,
{
    type Storage = S;
    async fn connect(&self) -> S {
        (self.make.make)().await
    }
    fn clock(&self) -> Option<ManualClock> {
        self.clock.clone()
    }
}

/// Awaits `future` or fails the case after [`EVENT_TIMEOUT`], naming what it waited for.
pub(crate) async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(EVENT_TIMEOUT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {EVENT_TIMEOUT:?} waiting for {what}"),
    }
}
