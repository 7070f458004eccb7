//! What an ownership claim says and where claims and liveness live in storage.

use courier_traits::storage::StreamName;
use serde::{Deserialize, Serialize};

use crate::directory::NodeUrls;
use crate::topic::TopicName;

/// One record of `broker/own/<ns>/<topic>`: `node` serves the topic from `epoch` on, until a
/// claim with a higher epoch follows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// 1 for the first claim, one more for each later one: the append's writer sequence, so
    /// the storage lets one claimant win each epoch.
    pub epoch: u64,
    /// The claiming node's id (its liveness stream is `broker/nodes/<node>`).
    pub node: String,
    /// The node's broker URL.
    pub broker_url: String,
    /// Where clients connect to the node.
    pub connect_url: String,
}

impl Claim {
    /// The URLs a redirect to the claimant answers with.
    pub fn urls(&self) -> NodeUrls {
        NodeUrls {
            broker_url: self.broker_url.clone(),
            connect_url: self.connect_url.clone(),
        }
    }

    /// The writer sequence of this claim's append: zero-padded so that it sorts bytewise in
    /// epoch order.
    pub fn writer_seq(&self) -> String {
        format!("{:020}", self.epoch)
    }
}

/// `broker/own/<ns>/<topic>`: the claims on `topic`, newest last.
pub fn claim_stream(topic: &TopicName) -> StreamName {
    // A topic name is `/<ns>/<topic>` of [A-Za-z0-9_-] segments: always a valid stream suffix.
    StreamName::new(&format!("broker/own{topic}"))
        .unwrap_or_else(|_| unreachable!("topic names are valid stream name segments"))
}

/// `broker/nodes/<node>`: exists while `node` is alive (it renews the stream's TTL).
pub fn liveness_stream(node: &str) -> Result<StreamName, courier_traits::error::InvalidInput> {
    StreamName::new(&format!("broker/nodes/{node}"))
}

/// The node id of a node reached at `broker_url`, when none is configured: its host and port
/// with every character a stream name refuses replaced by `_`, so that a node restarted at
/// the same address is the same node and keeps its claims.
pub fn node_id_for(broker_url: &str) -> String {
    let authority = broker_url
        .split_once("://")
        .map_or(broker_url, |(_, rest)| rest);
    let id: String = authority
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() { "node".to_owned() } else { id }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sequences() {
        let topic = TopicName::new("/default/orders-part-1").expect("valid");
        assert_eq!(
            claim_stream(&topic).as_str(),
            "broker/own/default/orders-part-1"
        );
        assert_eq!(node_id_for("http://127.0.0.1:6650"), "127.0.0.1_6650");
        assert_eq!(node_id_for("https://[::1]:6650"), "___1__6650");
        assert!(liveness_stream(&node_id_for("http://[::1]:1")).is_ok());
        let claim = |epoch| Claim {
            epoch,
            node: "n".into(),
            broker_url: "http://n:1".into(),
            connect_url: "http://n:1".into(),
        };
        assert!(claim(9).writer_seq() < claim(10).writer_seq());
    }
}
