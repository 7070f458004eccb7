//! What a read found, from the recent-records cache or from SQLite: the stream's row, the index
//! it starts at and its records, which become a
//! [`ReadBatch`](courier_traits::storage::ReadBatch)'s records or one joined body.

use bytes::Bytes;
use courier_traits::storage::{Joining, ReadFrom, ReadLimits, StorageError, StreamName};
use rusqlite::Connection;

use super::errors::db_error;
use super::recent::Hit;
use super::row::{StreamRow, load, start_of};

/// What a read found: the stream's row (if any), the index it starts at, and the records
/// from there within the limits (none unless the row is live).
pub(super) struct Found {
    pub(super) row: Option<StreamRow>,
    pub(super) start: u64,
    pub(super) records: FoundRecords,
}

/// A read's records, as its source holds them.
pub(super) enum FoundRecords {
    /// Handles to the cache's records.
    Cached(Vec<Bytes>),
    /// Read from SQLite into one buffer: record `k` ends at `ends[k]` and starts where the
    /// one before it ends.
    Packed { buffer: Bytes, ends: Vec<usize> },
}

impl From<Hit> for Found {
    fn from(hit: Hit) -> Found {
        Found {
            row: Some(hit.row),
            start: hit.start,
            records: FoundRecords::Cached(hit.records),
        }
    }
}

impl FoundRecords {
    /// How many records were found.
    pub(super) fn len(&self) -> usize {
        match self {
            FoundRecords::Cached(records) => records.len(),
            FoundRecords::Packed { ends, .. } => ends.len(),
        }
    }

    /// One `Bytes` per record (slices of the buffer when packed: no copy).
    pub(super) fn into_payloads(self) -> Vec<Bytes> {
        match self {
            FoundRecords::Cached(records) => records,
            FoundRecords::Packed { buffer, ends } => {
                let mut begin = 0;
                ends.into_iter()
                    .map(|end| {
                        let payload = buffer.slice(begin..end);
                        begin = end;
                        payload
                    })
                    .collect()
            }
        }
    }

    /// The records joined as `joining` says, copied once (not at all when a packed buffer
    /// already is the concatenation).
    pub(super) fn join(self, joining: Joining) -> Bytes {
        match self {
            FoundRecords::Cached(records) => {
                let bytes = records.iter().map(Bytes::len).sum();
                joining.join(records.iter().map(|record| &record[..]), bytes)
            }
            FoundRecords::Packed { buffer, .. } if joining == Joining::Concat => buffer,
            FoundRecords::Packed { buffer, ends } => {
                let mut begin = 0;
                let slices = ends.iter().map(|&end| {
                    let slice = &buffer[begin..end];
                    begin = end;
                    slice
                });
                joining.join(slices, buffer.len())
            }
        }
    }
}

/// Reads `name`'s row and, if it is live at `now`, its records from `from` within `limits`,
/// in one read transaction (so a concurrent append cannot tear the batch).
pub(super) fn read_records(
    conn: &Connection,
    name: &StreamName,
    from: &ReadFrom,
    limits: ReadLimits,
    now: i64,
) -> Result<Found, StorageError> {
    let row = load(conn, name)?;
    let Some(live) = row
        .as_ref()
        .filter(|row| !row.soft_deleted && !row.is_expired(now))
    else {
        return Ok(Found {
            row,
            start: 0,
            records: FoundRecords::Cached(Vec::new()),
        });
    };
    let start = start_of(name, live, from)?;
    if start == live.next_index {
        // At the tail (every read from `Tail`): nothing to select.
        return Ok(Found {
            row,
            start,
            records: FoundRecords::Cached(Vec::new()),
        });
    }
    let mut select = conn
        .prepare_cached(
            "SELECT data FROM courier_records WHERE stream = ?1 AND idx >= ?2 AND idx < ?3
             ORDER BY idx LIMIT ?4",
        )
        .map_err(db_error)?;
    // Bounded by the tail read above, so a concurrent append cannot tear the batch.
    let limit = i64::try_from(limits.max_records).unwrap_or(i64::MAX);
    let mut rows = select
        .query((name.as_str(), start as i64, live.next_index as i64, limit))
        .map_err(db_error)?;
    // One buffer for the whole batch, shared by the records' slices: one allocation, not one
    // per record.
    let mut buffer = Vec::new();
    let mut ends = Vec::new();
    while let Some(record) = rows.next().map_err(db_error)? {
        let data = record
            .get_ref(0)
            .and_then(|value| Ok(value.as_blob()?))
            .map_err(db_error)?;
        if !ends.is_empty() && buffer.len() + data.len() > limits.max_bytes {
            break;
        }
        buffer.extend_from_slice(data);
        ends.push(buffer.len());
    }
    Ok(Found {
        row,
        start,
        records: FoundRecords::Packed {
            buffer: Bytes::from(buffer),
            ends,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(records: &[&str]) -> FoundRecords {
        let mut buffer = Vec::new();
        let mut ends = Vec::new();
        for record in records {
            buffer.extend_from_slice(record.as_bytes());
            ends.push(buffer.len());
        }
        FoundRecords::Packed {
            buffer: Bytes::from(buffer),
            ends,
        }
    }

    fn cached(records: &[&str]) -> FoundRecords {
        FoundRecords::Cached(
            records
                .iter()
                .map(|r| Bytes::copy_from_slice(r.as_bytes()))
                .collect(),
        )
    }

    /// Both sources join and split alike, empty records included.
    #[test]
    fn packed_and_cached_records_join_and_split_alike() {
        let records = ["1", "", "{\"a\":2}", "3"];
        for found in [packed(&records), cached(&records)] {
            assert_eq!(found.len(), 4);
            let payloads = found.into_payloads();
            let payloads: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
            let expected: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
            assert_eq!(payloads, expected);
        }
        for found in [packed(&records), cached(&records)] {
            assert_eq!(&found.join(Joining::Concat)[..], b"1{\"a\":2}3");
        }
        for found in [packed(&records), cached(&records)] {
            assert_eq!(&found.join(Joining::JsonArray)[..], b"[1,,{\"a\":2},3]");
        }
        assert_eq!(&packed(&[]).join(Joining::JsonArray)[..], b"[]");
        assert_eq!(&cached(&[]).join(Joining::Concat)[..], b"");
    }
}
