//! Which topics exist and which node serves each: what discovery answers from.

use std::collections::BTreeMap;

use courier_traits::error::InvalidInput;

use crate::topic::TopicName;

/// Where a broker node is reached: both URLs absolute with a scheme (`http://` or `https://`),
/// as TopicLookup must answer them (spec §1 rule 4: tonic picks TLS by the scheme).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeUrls {
    /// The node's own address.
    pub broker_url: String,
    /// Where clients connect to it (the same unless a proxy stands in front).
    pub connect_url: String,
}

impl NodeUrls {
    /// Validates both URLs.
    ///
    /// Errors: [`InvalidInput`] on field `broker_url` or `connect_url`.
    pub fn new(broker_url: &str, connect_url: &str) -> Result<NodeUrls, InvalidInput> {
        Ok(NodeUrls {
            broker_url: absolute_url("broker_url", broker_url)?,
            connect_url: absolute_url("connect_url", connect_url)?,
        })
    }

    /// One URL for both.
    pub fn same(url: &str) -> Result<NodeUrls, InvalidInput> {
        NodeUrls::new(url, url)
    }
}

/// `url` if it is `http://host[:port]` or `https://host[:port]` (a trailing `/` dropped).
fn absolute_url(field: &'static str, url: &str) -> Result<String, InvalidInput> {
    let invalid = |reason: &str| Err(InvalidInput::new(field, url, reason));
    let Some((scheme, rest)) = url.split_once("://") else {
        return invalid("must be absolute with a scheme: http://host:port or https://host:port");
    };
    if scheme != "http" && scheme != "https" {
        return invalid("the scheme must be http or https");
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return invalid("no host");
    }
    if authority
        .chars()
        .any(|c| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace() || c.is_control())
    {
        return invalid("only a host and port may follow the scheme");
    }
    Ok(format!("{scheme}://{authority}"))
}

/// Who serves a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// This node.
    Here,
    /// Another node, reached at these URLs.
    Node(NodeUrls),
}

/// What discovery needs to know about topics. The broker's catalog (folded from storage)
/// implements it; [`TopicTable`] is the in-memory one.
pub trait TopicView: Send + Sync + 'static {
    /// Who serves `topic` (a plain topic or one partition), or `None` if it does not exist.
    fn owner(&self, topic: &TopicName) -> Option<Owner>;

    /// The indexes of the existing partitions of `topic` (its `<topic>-part-<i>` topics), in
    /// increasing order.
    fn partitions(&self, topic: &TopicName) -> Vec<u32>;
}

/// Topics and their owners in memory.
#[derive(Clone, Debug, Default)]
pub struct TopicTable {
    topics: BTreeMap<TopicName, Owner>,
}

impl TopicTable {
    /// No topics.
    pub fn new() -> TopicTable {
        TopicTable::default()
    }

    /// Records that `topic` exists and `owner` serves it (replacing an earlier owner).
    pub fn insert(&mut self, topic: TopicName, owner: Owner) {
        self.topics.insert(topic, owner);
    }

    /// Forgets `topic`; returns whether it was there.
    pub fn remove(&mut self, topic: &TopicName) -> bool {
        self.topics.remove(topic).is_some()
    }
}

impl TopicView for TopicTable {
    fn owner(&self, topic: &TopicName) -> Option<Owner> {
        self.topics.get(topic).cloned()
    }

    fn partitions(&self, topic: &TopicName) -> Vec<u32> {
        // Partition names share the prefix `<topic>-part-`; the map is sorted by name, so they
        // are one range (with "-part-1", "-part-10", "-part-2" in byte order: sort after).
        let prefix = format!("{topic}-part-");
        let mut indexes: Vec<u32> = self
            .topics
            .range::<str, _>((
                std::ops::Bound::Included(prefix.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .map(|(name, _)| name)
            .take_while(|name| name.as_str().starts_with(&prefix))
            .filter_map(|name| match name.as_partition() {
                Some((base, index)) if base == *topic => Some(index),
                _ => None,
            })
            .collect();
        indexes.sort_unstable();
        indexes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicName {
        TopicName::new(name).expect(name)
    }

    #[test]
    fn node_urls_must_be_absolute_with_a_scheme() {
        let urls =
            NodeUrls::new("http://10.0.0.1:6650/", "https://broker.example:443").expect("valid");
        assert_eq!(urls.broker_url, "http://10.0.0.1:6650");
        assert_eq!(urls.connect_url, "https://broker.example:443");
        for (url, reason) in [
            ("10.0.0.1:6650", "absolute with a scheme"),
            ("grpc://b:1", "http or https"),
            ("http://", "no host"),
            ("http://b:1/path", "only a host and port"),
            ("http://u@b:1", "only a host and port"),
            ("http://b :1", "only a host and port"),
        ] {
            let error = NodeUrls::same(url).expect_err(url);
            assert!(error.reason.contains(reason), "{url}: {error}");
        }
        let error = NodeUrls::new("http://b:1", "b:1").expect_err("connect_url");
        assert_eq!(error.field, "connect_url");
    }

    #[test]
    fn partitions_are_the_topics_own_in_index_order() {
        let mut table = TopicTable::new();
        let orders = topic("/default/orders");
        for index in [10, 2, 0, 1] {
            table.insert(orders.partition(index).expect("fits"), Owner::Here);
        }
        // Neighbours that share a prefix but are not partitions of /default/orders.
        table.insert(topic("/default/orders-part-03"), Owner::Here);
        table.insert(topic("/default/orders-part-1-part-0"), Owner::Here);
        table.insert(topic("/default/orders2-part-0"), Owner::Here);
        table.insert(topic("/default/orders-partx"), Owner::Here);
        assert_eq!(table.partitions(&orders), [0, 1, 2, 10]);
        assert_eq!(
            table.owner(&orders),
            None,
            "a partitioned topic has no plain topic"
        );
        assert_eq!(
            table.owner(&orders.partition(2).expect("fits")),
            Some(Owner::Here)
        );
        assert!(table.partitions(&topic("/default/other")).is_empty());
        assert!(table.remove(&orders.partition(10).expect("fits")));
        assert!(!table.remove(&orders.partition(10).expect("fits")));
        assert_eq!(table.partitions(&orders), [0, 1, 2]);
    }
}
