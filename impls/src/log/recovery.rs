//! Opening a journal: every whole frame applied again in order; zeros after the last one are
//! space the writer allocated ahead; a torn tail (the last group, cut short by a crash before
//! its `fdatasync` returned, so never acknowledged) is cut off; damage anywhere before it is
//! refused, naming the byte, rather than dropping acknowledged changes.

use std::path::Path;

use courier_traits::storage::StorageError;

use super::compaction::Liveness;
use super::{codec, frame};
use crate::memory::MemoryStreamStorage;

/// What opening found.
#[derive(Debug)]
pub(super) struct Recovered {
    /// Where the last whole frame ends: the journal goes on from here.
    pub(super) end: u64,
    /// Operations applied.
    pub(super) operations: u64,
    /// Bytes of a torn tail after `end`, to cut off.
    pub(super) torn: u64,
    /// Zeros after `end`: space the writer allocated ahead and has not used yet.
    pub(super) preallocated: u64,
}

/// Applies the journal `data` (the file at `path`) to `memory`, a storage made for replay,
/// noting each frame's stream in `liveness`.
pub(super) fn replay(
    data: &[u8],
    memory: &MemoryStreamStorage,
    path: &Path,
    liveness: &mut Liveness,
) -> Result<Recovered, StorageError> {
    let refuse = |pos: usize, why: String| {
        StorageError::backend(
            false,
            format!(
                "the journal {} is damaged at byte {pos}: {why}; it was left as it is",
                path.display()
            ),
            None,
        )
    };
    let mut pos = 0;
    let mut operations = 0;
    loop {
        match frame::at(data, pos) {
            frame::At::End => break,
            frame::At::Frame { body, next } => {
                let op = codec::decode(body).map_err(|why| refuse(pos, why))?;
                let subject = codec::subject(body).map_err(|why| refuse(pos, why))?;
                liveness.frame(pos as u64, (next - pos) as u64, &subject);
                memory
                    .replay(op)
                    .map_err(|e| refuse(pos, format!("its operation does not apply: {e}")))?;
                operations += 1;
                pos = next;
            }
            frame::At::Bad(_) if data[pos..].iter().all(|&b| b == 0) => break,
            frame::At::Bad(why) => {
                if let Some(valid) = frame::next_valid_after(data, pos) {
                    return Err(refuse(
                        pos,
                        format!("{why}, and a valid frame follows at byte {valid}"),
                    ));
                }
                break;
            }
        }
    }
    let rest = (data.len() - pos) as u64;
    let zeros = data[pos..].iter().all(|&b| b == 0);
    Ok(Recovered {
        end: pos as u64,
        operations,
        torn: if zeros { 0 } else { rest },
        preallocated: if zeros { rest } else { 0 },
    })
}
