//! Courier's `ProduceStreamService` (`courier_broker.ProduceStreamService/SendMessages`, beside
//! Danube's ProducerService): a client's messages on one open HTTP/2 stream, of any of its
//! producers, each answered with one `SendOutcome` naming its producer and request id. The
//! answers of messages stored together (one group commit) leave together: one task polls
//! them, so they go out in one write, where a stream per producer wrote each on its own.
//! Danube's `SendMessage` is unary, so each message cost a new HTTP/2 stream on both sides
//! (HEADERS and HPACK, routing and the layers, a server task per request); here a send is one
//! DATA frame each way.
//!
//! Every message goes through the node's own `ProducerService` stack (metrics, ownership gate,
//! [`ProduceService::send`](super::ProduceService::send)) exactly as a `SendMessage` of it
//! would, after the same credential check ([`Guard`], with the stream's `authorization`, so an
//! expired or revoked credential stops passing mid-stream as it would per call), in a `tracing`
//! span `rpc` with SendMessage's path. The sends run in the stream's own task (the one
//! hyper polls the answers from), concurrently up to [`MAX_IN_FLIGHT`]: no task per message.
//!
//! The stream ends once the client ends its side and every message read is answered; when the
//! node starts draining it stops reading, answers what it read, and ends with `Unavailable`
//! (what it did not read was never handled: the client sends it again elsewhere or later).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use courier_impls::grpc::proto::courier_broker::SendOutcome;
use courier_impls::grpc::proto::courier_broker::produce_stream_service_server::ProduceStreamService;
use courier_impls::grpc::proto::danube::StreamMessage;
use courier_impls::grpc::proto::danube::producer_service_server::ProducerService;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::auth::Guard;
use crate::lifecycle::Lifecycle;

/// The stream's path: the credential of each of its messages is checked against it (the
/// `produce` role, as SendMessage).
pub const SEND_MESSAGES_PATH: &str = "/courier_broker.ProduceStreamService/SendMessages";

/// The path each message's span names: it is handled as this call would be.
const SEND_MESSAGE_PATH: &str = "/danube.ProducerService/SendMessage";

/// Messages of one stream being handled at once; past it the stream is not read (HTTP/2 flow
/// control holds the client back) until one is answered.
pub const MAX_IN_FLIGHT: usize = 1_024;

/// Serves `ProduceStreamService` over the node's `ProducerService` stack `P` (the same one
/// serving `SendMessage`).
#[derive(Debug)]
pub struct ProduceStream<P> {
    producers: Arc<P>,
    guard: Option<Arc<Guard>>,
    lifecycle: Arc<Lifecycle>,
}

impl<P> ProduceStream<P> {
    /// Sends each message through `producers`, checking credentials with `guard` (auth mode
    /// `jwt`) and ending streams when `lifecycle` drains.
    pub fn new(
        producers: Arc<P>,
        guard: Option<Arc<Guard>>,
        lifecycle: Arc<Lifecycle>,
    ) -> ProduceStream<P> {
        ProduceStream {
            producers,
            guard,
            lifecycle,
        }
    }
}

#[tonic::async_trait]
impl<P: ProducerService> ProduceStreamService for ProduceStream<P> {
    type SendMessagesStream = Outcomes<P>;

    async fn send_messages(
        &self,
        request: Request<Streaming<StreamMessage>>,
    ) -> Result<Response<Outcomes<P>>, Status> {
        self.lifecycle.admit()?;
        let (metadata, _, inbound) = request.into_parts();
        let stream = Arc::new(StreamContext {
            producers: self.producers.clone(),
            guard: self.guard.clone(),
            // Only checked under auth: no copy of the headers per stream otherwise.
            headers: self
                .guard
                .as_ref()
                .map(|_| metadata.into_headers())
                .unwrap_or_default(),
        });
        Ok(Response::new(Outcomes {
            stream,
            inbound: Some(inbound),
            draining: Box::pin(self.lifecycle.draining()),
            sends: FuturesUnordered::new(),
            end: None,
            done: false,
        }))
    }
}

/// What every message of one stream is handled with.
struct StreamContext<P> {
    producers: Arc<P>,
    guard: Option<Arc<Guard>>,
    headers: http::HeaderMap,
}

impl<P: ProducerService> StreamContext<P> {
    /// One message, as `SendMessage` would handle it; its outcome carries its `request_id` and
    /// its producer id (a stream may carry the sends of several producers).
    fn send(self: &Arc<Self>, message: StreamMessage) -> BoxFuture<'static, SendOutcome> {
        let stream = self.clone();
        let request_id = message.request_id;
        let producer_id = message.msg_id.as_ref().map_or(0, |id| id.producer_id);
        let span = tracing::info_span!("rpc", path = SEND_MESSAGE_PATH, via = "SendMessages");
        Box::pin(
            async move {
                let mut request = Request::new(message);
                let answer = match &stream.guard {
                    Some(guard) => {
                        guard
                            .check(SEND_MESSAGES_PATH, &stream.headers)
                            .map(|principal| {
                                request.extensions_mut().insert(principal);
                            })
                    }
                    None => Ok(()),
                };
                let answer = match answer {
                    Ok(()) => stream.producers.send_message(request).await,
                    Err(status) => Err(status),
                };
                match answer {
                    Ok(response) => SendOutcome {
                        request_id: response.into_inner().request_id,
                        code: Code::Ok as u32,
                        message: String::new(),
                        producer_id,
                    },
                    Err(status) => SendOutcome {
                        request_id,
                        code: status.code() as u32,
                        message: status.message().to_owned(),
                        producer_id,
                    },
                }
            }
            .instrument(span),
        )
    }
}

/// The answers of one stream, in the order the sends complete; polling it reads the client's
/// messages and drives their sends.
pub struct Outcomes<P> {
    stream: Arc<StreamContext<P>>,
    /// The client's messages; `None` once no more are read.
    inbound: Option<Streaming<StreamMessage>>,
    draining: Pin<Box<WaitForCancellationFutureOwned>>,
    sends: FuturesUnordered<BoxFuture<'static, SendOutcome>>,
    /// How the stream ends once the sends in flight are answered: `Some` = with this status.
    end: Option<Status>,
    done: bool,
}

impl<P> std::fmt::Debug for Outcomes<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcomes")
            .field("reading", &self.inbound.is_some())
            .field("in_flight", &self.sends.len())
            .finish_non_exhaustive()
    }
}

impl<P: ProducerService> Outcomes<P> {
    /// Reads messages while there is room, starting each one's send; stops reading for good
    /// when the client ends its side, breaks, or the node drains.
    fn read(&mut self, cx: &mut Context<'_>) {
        while self.sends.len() < MAX_IN_FLIGHT {
            let Some(inbound) = self.inbound.as_mut() else {
                return;
            };
            if self.draining.as_mut().poll(cx).is_ready() {
                self.inbound = None;
                self.end = Some(Status::unavailable("this broker is shutting down"));
                return;
            }
            match inbound.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(message))) => {
                    let send = self.stream.send(message);
                    self.sends.push(send);
                }
                Poll::Ready(Some(Err(status))) => {
                    // A message that could not be decoded (its request id unknown), or the
                    // client's side broke: answer what was read, then end with the status.
                    self.inbound = None;
                    self.end = Some(status);
                }
                Poll::Ready(None) => self.inbound = None,
                Poll::Pending => return,
            }
        }
    }
}

impl<P: ProducerService> Stream for Outcomes<P> {
    type Item = Result<SendOutcome, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        this.read(cx);
        match this.sends.poll_next_unpin(cx) {
            Poll::Ready(Some(outcome)) => {
                // Room again: the next poll reads on (the waker is the stream's own task).
                Poll::Ready(Some(Ok(outcome)))
            }
            Poll::Ready(None) if this.inbound.is_none() => {
                this.done = true;
                Poll::Ready(this.end.take().map(Err))
            }
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}
