//! A producer: one writer task per stream that batches concurrent appends into one request,
//! optionally as an idempotent producer (id, epoch, seq) whose retries never duplicate.
//!
//! Appends are sent one request at a time, in the order they were queued; everything queued
//! while a request is in flight goes into the next one. For JSON streams each append is one
//! message (the batch is sent as one array, so an append that is itself an array stays one
//! message); for other streams the batch is the appends' bytes concatenated.

use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use courier_impls::retry::Retry;
use courier_traits::transport::{Method, Request};
use courier_traits::{Classify, ErrorClass, TransportError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::error::ClientError;
use super::streams_client::{StreamsClient, never_sent, next_offset, path};
use crate::protocol;

/// What an append through a [`Producer`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendAck {
    /// The stream's tail after the batch holding this append.
    pub next_offset: String,
    /// True if the server had already applied the batch (a retry after a lost response).
    pub duplicate: bool,
    /// The producer's epoch and the batch's sequence number (idempotent producers).
    pub stamp: Option<(u64, u64)>,
}

/// Configures a [`Producer`]; from [`StreamsClient::producer`].
pub struct ProducerBuilder {
    client: StreamsClient,
    stream: String,
    content_type: String,
    identity: Option<(String, u64)>,
    bump_epoch_when_fenced: bool,
    max_batch_bytes: usize,
    queue_capacity: usize,
}

impl StreamsClient {
    /// A producer appending to `stream` with `content_type`, batching concurrent appends.
    pub fn producer(&self, stream: &str, content_type: &str) -> ProducerBuilder {
        ProducerBuilder::new(self.clone(), stream, content_type)
    }
}

impl ProducerBuilder {
    pub(super) fn new(client: StreamsClient, stream: &str, content_type: &str) -> ProducerBuilder {
        ProducerBuilder {
            client,
            stream: stream.to_owned(),
            content_type: content_type.to_owned(),
            identity: None,
            bump_epoch_when_fenced: true,
            max_batch_bytes: 1 << 20,
            queue_capacity: 1024,
        }
    }

    /// Makes this an idempotent producer `id` starting at `epoch`: every batch carries
    /// (id, epoch, seq), so automatic retries after lost responses are deduplicated by the
    /// server. Use a new epoch for each producer session (e.g. a restart).
    pub fn idempotent(mut self, id: impl Into<String>, epoch: u64) -> ProducerBuilder {
        self.identity = Some((id.into(), epoch));
        self
    }

    /// When the server fences this producer's epoch (403: another session of the same id took
    /// over), take over again with the next epoch (default `true`). With `false` the append
    /// fails with [`ClientError::StaleEpoch`].
    pub fn bump_epoch_when_fenced(mut self, bump: bool) -> ProducerBuilder {
        self.bump_epoch_when_fenced = bump;
        self
    }

    /// Most bytes per batch (default 1 MiB; a single larger append is sent alone).
    pub fn max_batch_bytes(mut self, bytes: usize) -> ProducerBuilder {
        self.max_batch_bytes = bytes.max(1);
        self
    }

    /// Most appends waiting to be sent; `append` waits while the queue is full (default 1024).
    pub fn queue_capacity(mut self, capacity: usize) -> ProducerBuilder {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Starts the producer's writer task (needs a Tokio runtime).
    pub fn build(self) -> Producer {
        let (queue, receiver) = mpsc::channel(self.queue_capacity);
        let writer = Writer {
            json: self.content_type.split(';').next().map(str::trim) == Some(protocol::JSON),
            stamp: self.identity.map(|(id, epoch)| Stamp { id, epoch, seq: 0 }),
            client: self.client,
            stream: self.stream,
            content_type: self.content_type,
            bump_epoch_when_fenced: self.bump_epoch_when_fenced,
            max_batch_bytes: self.max_batch_bytes,
        };
        let task = tokio::spawn(writer.run(receiver));
        Producer {
            queue: Some(queue),
            task: Some(task),
        }
    }
}

/// Appends to one stream, batching concurrent appends.
///
/// Appends are sent one request at a time, in the order they were queued; everything queued
/// while a request is in flight goes into the next one. For JSON streams each append is one
/// message; for other streams a batch is the appends' bytes concatenated.
///
/// Dropping the producer lets its writer finish what is queued; [`Producer::close`] also waits
/// for that.
pub struct Producer {
    queue: Option<mpsc::Sender<Pending>>,
    task: Option<JoinHandle<()>>,
}

struct Pending {
    data: Bytes,
    done: oneshot::Sender<Result<AppendAck, SharedError>>,
}

/// One error reported to every append of a failed batch.
#[derive(Clone, Debug)]
struct SharedError(Arc<ClientError>);

impl Producer {
    /// Queues `data` and waits until the batch holding it is acknowledged.
    pub async fn append(&self, data: impl Into<Bytes>) -> Result<AppendAck, ClientError> {
        let queue = self.queue.as_ref().ok_or(ClientError::ProducerClosed)?;
        let (done, acked) = oneshot::channel();
        queue
            .send(Pending {
                data: data.into(),
                done,
            })
            .await
            .map_err(|_| ClientError::ProducerClosed)?;
        match acked.await {
            Ok(Ok(ack)) => Ok(ack),
            Ok(Err(SharedError(e))) => Err(Arc::try_unwrap(e).unwrap_or_else(|e| copy_error(&e))),
            Err(_) => Err(ClientError::ProducerClosed),
        }
    }

    /// Sends everything queued, then stops the writer.
    pub async fn close(mut self) {
        self.queue = None;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// A copy of an error for the second and later appends of a failed batch.
fn copy_error(e: &ClientError) -> ClientError {
    match e {
        ClientError::StaleEpoch { current } => ClientError::StaleEpoch { current: *current },
        ClientError::SequenceGap { expected, received } => ClientError::SequenceGap {
            expected: *expected,
            received: *received,
        },
        ClientError::NotFound { stream } => ClientError::NotFound {
            stream: stream.clone(),
        },
        ClientError::Gone { stream } => ClientError::Gone {
            stream: stream.clone(),
        },
        ClientError::Closed {
            stream,
            final_offset,
        } => ClientError::Closed {
            stream: stream.clone(),
            final_offset: final_offset.clone(),
        },
        other if other.is_retryable() => {
            ClientError::Transport(TransportError::Protocol(format!("batch failed: {other}")))
        }
        other => ClientError::Protocol(format!("batch failed: {other}")),
    }
}

struct Stamp {
    id: String,
    epoch: u64,
    seq: u64,
}

/// The writer task's state.
struct Writer {
    client: StreamsClient,
    stream: String,
    content_type: String,
    json: bool,
    stamp: Option<Stamp>,
    bump_epoch_when_fenced: bool,
    max_batch_bytes: usize,
}

impl Writer {
    async fn run(mut self, mut queue: mpsc::Receiver<Pending>) {
        while let Some(first) = queue.recv().await {
            let mut size = first.data.len();
            let mut batch = vec![first];
            while size < self.max_batch_bytes {
                match queue.try_recv() {
                    Ok(next) => {
                        size += next.data.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            let body = self.body(&batch);
            let result = self.send(body).await.map_err(|e| SharedError(Arc::new(e)));
            for pending in batch {
                let _ = pending.done.send(result.clone());
            }
        }
    }

    fn body(&self, batch: &[Pending]) -> Bytes {
        if !self.json && batch.len() == 1 {
            return batch[0].data.clone();
        }
        let mut body =
            BytesMut::with_capacity(batch.iter().map(|p| p.data.len() + 1).sum::<usize>() + 2);
        if self.json {
            body.put_u8(b'[');
        }
        for (i, pending) in batch.iter().enumerate() {
            if self.json && i > 0 {
                body.put_u8(b',');
            }
            body.put_slice(&pending.data);
        }
        if self.json {
            body.put_u8(b']');
        }
        body.freeze()
    }

    async fn send(&mut self, body: Bytes) -> Result<AppendAck, ClientError> {
        let target = path(&self.stream)?;
        let mut bumped = false;
        loop {
            let mut request = Request::new(Method::Post, target.clone())
                .header("content-type", &self.content_type)
                .body(body.clone());
            if let Some(stamp) = &self.stamp {
                request = request
                    .header(protocol::PRODUCER_ID, &stamp.id)
                    .header(protocol::PRODUCER_EPOCH, stamp.epoch.to_string())
                    .header(protocol::PRODUCER_SEQ, stamp.seq.to_string());
            }
            let idempotent = self.stamp.is_some();
            let retry = Retry::new(self.client.retry_policy());
            let (client, stream) = (&self.client, &self.stream);
            let result = retry
                .run(|_| {
                    let request = request.clone();
                    async move {
                        client
                            .send_once(stream, request)
                            .await
                            .map_err(|e| Attempt {
                                error: e,
                                idempotent,
                            })
                    }
                })
                .await
                .map_err(|e| {
                    e.into_last_error()
                        .map_or(ClientError::Transport(TransportError::Closed), |a| a.error)
                });
            match (result, &mut self.stamp) {
                (Ok(response), stamp) => {
                    let ack = AppendAck {
                        next_offset: next_offset(&response)?,
                        duplicate: stamp.is_some() && response.status == 204,
                        stamp: stamp.as_ref().map(|s| (s.epoch, s.seq)),
                    };
                    if let Some(stamp) = stamp {
                        stamp.seq += 1;
                    }
                    return Ok(ack);
                }
                (Err(ClientError::StaleEpoch { current }), Some(stamp))
                    if self.bump_epoch_when_fenced && !bumped =>
                {
                    tracing::info!(
                        stream = %self.stream, producer = %stamp.id, fenced = stamp.epoch,
                        next = current + 1, "producer fenced; taking over with the next epoch"
                    );
                    stamp.epoch = current + 1;
                    stamp.seq = 0;
                    bumped = true;
                }
                (Err(e), _) => return Err(e),
            }
        }
    }
}

/// One attempt's error: stamped appends are safe to retry on any transient failure; unstamped
/// ones only when the request never reached the server.
struct Attempt {
    error: ClientError,
    idempotent: bool,
}

impl Classify for Attempt {
    fn class(&self) -> ErrorClass {
        if self.idempotent || never_sent(&self.error) {
            self.error.class()
        } else {
            ErrorClass::Permanent
        }
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}
