//! JSON strings written as `serde_json` writes them, without its per-byte escaping loop for
//! the strings that need none (event ids, UUIDs, most names and values).

/// Appends `text` as a JSON string, byte for byte what `serde_json::to_writer` writes: copied
/// between quotes when no byte needs an escape (`serde_json` escapes only `"`, `\` and
/// U+0000 to U+001F; other bytes, UTF-8 included, are written as they are), else through
/// `serde_json`.
pub(crate) fn write_json_string(out: &mut Vec<u8>, text: &str) {
    if !needs_escape(text.as_bytes()) {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// Whether any byte of `bytes` is one `serde_json` escapes.
fn needs_escape(bytes: &[u8]) -> bool {
    plain_len(bytes) < bytes.len()
}

/// How many bytes of `bytes` come before the first one `serde_json` escapes in a string (`"`,
/// `\` or U+0000 to U+001F), which is also where a JSON string without escapes ends: all of
/// them if there is none. Eight bytes at a time (a byte-wise loop costs about ten instructions
/// a byte, as much as `serde_json`'s own escaping): a word holds a byte below 0x20, a `"` or a
/// `\` exactly when the classic "has a zero byte" test finds one in the word itself minus 0x20
/// in every byte, or XORed with the quote or the backslash in every byte. The test's borrow
/// can flag bytes above a flagged one, never below it, so the lowest flag is exact.
pub(crate) fn plain_len(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // The high bit of each byte of `w` below `n` (for `n` <= 0x80), and maybe of bytes above.
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS;
    let equal = |w: u64, b: u8| below(w ^ (ONES * u64::from(b)), 1);
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let mut eight = [0_u8; 8];
        eight.copy_from_slice(word);
        let w = u64::from_le_bytes(eight);
        let flags = below(w, 0x20) | equal(w, b'"') | equal(w, b'\\');
        if flags != 0 {
            return at + (flags.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + words
        .remainder()
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .unwrap_or(words.remainder().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_serde_json_writes() {
        let mut texts: Vec<String> = [
            "",
            "0192f2a4-7c1e-7000-8000-000000000001",
            "plain words, ümlauts and 字",
            "quote \" here",
            "back\\slash",
            "tab\tnew\nline\r",
            "\u{0}\u{1}\u{1f} \u{7f}",
            "\u{2028}\u{2029}",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // Every byte below 0x80 alone, and at every place of a word-long text, so each escape
        // rule is met in the words and in the remainder.
        for b in 0u8..0x80 {
            let c = char::from(b);
            texts.push(c.to_string());
            for at in 0..17 {
                let mut text: String = "abcdefghijklmnopq".into();
                text.replace_range(at..=at, &c.to_string());
                texts.push(text);
            }
        }
        for text in texts {
            let mut ours = b"prefix".to_vec();
            write_json_string(&mut ours, &text);
            let mut theirs = b"prefix".to_vec();
            serde_json::to_writer(&mut theirs, &text).expect("writes");
            assert_eq!(ours, theirs, "{text:?}");
        }
    }

    #[test]
    fn plain_len_finds_the_first_byte_to_escape() {
        let special = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        let mut texts: Vec<Vec<u8>> = vec![Vec::new(), b"plain".to_vec(), "é字😀x".into()];
        // Every byte at every place of a text longer than two words, and two specials in one
        // word (the lower must be found), with UTF-8 around them.
        for b in 0u8..=0xff {
            for at in 0..19 {
                let mut text = b"abcdefghijklmnopqrs".to_vec();
                text[at] = b;
                texts.push(text.clone());
                if at + 3 < text.len() {
                    text[at + 3] = b'"';
                    texts.push(text.clone());
                    text[at + 1] = 0xc3;
                    texts.push(text);
                }
            }
        }
        for text in texts {
            let expected = text.iter().position(|&b| special(b)).unwrap_or(text.len());
            assert_eq!(plain_len(&text), expected, "{text:?}");
        }
    }
}
