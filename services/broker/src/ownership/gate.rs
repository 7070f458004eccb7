//! The gRPC services of a node sharing its storage with others: each wraps the single-node
//! service and first asks [`Ownership`] whether the topic is served here.

use std::sync::Arc;

use courier_impls::grpc::proto::courier_broker::ack_batch_service_server::AckBatchService;
use courier_impls::grpc::proto::courier_broker::{AckManyRequest, AckManyResponse};
use courier_impls::grpc::proto::danube::consumer_service_server::ConsumerService as ConsumerApi;
use courier_impls::grpc::proto::danube::discovery_server::Discovery;
use courier_impls::grpc::proto::danube::producer_service_server::ProducerService;
use courier_impls::grpc::proto::danube::topic_lookup_response::LookupType;
use courier_impls::grpc::proto::danube::{
    AckRequest, AckResponse, ConsumerRequest, ConsumerResponse, MessageResponse, MsgId,
    NackRequest, NackResponse, ProducerRequest, ProducerResponse, ReceiveRequest, StreamMessage,
    TopicLookupRequest, TopicLookupResponse, TopicPartitionsResponse,
};
use courier_traits::error::Classify;
use tonic::{Code, Request, Response, Status};

use super::{Ownership, OwnershipError};
use crate::catalog::{Catalog, CatalogState};
use crate::consumer::{ConsumerService, MessageStream};
use crate::directory::Owner;
use crate::discovery::DiscoveryService;
use crate::producer::ProduceService;
use crate::topic::TopicName;

/// Decides, per call, whether this node may serve a topic.
#[derive(Clone, Debug)]
pub struct OwnershipGate {
    ownership: Arc<Ownership>,
    catalog: Arc<Catalog>,
}

impl OwnershipGate {
    /// The gate of a node with this ownership view and catalog.
    pub fn new(ownership: Arc<Ownership>, catalog: Arc<Catalog>) -> OwnershipGate {
        OwnershipGate { ownership, catalog }
    }

    /// Who serves `topic` (claiming it if nobody live does).
    ///
    /// Errors: `Unavailable` when the storage is, else `FailedPrecondition`.
    pub async fn owner(&self, topic: &TopicName) -> Result<Owner, Status> {
        if self.ownership.holds(topic) {
            return Ok(Owner::Here);
        }
        self.ownership
            .resolve(topic)
            .await
            .map_err(ownership_status)
    }

    /// `Ok` if this node serves `topic`, else `Unavailable` naming the node that does.
    ///
    /// Errors: `Unavailable` (wrong node, storage down), `FailedPrecondition` (corrupt claims).
    pub async fn admit(&self, topic: &TopicName) -> Result<(), Status> {
        match self.owner(topic).await? {
            Owner::Here => Ok(()),
            Owner::Node(urls) => Err(Status::unavailable(format!(
                "topic {topic} is served by {}: look it up again",
                urls.broker_url
            ))),
        }
    }

    /// Whether the topic of a known client is still served here (health checks).
    pub fn holds(&self, topic: &TopicName) -> bool {
        self.ownership.holds(topic)
    }

    /// Whether `topic` exists, refreshing the catalog once if this node has not seen it (it
    /// may have been created through another node).
    async fn exists(&self, topic: &TopicName) -> Result<bool, Status> {
        if self.catalog.topic(topic).is_some() {
            return Ok(true);
        }
        self.catalog
            .refresh()
            .await
            .map_err(|error| Status::unavailable(format!("catalog: {error}")))?;
        Ok(self.catalog.topic(topic).is_some())
    }
}

fn ownership_status(error: OwnershipError) -> Status {
    if error.is_retryable() {
        Status::unavailable(error.to_string())
    } else {
        Status::failed_precondition(error.to_string())
    }
}

/// Discovery answering `Redirect` for topics another live node owns.
#[derive(Debug)]
pub struct GatedDiscovery {
    inner: DiscoveryService<CatalogState>,
    gate: OwnershipGate,
}

impl GatedDiscovery {
    /// Wraps the node's discovery.
    pub fn new(inner: DiscoveryService<CatalogState>, gate: OwnershipGate) -> GatedDiscovery {
        GatedDiscovery { inner, gate }
    }
}

#[tonic::async_trait]
impl Discovery for GatedDiscovery {
    async fn topic_lookup(
        &self,
        request: Request<TopicLookupRequest>,
    ) -> Result<Response<TopicLookupResponse>, Status> {
        let request = request.into_inner();
        let mut found = self.inner.lookup(request.request_id, &request.topic);
        if let Err(status) = &found
            && status.code() == Code::NotFound
        {
            let name = TopicName::new(&request.topic).map_err(crate::status::invalid_argument)?;
            if self.gate.exists(&name).await? {
                found = self.inner.lookup(request.request_id, &request.topic);
            }
        }
        let mut response = found?;
        // The single-node answer is `Connect` for every known topic: ask who owns it.
        let name = TopicName::new(&request.topic).map_err(crate::status::invalid_argument)?;
        if let Owner::Node(urls) = self.gate.owner(&name).await? {
            response.response_type = LookupType::Redirect.into();
            response.broker_url = urls.broker_url;
            response.connect_url = urls.connect_url;
            response.proxy = false;
        }
        Ok(Response::new(response))
    }

    async fn topic_partitions(
        &self,
        request: Request<TopicLookupRequest>,
    ) -> Result<Response<TopicPartitionsResponse>, Status> {
        let request = request.into_inner();
        let response = self.inner.partitions(request.request_id, &request.topic)?;
        if !response.partitions.is_empty() {
            return Ok(Response::new(response));
        }
        let name = TopicName::new(&request.topic).map_err(crate::status::invalid_argument)?;
        // Unknown here: created through another node since this one last folded the catalog?
        self.gate.exists(&name).await?;
        self.inner
            .partitions(request.request_id, &request.topic)
            .map(Response::new)
    }
}

/// The ProducerService refusing topics served elsewhere with `Unavailable`.
#[derive(Debug)]
pub struct GatedProducers {
    inner: ProduceService,
    gate: OwnershipGate,
}

impl GatedProducers {
    /// Wraps the node's producer service.
    pub fn new(inner: ProduceService, gate: OwnershipGate) -> GatedProducers {
        GatedProducers { inner, gate }
    }
}

#[tonic::async_trait]
impl ProducerService for GatedProducers {
    async fn create_producer(
        &self,
        request: Request<ProducerRequest>,
    ) -> Result<Response<ProducerResponse>, Status> {
        let request = request.into_inner();
        // A bad name is the inner service's `InvalidArgument` to give.
        if let Ok(topic) = TopicName::new(&request.topic_name) {
            self.gate.admit(&topic).await?;
        }
        self.inner.create(request).await.map(Response::new)
    }

    async fn send_message(
        &self,
        request: Request<StreamMessage>,
    ) -> Result<Response<MessageResponse>, Status> {
        let message = request.into_inner();
        if let Some(topic) = message
            .msg_id
            .as_ref()
            .and_then(|id| TopicName::new(&id.topic_name).ok())
        {
            self.gate.admit(&topic).await?;
        }
        self.inner.send(message).await.map(Response::new)
    }
}

/// The ConsumerService refusing subscriptions to topics served elsewhere with `Unavailable`.
#[derive(Debug)]
pub struct GatedConsumers {
    inner: ConsumerService,
    gate: OwnershipGate,
}

impl GatedConsumers {
    /// Wraps the node's consumer service.
    pub fn new(inner: ConsumerService, gate: OwnershipGate) -> GatedConsumers {
        GatedConsumers { inner, gate }
    }
}

#[tonic::async_trait]
impl ConsumerApi for GatedConsumers {
    async fn subscribe(
        &self,
        request: Request<ConsumerRequest>,
    ) -> Result<Response<ConsumerResponse>, Status> {
        // Unknown topics and bad names are the inner service's to answer.
        if let Ok(topic) = TopicName::new(&request.get_ref().topic_name)
            && self.gate.exists(&topic).await?
        {
            self.gate.admit(&topic).await?;
        }
        self.inner.subscribe(request).await
    }

    type ReceiveMessagesStream = MessageStream;

    async fn receive_messages(
        &self,
        request: Request<ReceiveRequest>,
    ) -> Result<Response<MessageStream>, Status> {
        if let Some(topic) = self.inner.topic_of(request.get_ref().consumer_id) {
            self.served_here(&topic)?;
        }
        self.inner.receive_messages(request).await
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        self.settled_here(request.get_ref().msg_id.as_ref())?;
        self.inner.ack(request).await
    }

    async fn nack(&self, request: Request<NackRequest>) -> Result<Response<NackResponse>, Status> {
        self.settled_here(request.get_ref().msg_id.as_ref())?;
        self.inner.nack(request).await
    }
}

#[tonic::async_trait]
impl AckBatchService for GatedConsumers {
    async fn ack_many(
        &self,
        request: Request<AckManyRequest>,
    ) -> Result<Response<AckManyResponse>, Status> {
        // A bad name is the inner service's `InvalidArgument` to give.
        if let Ok(topic) = TopicName::new(&request.get_ref().topic_name) {
            self.served_here(&topic)?;
        }
        AckBatchService::ack_many(&self.inner, request).await
    }
}

impl GatedConsumers {
    /// `Unavailable` once this node stopped serving `topic` (the client looks it up again).
    fn served_here(&self, topic: &TopicName) -> Result<(), Status> {
        if self.gate.holds(topic) {
            Ok(())
        } else {
            Err(Status::unavailable(format!(
                "topic {topic} is no longer served by this node: look it up again"
            )))
        }
    }

    /// An Ack or Nack is refused for a topic served elsewhere: the cursor is the owner's.
    /// Bad ids are the inner service's to answer.
    fn settled_here(&self, msg_id: Option<&MsgId>) -> Result<(), Status> {
        match msg_id.map(|msg_id| TopicName::new(&msg_id.topic_name)) {
            Some(Ok(topic)) => self.served_here(&topic),
            _ => Ok(()),
        }
    }
}
