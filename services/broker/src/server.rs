//! [`BrokerServer`]: the broker's gRPC services over one storage, assembled into a tonic
//! router, served until a shutdown signal, then drained.

use std::future::Future;
use std::sync::Arc;

use courier_impls::grpc::proto::danube::consumer_service_server::ConsumerServiceServer;
use courier_impls::grpc::proto::danube::discovery_server::DiscoveryServer;
use courier_impls::grpc::proto::danube::health_check_server::HealthCheckServer;
use courier_impls::grpc::proto::danube::producer_service_server::ProducerServiceServer;
use courier_traits::storage::StreamStorage;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::server::{Connected, Router};

use crate::catalog::{Catalog, CatalogError, CatalogState};
use crate::consumer::{ConsumerConfig, ConsumerService};
use crate::directory::NodeUrls;
use crate::discovery::DiscoveryService;
use crate::health::{ClientView, HealthService};
use crate::lifecycle::Lifecycle;
use crate::producer::{ProduceService, ProducerConfig, ProducerRegistry};

/// What a broker node needs to know; the defaults are the spec's.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Where clients reach this node (what TopicLookup answers and `msg_id.broker_addr` says).
    pub here: NodeUrls,
    /// The producer side's limits.
    pub producer: ProducerConfig,
    /// The consumer side's window, delays and cursor checkpoints.
    pub consumer: ConsumerConfig,
}

impl BrokerConfig {
    /// The defaults for a node reached at `here`.
    pub fn new(here: NodeUrls) -> BrokerConfig {
        BrokerConfig {
            here,
            producer: ProducerConfig::default(),
            consumer: ConsumerConfig::default(),
        }
    }
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The gRPC server failed.
    #[error("broker server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Health checks: a client is held while this node is not draining and has it.
#[derive(Debug)]
struct NodeClients {
    lifecycle: Arc<Lifecycle>,
    producers: Arc<ProducerRegistry>,
    consumers: ConsumerService,
}

impl ClientView for NodeClients {
    fn holds_producer(&self, id: u64) -> bool {
        !self.lifecycle.is_draining() && self.producers.holds(id)
    }

    fn holds_consumer(&self, id: u64) -> bool {
        !self.lifecycle.is_draining() && self.consumers.holds(id)
    }
}

/// A broker node: Discovery, HealthCheck, ProducerService and ConsumerService over one storage. A single node
/// owns every topic (lookups answer `Connect`).
#[derive(Debug)]
pub struct BrokerServer {
    config: BrokerConfig,
    catalog: Arc<Catalog>,
    producers: Arc<ProducerRegistry>,
    consumers: ConsumerService,
    lifecycle: Arc<Lifecycle>,
}

impl BrokerServer {
    /// Opens the node on `storage`: folds the catalog (topics of earlier runs come back).
    ///
    /// Errors: [`CatalogError`] (retryable when the storage is unavailable).
    pub async fn open(
        storage: Arc<dyn StreamStorage>,
        config: BrokerConfig,
    ) -> Result<BrokerServer, CatalogError> {
        let catalog = Arc::new(Catalog::open(storage).await?);
        let producers = Arc::new(ProducerRegistry::new(
            config.producer.max_producers_per_topic,
        ));
        let consumers = ConsumerService::new(catalog.clone(), config.consumer.clone());
        Ok(BrokerServer {
            config,
            catalog,
            producers,
            consumers,
            lifecycle: Arc::new(Lifecycle::new()),
        })
    }

    /// The node's topics.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The node's consumers.
    pub fn consumers(&self) -> &ConsumerService {
        &self.consumers
    }

    /// The node's serving state: [`Lifecycle::drain`] refuses new work from then on.
    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }

    /// The services as a tonic router, each RPC in a `tracing` span named `rpc` with its path.
    pub fn router(&self) -> Router {
        let discovery =
            DiscoveryService::<CatalogState>::new(self.config.here.clone(), self.catalog.view());
        let health = HealthService::new(Arc::new(NodeClients {
            lifecycle: self.lifecycle.clone(),
            producers: self.producers.clone(),
            consumers: self.consumers.clone(),
        }));
        let produce = ProduceService::new(
            self.catalog.clone(),
            self.producers.clone(),
            self.lifecycle.clone(),
            self.config.here.broker_url.clone(),
            self.config.producer.clone(),
        );
        tonic::transport::Server::builder()
            .trace_fn(|request| tracing::info_span!("rpc", path = %request.uri().path()))
            .add_service(DiscoveryServer::new(discovery))
            .add_service(HealthCheckServer::new(health))
            .add_service(
                ProducerServiceServer::new(produce)
                    .max_decoding_message_size(self.config.producer.decode_limit()),
            )
            .add_service(ConsumerServiceServer::new(self.consumers.clone()))
    }

    /// Serves TCP connections accepted by `listener` until `shutdown` completes, then drains
    /// (see [`serve_with_incoming`](Self::serve_with_incoming)).
    ///
    /// Errors: [`ServeError`].
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        self.serve_with_incoming(incoming, shutdown).await
    }

    /// Serves the connections of `incoming` until `shutdown` completes, then drains: new work
    /// is refused (`Unavailable`) and health checks answer `CLOSE` from the signal on,
    /// consumer streams end and every cursor is checkpointed, the calls in progress finish, and
    /// each reliable topic's writer writes what it has queued.
    ///
    /// Errors: [`ServeError`].
    pub async fn serve_with_incoming<I, IO, IE>(
        self,
        incoming: I,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError>
    where
        I: futures::Stream<Item = Result<IO, IE>>,
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let lifecycle = self.lifecycle.clone();
        let consumers = self.consumers.clone();
        let signal = async move {
            shutdown.await;
            lifecycle.drain();
            tracing::info!("broker draining: refusing new work");
            // Consumer streams never end by themselves: end them, or draining waits forever.
            consumers.shutdown().await;
        };
        let served = self
            .router()
            .serve_with_incoming_shutdown(incoming, signal)
            .await;
        self.catalog.stop().await;
        served.map_err(ServeError::from)
    }
}
