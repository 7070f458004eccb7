//! The axum WebSocket adapter: an upgraded socket as a `FrameSender` / `FrameReceiver` pair,
//! the hub's server-side connection trait.

use async_trait::async_trait;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use courier_traits::transport::{
    DuplexConnection, Frame, FrameReceiver, FrameSender, TransportError,
};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite;

/// Splits an upgraded axum socket into the hub's connection halves.
pub fn connection(socket: WebSocket) -> DuplexConnection {
    let (sink, stream) = socket.split();
    DuplexConnection {
        sender: Box::new(AxumSender {
            sink,
            closed: false,
        }),
        receiver: Box::new(AxumReceiver { stream }),
    }
}

struct AxumSender {
    sink: SplitSink<WebSocket, Message>,
    closed: bool,
}

#[async_trait]
impl FrameSender for AxumSender {
    async fn send(&mut self, frame: Frame) -> Result<(), TransportError> {
        if self.closed {
            return Err(TransportError::Closed);
        }
        let message = match frame {
            Frame::Text(text) => Message::Text(text.into()),
            Frame::Binary(bytes) => Message::Binary(bytes),
            Frame::Ping(bytes) => Message::Ping(bytes),
            Frame::Pong(bytes) => Message::Pong(bytes),
        };
        self.sink.send(message).await.map_err(axum_error)
    }

    async fn close(&mut self, code: u16, reason: &str) -> Result<(), TransportError> {
        if std::mem::replace(&mut self.closed, true) {
            return Ok(());
        }
        let frame = CloseFrame {
            code,
            reason: reason.to_owned().into(),
        };
        // The peer may already be gone; closing is best effort.
        let _ = self.sink.send(Message::Close(Some(frame))).await;
        let _ = self.sink.close().await;
        Ok(())
    }
}

struct AxumReceiver {
    stream: SplitStream<WebSocket>,
}

#[async_trait]
impl FrameReceiver for AxumReceiver {
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        match self.stream.next().await {
            None | Some(Ok(Message::Close(_))) => Ok(None),
            Some(Err(e)) => Err(axum_error(e)),
            Some(Ok(Message::Text(text))) => Ok(Some(Frame::Text(text.as_str().to_owned()))),
            Some(Ok(Message::Binary(bytes))) => Ok(Some(Frame::Binary(bytes))),
            Some(Ok(Message::Ping(bytes))) => Ok(Some(Frame::Ping(bytes))),
            Some(Ok(Message::Pong(bytes))) => Ok(Some(Frame::Pong(bytes))),
        }
    }
}

/// A socket error as the hub's transport error; a message over the library's size limit as
/// [`TransportError::TooLarge`], so the hub closes with 1009 rather than as a broken socket.
fn axum_error(e: axum::Error) -> TransportError {
    match e.into_inner().downcast::<tungstenite::Error>() {
        Ok(e) => match *e {
            tungstenite::Error::Capacity(tungstenite::error::CapacityError::MessageTooLong {
                size,
                max_size,
            }) => TransportError::TooLarge {
                size,
                limit: max_size,
            },
            other => TransportError::Protocol(other.to_string()),
        },
        Err(other) => TransportError::Protocol(other.to_string()),
    }
}
