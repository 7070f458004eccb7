//! [`EtcdClient`]: a gRPC channel to an etcd cluster and etcd's generated clients on it.

use std::time::Duration;

use courier_traits::InvalidInput;
use courier_traits::bus::BusError;
use tonic::transport::{Channel, Endpoint};

use super::proto::etcdserverpb::kv_client::KvClient;
use super::proto::etcdserverpb::lease_client::LeaseClient;
use super::proto::etcdserverpb::watch_client::WatchClient;

/// A connection to an etcd cluster that speaks etcd's own gRPC API (the generated clients of
/// [`proto`](super::proto)). [`EtcdBus`](super::EtcdBus) runs on it; it is public for tests,
/// benchmarks and tools that need an etcd operation the bus does not offer (compacting
/// history, listing leases, a plain put).
///
/// Plain HTTP/2 only (`http://host:port`, or `host:port`); requests are spread over the
/// endpoints. Cloning is cheap and shares the connections.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use courier_impls::etcd::EtcdClient;
/// use courier_impls::etcd::proto::etcdserverpb::CompactionRequest;
///
/// let etcd = EtcdClient::connect(&["http://127.0.0.1:2379"], Duration::from_secs(5)).await?;
/// let request = CompactionRequest { revision: 42, ..Default::default() };
/// etcd.kv().compact(request).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct EtcdClient {
    channel: Channel,
}

impl EtcdClient {
    /// Prepares connections to `endpoints`; they open on the first request (so this fails
    /// only on an invalid endpoint). `timeout` bounds each connection attempt and each
    /// request until its response starts.
    pub async fn connect(
        endpoints: &[impl AsRef<str>],
        timeout: Duration,
    ) -> Result<EtcdClient, BusError> {
        if endpoints.is_empty() {
            return Err(InvalidInput::new("etcd endpoints", "", "at least one is needed").into());
        }
        let endpoints = endpoints
            .iter()
            .map(|e| endpoint(e.as_ref(), timeout))
            .collect::<Result<Vec<_>, _>>()?;
        // Balanced even over one endpoint, as etcd's own clients do: a failed connection is
        // re-opened on the next request instead of failing the channel for good.
        Ok(EtcdClient {
            channel: Channel::balance_list(endpoints.into_iter()),
        })
    }

    /// etcd's KV service: range reads, puts, compaction.
    pub fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone())
    }

    /// etcd's Watch service.
    pub fn watch(&self) -> WatchClient<Channel> {
        WatchClient::new(self.channel.clone())
    }

    /// etcd's Lease service.
    pub fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel.clone())
    }
}

fn endpoint(address: &str, timeout: Duration) -> Result<Endpoint, BusError> {
    let invalid = |why: &str| BusError::from(InvalidInput::new("etcd endpoint", address, why));
    let uri = match address.split_once("://") {
        None => format!("http://{address}"),
        Some(("http", _)) => address.to_owned(),
        Some(("https", _)) => return Err(invalid("TLS is not supported: use an http:// endpoint")),
        // tonic would take unix:// (and more) its own way; etcd's clients speak http:// only.
        Some(_) => return Err(invalid("use an http:// endpoint")),
    };
    let endpoint = Endpoint::from_shared(uri).map_err(|_| invalid("not a valid URI"))?;
    Ok(endpoint
        .connect_timeout(timeout)
        .timeout(timeout)
        // Pings find a dead connection (a server gone without a word) so watches move on.
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5)))
}
