//! The `ReceiveMessages` server stream of one consumer: it yields what the engine has for the
//! consumer, sleeps until woken, and tells the engine when it ends (client gone, stream
//! replaced, service stopped), which redelivers what the consumer had not acked.

use std::pin::Pin;
use std::sync::Arc;

use courier_impls::grpc::proto::danube::StreamMessage;
use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::handle::SubscriptionHandle;

/// The stream type of `ReceiveMessages`.
pub type MessageStream = Pin<Box<dyn Stream<Item = Result<StreamMessage, Status>> + Send>>;

/// One open stream; dropping it ends the stream for the engine.
struct OpenStream {
    handle: Arc<SubscriptionHandle>,
    consumer: u64,
    generation: u64,
    cancel: CancellationToken,
    request_id: u64,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.handle.stream_ended(self.consumer, self.generation);
    }
}

/// The stream for `consumer`, generation `generation` (from
/// [`SubscriptionHandle::open_stream`]).
pub(crate) fn message_stream(
    handle: Arc<SubscriptionHandle>,
    consumer: u64,
    generation: u64,
    cancel: CancellationToken,
    request_id: u64,
) -> MessageStream {
    let open = OpenStream {
        handle,
        consumer,
        generation,
        cancel,
        request_id,
    };
    Box::pin(futures::stream::unfold(open, |open| async move {
        loop {
            let handle = open.handle.clone();
            // Registered before looking, so a wake-up between the look and the wait is kept.
            let notified = handle.deliveries.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if open.cancel.is_cancelled() {
                return None;
            }
            if let Some(message) = handle.next_for(open.consumer, open.request_id) {
                return Some((Ok(message), open));
            }
            tokio::select! {
                _ = open.cancel.cancelled() => return None,
                _ = &mut notified => {}
            }
        }
    }))
}
