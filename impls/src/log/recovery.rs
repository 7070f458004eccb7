//! Opening a journal: every whole frame applied again in order; zeros after the last one are
//! space the writer allocated ahead; a torn tail (the last group, cut short by a crash before
//! its `fdatasync` returned, so never acknowledged) is cut off; damage anywhere before it is
//! refused, naming the byte, rather than dropping acknowledged changes.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use courier_traits::storage::StorageError;

use super::compaction::Liveness;
use super::{codec, frame};
use crate::memory::{MemoryStreamStorage, Spiller};

/// How many operations opening applies between two spills of what is over the budget.
const SPILL_EVERY: u64 = 1024;

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

/// Applies the journal at `path` to `memory`, a storage made for replay, noting each frame's
/// stream in `liveness`. The file is read frame by frame: opening holds one frame at a time,
/// besides the streams (only past a bad frame is the rest read whole, to tell a torn tail from
/// damage).
pub(super) fn replay(
    path: &Path,
    memory: &MemoryStreamStorage,
    liveness: &mut Liveness,
    spiller: &mut Spiller,
) -> Result<Recovered, StorageError> {
    let refuse = |pos: u64, why: String| {
        StorageError::backend(
            false,
            format!(
                "the journal {} is damaged at byte {pos}: {why}; it was left as it is",
                path.display()
            ),
            None,
        )
    };
    let io = |e: std::io::Error| {
        StorageError::backend(false, format!("reading {}", path.display()), Some(e.into()))
    };
    let mut file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut reader = BufReader::with_capacity(READ_BUFFER, &mut file);
    let mut pos = 0u64;
    let mut operations = 0;
    let mut header = [0; frame::HEADER];
    let mut body = Vec::new();
    let whole = loop {
        let got = read_up_to(&mut reader, &mut header).map_err(io)?;
        if got == 0 {
            break true;
        }
        let left = file_len - pos - got as u64;
        let Ok((crc, len)) = frame::header(&header[..got]) else {
            break false;
        };
        if len > left {
            break false;
        }
        body.resize(len as usize, 0);
        reader.read_exact(&mut body).map_err(io)?;
        if crc32fast::hash(&body) != crc {
            break false;
        }
        let op = codec::decode(&body).map_err(|why| refuse(pos, why))?;
        let subject = codec::subject(&body).map_err(|why| refuse(pos, why))?;
        memory
            .replay(op)
            .map_err(|e| refuse(pos, format!("its operation does not apply: {e}")))?;
        if operations % SPILL_EVERY == 0 {
            memory.spill_over_budget(spiller);
        }
        let frame_len = (frame::HEADER + body.len()) as u64;
        liveness.frame(pos, frame_len, &subject);
        operations += 1;
        pos += frame_len;
    };
    drop(reader);
    let mut recovered = Recovered {
        end: pos,
        operations,
        torn: 0,
        preallocated: 0,
    };
    if whole {
        return Ok(recovered);
    }
    // Past the last whole frame: zeros allocated ahead, a torn tail, or damage.
    let mut rest = Vec::new();
    file.seek(SeekFrom::Start(pos)).map_err(io)?;
    file.read_to_end(&mut rest).map_err(io)?;
    if rest.iter().all(|&b| b == 0) {
        recovered.preallocated = rest.len() as u64;
        return Ok(recovered);
    }
    let why = match frame::at(&rest, 0) {
        frame::At::Bad(why) => why,
        // A frame whole now that was not while reading: the file changed under the open.
        _ => "a frame that changed while the journal was read",
    };
    if let Some(valid) = frame::next_valid_after(&rest, 0) {
        return Err(refuse(
            pos,
            format!(
                "{why}, and a valid frame follows at byte {}",
                pos + valid as u64
            ),
        ));
    }
    recovered.torn = rest.len() as u64;
    Ok(recovered)
}

/// What opening reads from the file at a time.
const READ_BUFFER: usize = 4 << 20;

/// Fills `buf` from `reader` as far as the file goes: the bytes read (fewer only at its end).
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
