//! The bus server a pair of `courier hub` processes share in a test (testkit fixtures:
//! containers when Docker answers, native servers otherwise), and its faults.

use courier_testkit::fixtures::{Etcd, Postgres, Redis, unique_prefix};

pub(crate) enum Backend {
    Etcd(Etcd),
    Redis(Redis),
    Postgres(Postgres),
}

impl Backend {
    /// The `bus:` lines of the `cluster:` section (keys under a prefix of this run).
    pub(crate) fn bus_section(&self) -> String {
        let prefix = unique_prefix().replace(['/', ':'], "-");
        match self {
            Backend::Etcd(etcd) => format!(
                "  bus: etcd\n  etcd:\n    endpoints: {:?}\n    key_prefix: \"/hub-{prefix}\"\n    dial_timeout: 2s\n",
                etcd.endpoints()
            ),
            Backend::Redis(redis) => format!(
                "  bus: redis\n  redis:\n    url: {:?}\n    key_prefix: \"hub-{prefix}\"\n",
                redis.url()
            ),
            // The Postgres bus has no key prefix: each fixture is a database of its own.
            Backend::Postgres(postgres) => format!(
                "  bus: postgres\n  postgres:\n    url: {:?}\n",
                postgres.url()
            ),
        }
    }

    pub(crate) async fn stop(&mut self) {
        match self {
            Backend::Etcd(f) => f.stop().await.expect("stop etcd"),
            Backend::Redis(f) => f.stop().await.expect("stop redis"),
            Backend::Postgres(f) => f.stop().await.expect("stop postgres"),
        }
    }

    pub(crate) async fn freeze(&mut self) {
        match self {
            Backend::Etcd(f) => f.freeze().await.expect("freeze etcd"),
            Backend::Redis(f) => f.freeze().await.expect("freeze redis"),
            Backend::Postgres(f) => f.freeze().await.expect("freeze postgres"),
        }
    }

    pub(crate) async fn thaw(&mut self) {
        match self {
            Backend::Etcd(f) => f.thaw().await.expect("thaw etcd"),
            Backend::Redis(f) => f.thaw().await.expect("thaw redis"),
            Backend::Postgres(f) => f.thaw().await.expect("thaw postgres"),
        }
    }

    pub(crate) async fn start_again(&mut self) {
        match self {
            Backend::Etcd(f) => f.start_again().await.expect("start etcd"),
            Backend::Redis(f) => f.start_again().await.expect("start redis"),
            Backend::Postgres(f) => f.start_again().await.expect("start postgres"),
        }
    }
}
