//! The universal suites against the in-memory backends.

use courier::impls::memory::{MemoryBus, MemoryStorageConfig, MemoryStreamStorage};
use courier::traits::clock::ManualClock;
use courier_testkit::suites::{FnFactory, FnStorageFactory};

mod memory_bus {
    use super::*;

    courier_testkit::bus_suite!(
        factory = FnFactory::new(|| async { MemoryBus::new() }),
        persistent = false,
        resume = false,
        ordered = true,
        exactly_once = true,
        lag_reporting = true,
        shared = false,
        survives_restart = false,
    );
}

mod memory_storage {
    use super::*;

    courier_testkit::storage_suite!(
        // Every `connect` is a handle on one store, as instances of one factory share a
        // backend (the race cases run two of them); expiry runs on the case's manual clock.
        factory = {
            let clock = ManualClock::starting_now();
            let config = MemoryStorageConfig::default().with_clock(clock.shared());
            let store = MemoryStreamStorage::with_config(config);
            FnStorageFactory::new(move || {
                let store = store.clone();
                async move { store }
            })
            .with_clock(clock)
        },
        durable = false,
        shared = false,
        ttl = true,
        producers = true,
        forks = true,
        survives_restart = false,
        keyed_append = true,
    );
}
