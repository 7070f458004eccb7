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

/// Whether any byte of `bytes` is one `serde_json` escapes. Eight bytes at a time (a byte-wise
/// loop costs about ten instructions a byte, as much as `serde_json`'s own escaping): a word
/// holds a byte below 0x20, a `"` or a `\` exactly when the classic "has a zero byte" test
/// finds one in the word itself minus 0x20 in every byte, or XORed with the quote or the
/// backslash in every byte.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Nonzero exactly when a byte of `w` is below `n` (for `n` <= 0x80).
    let has_below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS;
    let has_byte = |w: u64, b: u8| has_below(w ^ (ONES * u64::from(b)), 1);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut eight = [0_u8; 8];
        eight.copy_from_slice(word);
        let w = u64::from_ne_bytes(eight);
        if has_below(w, 0x20) | has_byte(w, b'"') | has_byte(w, b'\\') != 0 {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
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
}
