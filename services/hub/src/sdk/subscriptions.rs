//! Channel subscriptions of the SDK, after SpacetimeDB's client: a
//! [`SubscriptionBuilder`] with `on_applied`, `on_error` and `on_message` callbacks, and
//! overlapping subscriptions ref-counted so the server holds one subscription per pattern
//! (each publication arrives once) and unsubscribing one of two overlapping subscriptions
//! keeps the other.
//!
//! The session task keeps the server's subscriptions in step with what the handles want
//! ([`Shared::desired`]) and, after a reconnect, subscribes again with the last offset of
//! every history channel, so what was missed is recovered. A recovered batch is applied to
//! the optional [`ClientCache`] in one step before any callback runs, so callbacks (and
//! readers of the cache) see the whole batch or none of it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::locks::{lock, read, write};
use crate::{AppMessage, ChannelPattern};

/// A publication received on a subscribed channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Publication {
    /// The channel it was published to.
    pub channel: String,
    /// Its data.
    pub data: Value,
    /// Its offset, on history channels.
    pub offset: Option<String>,
    /// The history's epoch, on history channels.
    pub epoch: Option<String>,
}

/// What a (re)subscription to one pattern applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// The pattern (or channel name) subscribed to.
    pub channel: String,
    /// Publications recovered after a reconnect (already in the cache and given to
    /// `on_message`).
    pub recovered: usize,
    /// True when the history no longer reached back: the application should reload its
    /// state, publications were missed.
    pub resync: bool,
}

/// Why a subscription failed.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscriptionError {
    /// The pattern.
    pub channel: String,
    /// The server's error code (`permission_denied`, `bad_channel`, ...).
    pub code: String,
    /// The explanation.
    pub message: String,
}

type Callback<T> = Arc<dyn Fn(&T) + Send + Sync>;

struct Handle {
    patterns: Vec<ChannelPattern>,
    on_applied: Option<Callback<Applied>>,
    on_error: Option<Callback<SubscriptionError>>,
    on_message: Option<Callback<Publication>>,
    gate: Gate,
}

/// Lets removing a handle wait for a callback of it that is running, so that none runs once
/// `unsubscribe` returned (the session task works on a snapshot of the handles). Removing it
/// from its own callback cannot wait for itself: later callbacks are stopped all the same.
#[derive(Default)]
struct Gate {
    /// Held while a callback runs.
    running: Mutex<()>,
    /// The thread running a callback now.
    runner: Mutex<Option<std::thread::ThreadId>>,
    closed: std::sync::atomic::AtomicBool,
}

impl Gate {
    fn run(&self, callback: impl FnOnce()) {
        let _running = lock(&self.running);
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        *lock(&self.runner) = Some(std::thread::current().id());
        callback();
        *lock(&self.runner) = None;
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if *lock(&self.runner) != Some(std::thread::current().id()) {
            drop(lock(&self.running));
        }
    }
}

impl Handle {
    fn has(&self, pattern: &str) -> bool {
        self.patterns.iter().any(|p| p.as_str() == pattern)
    }

    fn matches(&self, channel: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(channel))
    }
}

/// The last publications of each channel, kept when the client is built with
/// [`cache`](super::HubClientBuilder::cache).
#[derive(Clone, Debug, Default)]
pub struct ClientCache {
    inner: Arc<RwLock<HashMap<String, Vec<Publication>>>>,
    per_channel: usize,
}

impl ClientCache {
    /// The cached publications of `channel`, oldest first.
    pub fn publications(&self, channel: &str) -> Vec<Publication> {
        read(&self.inner).get(channel).cloned().unwrap_or_default()
    }

    /// Applies `batch` in one step.
    fn apply(&self, batch: &[Publication]) {
        if batch.is_empty() {
            return;
        }
        let mut cache = write(&self.inner);
        for publication in batch {
            let kept = cache.entry(publication.channel.clone()).or_default();
            kept.push(publication.clone());
            if kept.len() > self.per_channel {
                let excess = kept.len() - self.per_channel;
                kept.drain(..excess);
            }
        }
    }
}

/// Live offsets remembered per history channel past the last `subscribed` reply.
const SEEN_KEPT: usize = 1024;

/// Where the client stands on one history channel.
///
/// Publications of concurrent publishers can arrive out of offset order (`07` before `06`),
/// so an offset below the newest one seen is not proof of a duplicate: the offsets handled
/// are remembered (the newest [`SEEN_KEPT`]) and only those, or ones the last `subscribed`
/// reply covered, are dropped.
struct Position {
    epoch: String,
    /// Everything up to here was handled (the reply covered it, or it fell out of `seen`).
    floor: String,
    /// Live offsets handled past `floor`.
    seen: BTreeSet<String>,
}

impl Position {
    fn new(offset: &str, epoch: &str) -> Position {
        Position {
            epoch: epoch.to_owned(),
            floor: offset.to_owned(),
            seen: BTreeSet::new(),
        }
    }

    /// The newest offset handled: where a recovery continues from.
    fn last(&self) -> &str {
        self.seen.last().unwrap_or(&self.floor)
    }

    /// Records a live publication at `offset`; false when it was handled already.
    fn handle(&mut self, offset: &str) -> bool {
        if offset <= self.floor.as_str() || !self.seen.insert(offset.to_owned()) {
            return false;
        }
        if self.seen.len() > SEEN_KEPT
            && let Some(oldest) = self.seen.pop_first()
        {
            self.floor = oldest;
        }
        true
    }
}

/// What the handles and the session task share.
pub(crate) struct Shared {
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    /// Patterns wanted on the server, with how many handles want each.
    desired: Mutex<HashMap<String, usize>>,
    /// Wanted patterns the server refused for good: not asked again until a new
    /// subscription wants them.
    refused: Mutex<HashSet<String>>,
    /// Where the client stands per history channel, to drop duplicates and to recover after
    /// a reconnect.
    positions: Mutex<HashMap<String, Position>>,
    pub(crate) cache: Option<ClientCache>,
    /// Wakes the session task when `desired` changed.
    pub(crate) changed: Notify,
    next_handle: AtomicU64,
}

impl Shared {
    pub(crate) fn new(cache_per_channel: Option<usize>) -> Shared {
        Shared {
            handles: Mutex::new(HashMap::new()),
            desired: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashSet::new()),
            positions: Mutex::new(HashMap::new()),
            cache: cache_per_channel.map(|per_channel| ClientCache {
                inner: Arc::default(),
                per_channel: per_channel.max(1),
            }),
            changed: Notify::new(),
            next_handle: AtomicU64::new(1),
        }
    }

    fn handles(&self) -> Vec<Arc<Handle>> {
        lock(&self.handles).values().cloned().collect()
    }

    /// The patterns the server should hold now.
    pub(crate) fn desired(&self) -> HashSet<String> {
        // Lock order: desired, then refused (as in `add` and `remove`).
        let desired = lock(&self.desired);
        let refused = lock(&self.refused);
        desired
            .keys()
            .filter(|pattern| !refused.contains(*pattern))
            .cloned()
            .collect()
    }

    /// The `subscribe` data for `pattern`: with the last position on that channel, if any.
    pub(crate) fn subscribe_data(&self, pattern: &str) -> Value {
        match lock(&self.positions).get(pattern) {
            Some(position) => {
                let (offset, epoch) = (position.last(), &position.epoch);
                json!({ "channel": pattern, "since": { "offset": offset, "epoch": epoch } })
            }
            None => json!({ "channel": pattern }),
        }
    }

    /// Handles a `subscribed` reply for `pattern` (after a reconnect or the first time).
    pub(crate) fn applied(&self, pattern: &str, reply: &AppMessage) {
        let data = &reply.data;
        let resync = data["resync"].as_bool().unwrap_or(false);
        let epoch = data["epoch"].as_str().map(str::to_owned);
        let mut batch = Vec::new();
        if let Some(publications) = data["publications"].as_array() {
            for p in publications {
                batch.push(Publication {
                    channel: pattern.to_owned(),
                    data: p["data"].clone(),
                    offset: p["offset"].as_str().map(str::to_owned),
                    epoch: epoch.clone(),
                });
            }
        }
        if let (Some(offset), Some(epoch)) = (data["offset"].as_str(), &epoch) {
            lock(&self.positions).insert(pattern.to_owned(), Position::new(offset, epoch));
        }
        // The whole batch is in the cache before any callback runs.
        if let Some(cache) = &self.cache {
            cache.apply(&batch);
        }
        let handles = self.handles();
        for publication in &batch {
            for handle in handles.iter().filter(|h| h.matches(&publication.channel)) {
                if let Some(on_message) = &handle.on_message {
                    handle.gate.run(|| on_message(publication));
                }
            }
        }
        let applied = Applied {
            channel: pattern.to_owned(),
            recovered: batch.len(),
            resync,
        };
        for handle in handles.iter().filter(|h| h.has(pattern)) {
            if let Some(on_applied) = &handle.on_applied {
                handle.gate.run(|| on_applied(&applied));
            }
        }
    }

    /// Subscribing `pattern` failed for good (refused by the server, or the retry policy
    /// gave up): its subscriptions' `on_error` hears it once, and it is not asked again.
    pub(crate) fn refused(&self, pattern: &str, code: &str, message: &str) {
        lock(&self.refused).insert(pattern.to_owned());
        let error = SubscriptionError {
            channel: pattern.to_owned(),
            code: code.to_owned(),
            message: message.to_owned(),
        };
        for handle in self.handles().iter().filter(|h| h.has(pattern)) {
            if let Some(on_error) = &handle.on_error {
                handle.gate.run(|| on_error(&error));
            }
        }
    }

    /// Handles a `publication` message; false when it is not one.
    pub(crate) fn publication(&self, message: &AppMessage) -> bool {
        if message.message_type != "publication" {
            return false;
        }
        let data = &message.data;
        let Some(channel) = data["channel"].as_str() else {
            return false;
        };
        let publication = Publication {
            channel: channel.to_owned(),
            data: data["data"].clone(),
            offset: data["offset"].as_str().map(str::to_owned),
            epoch: data["epoch"].as_str().map(str::to_owned),
        };
        let tracked = lock(&self.desired).contains_key(channel);
        if let (true, Some(offset), Some(epoch)) =
            (tracked, &publication.offset, &publication.epoch)
        {
            let mut positions = lock(&self.positions);
            match positions.get_mut(channel) {
                Some(position) if position.epoch == *epoch => {
                    if !position.handle(offset) {
                        return true;
                    }
                }
                _ => {
                    positions.insert(channel.to_owned(), Position::new(offset, epoch));
                }
            }
        }
        if let Some(cache) = &self.cache {
            cache.apply(std::slice::from_ref(&publication));
        }
        for handle in self.handles().iter().filter(|h| h.matches(channel)) {
            if let Some(on_message) = &handle.on_message {
                handle.gate.run(|| on_message(&publication));
            }
        }
        true
    }

    fn add(&self, handle: Handle) -> u64 {
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        {
            let mut desired = lock(&self.desired);
            let mut refused = lock(&self.refused);
            for pattern in &handle.patterns {
                *desired.entry(pattern.as_str().to_owned()).or_default() += 1;
                // A new subscription asks again for what was refused before.
                refused.remove(pattern.as_str());
            }
        }
        lock(&self.handles).insert(id, Arc::new(handle));
        self.changed.notify_one();
        id
    }

    fn remove(&self, id: u64) {
        // Gone from the handles, and a callback of it running on the session task finished:
        // none runs after this returns.
        let Some(handle) = lock(&self.handles).remove(&id) else {
            return;
        };
        handle.gate.close();
        let mut unwanted = Vec::new();
        {
            let mut desired = lock(&self.desired);
            for pattern in &handle.patterns {
                if let Some(count) = desired.get_mut(pattern.as_str()) {
                    *count -= 1;
                    if *count == 0 {
                        desired.remove(pattern.as_str());
                        lock(&self.refused).remove(pattern.as_str());
                        unwanted.push(pattern.as_str().to_owned());
                    }
                }
            }
        }
        let mut positions = lock(&self.positions);
        for pattern in unwanted {
            positions.remove(&pattern);
        }
        drop(positions);
        self.changed.notify_one();
    }
}

/// Builds a subscription; see [`HubClient::subscription_builder`](super::HubClient::subscription_builder).
pub struct SubscriptionBuilder {
    shared: Arc<Shared>,
    on_applied: Option<Callback<Applied>>,
    on_error: Option<Callback<SubscriptionError>>,
    on_message: Option<Callback<Publication>>,
}

impl std::fmt::Debug for SubscriptionBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionBuilder")
            .finish_non_exhaustive()
    }
}

impl SubscriptionBuilder {
    pub(crate) fn new(shared: Arc<Shared>) -> SubscriptionBuilder {
        SubscriptionBuilder {
            shared,
            on_applied: None,
            on_error: None,
            on_message: None,
        }
    }

    /// Called when the server applied a pattern of this subscription (again after each
    /// reconnect, with what was recovered).
    pub fn on_applied(mut self, callback: impl Fn(&Applied) + Send + Sync + 'static) -> Self {
        self.on_applied = Some(Arc::new(callback));
        self
    }

    /// Called when the server refused a pattern of this subscription.
    pub fn on_error(
        mut self,
        callback: impl Fn(&SubscriptionError) + Send + Sync + 'static,
    ) -> Self {
        self.on_error = Some(Arc::new(callback));
        self
    }

    /// Called once per publication on a channel any pattern of this subscription matches.
    pub fn on_message(mut self, callback: impl Fn(&Publication) + Send + Sync + 'static) -> Self {
        self.on_message = Some(Arc::new(callback));
        self
    }

    /// Subscribes to `patterns` (channel names or `*` / `**` patterns). Invalid patterns are
    /// reported to `on_error` and left out.
    pub fn subscribe<S: AsRef<str>>(
        self,
        patterns: impl IntoIterator<Item = S>,
    ) -> SubscriptionHandle {
        let mut valid = Vec::new();
        for text in patterns {
            let text = text.as_ref();
            match ChannelPattern::parse(text) {
                Ok(pattern) => valid.push(pattern),
                Err(e) => {
                    if let Some(on_error) = &self.on_error {
                        on_error(&SubscriptionError {
                            channel: text.to_owned(),
                            code: "bad_channel".into(),
                            message: e.to_string(),
                        });
                    }
                }
            }
        }
        let id = self.shared.add(Handle {
            patterns: valid,
            on_applied: self.on_applied,
            on_error: self.on_error,
            on_message: self.on_message,
            gate: Gate::default(),
        });
        SubscriptionHandle {
            shared: self.shared,
            id,
            ended: false,
        }
    }
}

/// One subscription. Unsubscribing (or dropping the handle) stops its callbacks at once;
/// the server subscription of a pattern goes when no other subscription wants it.
pub struct SubscriptionHandle {
    shared: Arc<Shared>,
    id: u64,
    ended: bool,
}

impl std::fmt::Debug for SubscriptionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionHandle")
            .field("id", &self.id)
            .finish()
    }
}

impl SubscriptionHandle {
    /// Ends this subscription.
    pub fn unsubscribe(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if !std::mem::replace(&mut self.ended, true) {
            self.shared.remove(self.id);
        }
    }
}

impl Drop for SubscriptionHandle {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn received(shared: &Shared) -> Arc<Mutex<Vec<String>>> {
        let got: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = got.clone();
        shared.add(Handle {
            patterns: vec![ChannelPattern::parse("feed.x").expect("pattern")],
            on_applied: None,
            on_error: None,
            on_message: Some(Arc::new(move |p: &Publication| {
                lock(&sink).push(p.offset.clone().unwrap_or_default());
            })),
            gate: Gate::default(),
        });
        got
    }

    #[test]
    fn unsubscribe_returns_only_after_a_running_callback_of_it_ended() {
        let shared = Arc::new(Shared::new(None));
        let events: Arc<Mutex<Vec<&str>>> = Arc::default();
        let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Mutex::new(released);
        let log = events.clone();
        let id = shared.add(Handle {
            patterns: vec![ChannelPattern::parse("feed.x").expect("pattern")],
            on_applied: None,
            on_error: None,
            on_message: Some(Arc::new(move |_: &Publication| {
                let _ = entered_tx.send(());
                let _ = lock(&released).recv();
                lock(&log).push("callback ended");
            })),
            gate: Gate::default(),
        });
        let session = {
            let shared = shared.clone();
            std::thread::spawn(move || live(&shared, "01"))
        };
        entered.recv().expect("the callback runs");
        let owner = {
            let (shared, log) = (shared.clone(), events.clone());
            std::thread::spawn(move || {
                shared.remove(id);
                lock(&log).push("unsubscribed");
            })
        };
        // Long enough for a remove that does not wait to have returned.
        std::thread::sleep(Duration::from_millis(100));
        release.send(()).expect("release");
        owner.join().expect("owner");
        session.join().expect("session");
        assert_eq!(*lock(&events), ["callback ended", "unsubscribed"]);
        // And none after it.
        live(&shared, "02");
        assert_eq!(lock(&events).len(), 2);
    }

    fn live(shared: &Shared, offset: &str) {
        let body = json!({"channel": "feed.x", "data": 1, "offset": offset, "epoch": "e"});
        assert!(shared.publication(&AppMessage::new(0, "publication", body)));
    }

    #[test]
    fn a_late_publication_below_the_last_offset_is_delivered_once_not_dropped() {
        let shared = Shared::new(None);
        let got = received(&shared);
        let reply = json!({"channel": "feed.x", "offset": "05", "epoch": "e"});
        shared.applied("feed.x", &AppMessage::new(1, "subscribed", reply));
        // Concurrent publishers: 07 can overtake 06 on its way here.
        for offset in ["07", "06", "06", "07", "04", "05", "08"] {
            live(&shared, offset);
        }
        assert_eq!(*lock(&got), ["07", "06", "08"], "each once, none below 05");
        let since = shared.subscribe_data("feed.x");
        assert_eq!(since["since"]["offset"], "08", "{since}");
    }
}
