//! The `channels:` section of `courier hub`'s config: channel rules (client publishing,
//! history, presence), where history is kept, and client tokens limited to some channels.

use std::time::Duration;

use courier::hub::server::ServerOptions;
use courier::hub::{ChannelPattern, ChannelRule, ClientGrants, HistoryLimits, HubConfig};
use serde::Deserialize;

use crate::config;

/// `channels:` in the YAML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChannelsSection {
    /// First match wins; channels no rule matches allow subscribing only.
    #[serde(default)]
    rules: Vec<RuleSection>,
    /// Storage for channel history (`memory`, `sqlite:PATH`, `log:DIR`, `redis://…`, `postgres://…`);
    /// shared by every node of a cluster.
    pub(crate) history_storage: Option<String>,
    /// Tokens that allow only some channels (besides `server.client_token`, which allows all).
    #[serde(default)]
    client_tokens: Vec<TokenSection>,
    /// Text messages longer than this are compressed for clients that ask (`compress=gzip` or
    /// `compress=brotli`).
    compression_threshold: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSection {
    pattern: String,
    #[serde(default)]
    client_publish: bool,
    #[serde(default)]
    presence: bool,
    history: Option<HistorySection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistorySection {
    max_len: usize,
    #[serde(default, with = "config::duration")]
    max_age: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenSection {
    token: String,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

fn pattern(text: &str) -> Result<ChannelPattern, String> {
    ChannelPattern::parse(text).map_err(|e| format!("channels: {e}"))
}

impl ChannelsSection {
    /// Adds the rules to `hub`.
    pub(crate) fn apply_rules(&self, mut hub: HubConfig) -> Result<HubConfig, String> {
        for rule in &self.rules {
            let mut built = ChannelRule::new(pattern(&rule.pattern)?)
                .with_client_publish(rule.client_publish)
                .with_presence(rule.presence);
            if let Some(history) = &rule.history {
                if history.max_len == 0 {
                    return Err(format!(
                        "channels.rules {:?}: history.max_len must be at least 1",
                        rule.pattern
                    ));
                }
                let max_age = history.max_age.unwrap_or(Duration::from_secs(600));
                built = built.with_history(HistoryLimits::new(history.max_len, max_age));
            }
            hub = hub.with_channel_rule(built);
        }
        Ok(hub)
    }

    /// Whether some rule keeps history (a storage is then required).
    pub(crate) fn wants_history(&self) -> bool {
        self.rules.iter().any(|r| r.history.is_some())
    }

    /// Adds the limited client tokens and the compression threshold to `options`.
    pub(crate) fn apply_server(&self, mut options: ServerOptions) -> Result<ServerOptions, String> {
        for token in &self.client_tokens {
            let mut grants = ClientGrants::none();
            for text in &token.subscribe {
                grants = grants.subscribe(pattern(text)?);
            }
            for text in &token.publish {
                grants = grants.publish(pattern(text)?);
            }
            options = options.with_client_grant(token.token.clone(), grants);
        }
        if let Some(threshold) = self.compression_threshold {
            options = options.with_compression_threshold(threshold);
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_tokens_are_read_and_checked() {
        let section: ChannelsSection = serde_yaml_ng::from_str(
            "rules:\n  - pattern: chat.**\n    client_publish: true\n    presence: true\n    history: { max_len: 50, max_age: 5m }\nhistory_storage: memory\nclient_tokens:\n  - token: t1\n    subscribe: [news.*]\ncompression_threshold: 512\n",
        )
        .expect("parses");
        let hub = section.apply_rules(HubConfig::default()).expect("rules");
        assert_eq!(hub.channels.len(), 1);
        let rule = &hub.channels[0];
        assert!(rule.client_publish && rule.presence);
        assert_eq!(
            rule.history,
            Some(HistoryLimits::new(50, Duration::from_secs(300)))
        );
        assert!(section.wants_history());
        let options = section
            .apply_server(ServerOptions::default())
            .expect("tokens");
        assert_eq!(options.client_grants.len(), 1);
        assert_eq!(options.compression_threshold, 512);
        let bad: ChannelsSection =
            serde_yaml_ng::from_str("rules:\n  - pattern: a.**.b\n").expect("parses");
        assert!(bad.apply_rules(HubConfig::default()).is_err());
    }
}
