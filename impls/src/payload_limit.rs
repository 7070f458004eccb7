//! The payload limit every bus checks before it publishes.

use courier_traits::bus::BusError;

/// Refuses a payload longer than `limit` bytes with [`BusError::PayloadTooLarge`].
pub(crate) fn check(payload: &[u8], limit: usize) -> Result<(), BusError> {
    if payload.len() > limit {
        return Err(BusError::PayloadTooLarge {
            size: payload.len(),
            limit,
        });
    }
    Ok(())
}
