//! etcd errors as [`BusError`]s: connection trouble is retryable, the rest is not.

use courier_traits::bus::BusError;

/// Whether the error says the lease is gone (expired while etcd was unreachable, say).
pub(super) fn is_lease_not_found(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status)
        if status.code() == tonic::Code::NotFound && status.message().contains("lease"))
}

pub(super) fn bus_error(what: &str, error: etcd_client::Error) -> BusError {
    use tonic::Code;
    let retryable = match &error {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::WatchError(_) | etcd_client::Error::LeaseKeepAliveError(_) => true,
        etcd_client::Error::GRpcStatus(status) => matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::ResourceExhausted
                | Code::Unknown
                | Code::Cancelled
        ),
        _ => false,
    };
    let message = format!("etcd {what}: {error}");
    if retryable {
        BusError::Unavailable {
            message,
            source: Some(Box::new(error)),
        }
    } else {
        BusError::Backend {
            message,
            source: Some(Box::new(error)),
        }
    }
}
