//! [`SendStream`]: a client's sends to one broker on Courier's
//! `ProduceStreamService/SendMessages`, one bidirectional HTTP/2 stream shared by every producer
//! of the client there ([`SendStreams`]): each send is one message out and one `SendOutcome`
//! back, matched by producer id and `request_id`, instead of a new HTTP/2 stream per message
//! (Danube's unary `SendMessage`). Sends of several producers made at once go out together, and
//! the broker's answers to them come back together (measured in `benches/README.md`; a stream
//! per producer wrote every send and every answer on its own).
//!
//! The stream's own task ([`OwnedTasks`]) reads the answers and hands each to its send. When
//! the stream ends or breaks, every send still waiting fails with a retryable
//! [`GrpcError::Broken`]: the producer's retry loop sends it again (same producer, same
//! request id) on a new stream. A message the broker stored but whose answer was lost is then
//! stored again: at least once, as `SendMessage` retries are. Dropping the last handle (the
//! producers hold them) ends the client's side and stops the reader; the broker answers what
//! it read and ends the stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use courier_impls::grpc::proto::courier_broker::SendOutcome;
use courier_impls::grpc::proto::courier_broker::produce_stream_service_client::ProduceStreamServiceClient;
use courier_impls::grpc::proto::danube::StreamMessage;
use courier_impls::grpc::{GrpcError, GrpcStream};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use super::core::ClientCore;
use super::error::BrokerError;
use super::tasks::OwnedTasks;

/// Messages queued for the stream before a send waits for room (HTTP/2 flow control holds
/// the rest).
const OUTBOUND_CAPACITY: usize = 256;

/// The RPC named in errors about the stream itself (its opening); a message's own answer is
/// reported as its `SendMessage` would be.
const OPERATION: &str = "SendMessages";

/// A send's answer: the echoed `request_id`, the status the broker answered, or `None` when
/// the stream ended first.
type Answer = oneshot::Sender<Result<u64, Option<Status>>>;

/// A message on a shared stream: its producer id and its request id (each producer's own).
type SendKey = (u64, u64);

/// The key of `message`: its producer id (0 without a `msg_id`, as the broker echoes it) and
/// request id.
fn key_of(message: &StreamMessage) -> SendKey {
    let producer = message.msg_id.as_ref().map_or(0, |id| id.producer_id);
    (producer, message.request_id)
}

/// The sends waiting for their answers, shared with the task reading them.
#[derive(Debug, Default)]
struct Waiting {
    sends: Mutex<HashMap<SendKey, Answer>>,
    /// Cancelled once the stream ended: nothing more will be answered.
    ended: CancellationToken,
}

impl Waiting {
    fn sends(&self) -> MutexGuard<'_, HashMap<SendKey, Answer>> {
        self.sends.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stream ended (`why`): every send still waiting fails, retryably.
    fn end(&self, why: &'static str) {
        self.ended.cancel();
        let left = std::mem::take(&mut *self.sends());
        if !left.is_empty() {
            tracing::debug!(
                sends = left.len(),
                why,
                "send stream ended with sends unanswered"
            );
        }
        for (_, answer) in left {
            let _ = answer.send(Err(None));
        }
    }
}

/// A broken stream, as a broken unary call is reported: retryable, no status from the server.
fn broken(why: &str) -> GrpcError {
    GrpcError::Broken {
        message: format!("send stream: {why}"),
        source: None,
    }
}

/// The open send streams of one client, by broker URL. It holds them weakly: the producers
/// sending on a stream keep it open, and it ends once none does.
#[derive(Debug, Default)]
pub(crate) struct SendStreams {
    open: Mutex<HashMap<String, Weak<SendStream>>>,
    /// Held while a stream to the URL is being opened: sends that find none wait for that
    /// one instead of each opening their own.
    opening: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl SendStreams {
    fn open(&self) -> MutexGuard<'_, HashMap<String, Weak<SendStream>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stream to `url` the client's producers send on, if one is open and not ended.
    fn to(&self, url: &str) -> Option<Arc<SendStream>> {
        self.open()
            .get(url)
            .and_then(Weak::upgrade)
            .filter(|stream| stream.serves(url))
    }

    /// The stream to `url`, opened for sends to `topic` (named in errors) unless one is open or
    /// another send is opening it (then that one, once open); the client's producers share it.
    ///
    /// Errors: the call's ([`BrokerError::Rpc`]; `Unimplemented` from a broker without it).
    pub(crate) async fn to_or_open(
        &self,
        core: &ClientCore,
        url: &str,
        topic: &str,
    ) -> Result<Arc<SendStream>, BrokerError> {
        if let Some(open) = self.to(url) {
            return Ok(open);
        }
        let gate = self
            .opening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(url.to_owned())
            .or_default()
            .clone();
        let _opening = gate.lock().await;
        if let Some(open) = self.to(url) {
            return Ok(open);
        }
        let opened = Arc::new(SendStream::open(core, url, topic).await?);
        let mut open = self.open();
        open.retain(|_, stream| stream.strong_count() > 0);
        open.insert(url.to_owned(), Arc::downgrade(&opened));
        Ok(opened)
    }

    /// Stops giving out `stream` (its credential was refused, or it stalled): the next send
    /// opens a new one.
    pub(crate) fn retire(&self, stream: &Arc<SendStream>) {
        let mut open = self.open();
        if open
            .get(&stream.url)
            .is_some_and(|known| std::ptr::eq(known.as_ptr(), Arc::as_ptr(stream)))
        {
            open.remove(&stream.url);
        }
    }
}

/// One open `SendMessages` stream of a client to one broker.
#[derive(Debug)]
pub(crate) struct SendStream {
    /// The broker URL it was opened to.
    url: String,
    outbound: mpsc::Sender<StreamMessage>,
    waiting: Arc<Waiting>,
    /// The reader task; it stops when the stream drops (or at [`SendStream::close`]).
    reader: OwnedTasks,
}

impl SendStream {
    /// Opens the stream to `url` (for sends to `topic`, named in errors); its reader counts
    /// among the client's running tasks.
    async fn open(core: &ClientCore, url: &str, topic: &str) -> Result<SendStream, BrokerError> {
        let rpc = |e| BrokerError::rpc(OPERATION, topic, e);
        let (outbound, mut queued) = mpsc::channel(OUTBOUND_CAPACITY);
        let call = core.streaming_call(url);
        let mut client = ProduceStreamServiceClient::new(core.channel(url, OPERATION, topic)?);
        let body = futures::stream::poll_fn(move |cx| queued.poll_recv(cx));
        let request = core.request(&call, body).await.map_err(rpc)?;
        // The stream has no deadline (it stays open), but its opening has the unary calls' own:
        // a node that stopped answering fails the attempt instead of holding it.
        let answers = tokio::time::timeout(
            core.call_timeout,
            call.server_streaming(client.send_messages(request)),
        )
        .await
        .unwrap_or(Err(GrpcError::Timeout(core.call_timeout)))
        .map_err(rpc)?;
        let waiting = Arc::new(Waiting::default());
        let reader = OwnedTasks::new(core.live_tasks.clone());
        reader.spawn(read(waiting.clone(), answers, reader.token().clone()));
        Ok(SendStream {
            url: url.to_owned(),
            outbound,
            waiting,
            reader,
        })
    }

    /// Whether sends to `url` may go on this stream.
    pub(crate) fn serves(&self, url: &str) -> bool {
        self.url == url && !self.waiting.ended.is_cancelled()
    }

    /// Stops the reader and waits for it (briefly): its waiting sends fail, retryably.
    pub(crate) async fn close(self) {
        self.reader.close().await;
    }

    /// Sends `message` and waits for its answer, all within `timeout` (a stream stalled with
    /// its queue full included): the `request_id` the broker echoes, or the status it answered
    /// (as a `SendMessage` call's error), or [`GrpcError::Broken`] if the stream ended first.
    pub(crate) async fn send(
        &self,
        message: StreamMessage,
        timeout: Duration,
    ) -> Result<u64, GrpcError> {
        let key = key_of(&message);
        let (answer, answered) = oneshot::channel();
        // Waiting before it is sent: its answer may come back before `send` returns.
        self.waiting.sends().insert(key, answer);
        let exchange = async {
            if self.waiting.ended.is_cancelled() || self.outbound.send(message).await.is_err() {
                return Err(broken("it ended before the message was sent"));
            }
            match answered.await {
                Ok(Ok(request_id)) => Ok(request_id),
                // Mapped as the unary call's status would be (same URL, same deadline).
                Ok(Err(Some(status))) => {
                    Err(GrpcError::from_status(status, &self.url, Some(timeout)))
                }
                Ok(Err(None)) | Err(_) => Err(broken("it ended before the answer came")),
            }
        };
        let outcome = tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(GrpcError::Timeout(timeout)));
        if outcome.is_err() {
            self.waiting.sends().remove(&key);
        }
        outcome
    }
}

/// Ends the stream's waiting sends however the reader stops (stream ended, broke, producer
/// closed, task aborted).
struct EndOnDrop(Arc<Waiting>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end("the stream ended");
    }
}

/// The reader: hands each answer to its send until the stream ends or `cancel` fires.
async fn read(
    waiting: Arc<Waiting>,
    mut answers: GrpcStream<SendOutcome>,
    cancel: CancellationToken,
) {
    let _end = EndOnDrop(waiting.clone());
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return,
            next = answers.next() => next,
        };
        match next {
            Some(Ok(outcome)) => answer(&waiting, outcome),
            Some(Err(error)) => {
                tracing::debug!(%error, "send stream ended with an error");
                return;
            }
            None => return,
        }
    }
}

/// Hands `outcome` to the send waiting for it (none if it gave up waiting).
fn answer(waiting: &Waiting, outcome: SendOutcome) {
    let key = (outcome.producer_id, outcome.request_id);
    let Some(answer) = waiting.sends().remove(&key) else {
        return;
    };
    let result = match Code::from(i32::try_from(outcome.code).unwrap_or(i32::MAX)) {
        Code::Ok => Ok(outcome.request_id),
        code => Err(Some(Status::new(code, outcome.message))),
    };
    let _ = answer.send(result);
}
