//! [`BrokerServer`]: the broker's gRPC services over one storage, assembled into a tonic
//! router, served until a shutdown signal, then drained.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt as _;

use courier_impls::grpc::proto::courier_broker::ack_batch_service_server::AckBatchServiceServer;
use courier_impls::grpc::proto::courier_broker::produce_stream_service_server::ProduceStreamServiceServer;
use courier_impls::grpc::proto::danube::auth_service_server::AuthServiceServer;
use courier_impls::grpc::proto::danube::consumer_service_server::ConsumerServiceServer;
use courier_impls::grpc::proto::danube::discovery_server::DiscoveryServer;
use courier_impls::grpc::proto::danube::health_check_server::HealthCheckServer;
use courier_impls::grpc::proto::danube::producer_service_server::{
    ProducerService, ProducerServiceServer,
};
use courier_impls::grpc::proto::danube_schema::schema_registry_server::SchemaRegistryServer;
use courier_traits::storage::StreamStorage;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::server::{Connected, Router};
use tower::layer::util::{Identity, Stack};

use crate::auth::{AuthConfig, AuthLayer, Authenticator, Guard};

use crate::catalog::{Catalog, CatalogError, CatalogState};
use crate::consumer::{ACK_MANY_DECODE_LIMIT, ConsumerConfig, ConsumerService};
use crate::directory::NodeUrls;
use crate::discovery::DiscoveryService;
use crate::first_bytes::FirstBytesDeadline;
use crate::health::{ClientView, HealthService};
use crate::lifecycle::Lifecycle;
use crate::metrics::{BrokerMetrics, MeteredProducers, MetricsEndpoint};
use crate::ownership::gate::{GatedConsumers, GatedDiscovery, GatedProducers, OwnershipGate};
use crate::ownership::{Ownership, OwnershipConfig, OwnershipError};
use crate::producer::{ProduceService, ProduceStream, ProducerConfig, ProducerRegistry};
use crate::tls::{ServerTls, TlsError};

/// The broker's tonic router: its services behind the [`AuthLayer`].
pub type BrokerRouter = Router<Stack<AuthLayer, Identity>>;
use crate::schema_registry::{RegistryError, RegistryService, SchemaRegistry, TopicSchemas};

/// What a broker node needs to know; the defaults are the spec's.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Where clients reach this node (what TopicLookup answers and `msg_id.broker_addr` says).
    pub here: NodeUrls,
    /// The producer side's limits.
    pub producer: ProducerConfig,
    /// The consumer side's window, delays and cursor checkpoints.
    pub consumer: ConsumerConfig,
    /// Ownership claims for several nodes sharing the storage; `None` = this node serves
    /// every topic (lookups always answer `Connect`).
    pub cluster: Option<OwnershipConfig>,
    /// `auth.mode: jwt` when set: every RPC but `Authenticate` needs a bearer credential
    /// ([`crate::auth`]); `None` is `auth.mode: none`.
    pub auth: Option<AuthConfig>,
    /// TLS (mTLS with a client CA) when set; the URLs in [`here`](Self::here) must then be
    /// `https://`.
    pub tls: Option<ServerTls>,
    /// Every client connection gets an HTTP/2 ping this often, and is closed when a ping goes
    /// unanswered as long. Why: a client whose host vanished (power loss, a dropped network:
    /// no FIN, no RST) otherwise keeps its consumer streams open for as long as TCP takes to
    /// give up, which is for ever on an idle connection; with pings its consumers are gone
    /// within twice this, and their unacked messages go to the others. Zero: no pings.
    pub keep_alive: Duration,
}

/// The default [`BrokerConfig::keep_alive`].
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(20);

impl BrokerConfig {
    /// The defaults for a node reached at `here`.
    pub fn new(here: NodeUrls) -> BrokerConfig {
        BrokerConfig {
            here,
            producer: ProducerConfig::default(),
            consumer: ConsumerConfig::default(),
            cluster: None,
            auth: None,
            tls: None,
            keep_alive: DEFAULT_KEEP_ALIVE,
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

/// Why a node could not open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The catalog could not be folded.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The node could not announce itself to the others.
    #[error(transparent)]
    Ownership(#[from] OwnershipError),
    /// The certificate, key or client CA was refused.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The security settings contradict each other (auth over plaintext, `http://` URLs under
    /// TLS or the reverse).
    #[error("insecure or inconsistent settings: {0}")]
    Insecure(String),
    /// The schema registry could not be folded.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl courier_traits::error::Classify for OpenError {
    fn class(&self) -> courier_traits::error::ErrorClass {
        match self {
            OpenError::Catalog(error) => error.class(),
            OpenError::Ownership(error) => error.class(),
            OpenError::Tls(_) | OpenError::Insecure(_) => {
                courier_traits::error::ErrorClass::Permanent
            }
            OpenError::Registry(error) => error.class(),
        }
    }
}

/// Health checks: a client is held while this node is not draining and has it.
#[derive(Debug)]
struct NodeClients {
    lifecycle: Arc<Lifecycle>,
    producers: Arc<ProducerRegistry>,
    consumers: ConsumerService,
    /// With several nodes: a client is held only while its topic is owned here.
    gate: Option<OwnershipGate>,
}

impl NodeClients {
    fn owns(&self, topic: Option<crate::topic::TopicName>) -> bool {
        match (&self.gate, topic) {
            (None, _) => true,
            (Some(gate), Some(topic)) => gate.holds(&topic),
            (Some(_), None) => false,
        }
    }
}

impl ClientView for NodeClients {
    fn holds_producer(&self, id: u64) -> bool {
        !self.lifecycle.is_draining()
            && self.producers.holds(id)
            && self.owns(self.producers.get(id).map(|record| record.topic))
    }

    fn holds_consumer(&self, id: u64) -> bool {
        !self.lifecycle.is_draining()
            && self.consumers.holds(id)
            && self.owns(self.consumers.topic_of(id))
    }
}

/// A broker node: Discovery, HealthCheck, ProducerService and ConsumerService over one storage. A single node
/// owns every topic (lookups answer `Connect`); with [`BrokerConfig::cluster`] nodes sharing
/// the storage claim topics ([`crate::ownership`]).
#[derive(Debug)]
pub struct BrokerServer {
    config: BrokerConfig,
    catalog: Arc<Catalog>,
    producers: Arc<ProducerRegistry>,
    consumers: ConsumerService,
    lifecycle: Arc<Lifecycle>,
    ownership: Option<Arc<Ownership>>,
    metrics: Arc<BrokerMetrics>,
    guard: Option<Arc<Guard>>,
    schemas: Arc<TopicSchemas>,
}

/// Refuses settings that would send credentials in the clear or advertise the wrong scheme.
fn check_security(config: &BrokerConfig) -> Result<(), OpenError> {
    let https = |url: &str| url.starts_with("https://");
    let urls = [&config.here.broker_url, &config.here.connect_url];
    match &config.tls {
        Some(tls) => {
            tls.validate()?;
            if !urls.iter().all(|url| https(url)) {
                return Err(OpenError::Insecure(
                    "under TLS the advertised URLs must be https:// (clients pick TLS by the scheme)"
                        .into(),
                ));
            }
        }
        None => {
            if urls.iter().any(|url| https(url)) {
                return Err(OpenError::Insecure(
                    "https:// advertised but TLS is not configured".into(),
                ));
            }
            if config
                .auth
                .as_ref()
                .is_some_and(|auth| !auth.allow_plaintext)
            {
                return Err(OpenError::Insecure(
                    "auth without TLS sends credentials in the clear: configure TLS or set \
                     auth.allow_plaintext"
                        .into(),
                ));
            }
        }
    }
    Ok(())
}

impl BrokerServer {
    /// Opens the node on `storage`: folds the catalog (topics of earlier runs come back).
    ///
    /// Errors: [`OpenError`] (retryable when the storage is unavailable).
    pub async fn open(
        storage: Arc<dyn StreamStorage>,
        config: BrokerConfig,
    ) -> Result<BrokerServer, OpenError> {
        check_security(&config)?;
        let guard = config.auth.clone().map(|auth| Arc::new(Guard::new(auth)));
        let ownership = match &config.cluster {
            Some(cluster) => {
                Some(Ownership::start(storage.clone(), config.here.clone(), cluster.clone()).await?)
            }
            None => None,
        };
        let registry = Arc::new(SchemaRegistry::open(storage.clone()).await?);
        let catalog = Arc::new(Catalog::open(storage).await?);
        let producers = Arc::new(ProducerRegistry::with_idle_timeout(
            config.producer.max_producers_per_topic,
            config.producer.idle_timeout,
        ));
        let metrics = Arc::new(BrokerMetrics::new());
        let consumers = ConsumerService::with_metrics(
            catalog.clone(),
            config.consumer.clone(),
            metrics.clone(),
        );
        if let Some(ownership) = &ownership {
            let released = consumers.clone();
            ownership.on_lost(Box::new(move |topic| released.release_topic(topic)));
        }
        let schemas = Arc::new(TopicSchemas::new(registry, metrics.schema_warnings.clone()));
        Ok(BrokerServer {
            config,
            catalog,
            producers,
            consumers,
            lifecycle: Arc::new(Lifecycle::new()),
            ownership,
            metrics,
            guard,
            schemas,
        })
    }

    /// The node's schema registry and the schema checks of its topics.
    pub fn schemas(&self) -> &Arc<TopicSchemas> {
        &self.schemas
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

    /// What a metrics scrape reads ([`crate::metrics::serve`] serves it).
    pub fn metrics_endpoint(&self) -> MetricsEndpoint {
        MetricsEndpoint::new(
            self.metrics.clone(),
            self.producers.clone(),
            self.consumers.clone(),
        )
    }

    /// Who owns which topic, when this node shares its storage with others.
    pub fn ownership(&self) -> Option<&Arc<Ownership>> {
        self.ownership.as_ref()
    }

    /// The services as a tonic router behind the [`AuthLayer`] (and TLS when configured),
    /// each RPC in a `tracing` span named `rpc` with its path.
    ///
    /// Errors: [`ServeError::Transport`] if the TLS material is refused (checked at open).
    pub fn router(&self) -> Result<BrokerRouter, ServeError> {
        let gate = self
            .ownership
            .as_ref()
            .map(|ownership| OwnershipGate::new(ownership.clone(), self.catalog.clone()));
        let discovery =
            DiscoveryService::<CatalogState>::new(self.config.here.clone(), self.catalog.view());
        let health = HealthService::new(Arc::new(NodeClients {
            lifecycle: self.lifecycle.clone(),
            producers: self.producers.clone(),
            consumers: self.consumers.clone(),
            gate: gate.clone(),
        }));
        let produce = ProduceService::new(
            self.catalog.clone(),
            self.producers.clone(),
            self.lifecycle.clone(),
            self.config.here.broker_url.clone(),
            self.config.producer.clone(),
        )
        .with_schemas(self.schemas.clone());
        let registry =
            SchemaRegistryServer::new(RegistryService::new(self.schemas.registry().clone()));
        let metrics = self.metrics.clone();
        let keep_alive = Some(self.config.keep_alive).filter(|k| !k.is_zero());
        let mut server = tonic::transport::Server::builder()
            .http2_keepalive_interval(keep_alive)
            .http2_keepalive_timeout(keep_alive);
        if let Some(tls) = &self.config.tls {
            server = server.tls_config(tls.server_config())?;
        }
        let mut builder = server
            .trace_fn(|request| tracing::info_span!("rpc", path = %request.uri().path()))
            .layer(AuthLayer::new(self.guard.clone()));
        let router = match gate {
            None => {
                let (unary, stream) =
                    self.producer_services(MeteredProducers::new(produce, metrics));
                builder
                    .add_service(DiscoveryServer::new(discovery))
                    .add_service(HealthCheckServer::new(health))
                    .add_service(unary)
                    .add_service(stream)
                    .add_service(ConsumerServiceServer::new(self.consumers.clone()))
                    .add_service(
                        AckBatchServiceServer::new(self.consumers.clone())
                            .max_decoding_message_size(ACK_MANY_DECODE_LIMIT),
                    )
            }
            Some(gate) => {
                let (unary, stream) = self.producer_services(MeteredProducers::new(
                    GatedProducers::new(produce, gate.clone()),
                    metrics,
                ));
                builder
                    .add_service(DiscoveryServer::new(GatedDiscovery::new(
                        discovery,
                        gate.clone(),
                    )))
                    .add_service(HealthCheckServer::new(health))
                    .add_service(unary)
                    .add_service(stream)
                    .add_service(ConsumerServiceServer::new(GatedConsumers::new(
                        self.consumers.clone(),
                        gate.clone(),
                    )))
                    .add_service(
                        AckBatchServiceServer::new(GatedConsumers::new(
                            self.consumers.clone(),
                            gate,
                        ))
                        .max_decoding_message_size(ACK_MANY_DECODE_LIMIT),
                    )
            }
        }
        .add_service(registry);
        Ok(match &self.guard {
            Some(guard) => {
                router.add_service(AuthServiceServer::new(Authenticator::new(guard.clone())))
            }
            None => router,
        })
    }

    /// `SendMessage` and Courier's send stream over one producer stack (metrics, ownership
    /// gate, the producer service): each streamed message goes through the same stack.
    fn producer_services<P: ProducerService>(
        &self,
        producers: P,
    ) -> (
        ProducerServiceServer<P>,
        ProduceStreamServiceServer<ProduceStream<P>>,
    ) {
        let decode_limit = self.config.producer.decode_limit();
        let producers = Arc::new(producers);
        let stream = ProduceStream::new(
            producers.clone(),
            self.guard.clone(),
            self.lifecycle.clone(),
        );
        (
            ProducerServiceServer::from_arc(producers).max_decoding_message_size(decode_limit),
            ProduceStreamServiceServer::new(stream).max_decoding_message_size(decode_limit),
        )
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
    /// consumer streams end and every cursor is checkpointed, producers' send streams answer
    /// what they read and end (`Unavailable`), the calls in progress finish, and
    /// each reliable topic's writer writes what it has queued. A connection that has not sent
    /// its first 24 bytes (the HTTP/2 preface) 30 s after it was accepted is closed.
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
        let incoming = incoming.map_ok(FirstBytesDeadline::new);
        let served = match self.router() {
            Ok(router) => router
                .serve_with_incoming_shutdown(incoming, signal)
                .await
                .map_err(ServeError::from),
            Err(error) => Err(error),
        };
        self.catalog.stop().await;
        if let Some(ownership) = &self.ownership {
            ownership.stop().await;
        }
        served
    }
}
