//! KeyShared routing: which consumers a key may go to (their `key_filters` globs) and which one
//! of those gets it (rendezvous hashing, so a key stays with its consumer while the set holds
//! and only the keys of a consumer that leaves move).

/// Whether `key` matches `pattern`, a glob where `*` is any run of characters (also none) and
/// `?` exactly one; everything else matches itself.
pub(crate) fn glob_matches(pattern: &str, key: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let key: Vec<char> = key.chars().collect();
    let (mut p, mut k) = (0, 0);
    // Where the last `*` was and which key position it is currently stretched to: on a
    // mismatch the star swallows one more character instead of exploring every split.
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, k));
                p += 1;
            }
            Some(&c) if c == '?' || c == key[k] => {
                p += 1;
                k += 1;
            }
            _ => match star {
                Some((star_p, star_k)) => {
                    p = star_p + 1;
                    k = star_k + 1;
                    star = Some((star_p, star_k + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Whether a consumer with `filters` accepts `key`: no filters accept every key.
pub(crate) fn accepts(filters: &[String], key: &str) -> bool {
    filters.is_empty() || filters.iter().any(|filter| glob_matches(filter, key))
}

/// The rendezvous score of `key` on consumer `consumer`: the highest score wins the key. Stable
/// across processes and releases (FNV-1a and splitmix64, not std's unspecified hasher).
pub(crate) fn score(key: &str, consumer: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix64(hash ^ splitmix64(consumer))
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_stars_and_question_marks() {
        for (pattern, key, expected) in [
            ("user-*", "user-1", true),
            ("user-*", "user-", true),
            ("user-*", "users-1", false),
            ("eu-west-?", "eu-west-1", true),
            ("eu-west-?", "eu-west-12", false),
            ("eu-west-?", "eu-west-", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*-premium-*", "orders-premium-7", true),
            ("**", "anything", true),
            ("a?c", "a\u{e9}c", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(glob_matches(pattern, key), expected, "{pattern} ~ {key}");
        }
    }

    #[test]
    fn no_filters_accept_everything() {
        assert!(accepts(&[], "k"));
        let filters = vec!["a-*".to_owned(), "b".to_owned()];
        assert!(accepts(&filters, "a-1"));
        assert!(accepts(&filters, "b"));
        assert!(!accepts(&filters, "c"));
    }

    #[test]
    fn scores_are_stable_and_spread() {
        assert_eq!(score("k", 1), score("k", 1));
        assert_ne!(score("k", 1), score("k", 2));
        assert_ne!(score("k", 1), score("j", 1));
        // 1000 keys over 4 consumers: each wins a fair share.
        let mut wins = [0u32; 4];
        for key in 0..1000 {
            let key = format!("key-{key}");
            let winner = (0..4u64)
                .max_by_key(|consumer| score(&key, *consumer))
                .unwrap_or_default();
            wins[winner as usize] += 1;
        }
        assert!(wins.iter().all(|w| *w > 180), "{wins:?}");
    }
}
