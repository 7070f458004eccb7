//! Frames of the journal file: a magic number, a CRC-32 of the body, the body's length, the
//! body. A frame is whole and valid or it is not one; recovery tells a torn tail (the last
//! group write, cut short by a crash before its fdatasync returned) from damage in the middle
//! of the file by whether any valid frame follows the bad one.

/// Marks the start of every frame ("CJL1": Courier journal log, version 1).
const MAGIC: [u8; 4] = *b"CJL1";
/// Magic, CRC-32 and length.
pub(super) const HEADER: usize = 4 + 4 + 8;

/// Appends a frame to `out` whose body `body` writes.
pub(super) fn write(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    body(out);
    let len = (out.len() - start - HEADER) as u64;
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start..start + 4].copy_from_slice(&MAGIC);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out[start + 8..start + HEADER].copy_from_slice(&len.to_le_bytes());
}

/// What lies at a position of the file.
#[derive(Debug, PartialEq)]
pub(super) enum At<'a> {
    /// A valid frame: its body, and where the next one starts.
    Frame { body: &'a [u8], next: usize },
    /// The end of the file, exactly.
    End,
    /// Not a valid frame, for this reason.
    Bad(&'static str),
}

/// Reads the frame at `pos` of `data`.
pub(super) fn at(data: &[u8], pos: usize) -> At<'_> {
    let Some(rest) = data.get(pos..) else {
        return At::Bad("position past the end");
    };
    if rest.is_empty() {
        return At::End;
    }
    if rest.len() < HEADER {
        return At::Bad("a frame header cut short");
    }
    let (crc, len) = match header(&rest[..HEADER]) {
        Ok(header) => header,
        Err(why) => return At::Bad(why),
    };
    let Some(body) = usize::try_from(len)
        .ok()
        .and_then(|len| rest.get(HEADER..HEADER.checked_add(len)?))
    else {
        return At::Bad("a frame body cut short");
    };
    if crc32fast::hash(body) != crc {
        return At::Bad("a frame whose checksum does not match");
    }
    At::Frame {
        body,
        next: pos + HEADER + body.len(),
    }
}

/// A frame header's CRC-32 and body length, if it starts with the frame marker.
pub(super) fn header(header: &[u8]) -> Result<(u32, u64), &'static str> {
    if header.len() < HEADER {
        return Err("a frame header cut short");
    }
    if header[..4] != MAGIC {
        return Err("no frame marker");
    }
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let mut len = [0; 8];
    len.copy_from_slice(&header[8..HEADER]);
    Ok((crc, u64::from_le_bytes(len)))
}

/// Where a valid frame starts after `pos`, if one does: a bad frame followed by a valid one is
/// damage, not a torn tail.
pub(super) fn next_valid_after(data: &[u8], pos: usize) -> Option<usize> {
    let from = pos.checked_add(1)?;
    let rest = data.get(from..)?;
    rest.windows(MAGIC.len())
        .enumerate()
        .filter(|(_, window)| *window == MAGIC)
        .map(|(i, _)| from + i)
        .find(|&candidate| matches!(at(data, candidate), At::Frame { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for body in bodies {
            write(&mut out, |b| b.extend_from_slice(body));
        }
        out
    }

    #[test]
    fn frames_read_back_in_order_to_the_exact_end() {
        let data = frames(&[b"one", b"", b"three"]);
        let mut pos = 0;
        let mut seen = Vec::new();
        while let At::Frame { body, next } = at(&data, pos) {
            seen.push(body.to_vec());
            pos = next;
        }
        assert_eq!(at(&data, pos), At::End);
        assert_eq!(seen, [b"one".to_vec(), vec![], b"three".to_vec()]);
    }

    #[test]
    fn every_cut_of_the_last_frame_is_a_torn_tail_with_nothing_valid_after() {
        let data = frames(&[b"kept", b"the last group write"]);
        let last = HEADER + 4;
        for cut in last + 1..data.len() {
            let torn = &data[..cut];
            assert!(matches!(at(torn, last), At::Bad(_)), "cut at {cut}");
            assert_eq!(next_valid_after(torn, last), None, "cut at {cut}");
        }
        // Zeros where the file system extended the file but the data never landed.
        let mut zeroed = data[..last].to_vec();
        zeroed.extend_from_slice(&[0; 64]);
        assert_eq!(at(&zeroed, last), At::Bad("no frame marker"));
        assert_eq!(next_valid_after(&zeroed, last), None);
    }

    #[test]
    fn a_damaged_frame_followed_by_valid_ones_is_found_as_damage() {
        let mut data = frames(&[b"first", b"second", b"third"]);
        let second = HEADER + 5;
        data[second + HEADER] ^= 0xff;
        assert_eq!(
            at(&data, second),
            At::Bad("a frame whose checksum does not match")
        );
        assert_eq!(
            next_valid_after(&data, second),
            Some(second + HEADER + 6),
            "the third frame"
        );
    }
}
