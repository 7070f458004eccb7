//! The reserved subscription APIs (`{root}/__ds/...`): webhook and pull-wake subscriptions to
//! streams named explicitly or by a glob pattern, signed webhook deliveries, callback and
//! pull-wake acknowledgements fenced by wake generation, subscription-scoped leases.
//!
//! State lives in reserved streams of the server's storage ([`store`]), so it survives
//! restarts and is shared by every node of a shared storage; changes are compare-and-set
//! appends, so a wake is started, and delivered, by one node. Appends made through this
//! server are handed to a background task that links matching streams and starts wakes; the
//! same task expires leases.

mod delivery;
mod delivery_error;
mod errors;
mod glob;
mod keys;
mod model;
mod operations;
pub(crate) mod routes;
mod settings;
mod store;
mod target;
mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use courier_impls::retry::{Retry, TracingObserver};
use courier_traits::storage::{AppendRequest, Offset, StorageError, StreamName, StreamStorage};
use rand::RngCore;
use serde_json::{Value, json};
use tokio::sync::{Notify, OnceCell};
use tokio_util::sync::CancellationToken;

use delivery_error::DeliveryError;
use errors::ApiError;
use keys::SigningKey;
use model::{Event, Kind, Subscription, Tails};
use store::Store;
use target::WebhookTarget;

pub use settings::SubscriptionSettings;

/// How many times a change is decided again after losing a race to another writer.
const MAX_COMMIT_ATTEMPTS: usize = 16;
/// Every this many lease checks, every subscription is read afresh (wakes started by nodes
/// that have since stopped expire here too).
const SWEEP_EVERY_CHECKS: u32 = 20;

/// The subscription service of one server. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Subscriptions(Arc<Inner>);

struct Inner {
    store: Store,
    settings: SubscriptionSettings,
    key: OnceCell<SigningKey>,
    /// TLS settings for `https` receivers, built at the first such delivery.
    tls: OnceLock<Arc<tokio_rustls::rustls::ClientConfig>>,
    /// Streams appended to since the background task last looked, each with the offset
    /// before its earliest such append (`None`: from its start).
    appended: Mutex<HashMap<StreamName, Option<Offset>>>,
    appended_signal: Arc<Notify>,
    /// Stops the background task and every delivery.
    stop: CancellationToken,
    started: OnceLock<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What a decided change does once it is committed.
enum Effect {
    /// POST the wake to the webhook.
    Deliver {
        id: String,
        generation: u64,
        url: String,
        body: Bytes,
    },
    /// Append a wake event to the pull-wake subscription's wake stream.
    WakeEvent { stream: String, body: Bytes },
}

/// A change under construction: events decided so far, applied to a scratch copy so later
/// decisions see them.
struct Draft {
    state: Subscription,
    events: Vec<Event>,
    effects: Vec<Effect>,
}

impl Draft {
    fn push(&mut self, event: Event) {
        self.state.apply(&event);
        self.events.push(event);
    }
}

impl Subscriptions {
    /// The service over `storage`; its background work stops when `stop` is cancelled.
    pub(crate) fn new(
        storage: Arc<dyn StreamStorage>,
        settings: SubscriptionSettings,
        stop: CancellationToken,
    ) -> Subscriptions {
        Subscriptions(Arc::new(Inner {
            store: Store::new(storage),
            settings,
            key: OnceCell::new(),
            tls: OnceLock::new(),
            appended: Mutex::new(HashMap::new()),
            appended_signal: Arc::new(Notify::new()),
            stop,
            started: OnceLock::new(),
        }))
    }

    fn now_ms(&self) -> u64 {
        self.0.settings.clock.now_ms()
    }

    async fn key(&self) -> Result<&SigningKey, StorageError> {
        self.0
            .key
            .get_or_try_init(|| SigningKey::load_or_create(self.0.store.storage()))
            .await
    }

    /// Starts the background task on first use (the server may be built outside a runtime):
    /// when the server starts serving, or at the first subscription request or append.
    pub(crate) fn ensure_started(&self) {
        self.0.started.get_or_init(|| {
            let weak = Arc::downgrade(&self.0);
            let stop = self.0.stop.clone();
            let signal = self.0.appended_signal.clone();
            let interval = self.0.settings.lease_check_interval;
            tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = background(weak, signal, interval) => {}
                }
            });
        });
    }

    /// Tells the service that `stream` got records after `before` (`None`: a stream created
    /// with records) through this server.
    pub(crate) fn appended(&self, stream: &StreamName, before: Option<Offset>) {
        if stream.as_str().starts_with("__ds/") {
            return;
        }
        self.ensure_started();
        let mut appended = self
            .0
            .appended
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let earliest = appended.entry(stream.clone()).or_insert(before.clone());
        if before < *earliest {
            *earliest = before;
        }
        drop(appended);
        self.0.appended_signal.notify_one();
    }

    /// The tail of each linked stream and of `extra`.
    async fn tails(&self, sub: &Subscription, extra: Option<&str>) -> Result<Tails, StorageError> {
        let mut tails = Tails::new();
        for path in sub.links.keys().map(String::as_str).chain(extra) {
            if tails.contains_key(path) {
                continue;
            }
            tails.insert(path.to_owned(), self.tail(path).await?);
        }
        Ok(tails)
    }

    async fn tail(&self, path: &str) -> Result<Option<String>, StorageError> {
        let Ok(name) = StreamName::new(path) else {
            return Ok(None);
        };
        match self.0.store.storage().head(&name).await {
            Ok(info) => Ok(Some(info.next_offset.as_str().to_owned())),
            Err(StorageError::NotFound { .. } | StorageError::Gone { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Decides a change of subscription `id` on its current state and commits it, deciding
    /// again if another writer changed the log meanwhile. `decide` sees the state and the
    /// tails of its streams (and of `extra`); its events are committed together, and its
    /// effects run only if they were.
    async fn commit<T>(
        &self,
        id: &str,
        extra: Option<&str>,
        decide: impl FnMut(&mut Draft, &Tails, u64) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.commit_reading(id, extra, TailsNeeded::Always, decide)
            .await
    }

    /// [`Self::commit`], reading the tails only when `needed` says so (no tails: `decide`
    /// sees an empty map).
    async fn commit_reading<T>(
        &self,
        id: &str,
        extra: Option<&str>,
        needed: TailsNeeded,
        mut decide: impl FnMut(&mut Draft, &Tails, u64) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let Some(loaded) = self.0.store.load(id).await? else {
                return Err(ApiError::not_found());
            };
            let tails = match needed {
                TailsNeeded::UnlessWaking if loaded.sub.wake.is_some() => Tails::new(),
                _ => self.tails(&loaded.sub, extra).await?,
            };
            let mut draft = Draft {
                state: loaded.sub.clone(),
                events: Vec::new(),
                effects: Vec::new(),
            };
            let answer = decide(&mut draft, &tails, self.now_ms())?;
            if draft.events.is_empty() {
                return Ok(answer);
            }
            if self.0.store.append(&loaded, &draft.events).await?.is_some() {
                for effect in draft.effects {
                    self.run(effect).await;
                }
                return Ok(answer);
            }
        }
        Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "CONTENTION",
            "the subscription changed too often to apply this request; try again",
        ))
    }

    /// Starts a wake if none is running and a stream has data past its ack.
    fn wake_if_pending(&self, draft: &mut Draft, tails: &Tails, now: u64) -> bool {
        if draft.state.wake.is_some() {
            return false;
        }
        let Some(trigger) = draft.state.first_pending(tails) else {
            return false;
        };
        let generation = draft.state.generation + 1;
        let wake_id = format!("w_{}", random_hex(12));
        let snapshot = draft.state.snapshot(tails);
        let sub = &draft.state;
        match sub.config.kind {
            Kind::Webhook => {
                let token = random_token();
                let body = json!({
                    "subscription_id": sub.id,
                    "wake_id": wake_id,
                    "generation": generation,
                    "streams": sub.stream_infos(tails),
                    "callback_url": action_url(&sub.base_url, &sub.id, "callback"),
                    "callback_token": token,
                });
                let effect = Effect::Deliver {
                    id: sub.id.clone(),
                    generation,
                    url: sub.config.webhook_url.clone().unwrap_or_default(),
                    body: Bytes::from(body.to_string()),
                };
                draft.push(Event::Woken {
                    generation,
                    wake_id,
                    snapshot,
                    token_hash: Some(token_hash(&token)),
                    lease_until: Some(now + sub.config.lease_ttl_ms),
                });
                draft.effects.push(effect);
            }
            Kind::PullWake => {
                let body = json!({
                    "type": "wake",
                    "subscription_id": sub.id,
                    "stream": trigger,
                    "generation": generation,
                    "ts": now,
                });
                let effect = sub
                    .config
                    .wake_stream
                    .clone()
                    .map(|stream| Effect::WakeEvent {
                        stream,
                        body: Bytes::from(body.to_string()),
                    });
                draft.push(Event::Woken {
                    generation,
                    wake_id,
                    snapshot,
                    token_hash: None,
                    lease_until: None,
                });
                draft.effects.extend(effect);
            }
        }
        true
    }

    /// Starts a wake if data is pending and none runs. Called after a change that ended a
    /// wake: an append made while the wake ran was seen by neither the ending change (its
    /// tails may have been read before the append) nor the append's own check (which saw the
    /// wake still running); this check, made after the end was committed, sees it.
    async fn settle(&self, id: &str) {
        let result = self
            .commit_reading(id, None, TailsNeeded::UnlessWaking, |draft, tails, now| {
                self.wake_if_pending(draft, tails, now);
                Ok(())
            })
            .await;
        if let Err(e) = result
            && e.code() != "SUBSCRIPTION_NOT_FOUND"
        {
            tracing::warn!(subscription = %id, code = e.code(), "cannot check for pending data");
        }
    }

    async fn run(&self, effect: Effect) {
        match effect {
            Effect::Deliver {
                id,
                generation,
                url,
                body,
            } => {
                let delivery = self.clone().deliver(id, generation, url, body);
                let stop = self.0.stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = delivery => {}
                    }
                });
            }
            Effect::WakeEvent { stream, body } => {
                // Through the same name check as a client append: a wake never lands in a
                // reserved stream, even from a subscription stored before targets were checked.
                let Ok(name) = crate::server::request::stream_name(&stream) else {
                    tracing::warn!(stream = %stream, "pull-wake stream is not a valid stream name");
                    return;
                };
                let request = AppendRequest::record(body).with_content_type("application/json");
                if let Err(e) = self.0.store.storage().append(&name, request).await {
                    // The wake is recorded in the log: a worker can still claim it.
                    tracing::warn!(stream = %name, error = %e, "cannot append a pull-wake event");
                }
            }
        }
    }

    /// Delivers one wake, retrying by the configured policy while the wake is current; a
    /// synchronous `{"done":true}` answer acknowledges the wake's snapshot.
    /// Boxed: a delivery's auto-ack can start the next wake, whose delivery is spawned from
    /// within; the box gives that recursion a nameable, `Send` type.
    fn deliver(
        self,
        id: String,
        generation: u64,
        url: String,
        body: Bytes,
    ) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move { self.deliver_now(id, generation, url, body).await })
    }

    async fn deliver_now(&self, id: String, generation: u64, url: String, body: Bytes) {
        let settings = &self.0.settings;
        let retry = Retry::new(settings.webhook_retry.clone())
            .observer(Arc::new(TracingObserver))
            .cancel_on(self.0.stop.clone());
        let outcome = retry
            .run(|attempt| {
                let (id, url, body) = (&id, &url, body.clone());
                async move {
                    if attempt > 1 && !self.wake_is_current(id, generation).await {
                        return Err(DeliveryError::Superseded);
                    }
                    let target = WebhookTarget::parse(url).map_err(DeliveryError::Refused)?;
                    let addrs = target
                        .resolve(settings.allow_loopback_webhooks)
                        .await
                        .map_err(DeliveryError::Refused)?;
                    let key = self
                        .key()
                        .await
                        .map_err(|e| DeliveryError::Unreachable(e.to_string()))?;
                    let tls = if target.https {
                        Some(self.tls_config()?)
                    } else {
                        None
                    };
                    let attempt = delivery::Attempt {
                        target: &target,
                        addrs: &addrs,
                        tls,
                        key,
                        unix_seconds: self.now_ms() / 1000,
                    };
                    delivery::post(attempt, body, settings.webhook_timeout).await
                }
            })
            .await;
        match outcome {
            Ok(answer) => {
                let done = serde_json::from_slice::<Value>(&answer)
                    .ok()
                    .and_then(|v| v.get("done").and_then(Value::as_bool))
                    == Some(true);
                if done && let Err(e) = self.finish_delivered(&id, generation).await {
                    tracing::warn!(subscription = %id, code = e.code(), "cannot auto-ack a webhook wake");
                }
            }
            Err(e) => {
                tracing::warn!(subscription = %id, generation, error = %e, "webhook delivery gave up");
            }
        }
    }

    fn tls_config(&self) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, DeliveryError> {
        if let Some(config) = self.0.tls.get() {
            return Ok(config.clone());
        }
        let config = tls::client_config(&self.0.settings.webhook_root_certificates)?;
        Ok(self.0.tls.get_or_init(|| config).clone())
    }

    async fn wake_is_current(&self, id: &str, generation: u64) -> bool {
        match self.0.store.load(id).await {
            Ok(Some(loaded)) => loaded.sub.generation == generation && loaded.sub.wake.is_some(),
            Ok(None) => false,
            // Unknown: keep trying; the lease bounds how long a stale wake is retried.
            Err(_) => true,
        }
    }

    /// A receiver answered `{"done":true}`: its wake's snapshot is acknowledged.
    async fn finish_delivered(&self, id: &str, generation: u64) -> Result<(), ApiError> {
        let finished = self
            .commit(id, None, |draft, tails, now| {
                let Some(wake) = draft.state.wake.as_ref() else {
                    return Ok(());
                };
                if draft.state.generation != generation {
                    return Ok(());
                }
                let acks = wake.snapshot.clone();
                draft.push(Event::Finished { generation, acks });
                self.wake_if_pending(draft, tails, now);
                Ok(())
            })
            .await;
        self.settle(id).await;
        finished
    }

    /// Ends wakes whose lease expired, and starts the next where data is pending. `all`
    /// first reads every subscription afresh and wakes those with pending data and no wake.
    pub(crate) async fn expire_leases(&self, all: bool) -> Result<(), StorageError> {
        if all {
            // Also a safety net: data left pending without a wake (appended just before a
            // restart, or by a node that stopped before handing the append on) wakes here.
            for id in self.0.store.ids().await? {
                self.settle(&id).await;
            }
        }
        let now = self.now_ms();
        for sub in self.0.store.cached_all() {
            let expired = sub
                .wake
                .as_ref()
                .and_then(|w| w.lease_until)
                .is_some_and(|until| until <= now);
            if !expired {
                continue;
            }
            let result = self
                .commit(&sub.id, None, |draft, tails, now| {
                    let Some(until) = draft.state.wake.as_ref().and_then(|w| w.lease_until) else {
                        return Ok(());
                    };
                    if until > now {
                        return Ok(());
                    }
                    let generation = draft.state.generation;
                    draft.push(Event::Cleared { generation });
                    self.wake_if_pending(draft, tails, now);
                    Ok(())
                })
                .await;
            if let Err(e) = result {
                tracing::debug!(subscription = %sub.id, code = e.code(), "lease expiry not applied");
            }
            self.settle(&sub.id).await;
        }
        Ok(())
    }

    /// Links `stream` to the subscriptions whose pattern matches it (at `before`, the offset
    /// before the append) and wakes the ones it belongs to.
    async fn on_append(
        &self,
        stream: &StreamName,
        before: &Option<Offset>,
    ) -> Result<(), StorageError> {
        let path = stream.as_str();
        for id in self.0.store.ids().await? {
            if !self.0.store.may_concern(&id, path) {
                continue;
            }
            let result = self
                .commit_reading(
                    &id,
                    Some(path),
                    TailsNeeded::UnlessWaking,
                    |draft, tails, now| {
                        let matches = draft
                            .state
                            .config
                            .pattern
                            .as_deref()
                            .is_some_and(|p| glob::matches(p, path));
                        let link = draft.state.links.get(path);
                        if matches && !link.is_some_and(|l| l.glob) {
                            // A stream joins at the offset before the append that made it join:
                            // what it held before the subscription saw it is not news.
                            let acked = match link {
                                Some(link) => link.acked.clone(),
                                None => before.as_ref().map(|o| o.as_str().to_owned()),
                            };
                            draft.push(Event::Linked {
                                path: path.to_owned(),
                                link: model::LinkType::Glob,
                                acked,
                            });
                        }
                        if draft.state.links.contains_key(path) {
                            self.wake_if_pending(draft, tails, now);
                        }
                        Ok(())
                    },
                )
                .await;
            match result {
                Ok(()) => {}
                Err(e) if e.code() == "SUBSCRIPTION_NOT_FOUND" => {}
                Err(e) => {
                    tracing::warn!(subscription = %id, stream = %path, code = e.code(), "cannot apply an append");
                }
            }
        }
        Ok(())
    }
}

/// Which stream tails a change reads before deciding.
#[derive(Clone, Copy)]
enum TailsNeeded {
    Always,
    /// Only when no wake is outstanding: for changes whose only use of the tails is starting
    /// a wake, which cannot happen while one runs (a `**` subscription links many streams, and
    /// reading every tail on every append was one storage call per linked stream).
    UnlessWaking,
}

/// The background task: handles appends as they come and checks leases periodically. It
/// holds the service only while working, so dropping the server stops it.
async fn background(inner: Weak<Inner>, signal: Arc<Notify>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checks: u32 = 0;
    loop {
        let mut lease_check = false;
        tokio::select! {
            () = signal.notified() => {}
            _ = ticker.tick() => lease_check = true,
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let service = Subscriptions(strong);
        let batch: Vec<(StreamName, Option<Offset>)> = {
            let mut appended = service
                .0
                .appended
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            appended.drain().collect()
        };
        for (stream, before) in &batch {
            if let Err(e) = service.on_append(stream, before).await {
                tracing::warn!(stream = %stream, error = %e, "subscriptions: cannot read the subscription index");
            }
        }
        if lease_check {
            checks = checks.wrapping_add(1);
            if let Err(e) = service
                .expire_leases(checks.is_multiple_of(SWEEP_EVERY_CHECKS))
                .await
            {
                tracing::warn!(error = %e, "subscriptions: lease check failed");
            }
        }
    }
}

/// The URL of a subscription action (`callback`, `claim`, ...) under `base`.
fn action_url(base: &str, id: &str, action: &str) -> String {
    format!("{base}/v1/stream/__ds/subscriptions/{id}/{action}")
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh bearer token for callbacks and pull-wake acks (256 bits).
fn random_token() -> String {
    let mut buf = [0u8; 32];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// What the log keeps of a token: its SHA-256, never the token.
fn token_hash(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}
