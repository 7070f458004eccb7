//! What a [`HubClient`](super::HubClient) handle asks of its session task.

use courier_traits::transport::Frame;
use tokio::sync::oneshot;

use super::events::ClientError;
use crate::AppMessage;

/// A call of the handle, with where its answer goes.
pub(crate) enum Command {
    Send(Frame, oneshot::Sender<Result<(), ClientError>>),
    Request(AppMessage, oneshot::Sender<Result<AppMessage, ClientError>>),
}
