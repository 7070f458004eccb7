//! How broker errors become gRPC statuses.

use courier_traits::error::InvalidInput;
use tonic::Status;

/// `InvalidArgument`, its message naming the field and the value (spec §2 "Codes").
pub(crate) fn invalid_argument(error: InvalidInput) -> Status {
    Status::invalid_argument(error.to_string())
}
