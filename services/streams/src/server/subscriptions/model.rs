//! A subscription as its log describes it: the configuration it was created with, then
//! [`Event`]s folded into a [`Subscription`] in log order. Every node folds the same log into
//! the same state.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::errors::ApiError;

/// Shortest lease a subscription may ask for.
pub(crate) const MIN_LEASE_TTL_MS: u64 = 1_000;
/// Longest lease a subscription may ask for.
pub(crate) const MAX_LEASE_TTL_MS: u64 = 600_000;
/// The lease when a subscription names none.
pub(crate) const DEFAULT_LEASE_TTL_MS: u64 = 30_000;
/// How many earlier callback tokens a subscription remembers, so a stale one is answered
/// `FENCED` rather than `TOKEN_INVALID`.
const REMEMBERED_TOKENS: usize = 16;
/// The offset text of "before the first record" in acks and stream listings.
pub(crate) const BEFORE_FIRST: &str = "-1";

/// How a subscription is told about new data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// Signed POSTs to a URL.
    Webhook,
    /// Wake events appended to a stream that workers read and then claim.
    PullWake,
}

/// What a client asked for when creating a subscription (normalised).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SubscriptionConfig {
    #[serde(rename = "type")]
    pub(crate) kind: Kind,
    pub(crate) pattern: Option<String>,
    pub(crate) streams: Vec<String>,
    pub(crate) webhook_url: Option<String>,
    pub(crate) wake_stream: Option<String>,
    pub(crate) lease_ttl_ms: u64,
    pub(crate) description: Option<String>,
}

impl SubscriptionConfig {
    /// Reads a `PUT` body the way the reference server does.
    pub(crate) fn parse(body: &Value) -> Result<SubscriptionConfig, ApiError> {
        let Some(body) = body.as_object() else {
            return Err(ApiError::invalid("Request body must be a JSON object"));
        };
        let kind = match body.get("type").and_then(Value::as_str) {
            Some("webhook") => Kind::Webhook,
            Some("pull-wake") => Kind::PullWake,
            _ => {
                return Err(ApiError::invalid(
                    r#"type must be "webhook" or "pull-wake""#,
                ));
            }
        };
        let pattern = body
            .get("pattern")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(normalize_path);
        if pattern
            .as_deref()
            .is_some_and(|p| !super::glob::within_limits(p))
        {
            return Err(ApiError::invalid(format!(
                "pattern must be at most {} bytes and {} segments",
                super::glob::MAX_PATTERN_BYTES,
                super::glob::MAX_PATTERN_SEGMENTS
            )));
        }
        let mut streams = Vec::new();
        if let Some(list) = body.get("streams").and_then(Value::as_array) {
            for stream in list {
                let Some(stream) = stream.as_str() else {
                    return Err(ApiError::invalid("streams must contain only strings"));
                };
                streams.push(normalize_path(stream));
            }
        }
        refuse_reserved("streams", streams.iter().map(String::as_str))?;
        if pattern.is_none() && streams.is_empty() {
            return Err(ApiError::invalid(
                "At least one of pattern or streams is required",
            ));
        }
        let lease_ttl_ms = match body.get("lease_ttl_ms") {
            None => DEFAULT_LEASE_TTL_MS,
            Some(v) => v
                .as_u64()
                .filter(|ms| (MIN_LEASE_TTL_MS..=MAX_LEASE_TTL_MS).contains(ms))
                .ok_or_else(|| {
                    ApiError::invalid("lease_ttl_ms must be an integer from 1000 to 600000")
                })?,
        };
        let webhook_url = match kind {
            Kind::Webhook => Some(
                body.get("webhook")
                    .and_then(|w| w.get("url"))
                    .and_then(Value::as_str)
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| ApiError::invalid("webhook subscriptions require webhook.url"))?
                    .to_owned(),
            ),
            Kind::PullWake => None,
        };
        let wake_stream = body
            .get("wake_stream")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(normalize_path);
        refuse_reserved("pattern", pattern.as_deref())?;
        refuse_reserved("wake_stream", wake_stream.as_deref())?;
        if kind == Kind::PullWake && wake_stream.is_none() {
            return Err(ApiError::invalid(
                "pull-wake subscriptions require wake_stream",
            ));
        }
        Ok(SubscriptionConfig {
            kind,
            pattern,
            streams,
            webhook_url,
            wake_stream,
            lease_ttl_ms,
            description: body
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    /// A digest of the configuration: a `PUT` with the same one re-confirms (200), another
    /// one conflicts (409). Explicit streams count as a set.
    pub(crate) fn hash(&self) -> String {
        let mut streams = self.streams.clone();
        streams.sort();
        streams.dedup();
        let canonical = json!({
            "type": self.kind,
            "pattern": self.pattern,
            "streams": streams,
            "webhook": self.webhook_url.as_ref().map(|url| json!({ "url": url })),
            "wake_stream": self.wake_stream,
            "lease_ttl_ms": self.lease_ttl_ms,
            "description": self.description,
        });
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.to_string().as_bytes());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A stream path without leading or trailing slashes.
pub(crate) fn normalize_path(path: &str) -> String {
    path.trim_matches('/').to_owned()
}

/// Refuses a name under `__ds/`: a subscription linked to or waking into a reserved stream
/// could write into another subscription's log (or the signing key) and brick it.
pub(crate) fn refuse_reserved<'a>(
    field: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), ApiError> {
    if names.into_iter().any(crate::server::request::is_reserved) {
        return Err(ApiError::invalid(format!(
            "{field} must not name a reserved __ds/ stream"
        )));
    }
    Ok(())
}

/// A stream and an offset in it (`None`: before its first record, `-1` on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StreamOffset {
    pub(crate) path: String,
    pub(crate) offset: Option<String>,
}

/// How a stream came to belong to a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LinkType {
    /// Named in `streams[]` or added with `POST .../streams`.
    Explicit,
    /// Matched the pattern when it was appended to.
    Glob,
}

/// One record of a subscription's log: the events of one committed change (one record per
/// change, so the log's record count is its change count, which the compare-and-set uses).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The incarnation: a subscription deleted and created again under the same id starts a
    /// new one, so a node holding the old state notices and reads the new log from the start.
    pub(crate) inc: String,
    pub(crate) events: Vec<Event>,
}

/// What happened to a subscription.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Event {
    /// The first record.
    Created {
        config: SubscriptionConfig,
        config_hash: String,
        /// The server's URL as the creating client saw it (callback URLs are built on it).
        base_url: String,
        created_at: String,
        /// The explicit streams, with the tail each had at creation (already acknowledged).
        links: Vec<StreamOffset>,
    },
    /// A stream joined (explicitly, or by matching the pattern).
    Linked {
        path: String,
        link: LinkType,
        acked: Option<String>,
    },
    /// An explicit link was removed.
    Unlinked { path: String },
    /// A wake started: a new generation, with the tails it covers.
    Woken {
        generation: u64,
        wake_id: String,
        snapshot: Vec<StreamOffset>,
        /// SHA-256 of the webhook's callback token (pull-wake tokens come with a claim).
        token_hash: Option<String>,
        lease_until: Option<u64>,
    },
    /// A pull-wake worker claimed the current wake.
    Claimed {
        generation: u64,
        holder: String,
        token_hash: String,
        lease_until: u64,
    },
    /// Progress within a wake (the lease is extended).
    Acked {
        generation: u64,
        acks: Vec<StreamOffset>,
        lease_until: u64,
    },
    /// The wake is done, with these acknowledgements.
    Finished {
        generation: u64,
        acks: Vec<StreamOffset>,
    },
    /// The wake ended without acknowledgements: released, or its lease expired.
    Cleared { generation: u64 },
}

/// A stream of a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) explicit: bool,
    pub(crate) glob: bool,
    pub(crate) acked: Option<String>,
}

/// The wake in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Wake {
    pub(crate) id: String,
    pub(crate) snapshot: Vec<StreamOffset>,
    pub(crate) token_hash: Option<String>,
    pub(crate) holder: Option<String>,
    pub(crate) lease_until: Option<u64>,
}

/// The tail of each stream of interest (`None`: the stream does not exist).
pub(crate) type Tails = HashMap<String, Option<String>>;

/// A subscription, folded from its log.
#[derive(Clone, Debug)]
pub(crate) struct Subscription {
    pub(crate) id: String,
    pub(crate) inc: String,
    pub(crate) config: SubscriptionConfig,
    pub(crate) config_hash: String,
    pub(crate) base_url: String,
    pub(crate) created_at: String,
    pub(crate) links: BTreeMap<String, Link>,
    pub(crate) generation: u64,
    pub(crate) wake: Option<Wake>,
    /// Hashes of the last callback tokens handed out, newest last.
    issued: VecDeque<String>,
}

impl Subscription {
    /// The state after the log's first record, or `None` if that record is not a creation.
    pub(crate) fn from_created(id: &str, entry: &Entry) -> Option<Subscription> {
        let Some(Event::Created {
            config,
            config_hash,
            base_url,
            created_at,
            links,
        }) = entry.events.first()
        else {
            return None;
        };
        let mut subscription = Subscription {
            id: id.to_owned(),
            inc: entry.inc.clone(),
            config: config.clone(),
            config_hash: config_hash.clone(),
            base_url: base_url.clone(),
            created_at: created_at.clone(),
            links: BTreeMap::new(),
            generation: 0,
            wake: None,
            issued: VecDeque::new(),
        };
        for seed in links {
            subscription.link(&seed.path, LinkType::Explicit, seed.offset.clone());
        }
        for event in &entry.events[1..] {
            subscription.apply(event);
        }
        Some(subscription)
    }

    /// Folds one event in. Events are only written after the state they were decided on, so
    /// one that no longer fits (its generation passed) changes nothing.
    pub(crate) fn apply(&mut self, event: &Event) {
        match event {
            Event::Created { .. } => {}
            Event::Linked { path, link, acked } => self.link(path, *link, acked.clone()),
            Event::Unlinked { path } => {
                if let Some(link) = self.links.get_mut(path) {
                    link.explicit = false;
                    if !link.glob {
                        self.links.remove(path);
                    }
                }
            }
            Event::Woken {
                generation,
                wake_id,
                snapshot,
                token_hash,
                lease_until,
            } => {
                self.generation = *generation;
                if let Some(hash) = token_hash {
                    self.remember(hash);
                }
                self.wake = Some(Wake {
                    id: wake_id.clone(),
                    snapshot: snapshot.clone(),
                    token_hash: token_hash.clone(),
                    holder: None,
                    lease_until: *lease_until,
                });
            }
            Event::Claimed {
                generation,
                holder,
                token_hash,
                lease_until,
            } => {
                self.remember(token_hash);
                if let Some(wake) = self.current_wake_mut(*generation) {
                    wake.holder = Some(holder.clone());
                    wake.token_hash = Some(token_hash.clone());
                    wake.lease_until = Some(*lease_until);
                }
            }
            Event::Acked {
                generation,
                acks,
                lease_until,
            } => {
                if self.generation == *generation {
                    self.set_acks(acks);
                }
                if let Some(wake) = self.current_wake_mut(*generation) {
                    wake.lease_until = Some(*lease_until);
                }
            }
            Event::Finished { generation, acks } => {
                if self.generation == *generation && self.wake.is_some() {
                    self.set_acks(acks);
                    self.wake = None;
                }
            }
            Event::Cleared { generation } => {
                if self.generation == *generation {
                    self.wake = None;
                }
            }
        }
    }

    fn current_wake_mut(&mut self, generation: u64) -> Option<&mut Wake> {
        if self.generation == generation {
            self.wake.as_mut()
        } else {
            None
        }
    }

    fn link(&mut self, path: &str, kind: LinkType, acked: Option<String>) {
        let link = self.links.entry(path.to_owned()).or_insert(Link {
            explicit: false,
            glob: false,
            acked,
        });
        match kind {
            LinkType::Explicit => link.explicit = true,
            LinkType::Glob => link.glob = true,
        }
    }

    fn set_acks(&mut self, acks: &[StreamOffset]) {
        for ack in acks {
            if let Some(link) = self.links.get_mut(&ack.path) {
                // Never backwards: acks were checked against the state they were decided on.
                if ack.offset > link.acked {
                    link.acked = ack.offset.clone();
                }
            }
        }
    }

    fn remember(&mut self, token_hash: &str) {
        if self.issued.iter().any(|h| h == token_hash) {
            return;
        }
        if self.issued.len() == REMEMBERED_TOKENS {
            self.issued.pop_front();
        }
        self.issued.push_back(token_hash.to_owned());
    }

    /// Whether a token hash was handed out by this subscription (constant time per hash).
    pub(crate) fn issued(&self, token_hash: &str) -> bool {
        self.issued
            .iter()
            .fold(false, |found, h| found | same_secret(h, token_hash))
    }

    /// The first linked stream with pending data (what a wake reports as its trigger).
    pub(crate) fn first_pending(&self, tails: &Tails) -> Option<String> {
        self.links
            .iter()
            .find(|(path, link)| pending(tail_of(tails, path), &link.acked))
            .map(|(path, _)| path.clone())
    }

    /// The tail of every linked stream, as a wake covers it.
    pub(crate) fn snapshot(&self, tails: &Tails) -> Vec<StreamOffset> {
        self.links
            .keys()
            .map(|path| StreamOffset {
                path: path.clone(),
                offset: tail_of(tails, path).clone(),
            })
            .collect()
    }

    /// The streams as wakes and claims list them.
    pub(crate) fn stream_infos(&self, tails: &Tails) -> Vec<Value> {
        self.links
            .iter()
            .map(|(path, link)| {
                let tail = tail_of(tails, path);
                json!({
                    "path": path,
                    "link_type": link.link_type(),
                    "acked_offset": offset_text(&link.acked),
                    "tail_offset": offset_text(tail),
                    "has_pending": pending(tail, &link.acked),
                })
            })
            .collect()
    }

    /// The subscription as `GET` shows it; `base` is the server URL the client used.
    pub(crate) fn to_json(&self, base: &str, kid: &str) -> Value {
        let streams: Vec<Value> = self
            .links
            .iter()
            .map(|(path, link)| {
                json!({
                    "path": path,
                    "link_type": link.link_type(),
                    "acked_offset": offset_text(&link.acked),
                })
            })
            .collect();
        let mut body = json!({
            "id": self.id,
            "subscription_id": self.id,
            "type": self.config.kind,
            "streams": streams,
            "lease_ttl_ms": self.config.lease_ttl_ms,
            "created_at": self.created_at,
            "status": "active",
        });
        if let Some(object) = body.as_object_mut() {
            if let Some(pattern) = &self.config.pattern {
                object.insert("pattern".into(), json!(pattern));
            }
            if let Some(url) = &self.config.webhook_url {
                object.insert(
                    "webhook".into(),
                    json!({
                        "url": url,
                        "signing": {
                            "alg": "ed25519",
                            "kid": kid,
                            "jwks_url": format!("{base}/v1/stream/__ds/jwks.json"),
                        },
                    }),
                );
            }
            if let Some(wake_stream) = &self.config.wake_stream {
                object.insert("wake_stream".into(), json!(wake_stream));
            }
            if let Some(description) = &self.config.description {
                object.insert("description".into(), json!(description));
            }
        }
        body
    }
}

impl Link {
    fn link_type(&self) -> LinkType {
        if self.explicit {
            LinkType::Explicit
        } else {
            LinkType::Glob
        }
    }
}

fn tail_of<'a>(tails: &'a Tails, path: &str) -> &'a Option<String> {
    const ABSENT: &Option<String> = &None;
    tails.get(path).unwrap_or(ABSENT)
}

/// Offsets sort bytewise; "before the first record" sorts below every offset.
fn pending(tail: &Option<String>, acked: &Option<String>) -> bool {
    tail.is_some() && tail > acked
}

/// An offset as the wire shows it.
pub(crate) fn offset_text(offset: &Option<String>) -> &str {
    offset.as_deref().unwrap_or(BEFORE_FIRST)
}

/// Compares two secrets (token hashes) in time independent of where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(streams: &[&str]) -> Subscription {
        let config = SubscriptionConfig::parse(&json!({
            "type": "webhook", "pattern": "events/*", "streams": streams,
            "webhook": { "url": "https://example.com/hook" },
        }))
        .expect("valid");
        let entry = Entry {
            inc: "i1".into(),
            events: vec![Event::Created {
                config_hash: config.hash(),
                config,
                base_url: "http://h".into(),
                created_at: "now".into(),
                links: streams
                    .iter()
                    .map(|s| StreamOffset {
                        path: (*s).into(),
                        offset: None,
                    })
                    .collect(),
            }],
        };
        Subscription::from_created("s", &entry).expect("created")
    }

    #[test]
    fn the_hash_ignores_stream_order_and_repeats() {
        let a = SubscriptionConfig::parse(
            &json!({"type":"pull-wake","streams":["a","b"],"wake_stream":"w"}),
        );
        let b = SubscriptionConfig::parse(
            &json!({"type":"pull-wake","streams":["b","a","a"],"wake_stream":"w"}),
        );
        let c = SubscriptionConfig::parse(
            &json!({"type":"pull-wake","streams":["b"],"wake_stream":"w"}),
        );
        let (a, b, c) = (a.expect("a"), b.expect("b"), c.expect("c"));
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn lease_bounds_are_enforced() {
        for bad in [999, 600_001] {
            let parsed = SubscriptionConfig::parse(
                &json!({"type":"pull-wake","streams":["a"],"wake_stream":"w","lease_ttl_ms":bad}),
            );
            assert!(parsed.is_err(), "{bad}");
        }
    }

    #[test]
    fn oversized_patterns_are_refused() {
        let parse = |pattern: String| {
            SubscriptionConfig::parse(
                &json!({"type":"pull-wake","pattern":pattern,"wake_stream":"w"}),
            )
        };
        assert!(parse(format!("{}z", "**/".repeat(63))).is_ok());
        assert!(
            parse(format!("{}z", "**/".repeat(64))).is_err(),
            "65 segments"
        );
        assert!(parse("a".repeat(1025)).is_err(), "1025 bytes");
    }

    #[test]
    fn reserved_streams_are_refused_as_targets() {
        let refused = [
            json!({"type":"pull-wake","streams":["x"],"wake_stream":"__ds/subscriptions/victim"}),
            json!({"type":"pull-wake","streams":["x","__ds/keys"],"wake_stream":"w"}),
            json!({"type":"pull-wake","pattern":"/__ds/**","wake_stream":"w"}),
            json!({"type":"pull-wake","pattern":"__ds","wake_stream":"w"}),
        ];
        for body in refused {
            assert!(SubscriptionConfig::parse(&body).is_err(), "{body}");
        }
        let allowed = json!({"type":"pull-wake","streams":["__dsx"],"wake_stream":"w/__ds"});
        assert!(SubscriptionConfig::parse(&allowed).is_ok());
    }

    #[test]
    fn a_stale_generation_changes_nothing() {
        let mut s = created(&["a"]);
        let woken = |generation| Event::Woken {
            generation,
            wake_id: format!("w{generation}"),
            snapshot: vec![],
            token_hash: Some(format!("h{generation}")),
            lease_until: Some(10),
        };
        s.apply(&woken(1));
        s.apply(&Event::Cleared { generation: 1 });
        s.apply(&woken(2));
        // A late finish of generation 1 must not end generation 2's wake or move acks.
        s.apply(&Event::Finished {
            generation: 1,
            acks: vec![StreamOffset {
                path: "a".into(),
                offset: Some("9".into()),
            }],
        });
        assert_eq!(s.wake.as_ref().map(|w| w.id.as_str()), Some("w2"));
        assert_eq!(s.links["a"].acked, None);
        assert!(s.issued("h1") && s.issued("h2") && !s.issued("h3"));
    }

    #[test]
    fn pending_compares_tails_with_acks() {
        let mut s = created(&["a", "b"]);
        let mut tails = Tails::new();
        assert_eq!(
            s.first_pending(&tails),
            None,
            "absent streams have nothing pending"
        );
        tails.insert("b".into(), Some("0002".into()));
        assert_eq!(s.first_pending(&tails).as_deref(), Some("b"));
        s.apply(&Event::Woken {
            generation: 1,
            wake_id: "w".into(),
            snapshot: vec![],
            token_hash: None,
            lease_until: None,
        });
        s.apply(&Event::Finished {
            generation: 1,
            acks: vec![StreamOffset {
                path: "b".into(),
                offset: Some("0002".into()),
            }],
        });
        assert_eq!(s.first_pending(&tails), None);
    }
}
