//! Subscription names and the storage streams a subscription keeps (spec §3): its cursor
//! checkpoints in `broker/c/<ns>/<topic>/<sub>` and its dead letters in
//! `broker/dlq/<ns>/<topic>/<sub>`.

use std::fmt;

use courier_traits::error::InvalidInput;
use courier_traits::storage::StreamName;

use crate::topic::TopicName;

/// The longest subscription name, in bytes.
pub const MAX_SUBSCRIPTION_BYTES: usize = 255;

/// A valid subscription name: 1 to [`MAX_SUBSCRIPTION_BYTES`] bytes of `A-Z a-z 0-9` and
/// `. _ - ~ : @ + =`, not `.` or `..`: exactly what one segment of a storage stream name
/// takes, so the name is used in stream names as it is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriptionName(String);

impl SubscriptionName {
    /// Validates `name`.
    ///
    /// Errors: [`InvalidInput`] on field `subscription`, naming what is wrong.
    pub fn new(name: &str) -> Result<SubscriptionName, InvalidInput> {
        let invalid = |reason: &str| Err(InvalidInput::new("subscription", name, reason));
        if name.is_empty() {
            return invalid("must not be empty");
        }
        if name.len() > MAX_SUBSCRIPTION_BYTES {
            return invalid(&format!(
                "{} bytes; at most {MAX_SUBSCRIPTION_BYTES}",
                name.len()
            ));
        }
        if name == "." || name == ".." {
            return invalid("must not be . or ..");
        }
        if let Some(bad) = name.chars().find(|c| {
            !(c.is_ascii_alphanumeric()
                || matches!(c, '.' | '_' | '-' | '~' | ':' | '@' | '+' | '='))
        }) {
            return invalid(&format!(
                "has {bad:?}; allowed: A-Z a-z 0-9 . _ - ~ : @ + ="
            ));
        }
        Ok(SubscriptionName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubscriptionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stream of `subscription`'s cursor checkpoints on `topic`: `broker/c/<ns>/<topic>/<sub>`.
pub fn cursor_stream(topic: &TopicName, subscription: &SubscriptionName) -> StreamName {
    stream("broker/c", topic, subscription)
}

/// The stream of `subscription`'s dead letters on `topic`: `broker/dlq/<ns>/<topic>/<sub>`.
pub fn dead_letter_stream(topic: &TopicName, subscription: &SubscriptionName) -> StreamName {
    stream("broker/dlq", topic, subscription)
}

fn stream(prefix: &str, topic: &TopicName, subscription: &SubscriptionName) -> StreamName {
    // Both names are validated to characters and lengths a stream name takes (at most
    // 9 + 255 + 1 + 255 bytes of 1024).
    StreamName::new(&format!("{prefix}{topic}/{subscription}"))
        .unwrap_or_else(|_| unreachable!("topic and subscription names are valid segments"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_stream_segment_characters_only() {
        for name in [
            "s",
            "sub_1",
            "a.b-c~d:e@f+g=h",
            &"x".repeat(MAX_SUBSCRIPTION_BYTES),
        ] {
            assert_eq!(SubscriptionName::new(name).expect(name).as_str(), name);
        }
        for (name, reason) in [
            ("", "must not be empty"),
            (".", "must not be . or .."),
            ("..", "must not be . or .."),
            ("a/b", "has '/'"),
            ("a b", "has ' '"),
            ("caf\u{e9}", "has '\u{e9}'"),
        ] {
            let error = SubscriptionName::new(name).expect_err(name);
            assert_eq!(error.field, "subscription");
            assert!(error.reason.contains(reason), "{name:?}: {error}");
        }
        let long = "x".repeat(MAX_SUBSCRIPTION_BYTES + 1);
        assert!(SubscriptionName::new(&long).is_err());
    }

    #[test]
    fn streams_are_named_per_topic_and_subscription() {
        let topic = TopicName::new(&format!("/ns/{}", "t".repeat(251))).expect("longest");
        let sub = SubscriptionName::new(&"s".repeat(MAX_SUBSCRIPTION_BYTES)).expect("longest");
        assert!(
            cursor_stream(&topic, &sub)
                .as_str()
                .starts_with("broker/c/ns/ttt")
        );
        let topic = TopicName::new("/default/orders-part-1").expect("valid");
        let sub = SubscriptionName::new("billing").expect("valid");
        assert_eq!(
            cursor_stream(&topic, &sub).as_str(),
            "broker/c/default/orders-part-1/billing"
        );
        assert_eq!(
            dead_letter_stream(&topic, &sub).as_str(),
            "broker/dlq/default/orders-part-1/billing"
        );
    }
}
