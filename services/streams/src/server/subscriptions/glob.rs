//! Stream path globs of subscription patterns: `*` is exactly one path segment, `**` zero or
//! more, anything else a literal segment (`%2A` stands for a literal `*`).

/// Longest pattern a subscription may carry, in bytes. Matching is linear in pattern times
/// path segments, but it runs on every append for every pattern subscription, so a pattern
/// stays about as long as a stream name.
pub(crate) const MAX_PATTERN_BYTES: usize = 1024;
/// Most segments a pattern may have (see [`MAX_PATTERN_BYTES`]).
pub(crate) const MAX_PATTERN_SEGMENTS: usize = 64;

/// Whether a pattern is small enough to be matched on every append.
pub(crate) fn within_limits(pattern: &str) -> bool {
    pattern.len() <= MAX_PATTERN_BYTES && segments(pattern).count() <= MAX_PATTERN_SEGMENTS
}

/// Whether `path` (relative to the stream root, `a/b/c`) matches `pattern`.
///
/// Dynamic programming over (pattern segment, path position), O(pattern × path): a
/// backtracking matcher tries every split per `**` and is exponential in their number
/// (`**/**/…/z`), which let one pattern stall every append.
pub(crate) fn matches(pattern: &str, path: &str) -> bool {
    let path: Vec<&str> = segments(path).collect();
    // matched[j]: the pattern segments seen so far match the first j path segments.
    let mut matched = vec![false; path.len() + 1];
    matched[0] = true;
    for segment in segments(pattern) {
        if segment == "**" {
            // Zero or more segments: j is reachable from any reachable k <= j.
            let mut any = false;
            for reach in matched.iter_mut() {
                any |= *reach;
                *reach = any;
            }
        } else {
            // Exactly one segment: walk backwards so matched[j - 1] is still the old value.
            for j in (1..=path.len()).rev() {
                matched[j] =
                    matched[j - 1] && (segment == "*" || literal_matches(segment, path[j - 1]));
            }
            matched[0] = false;
        }
        if !matched.contains(&true) {
            return false;
        }
    }
    matched[path.len()]
}

fn segments(text: &str) -> impl Iterator<Item = &str> {
    text.split('/').filter(|s| !s.is_empty())
}

fn literal_matches(literal: &str, segment: &str) -> bool {
    if literal.contains('%') {
        literal.replace("%2A", "*").replace("%2a", "*") == segment
    } else {
        literal == segment
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn star_is_one_segment() {
        assert!(matches("events/*", "events/a"));
        assert!(!matches("events/*", "events"));
        assert!(!matches("events/*", "events/a/b"));
        assert!(!matches("events/*", "other/a"));
    }

    #[test]
    fn double_star_is_any_number_of_segments() {
        assert!(matches("events/**", "events"));
        assert!(matches("events/**", "events/a/b/c"));
        assert!(matches("**/x", "a/b/x"));
        assert!(matches("**/x", "x"));
        assert!(!matches("**/x", "a/b/y"));
        assert!(matches("a/**/z", "a/z"));
        assert!(matches("a/**/z", "a/b/c/z"));
    }

    #[test]
    fn literals_and_escapes() {
        assert!(matches("/a/b/", "a/b"));
        assert!(matches("a/%2A", "a/*"));
        assert!(!matches("a/%2A", "a/b"));
    }

    #[test]
    fn star_and_double_star_mix() {
        assert!(matches("a/*/**/z", "a/b/z"));
        assert!(matches("a/*/**/z", "a/b/c/d/z"));
        assert!(!matches("a/*/**/z", "a/z"));
        assert!(matches("**/*", "a"));
        assert!(!matches("**/*", ""));
        assert!(matches("**", ""));
        assert!(matches("**/b/**", "a/b/c"));
        assert!(!matches("**/b/**", "a/c"));
    }

    /// Many `**` against a long path that does not match: exponential for a backtracking
    /// matcher (hours at 30), linear here. Run on a thread so a regression fails instead of
    /// hanging the suite.
    #[test]
    fn many_double_stars_match_in_bounded_time() {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pattern = format!("{}z", "**/".repeat(30));
            let path = "a/b/c/d/e/f/g/h/i/j/k/l";
            let _ = done.send((
                matches(&pattern, path),
                matches(&pattern, &format!("{path}/z")),
            ));
        });
        let result = finished.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(
            result,
            Ok((false, true)),
            "glob matching did not finish in 10 s"
        );
    }
}
