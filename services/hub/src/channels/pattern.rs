//! Channel names and the patterns clients subscribe with.
//!
//! A channel name is 1 to 255 bytes of dot-separated, non-empty segments of ASCII letters,
//! digits and `_ - : @` (`chat.room-1`, `user:42.inbox`). A pattern is a name whose segments
//! may also be `*` (exactly one segment) or, as the last segment only, `**` (one or more
//! segments): `chat.*` matches `chat.room1` but not `chat.room1.typing`; `chat.**` matches both,
//! and neither matches `chat` itself.

use courier_traits::InvalidInput;

/// Longest channel name or pattern, in bytes.
pub const MAX_CHANNEL_LEN: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Exact(String),
    One,
    Rest,
}

/// A parsed channel pattern (an exact name is a pattern without wildcards).
///
/// ```
/// use courier_hub::ChannelPattern;
/// let p = ChannelPattern::parse("chat.*").unwrap();
/// assert!(p.matches("chat.room1"));
/// assert!(!p.matches("chat.room1.typing"));
/// assert!(ChannelPattern::parse("chat.**").unwrap().matches("chat.room1.typing"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelPattern {
    text: String,
    segments: Vec<Segment>,
}

fn valid_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '@')
}

fn check_length(field: &'static str, text: &str) -> Result<(), InvalidInput> {
    if text.is_empty() || text.len() > MAX_CHANNEL_LEN {
        return Err(InvalidInput::new(
            field,
            text,
            "use 1 to 255 bytes of dot-separated segments",
        ));
    }
    Ok(())
}

/// Checks an exact channel name (no wildcards).
pub fn validate_channel(name: &str) -> Result<(), InvalidInput> {
    check_length("channel", name)?;
    for segment in name.split('.') {
        if segment.is_empty() || !segment.chars().all(valid_segment_char) {
            return Err(InvalidInput::new(
                "channel",
                name,
                "segments are non-empty A-Z a-z 0-9 _ - : @, separated by '.'",
            ));
        }
    }
    Ok(())
}

impl ChannelPattern {
    /// Parses `text`; see the module docs for the syntax.
    pub fn parse(text: &str) -> Result<ChannelPattern, InvalidInput> {
        check_length("channel pattern", text)?;
        let parts: Vec<&str> = text.split('.').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment = match *part {
                "*" => Segment::One,
                "**" if i + 1 == parts.len() => Segment::Rest,
                "**" => {
                    return Err(InvalidInput::new(
                        "channel pattern",
                        text,
                        "'**' may only be the last segment",
                    ));
                }
                s if !s.is_empty() && s.chars().all(valid_segment_char) => {
                    Segment::Exact(s.to_owned())
                }
                _ => {
                    return Err(InvalidInput::new(
                        "channel pattern",
                        text,
                        "segments are '*', a final '**', or non-empty A-Z a-z 0-9 _ - : @",
                    ));
                }
            };
            segments.push(segment);
        }
        Ok(ChannelPattern {
            text: text.to_owned(),
            segments,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has no wildcard (it names one channel).
    pub fn is_exact(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Exact(_)))
    }

    /// Whether channel `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = name.split('.');
        for segment in &self.segments {
            match segment {
                Segment::Rest => return parts.next().is_some(),
                Segment::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Exact(want) => {
                    if parts.next() != Some(want.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    /// Whether every channel `other` matches is also matched by `self` (a grant covering a
    /// subscription).
    pub fn covers(&self, other: &ChannelPattern) -> bool {
        let mut theirs = other.segments.iter();
        for mine in &self.segments {
            let Some(their) = theirs.next() else {
                return false;
            };
            match (mine, their) {
                // `**` covers any non-empty rest, wildcards included.
                (Segment::Rest, _) => return true,
                (Segment::One, Segment::Exact(_) | Segment::One) => {}
                (Segment::Exact(a), Segment::Exact(b)) if a == b => {}
                _ => return false,
            }
        }
        theirs.next().is_none()
    }
}

impl std::fmt::Display for ChannelPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> ChannelPattern {
        ChannelPattern::parse(text).expect(text)
    }

    #[test]
    fn wildcards_match_one_segment_or_the_rest() {
        assert!(p("chat.room1").matches("chat.room1"));
        assert!(!p("chat.room1").matches("chat.room10"));
        assert!(p("chat.*").matches("chat.a"));
        assert!(!p("chat.*").matches("chat"));
        assert!(!p("chat.*").matches("chat.a.b"));
        assert!(p("chat.**").matches("chat.a.b"));
        assert!(!p("chat.**").matches("chat"));
        assert!(p("*.typing").matches("room.typing"));
        assert!(!p("*.typing").matches("room.x"));
        assert!(p("**").matches("anything.at.all"));
    }

    #[test]
    fn bad_names_and_patterns_are_refused() {
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "a b",
            "a.**.b",
            "a*",
            &"x".repeat(256),
        ] {
            assert!(ChannelPattern::parse(bad).is_err(), "{bad:?}");
        }
        for bad in ["a.*", "a.**", "", "a..b"] {
            assert!(validate_channel(bad).is_err(), "{bad:?}");
        }
        assert!(validate_channel("user:42.inbox").is_ok());
    }

    #[test]
    fn grants_cover_narrower_patterns_only() {
        assert!(p("chat.**").covers(&p("chat.*")));
        assert!(p("chat.**").covers(&p("chat.a.**")));
        assert!(p("chat.*").covers(&p("chat.a")));
        assert!(!p("chat.*").covers(&p("chat.**")));
        assert!(!p("chat.a").covers(&p("chat.*")));
        assert!(!p("chat.*").covers(&p("chat")));
        assert!(p("**").covers(&p("x.y.**")));
    }
}
