//! [`Frame`]: what the hub sends to a client.

use bytes::Bytes;
use courier_traits::transport;
use tokio::sync::oneshot;

use crate::HubError;

/// Text or binary, as on the WebSocket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A UTF-8 text frame.
    Text,
    /// A binary frame.
    Binary,
}

/// A frame for a client: its kind, its bytes and, optionally, an ack the caller awaits.
///
/// ```
/// use courier_hub::{Frame, FrameKind};
/// let frame = Frame::text("hello");
/// assert_eq!(frame.kind(), FrameKind::Text);
/// let (frame, _written) = Frame::binary(vec![1, 2, 3]).with_ack();
/// assert_eq!(frame.payload().len(), 3);
/// ```
#[derive(Debug)]
pub struct Frame {
    kind: FrameKind,
    payload: Bytes,
    pub(crate) ack: Option<oneshot::Sender<Result<(), HubError>>>,
}

/// Resolves once an acked frame was written to the client's socket (or failed to be).
///
/// For a client on another node it resolves when the cluster bus accepted the frame.
pub type Ack = oneshot::Receiver<Result<(), HubError>>;

impl Frame {
    /// A text frame.
    pub fn text(text: impl Into<String>) -> Frame {
        Frame {
            kind: FrameKind::Text,
            payload: Bytes::from(text.into()),
            ack: None,
        }
    }

    /// A binary frame.
    pub fn binary(bytes: impl Into<Bytes>) -> Frame {
        Frame {
            kind: FrameKind::Binary,
            payload: bytes.into(),
            ack: None,
        }
    }

    /// A frame of `kind`; text must be UTF-8.
    pub fn new(kind: FrameKind, payload: Bytes) -> Result<Frame, HubError> {
        if kind == FrameKind::Text && std::str::from_utf8(&payload).is_err() {
            return Err(courier_traits::InvalidInput::new(
                "frame",
                &String::from_utf8_lossy(&payload),
                "a text frame must be UTF-8",
            )
            .into());
        }
        Ok(Frame {
            kind,
            payload,
            ack: None,
        })
    }

    /// Asks for an acknowledgement: the returned [`Ack`] resolves with the write's result.
    pub fn with_ack(mut self) -> (Frame, Ack) {
        let (tx, rx) = oneshot::channel();
        self.ack = Some(tx);
        (self, rx)
    }

    /// Text or binary.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The bytes.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// A copy without the ack (for fan-out).
    pub(crate) fn share(&self) -> Frame {
        Frame {
            kind: self.kind,
            payload: self.payload.clone(),
            ack: None,
        }
    }

    /// Resolves the ack, if any.
    pub(crate) fn acknowledge(&mut self, result: Result<(), HubError>) {
        if let Some(ack) = self.ack.take() {
            let _ = ack.send(result);
        }
    }

    /// The wire frame. Text was checked to be UTF-8 when the frame was built.
    pub(crate) fn to_wire(&self) -> transport::Frame {
        match self.kind {
            FrameKind::Text => {
                transport::Frame::Text(String::from_utf8_lossy(&self.payload).into_owned())
            }
            FrameKind::Binary => transport::Frame::Binary(self.payload.clone()),
        }
    }
}
