//! JSON strings written as `serde_json` writes them, without its per-byte escaping loop for
//! the strings that need none (event ids, UUIDs, most names and values).

/// Appends `text` as a JSON string, byte for byte what `serde_json::to_writer` writes: copied
/// between quotes when no byte needs an escape (`serde_json` escapes only `"`, `\` and
/// U+0000 to U+001F; other bytes, UTF-8 included, are written as they are), else through
/// `serde_json`.
pub(crate) fn write_json_string(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
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
        // Every byte below 0x80 alone, so each escape rule is met.
        texts.extend((0u8..0x80).map(|b| char::from(b).to_string()));
        for text in texts {
            let mut ours = b"prefix".to_vec();
            write_json_string(&mut ours, &text);
            let mut theirs = b"prefix".to_vec();
            serde_json::to_writer(&mut theirs, &text).expect("writes");
            assert_eq!(ours, theirs, "{text:?}");
        }
    }
}
