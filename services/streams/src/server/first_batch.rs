//! The first read of a GET, shared by catch-up, long-poll and SSE reads.

use courier_traits::storage::{Offset, ReadBatch, StreamName};

use super::reply::Failure;
use super::request::StartAt;
use super::state::AppState;

/// The first batch of a read from where the client asked (`now` = the current tail).
pub(super) async fn first_batch(
    app: &AppState,
    name: &StreamName,
    start: &StartAt,
) -> Result<ReadBatch, Failure> {
    let from: Option<Offset> = match start {
        StartAt::Start => None,
        StartAt::After(offset) => Some(offset.clone()),
        StartAt::Now => Some(app.storage().head(name).await?.next_offset),
    };
    Ok(app
        .storage()
        .read(name, from, app.config().read_limits)
        .await?)
}
