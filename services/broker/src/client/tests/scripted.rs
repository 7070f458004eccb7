//! A broker whose answers the test scripts: real tonic over the in-process network, the four
//! Danube services, failures queued per RPC, every call recorded with its (tokio) time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use courier_impls::grpc::InProcessNetwork;
use courier_impls::grpc::proto::courier_broker::ack_batch_service_server::{
    AckBatchService, AckBatchServiceServer,
};
use courier_impls::grpc::proto::courier_broker::{AckManyRequest, AckManyResponse};
use courier_impls::grpc::proto::danube::consumer_service_server::{
    ConsumerService, ConsumerServiceServer,
};
use courier_impls::grpc::proto::danube::discovery_server::{Discovery, DiscoveryServer};
use courier_impls::grpc::proto::danube::health_check_response::ClientStatus;
use courier_impls::grpc::proto::danube::health_check_server::{HealthCheck, HealthCheckServer};
use courier_impls::grpc::proto::danube::producer_service_server::{
    ProducerService, ProducerServiceServer,
};
use courier_impls::grpc::proto::danube::topic_lookup_response::LookupType;
use courier_impls::grpc::proto::danube::{
    AckRequest, AckResponse, ConsumerRequest, ConsumerResponse, HealthCheckRequest,
    HealthCheckResponse, MessageResponse, MsgId, NackRequest, NackResponse, ProducerRequest,
    ProducerResponse, ReceiveRequest, StreamMessage, TopicLookupRequest, TopicLookupResponse,
    TopicPartitionsResponse,
};
use futures::StreamExt;
use futures::channel::mpsc;
use futures::stream::BoxStream;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::{Code, Request, Response, Status};

/// Where the scripted broker listens.
pub(super) const URL: &str = "http://scripted.test:6650";

type Delivery = Result<StreamMessage, Status>;

/// One recorded call.
#[derive(Clone, Debug)]
pub(super) struct Called {
    pub(super) rpc: &'static str,
    pub(super) at: Instant,
    /// The topic, or the consumer/producer id for calls by id.
    pub(super) detail: String,
}

#[derive(Default)]
struct State {
    failures: HashMap<&'static str, VecDeque<Code>>,
    calls: Vec<Called>,
    partitions: Vec<String>,
    redirects: VecDeque<String>,
    closed: HashSet<u64>,
    streams: HashMap<u64, mpsc::UnboundedSender<Delivery>>,
    subscriptions: HashMap<u64, String>,
    acks: Vec<AckRequest>,
    ack_batches: Vec<AckManyRequest>,
    nacks: Vec<NackRequest>,
    sent: Vec<StreamMessage>,
}

/// The script and the record, shared by the services.
#[derive(Default)]
pub(super) struct Script {
    state: Mutex<State>,
    next_id: AtomicU64,
}

impl Script {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next `count` calls of `rpc` fail with `code`.
    pub(super) fn fail(&self, rpc: &'static str, code: Code, count: usize) {
        let mut state = self.state();
        let queue = state.failures.entry(rpc).or_default();
        queue.extend(std::iter::repeat_n(code, count));
    }

    /// `TopicPartitions` answers `partitions` for any topic.
    pub(super) fn set_partitions(&self, partitions: &[&str]) {
        self.state().partitions = partitions.iter().map(|p| p.to_string()).collect();
    }

    /// The next lookup answers `Redirect` to `url` (then `Connect` here again).
    pub(super) fn redirect_once(&self, url: &str) {
        self.state().redirects.push_back(url.to_owned());
    }

    /// Health checks of `id` answer `CLOSE` from now on.
    pub(super) fn close_client(&self, id: u64) {
        self.state().closed.insert(id);
    }

    /// Sends `message` on consumer `id`'s open stream; false if it has none.
    pub(super) fn deliver(&self, id: u64, message: Delivery) -> bool {
        self.state()
            .streams
            .get(&id)
            .is_some_and(|s| s.unbounded_send(message).is_ok())
    }

    /// Ends consumer `id`'s open stream.
    pub(super) fn end_stream(&self, id: u64) {
        self.state().streams.remove(&id);
    }

    /// Calls of `rpc` so far.
    pub(super) fn calls(&self, rpc: &str) -> Vec<Called> {
        self.state()
            .calls
            .iter()
            .filter(|c| c.rpc == rpc)
            .cloned()
            .collect()
    }

    pub(super) fn acks(&self) -> Vec<AckRequest> {
        self.state().acks.clone()
    }

    /// The `AckMany` calls answered OK (a broker started with
    /// [`ScriptedBroker::start_with_ack_many`]).
    pub(super) fn ack_batches(&self) -> Vec<AckManyRequest> {
        self.state().ack_batches.clone()
    }

    pub(super) fn nacks(&self) -> Vec<NackRequest> {
        self.state().nacks.clone()
    }

    pub(super) fn sent(&self) -> Vec<StreamMessage> {
        self.state().sent.clone()
    }

    /// The consumer ids with an open stream, by the topic they subscribed to.
    pub(super) fn open_streams(&self) -> Vec<(u64, String)> {
        let state = self.state();
        let mut open: Vec<(u64, String)> = state
            .streams
            .iter()
            .filter(|(_, s)| !s.is_closed())
            .map(|(id, _)| {
                (
                    *id,
                    state.subscriptions.get(id).cloned().unwrap_or_default(),
                )
            })
            .collect();
        open.sort();
        open
    }

    /// Records the call and answers its scripted failure, if one is queued.
    fn enter(&self, rpc: &'static str, detail: String) -> Result<(), Status> {
        let mut state = self.state();
        state.calls.push(Called {
            rpc,
            at: Instant::now(),
            detail,
        });
        match state.failures.get_mut(rpc).and_then(VecDeque::pop_front) {
            Some(code) => Err(Status::new(code, format!("scripted {rpc} failure"))),
            None => Ok(()),
        }
    }

    fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A delivery as a well-behaved broker makes it.
pub(super) fn message(topic: &str, offset: u64, payload: &str) -> StreamMessage {
    StreamMessage {
        request_id: offset,
        msg_id: Some(MsgId {
            producer_id: 9,
            topic_name: topic.to_owned(),
            broker_addr: URL.to_owned(),
            topic_offset: offset,
        }),
        payload: payload.to_owned().into(),
        producer_name: "p".into(),
        ..StreamMessage::default()
    }
}

/// The services of one scripted node: the script and the node's own URL.
#[derive(Clone)]
struct Services(Arc<Script>, String);

#[tonic::async_trait]
impl Discovery for Services {
    async fn topic_lookup(
        &self,
        request: Request<TopicLookupRequest>,
    ) -> Result<Response<TopicLookupResponse>, Status> {
        let request = request.into_inner();
        self.0.enter("TopicLookup", request.topic.clone())?;
        let redirect = self.0.state().redirects.pop_front();
        let (response_type, url) = match redirect {
            Some(url) => (LookupType::Redirect, url),
            None => (LookupType::Connect, self.1.clone()),
        };
        Ok(Response::new(TopicLookupResponse {
            request_id: request.request_id,
            response_type: response_type.into(),
            connect_url: url.clone(),
            broker_url: url,
            proxy: false,
        }))
    }

    async fn topic_partitions(
        &self,
        request: Request<TopicLookupRequest>,
    ) -> Result<Response<TopicPartitionsResponse>, Status> {
        let request = request.into_inner();
        self.0.enter("TopicPartitions", request.topic)?;
        Ok(Response::new(TopicPartitionsResponse {
            request_id: request.request_id,
            partitions: self.0.state().partitions.clone(),
        }))
    }
}

#[tonic::async_trait]
impl ProducerService for Services {
    async fn create_producer(
        &self,
        request: Request<ProducerRequest>,
    ) -> Result<Response<ProducerResponse>, Status> {
        let request = request.into_inner();
        self.0.enter("CreateProducer", request.topic_name.clone())?;
        Ok(Response::new(ProducerResponse {
            request_id: request.request_id,
            producer_id: self.0.new_id(),
            producer_name: request.producer_name,
        }))
    }

    async fn send_message(
        &self,
        request: Request<StreamMessage>,
    ) -> Result<Response<MessageResponse>, Status> {
        let message = request.into_inner();
        let topic = message
            .msg_id
            .as_ref()
            .map(|id| id.topic_name.clone())
            .unwrap_or_default();
        self.0.enter("SendMessage", topic)?;
        let request_id = message.request_id;
        self.0.state().sent.push(message);
        Ok(Response::new(MessageResponse { request_id }))
    }
}

#[tonic::async_trait]
impl ConsumerService for Services {
    type ReceiveMessagesStream = BoxStream<'static, Delivery>;

    async fn subscribe(
        &self,
        request: Request<ConsumerRequest>,
    ) -> Result<Response<ConsumerResponse>, Status> {
        let request = request.into_inner();
        self.0.enter("Subscribe", request.topic_name.clone())?;
        let id = self.0.new_id();
        self.0.state().subscriptions.insert(id, request.topic_name);
        Ok(Response::new(ConsumerResponse {
            request_id: request.request_id,
            consumer_id: id,
            consumer_name: request.consumer_name,
        }))
    }

    async fn receive_messages(
        &self,
        request: Request<ReceiveRequest>,
    ) -> Result<Response<Self::ReceiveMessagesStream>, Status> {
        let request = request.into_inner();
        self.0
            .enter("ReceiveMessages", request.consumer_id.to_string())?;
        let (sender, receiver) = mpsc::unbounded();
        self.0.state().streams.insert(request.consumer_id, sender);
        Ok(Response::new(receiver.boxed()))
    }

    async fn ack(&self, request: Request<AckRequest>) -> Result<Response<AckResponse>, Status> {
        let request = request.into_inner();
        self.0.enter("Ack", request.subscription_name.clone())?;
        let request_id = request.request_id;
        self.0.state().acks.push(request);
        Ok(Response::new(AckResponse { request_id }))
    }

    async fn nack(&self, request: Request<NackRequest>) -> Result<Response<NackResponse>, Status> {
        let request = request.into_inner();
        self.0.enter("Nack", request.subscription_name.clone())?;
        let request_id = request.request_id;
        self.0.state().nacks.push(request);
        Ok(Response::new(NackResponse { request_id }))
    }
}

#[tonic::async_trait]
impl AckBatchService for Services {
    async fn ack_many(
        &self,
        request: Request<AckManyRequest>,
    ) -> Result<Response<AckManyResponse>, Status> {
        let request = request.into_inner();
        self.0.enter("AckMany", request.subscription_name.clone())?;
        let request_id = request.request_id;
        self.0.state().ack_batches.push(request);
        Ok(Response::new(AckManyResponse { request_id }))
    }
}

#[tonic::async_trait]
impl HealthCheck for Services {
    async fn health_check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let request = request.into_inner();
        self.0.enter("HealthCheck", request.id.to_string())?;
        let status = if self.0.state().closed.contains(&request.id) {
            ClientStatus::Close
        } else {
            ClientStatus::Ok
        };
        Ok(Response::new(HealthCheckResponse {
            status: status.into(),
        }))
    }
}

/// A running scripted broker; dropping it stops the server.
pub(super) struct ScriptedBroker {
    pub(super) script: Arc<Script>,
    pub(super) network: InProcessNetwork,
    _stop: oneshot::Sender<()>,
}

impl ScriptedBroker {
    /// Starts one at [`URL`] on a new in-process network, serving Danube's services only
    /// (as a Danube broker: `AckMany` is `Unimplemented`).
    pub(super) fn start() -> ScriptedBroker {
        ScriptedBroker::start_on(InProcessNetwork::new(), URL)
    }

    /// Starts one at [`URL`] that also serves Courier's `AckBatchService`.
    pub(super) fn start_with_ack_many() -> ScriptedBroker {
        ScriptedBroker::serve(InProcessNetwork::new(), URL, true)
    }

    /// Starts one at `url` on `network`, with a script of its own.
    pub(super) fn start_on(network: InProcessNetwork, url: &str) -> ScriptedBroker {
        ScriptedBroker::serve(network, url, false)
    }

    fn serve(network: InProcessNetwork, url: &str, ack_many: bool) -> ScriptedBroker {
        let listener = network.listen(url).expect("listen");
        let script = Arc::new(Script::default());
        let services = Services(script.clone(), url.to_owned());
        let (stop, stopped) = oneshot::channel::<()>();
        let router = tonic::transport::Server::builder()
            .add_service(DiscoveryServer::new(services.clone()))
            .add_service(ProducerServiceServer::new(services.clone()))
            .add_service(ConsumerServiceServer::new(services.clone()))
            .add_service(HealthCheckServer::new(services.clone()))
            .add_optional_service(ack_many.then(|| AckBatchServiceServer::new(services)));
        tokio::spawn(router.serve_with_incoming_shutdown(listener, async {
            let _ = stopped.await;
        }));
        ScriptedBroker {
            script,
            network,
            _stop: stop,
        }
    }
}
