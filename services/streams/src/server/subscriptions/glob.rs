//! Stream path globs of subscription patterns: `*` is exactly one path segment, `**` zero or
//! more, anything else a literal segment (`%2A` stands for a literal `*`).

/// Whether `path` (relative to the stream root, `a/b/c`) matches `pattern`.
pub(crate) fn matches(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = segments(pattern).collect();
    let path: Vec<&str> = segments(path).collect();
    match_from(&pattern, &path)
}

fn segments(text: &str) -> impl Iterator<Item = &str> {
    text.split('/').filter(|s| !s.is_empty())
}

fn match_from(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        // `**` takes 0..=all of the remaining segments; patterns are short, so the
        // backtracking stays small (a pattern is at most one stream name long).
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_from(rest, &path[skip..])),
        Some((&"*", rest)) => !path.is_empty() && match_from(rest, &path[1..]),
        Some((literal, rest)) => match path.split_first() {
            Some((segment, tail)) => literal_matches(literal, segment) && match_from(rest, tail),
            None => false,
        },
    }
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
}
