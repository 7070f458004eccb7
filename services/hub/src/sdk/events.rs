//! What the client tells its owner: [`Event`]s, and the [`ClientError`] of a call.

use std::time::Duration;

use courier_traits::transport::{Frame, TransportError};

/// What the client tells its owner.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A session started; the server's welcome named the client id and node.
    Connected {
        /// The id the server registered this client under.
        client_id: String,
        /// The node holding the connection.
        node: String,
    },
    /// The session ended.
    Disconnected {
        /// Why (close code and reason, or the error).
        reason: String,
    },
    /// Waiting `delay` before connection attempt `attempt`.
    Reconnecting {
        /// 1 for the first retry.
        attempt: u32,
        /// The backoff chosen by the policy.
        delay: Duration,
    },
    /// A frame from the server that is not a reply to a request (pushes, broadcasts).
    Message(Frame),
    /// The client stopped: closed by its owner, or the retry policy gave up.
    Closed {
        /// Why.
        reason: String,
    },
}

/// Errors of client calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection ended before the reply arrived; the request may or may not have been
    /// handled.
    #[error("connection lost before the reply arrived")]
    ConnectionLost,
    /// No reply within the request timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The client was closed.
    #[error("client is closed")]
    Closed,
    /// The server answered with an `error` message.
    #[error("server error {code}: {message}")]
    Server {
        /// The error code (`unknown_message_type`, `bad_message`).
        code: String,
        /// The explanation.
        message: String,
    },
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}
