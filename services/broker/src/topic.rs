//! Topic names (`/namespace/topic`) and the names partitioned topics and their producers
//! derive from them (spec §1 rule 5, §2 "Topics").

use std::fmt;

use courier_traits::error::InvalidInput;

/// The longest topic name, in bytes.
pub const MAX_TOPIC_BYTES: usize = 255;

/// What a partition's name adds to its topic's: `<topic>-part-<index>`.
const PARTITION_INFIX: &str = "-part-";

/// A valid topic name: `/namespace/topic`, each segment one or more of `A-Z a-z 0-9 _ -`, at
/// most [`MAX_TOPIC_BYTES`] bytes in all. Namespaces are implicit: any valid one may be used.
///
/// Stricter than upstream Danube, which also takes non-ASCII letters: a name here is always
/// ASCII, so its byte length is its length and it sorts the same everywhere.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicName(String);

impl TopicName {
    /// Validates `name`.
    ///
    /// Errors: [`InvalidInput`] on field `topic`, naming what is wrong.
    pub fn new(name: &str) -> Result<TopicName, InvalidInput> {
        let invalid = |reason: &str| Err(InvalidInput::new("topic", name, reason));
        if name.len() > MAX_TOPIC_BYTES {
            return invalid(&format!("{} bytes; at most {MAX_TOPIC_BYTES}", name.len()));
        }
        let Some(rest) = name.strip_prefix('/') else {
            return invalid("must be /namespace/topic (it does not start with /)");
        };
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.len() != 2 {
            return invalid(&format!(
                "must be /namespace/topic: two segments, not {}",
                segments.len()
            ));
        }
        for (what, segment) in ["namespace", "topic"].into_iter().zip(&segments) {
            if segment.is_empty() {
                return invalid(&format!("the {what} segment is empty"));
            }
            if let Some(bad) = segment
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
            {
                return invalid(&format!(
                    "the {what} segment has {bad:?}; allowed: A-Z a-z 0-9 _ -"
                ));
            }
        }
        Ok(TopicName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespace segment (`default` in `/default/orders`).
    pub fn namespace(&self) -> &str {
        self.0[1..].split('/').next().unwrap_or_default()
    }

    /// The topic segment (`orders` in `/default/orders`).
    pub fn topic(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }

    /// The name of partition `index` of this topic: `<topic>-part-<index>`, itself an ordinary
    /// topic (what partitioned producers create).
    ///
    /// Errors: [`InvalidInput`] when the result would be longer than [`MAX_TOPIC_BYTES`].
    pub fn partition(&self, index: u32) -> Result<TopicName, InvalidInput> {
        TopicName::new(&format!("{}{PARTITION_INFIX}{index}", self.0))
    }

    /// If this is a partition's name, its topic and index. The index is canonical decimal
    /// (`-part-7`, not `-part-07`), as [`partition`](Self::partition) writes it.
    pub fn as_partition(&self) -> Option<(TopicName, u32)> {
        let (base, index) = self.0.rsplit_once(PARTITION_INFIX)?;
        let canonical = !index.is_empty()
            && index.bytes().all(|b| b.is_ascii_digit())
            && (index == "0" || !index.starts_with('0'));
        if !canonical {
            return None;
        }
        let index = index.parse().ok()?;
        Some((TopicName::new(base).ok()?, index))
    }
}

/// Lets maps keyed by topic be searched by `&str` (a range over a name prefix).
impl std::borrow::Borrow<str> for TopicName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name the producer `name` has on partition `index`: `<name>-<index>` (as danube-client
/// names them).
pub fn partition_producer_name(name: &str, index: u32) -> String {
    format!("{name}-{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_and_their_parts() {
        for name in ["/default/orders", "/a/b", "/ns_1/Topic-2", "/0/9"] {
            assert_eq!(TopicName::new(name).expect(name).as_str(), name);
        }
        let topic = TopicName::new("/default/orders").expect("valid");
        assert_eq!(topic.namespace(), "default");
        assert_eq!(topic.topic(), "orders");
        assert_eq!(topic.to_string(), "/default/orders");
        let longest = format!("/ns/{}", "t".repeat(MAX_TOPIC_BYTES - 4));
        assert!(TopicName::new(&longest).is_ok());
    }

    #[test]
    fn invalid_names_say_why() {
        let too_long = format!("/ns/{}", "t".repeat(MAX_TOPIC_BYTES - 3));
        assert_eq!(too_long.len(), 256);
        for (name, reason) in [
            ("a", "does not start with /"),
            ("", "does not start with /"),
            ("default/orders", "does not start with /"),
            ("/a", "two segments, not 1"),
            ("/a/b/c", "two segments, not 3"),
            ("/ns/", "topic segment is empty"),
            ("//t", "namespace segment is empty"),
            ("/ns/t/", "two segments, not 3"),
            ("/ns/caf\u{e9}", "topic segment has '\u{e9}'"),
            ("/n\u{e9}/t", "namespace segment has"),
            ("/ns/a b", "has ' '"),
            ("/ns/a.b", "has '.'"),
            ("/ns/a\0b", "has '\\0'"),
            (too_long.as_str(), "256 bytes; at most 255"),
        ] {
            let error = TopicName::new(name).expect_err(name);
            assert_eq!(error.field, "topic");
            assert!(error.reason.contains(reason), "{name:?}: {error}");
        }
    }

    #[test]
    fn partitions_round_trip_and_only_canonical_indexes_parse() {
        let topic = TopicName::new("/default/orders").expect("valid");
        let partition = topic.partition(3).expect("fits");
        assert_eq!(partition.as_str(), "/default/orders-part-3");
        assert_eq!(partition.as_partition(), Some((topic.clone(), 3)));
        let nested = partition.partition(0).expect("fits");
        assert_eq!(
            nested.as_partition(),
            Some((partition, 0)),
            "the last infix"
        );
        assert_eq!(
            topic.partition(u32::MAX).expect("fits").as_partition(),
            Some((topic.clone(), u32::MAX))
        );
        for name in [
            "/default/orders",
            "/default/orders-part-",
            "/default/orders-part-07",
            "/default/orders-part-x",
            "/default/orders-part--1",
            "/default/orders-part-4294967296",
            "/default/-part-1",
        ] {
            let topic = TopicName::new(name).expect(name);
            assert_eq!(topic.as_partition(), None, "{name}");
        }
        assert_eq!(
            TopicName::new("/default/orders-part-0")
                .expect("valid")
                .as_partition()
                .map(|(_, i)| i),
            Some(0)
        );
        let long =
            TopicName::new(&format!("/ns/{}", "t".repeat(MAX_TOPIC_BYTES - 4))).expect("valid");
        assert!(long.partition(0).is_err(), "no room for the suffix");
    }

    #[test]
    fn partition_producers_are_numbered() {
        assert_eq!(partition_producer_name("p1", 0), "p1-0");
        assert_eq!(partition_producer_name("p1", 12), "p1-12");
    }
}
