//! The `danube.Discovery` service: TopicLookup and TopicPartitions (spec §1 rules 4 and 5).

use std::sync::{Arc, PoisonError, RwLock};

use courier_impls::grpc::proto::danube::discovery_server::Discovery;
use courier_impls::grpc::proto::danube::topic_lookup_response::LookupType;
use courier_impls::grpc::proto::danube::{
    TopicLookupRequest, TopicLookupResponse, TopicPartitionsResponse,
};
use tonic::{Request, Response, Status};

use crate::directory::{NodeUrls, Owner, TopicView};
use crate::status::invalid_argument;
use crate::topic::TopicName;

/// Answers where topics are served and which partitions a topic has, from a shared
/// [`TopicView`] (read under a short lock, never across an `.await`).
#[derive(Debug)]
pub struct DiscoveryService<V> {
    here: NodeUrls,
    topics: Arc<RwLock<V>>,
}

impl<V: TopicView> DiscoveryService<V> {
    /// Discovery for the node reached at `here`, over `topics`.
    pub fn new(here: NodeUrls, topics: Arc<RwLock<V>>) -> DiscoveryService<V> {
        DiscoveryService { here, topics }
    }

    /// TopicLookup's answer for `topic`: `Connect` to this node if it serves the topic,
    /// `Redirect` to the owner otherwise (URLs absolute, `proxy` always false).
    ///
    /// Errors: `InvalidArgument` for a bad name, `NotFound` for an unknown topic.
    pub fn lookup(&self, request_id: u64, topic: &str) -> Result<TopicLookupResponse, Status> {
        let name = TopicName::new(topic).map_err(invalid_argument)?;
        let owner = self
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .owner(&name);
        let (response_type, urls) = match owner {
            Some(Owner::Here) => (LookupType::Connect, &self.here),
            Some(Owner::Node(ref urls)) => (LookupType::Redirect, urls),
            None => return Err(Status::not_found(format!("topic {name} does not exist"))),
        };
        Ok(TopicLookupResponse {
            request_id,
            response_type: response_type.into(),
            connect_url: urls.connect_url.clone(),
            broker_url: urls.broker_url.clone(),
            proxy: false,
        })
    }

    /// TopicPartitions' answer for `topic`: `[topic]` if it exists as a plain topic, else its
    /// partitions' names in index order, else none (the client reports that).
    ///
    /// Errors: `InvalidArgument` for a bad name.
    pub fn partitions(
        &self,
        request_id: u64,
        topic: &str,
    ) -> Result<TopicPartitionsResponse, Status> {
        let name = TopicName::new(topic).map_err(invalid_argument)?;
        let (exists, indexes) = {
            let topics = self.topics.read().unwrap_or_else(PoisonError::into_inner);
            (topics.owner(&name).is_some(), topics.partitions(&name))
        };
        let partitions = if exists {
            vec![name.to_string()]
        } else {
            indexes
                .into_iter()
                .filter_map(|index| name.partition(index).ok())
                .map(|partition| partition.to_string())
                .collect()
        };
        Ok(TopicPartitionsResponse {
            request_id,
            partitions,
        })
    }
}

#[tonic::async_trait]
impl<V: TopicView> Discovery for DiscoveryService<V> {
    async fn topic_lookup(
        &self,
        request: Request<TopicLookupRequest>,
    ) -> Result<Response<TopicLookupResponse>, Status> {
        let request = request.into_inner();
        self.lookup(request.request_id, &request.topic)
            .map(Response::new)
    }

    async fn topic_partitions(
        &self,
        request: Request<TopicLookupRequest>,
    ) -> Result<Response<TopicPartitionsResponse>, Status> {
        let request = request.into_inner();
        self.partitions(request.request_id, &request.topic)
            .map(Response::new)
    }
}
