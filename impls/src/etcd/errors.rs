//! etcd errors as [`BusError`]s: connection trouble is retryable, the rest is not.

use courier_traits::bus::BusError;
use tonic::{Code, Status};

/// Whether the error says the lease is gone (expired while etcd was unreachable, say).
pub(super) fn is_lease_not_found(status: &Status) -> bool {
    status.code() == Code::NotFound && status.message().contains("lease")
}

/// Classifies a failed call. tonic reports transport failures as statuses too: a refused or
/// broken connection is `Unavailable`, a request timeout `Cancelled`, an HTTP/2 reset
/// `Unknown` or `Cancelled`; etcd itself answers `Unavailable` while it has no leader.
pub(super) fn bus_error(what: &str, status: Status) -> BusError {
    let retryable = matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Unknown
            | Code::Cancelled
    );
    let message = format!("etcd {what}: {}", describe(&status));
    BusError::backend(retryable, message, Some(Box::new(status)))
}

/// The status's code and message, plus its transport cause when it has one ("tcp connect
/// error: Connection refused" says more than "transport error").
fn describe(status: &Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut cause = std::error::Error::source(status);
    while let Some(error) = cause {
        text.push_str(&format!(": {error}"));
        cause = error.source();
    }
    text
}

/// A watch or keep-alive stream that ended without the answer it owed: the server went away.
pub(super) fn stream_ended(what: &str) -> BusError {
    BusError::Unavailable {
        message: format!("etcd closed the {what} stream before answering"),
        source: None,
    }
}
