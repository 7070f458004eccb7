//! Who may do what on which channel: [`ChannelRule`]s of the hub (what a channel allows at
//! all) and [`ClientGrants`] of a connection (what its token allows it).

use super::history::HistoryLimits;
use super::pattern::ChannelPattern;

/// What channels matching `pattern` allow. The first rule whose pattern matches a channel
/// applies; a channel no rule matches allows subscribing and not publishing from clients.
///
/// ```
/// use courier_hub::{ChannelPattern, ChannelRule};
/// let rule = ChannelRule::new(ChannelPattern::parse("chat.**").unwrap()).with_client_publish(true);
/// assert!(rule.client_publish);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ChannelRule {
    /// The channels this rule is for.
    pub pattern: ChannelPattern,
    /// Whether clients (not only the HTTP API) may publish to these channels.
    pub client_publish: bool,
    /// Keep a history in the hub's storage (exact subscriptions can then recover).
    pub history: Option<HistoryLimits>,
    /// Track who is subscribed (by exact name) and tell subscribers of joins and leaves.
    pub presence: bool,
}

impl ChannelRule {
    /// A rule for `pattern` allowing subscriptions only.
    pub fn new(pattern: ChannelPattern) -> ChannelRule {
        ChannelRule {
            pattern,
            client_publish: false,
            history: None,
            presence: false,
        }
    }

    /// Sets [`presence`](Self::presence).
    pub fn with_presence(mut self, tracked: bool) -> Self {
        self.presence = tracked;
        self
    }

    /// Sets [`history`](Self::history).
    pub fn with_history(mut self, limits: HistoryLimits) -> Self {
        self.history = Some(limits);
        self
    }

    /// Sets [`client_publish`](Self::client_publish).
    pub fn with_client_publish(mut self, allowed: bool) -> Self {
        self.client_publish = allowed;
        self
    }
}

/// The first of `rules` matching `channel`, if any.
pub(crate) fn rule_for<'a>(rules: &'a [ChannelRule], channel: &str) -> Option<&'a ChannelRule> {
    rules.iter().find(|r| r.pattern.matches(channel))
}

/// What one connection may subscribe to and publish to, from the token it presented. The
/// default grants everything (the channel's [`ChannelRule`] still decides client publishing).
///
/// ```
/// use courier_hub::{ChannelPattern, ClientGrants};
/// let grants = ClientGrants::none().subscribe(ChannelPattern::parse("news.*").unwrap());
/// assert!(grants.may_subscribe(&ChannelPattern::parse("news.sport").unwrap()));
/// assert!(!grants.may_subscribe(&ChannelPattern::parse("news.**").unwrap()));
/// ```
#[derive(Clone, Debug)]
pub struct ClientGrants {
    subscribe: Vec<ChannelPattern>,
    publish: Vec<ChannelPattern>,
}

impl Default for ClientGrants {
    fn default() -> Self {
        let all = ChannelPattern::parse("**").into_iter().collect::<Vec<_>>();
        ClientGrants {
            subscribe: all.clone(),
            publish: all,
        }
    }
}

impl ClientGrants {
    /// Grants nothing; add with [`subscribe`](Self::subscribe) and [`publish`](Self::publish).
    pub fn none() -> ClientGrants {
        ClientGrants {
            subscribe: Vec::new(),
            publish: Vec::new(),
        }
    }

    /// Also allows subscribing to what `pattern` covers.
    pub fn subscribe(mut self, pattern: ChannelPattern) -> Self {
        self.subscribe.push(pattern);
        self
    }

    /// Also allows publishing to channels matching `pattern` (where the channel's rule allows
    /// client publishing).
    pub fn publish(mut self, pattern: ChannelPattern) -> Self {
        self.publish.push(pattern);
        self
    }

    /// Whether a subscription to `pattern` is covered by a grant (a grant of `news.*` does not
    /// cover `news.**`, which also matches deeper channels).
    pub fn may_subscribe(&self, pattern: &ChannelPattern) -> bool {
        self.subscribe.iter().any(|g| g.covers(pattern))
    }

    /// Whether the grants allow publishing to `channel`.
    pub fn may_publish(&self, channel: &str) -> bool {
        self.publish.iter().any(|g| g.matches(channel))
    }
}
