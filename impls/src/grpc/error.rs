//! [`GrpcError`]: what a gRPC call can end in, classified retryable or permanent by its
//! status code.

use std::time::Duration;

use courier_traits::error::{BoxError, Classify, ErrorClass};
use courier_traits::transport::TransportError;
use tonic::{Code, ConnectError, Status, TimeoutExpired};

/// Errors of gRPC calls and channels.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrpcError {
    /// No connection to the server could be made (refused, unreachable, connect timeout).
    #[error("cannot connect to {url}: {message}")]
    Connect {
        /// The channel's URL, as normalised.
        url: String,
        /// Why.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The call's deadline passed before it completed: our own deadline, or the server
    /// answered `DEADLINE_EXCEEDED`.
    #[error("deadline of {0:?} exceeded")]
    Timeout(Duration),
    /// The connection failed during the call (reset, closed before the response ended): no
    /// status came from the server.
    #[error("connection broken during the call: {message}")]
    Broken {
        /// Why.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The server answered with a non-OK status.
    #[error("server answered {code:?}: {message}")]
    Status {
        /// The status code.
        code: Code,
        /// The server's message.
        message: String,
        /// The server's pushback hint (`grpc-retry-pushback-ms`), if any.
        retry_after: Option<Duration>,
    },
    /// A URL a channel was asked for is not one this transport can dial.
    #[error("invalid gRPC URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given (truncated to 100 characters).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A channel was asked for outside a Tokio runtime (tonic spawns a task per channel).
    #[error("gRPC channels need a Tokio runtime: {0}")]
    NoRuntime(String),
}

/// The retry class of a status code the server sent. Each arm says why.
pub fn code_class(code: Code) -> ErrorClass {
    match code {
        // The canonical "try again": the server is down, draining, or not the owner.
        Code::Unavailable
        // A limit or quota was hit; it frees up over time (back off, honour pushback).
        | Code::ResourceExhausted
        // A concurrency conflict (a lost compare-and-set): the gRPC guide says retry the
        // whole read-modify-write; a fresh attempt usually wins.
        | Code::Aborted
        // The server ran out of time; a later, less loaded attempt may finish.
        | Code::DeadlineExceeded => ErrorClass::TRANSIENT,
        // Cancelled on purpose (by the caller or the server, e.g. a consumer taken over):
        // retrying undoes that decision.
        Code::Cancelled
        // The request itself is wrong: the same input fails the same way.
        | Code::InvalidArgument
        | Code::OutOfRange
        // Absent / present / forbidden stay so until something else changes them.
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        // The credentials must change first (a client refreshes its token, then calls anew).
        | Code::Unauthenticated
        // The system's state must be fixed first (gRPC guide: do not retry).
        | Code::FailedPrecondition
        // The server does not have this method; it will not grow it between attempts.
        | Code::Unimplemented
        // A bug on the server (our broker answers Internal only for bugs): it repeats.
        | Code::Internal
        // The server said it does not know what went wrong: nothing says it will pass.
        | Code::Unknown
        // Unrecoverable loss or corruption: retrying cannot bring the data back.
        | Code::DataLoss
        // An error carrying OK breaks the protocol.
        | Code::Ok => ErrorClass::Permanent,
    }
}

/// The HTTP status gRPC gateways use for a code (`google.rpc.Code`'s documented mapping).
///
/// Used where a gRPC answer must fit HTTP's shape ([`crate::grpc::GrpcTransport`]'s
/// `Response::status`). Its HTTP retry class differs from [`code_class`] for `Aborted` (409),
/// `Unknown`, `Internal` and `DataLoss` (500): classify gRPC answers by code, not by this.
pub fn http_status(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::Cancelled => 499,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::DeadlineExceeded => 504,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::PermissionDenied => 403,
        Code::Unauthenticated => 401,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
    }
}

impl GrpcError {
    /// The error for `status`, returned by a call on the channel for `url` that had
    /// `deadline` (if any).
    ///
    /// A status tonic made on our side from a transport failure (it carries a source error)
    /// becomes [`GrpcError::Connect`], [`GrpcError::Timeout`] or [`GrpcError::Broken`]; a status
    /// the server sent becomes [`GrpcError::Status`], except `DEADLINE_EXCEEDED`, which is a
    /// [`GrpcError::Timeout`].
    pub fn from_status(status: Status, url: &str, deadline: Option<Duration>) -> GrpcError {
        if chain_has::<TimeoutExpired>(&status) {
            return GrpcError::Timeout(deadline.unwrap_or_default());
        }
        if chain_has::<ConnectError>(&status) || chain_has::<ConnectFailed>(&status) {
            return GrpcError::Connect {
                url: url.to_owned(),
                message: status.message().to_owned(),
                source: Some(Box::new(status)),
            };
        }
        if status.code() == Code::DeadlineExceeded {
            return GrpcError::Timeout(deadline.unwrap_or_default());
        }
        if std::error::Error::source(&status).is_some() {
            // tonic attaches the underlying error only to statuses it makes itself; one that
            // arrived over the wire has none. So this failure is the connection's, not an
            // answer: whatever code tonic picked (Unknown, Internal, Unavailable, Cancelled).
            return GrpcError::Broken {
                message: status.message().to_owned(),
                source: Some(Box::new(status)),
            };
        }
        GrpcError::Status {
            code: status.code(),
            message: status.message().to_owned(),
            retry_after: pushback(&status),
        }
    }

    /// The status code: the server's for [`GrpcError::Status`], the one gRPC clients report
    /// otherwise (`Unavailable` for connection failures, `DeadlineExceeded` for timeouts,
    /// `InvalidArgument` for bad URLs, `Internal` without a runtime).
    pub fn code(&self) -> Code {
        match self {
            GrpcError::Status { code, .. } => *code,
            GrpcError::Connect { .. } | GrpcError::Broken { .. } => Code::Unavailable,
            GrpcError::Timeout(_) => Code::DeadlineExceeded,
            GrpcError::InvalidUrl { .. } => Code::InvalidArgument,
            GrpcError::NoRuntime(_) => Code::Internal,
        }
    }

    pub(crate) fn invalid_url(url: &str, reason: impl Into<String>) -> GrpcError {
        GrpcError::InvalidUrl {
            url: url.chars().take(100).collect(),
            reason: reason.into(),
        }
    }
}

impl Classify for GrpcError {
    fn class(&self) -> ErrorClass {
        match self {
            GrpcError::Connect { .. } | GrpcError::Timeout(_) | GrpcError::Broken { .. } => {
                ErrorClass::TRANSIENT
            }
            GrpcError::Status {
                code, retry_after, ..
            } => match code_class(*code) {
                ErrorClass::Transient { .. } => ErrorClass::Transient {
                    retry_after: *retry_after,
                },
                ErrorClass::Permanent => ErrorClass::Permanent,
            },
            GrpcError::InvalidUrl { .. } | GrpcError::NoRuntime(_) => ErrorClass::Permanent,
        }
    }
}

/// For callers written against [`courier_traits::transport`]. A server status becomes
/// [`TransportError::Rpc`] with the code, its name in the message and the retry class of
/// [`code_class`], so the error classifies the same before and after the conversion.
impl From<GrpcError> for TransportError {
    fn from(error: GrpcError) -> TransportError {
        match error {
            GrpcError::Connect {
                url,
                message,
                source,
            } => TransportError::Connect {
                target: url,
                message,
                source,
            },
            GrpcError::Timeout(deadline) => TransportError::Timeout(deadline),
            GrpcError::Broken { message, source } => TransportError::Io(match source {
                Some(source) => std::io::Error::other(source),
                None => std::io::Error::other(message),
            }),
            GrpcError::Status {
                code,
                message,
                retry_after,
            } => TransportError::Rpc {
                code: code as i32,
                message: format!("{code:?}: {message}"),
                retryable: code_class(code).is_retryable(),
                retry_after,
            },
            GrpcError::InvalidUrl { .. } | GrpcError::NoRuntime(_) => {
                TransportError::Protocol(error.to_string())
            }
        }
    }
}

/// Whether `status` or an error in its source chain is an `E`.
fn chain_has<E: std::error::Error + 'static>(status: &Status) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(status);
    // Bounded: a source chain is finite, but a buggy error type could loop.
    for _ in 0..32 {
        match next {
            Some(error) if error.is::<E>() => return true,
            Some(error) => next = error.source(),
            None => return false,
        }
    }
    false
}

/// The server's `grpc-retry-pushback-ms` (gRFC A6), if it sent a valid one.
fn pushback(status: &Status) -> Option<Duration> {
    let value = status.metadata().get("grpc-retry-pushback-ms")?;
    let millis: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_millis(millis))
}

/// No connection could be made to a channel's server (refused, unreachable, connect timeout,
/// HTTP/2 handshake failed). [`GrpcError::from_status`](super::GrpcError::from_status) finds it
/// in a status's source chain and reports [`GrpcError::Connect`](super::GrpcError::Connect).
#[derive(Clone, Debug, thiserror::Error)]
#[error("cannot connect to {url}: {message}")]
pub(crate) struct ConnectFailed {
    pub(super) url: String,
    pub(super) message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_CODES: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// Every code, its expected class, and why (the same reasons as `code_class`'s arms).
    #[test]
    fn every_code_is_classified_with_a_reason() {
        let table: [(Code, bool, &str); 17] = [
            (Code::Ok, false, "an error with OK breaks the protocol"),
            (Code::Cancelled, false, "cancelled on purpose"),
            (
                Code::Unknown,
                false,
                "the server does not know why: no sign it passes",
            ),
            (Code::InvalidArgument, false, "same input, same failure"),
            (
                Code::DeadlineExceeded,
                true,
                "a later attempt may finish in time",
            ),
            (Code::NotFound, false, "stays absent until created"),
            (Code::AlreadyExists, false, "stays present"),
            (Code::PermissionDenied, false, "stays forbidden"),
            (Code::ResourceExhausted, true, "limits free up; back off"),
            (Code::FailedPrecondition, false, "state must be fixed first"),
            (
                Code::Aborted,
                true,
                "a concurrency conflict; a fresh attempt wins",
            ),
            (Code::OutOfRange, false, "same input, same failure"),
            (Code::Unimplemented, false, "the method will not appear"),
            (Code::Internal, false, "a server bug repeats"),
            (Code::Unavailable, true, "the canonical transient code"),
            (Code::DataLoss, false, "lost data does not come back"),
            (
                Code::Unauthenticated,
                false,
                "credentials must change first",
            ),
        ];
        for (code, retryable, why) in table {
            let error = GrpcError::from_status(Status::new(code, "m"), "http://h:1", None);
            assert_eq!(error.is_retryable(), retryable, "{code:?}: {why}");
            assert_eq!(
                code_class(code).is_retryable(),
                retryable,
                "{code:?}: {why}"
            );
        }
        let listed: Vec<Code> = table.iter().map(|(c, _, _)| *c).collect();
        assert_eq!(listed, ALL_CODES);
    }

    #[test]
    fn server_deadline_exceeded_is_a_timeout() {
        let error = GrpcError::from_status(
            Status::deadline_exceeded("slow"),
            "http://h:1",
            Some(Duration::from_millis(250)),
        );
        assert!(matches!(error, GrpcError::Timeout(d) if d == Duration::from_millis(250)));
        assert!(error.is_retryable());
        assert_eq!(error.code(), Code::DeadlineExceeded);
    }

    #[test]
    fn local_timeout_and_connect_failures_are_recognised_by_their_source() {
        // tonic's own conversions, as its channel makes them.
        let timeout = Status::from_error(Box::new(TimeoutExpired(())));
        assert_eq!(
            timeout.code(),
            Code::Cancelled,
            "tonic's code for its timer"
        );
        let error = GrpcError::from_status(timeout, "http://h:1", Some(Duration::from_secs(1)));
        assert!(matches!(error, GrpcError::Timeout(_)), "{error:?}");

        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let connect = Status::from_error(Box::new(ConnectError(Box::new(refused))));
        let error = GrpcError::from_status(connect, "http://h:1", None);
        assert!(matches!(error, GrpcError::Connect { ref url, .. } if url == "http://h:1"));
        assert!(error.is_retryable());

        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let broken = Status::from_error(Box::new(reset));
        assert_eq!(broken.code(), Code::Unknown);
        let error = GrpcError::from_status(broken, "http://h:1", None);
        assert!(matches!(error, GrpcError::Broken { .. }), "{error:?}");
        assert!(
            error.is_retryable(),
            "a broken connection is not the server's Unknown"
        );
    }

    #[test]
    fn pushback_becomes_retry_after_on_transient_codes_only() {
        let mut status = Status::resource_exhausted("limit");
        status
            .metadata_mut()
            .insert("grpc-retry-pushback-ms", "1500".parse().expect("ascii"));
        let error = GrpcError::from_status(status, "http://h:1", None);
        assert_eq!(
            error.class().retry_after(),
            Some(Duration::from_millis(1500))
        );

        let mut status = Status::invalid_argument("bad");
        status
            .metadata_mut()
            .insert("grpc-retry-pushback-ms", "1500".parse().expect("ascii"));
        let error = GrpcError::from_status(status, "http://h:1", None);
        assert_eq!(error.class(), ErrorClass::Permanent);

        let mut status = Status::unavailable("down");
        status
            .metadata_mut()
            .insert("grpc-retry-pushback-ms", "soon".parse().expect("ascii"));
        let error = GrpcError::from_status(status, "http://h:1", None);
        assert_eq!(
            error.class(),
            ErrorClass::TRANSIENT,
            "a bad hint is ignored"
        );
    }

    #[test]
    fn transport_error_keeps_the_code_and_its_class() {
        for code in ALL_CODES {
            let grpc = GrpcError::Status {
                code,
                message: "m".into(),
                retry_after: Some(Duration::from_millis(300)),
            };
            let class = grpc.class();
            let transport = TransportError::from(grpc);
            let TransportError::Rpc {
                code: carried,
                message,
                ..
            } = &transport
            else {
                panic!("{code:?} became {transport:?}");
            };
            assert_eq!(*carried, code as i32);
            assert!(message.starts_with(&format!("{code:?}: ")), "{message}");
            // Aborted (HTTP 409) stays retryable and Internal/Unknown/DataLoss (HTTP 500)
            // stay permanent, with the pushback hint kept.
            assert_eq!(transport.class(), class, "{code:?}");
        }
        let timeout = TransportError::from(GrpcError::Timeout(Duration::from_secs(2)));
        assert!(matches!(timeout, TransportError::Timeout(d) if d == Duration::from_secs(2)));
        let broken = TransportError::from(GrpcError::Broken {
            message: "reset".into(),
            source: None,
        });
        assert!(broken.is_retryable());
        let bad = TransportError::from(GrpcError::invalid_url("ftp://x", "scheme"));
        assert!(!bad.is_retryable());
    }
}
