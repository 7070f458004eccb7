//! What each subscription request does to the subscription's state.

use axum::http::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::errors::ApiError;
use super::model::{
    BEFORE_FIRST, Entry, Event, Kind, LinkType, StreamOffset, Subscription, SubscriptionConfig,
    Tails, Wake, normalize_path, same_secret,
};
use super::target::WebhookTarget;
use super::{Draft, Subscriptions, random_hex, random_token, token_hash};
use crate::server::subscriptions::store::valid_id;

/// The body of a callback, ack or release.
pub(crate) struct WakeRequest {
    wake_id: Option<String>,
    generation: Option<u64>,
    acks: Vec<StreamOffset>,
    done: bool,
}

impl WakeRequest {
    pub(crate) fn parse(body: &Value) -> Result<WakeRequest, ApiError> {
        let mut acks = Vec::new();
        if let Some(list) = body.get("acks").and_then(Value::as_array) {
            for ack in list {
                let stream = ack
                    .get("stream")
                    .or_else(|| ack.get("path"))
                    .and_then(Value::as_str)
                    .map(normalize_path)
                    .unwrap_or_default();
                let Some(offset) = ack.get("offset").and_then(Value::as_str) else {
                    return Err(ApiError::invalid("every ack needs a string offset"));
                };
                acks.push(StreamOffset {
                    path: stream,
                    offset: Some(offset.to_owned()),
                });
            }
        }
        Ok(WakeRequest {
            wake_id: body
                .get("wake_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            generation: body.get("generation").and_then(Value::as_u64),
            acks,
            done: body.get("done").and_then(Value::as_bool) == Some(true),
        })
    }
}

/// Whether `kind` may use an action meant for `wanted`.
fn require(sub: &Subscription, wanted: Kind) -> Result<(), ApiError> {
    if sub.config.kind == wanted {
        Ok(())
    } else {
        Err(ApiError::invalid(match wanted {
            Kind::PullWake => "Subscription is not pull-wake",
            Kind::Webhook => "Subscription is not a webhook",
        }))
    }
}

/// The current wake, if `token` is its token and the request names its generation.
/// A token this subscription issued for an earlier wake is `FENCED`; any other is refused.
fn check_token<'a>(
    sub: &'a Subscription,
    token: &str,
    request: &WakeRequest,
) -> Result<&'a Wake, ApiError> {
    let hash = token_hash(token);
    let current = sub.wake.as_ref().filter(|w| {
        w.token_hash
            .as_deref()
            .is_some_and(|h| same_secret(h, &hash))
    });
    match current {
        Some(wake)
            if request.generation == Some(sub.generation)
                && request.wake_id.as_deref() == Some(wake.id.as_str()) =>
        {
            Ok(wake)
        }
        Some(_) => Err(ApiError::fenced()),
        None if sub.issued(&hash) => Err(ApiError::fenced()),
        None => Err(ApiError::token_invalid()),
    }
}

/// Checks acks against the subscription's streams: known, not `-1`, not backwards, not past
/// the tail.
fn check_acks(sub: &Subscription, acks: &[StreamOffset], tails: &Tails) -> Result<(), ApiError> {
    for ack in acks {
        let Some(link) = sub.links.get(&ack.path).filter(|_| !ack.path.is_empty()) else {
            return Err(ApiError::invalid_offset(
                "Ack references an unknown subscription stream",
            ));
        };
        if ack.offset.as_deref() == Some(BEFORE_FIRST) {
            return Err(ApiError::invalid_offset("Ack offset must not be -1"));
        }
        if ack.offset < link.acked {
            return Err(ApiError::invalid_offset(
                "Ack offset regresses the committed cursor",
            ));
        }
        let tail = tails.get(&ack.path).cloned().flatten();
        if ack.offset > tail {
            return Err(ApiError::invalid_offset("Ack offset is beyond stream tail"));
        }
    }
    Ok(())
}

impl Subscriptions {
    /// `PUT`: creates the subscription (201), re-confirms an identical one (200), or refuses
    /// a different one under the same id (409).
    pub(crate) async fn create(
        &self,
        id: &str,
        config: SubscriptionConfig,
        base_url: &str,
    ) -> Result<(StatusCode, Value), ApiError> {
        if !valid_id(id) {
            return Err(ApiError::invalid(
                "subscription ids are 1 or more of A-Z a-z 0-9 . _ - ~ : @ + =",
            ));
        }
        let hash = config.hash();
        // Reading the index first forgets a subscription deleted through another node.
        self.0.store.ids().await?;
        if let Some(loaded) = self.0.store.load(id).await? {
            return self.confirm(&loaded.sub, &hash, base_url).await;
        }
        if let Some(url) = &config.webhook_url {
            let refused = |message: String| {
                ApiError::new(StatusCode::BAD_REQUEST, "WEBHOOK_URL_REJECTED", message)
            };
            let target = WebhookTarget::parse(url).map_err(refused)?;
            target
                .resolve(self.0.settings.allow_loopback_webhooks)
                .await
                .map_err(refused)?;
        }
        let mut links = Vec::new();
        for path in &config.streams {
            if links.iter().any(|l: &StreamOffset| &l.path == path) {
                continue;
            }
            // Explicit streams start acknowledged at their current tail: what is already
            // there is not news.
            links.push(StreamOffset {
                path: path.clone(),
                offset: self.tail(path).await?,
            });
        }
        let created_at =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.now_ms()) * 1_000_000)
                .ok()
                .and_then(|t| t.format(&Rfc3339).ok())
                .unwrap_or_default();
        let entry = Entry {
            inc: random_hex(8),
            events: vec![Event::Created {
                config,
                config_hash: hash.clone(),
                base_url: base_url.to_owned(),
                created_at,
                links,
            }],
        };
        let created = self.0.store.create(id, &entry).await?;
        // Listed again on a re-confirm too: a creation interrupted before listing heals.
        self.0.store.set_listed(id, true).await?;
        let Some(loaded) = self.0.store.load(id).await? else {
            return Err(ApiError::not_found());
        };
        if created {
            let kid = self.key().await?.kid().to_owned();
            Ok((StatusCode::CREATED, loaded.sub.to_json(base_url, &kid)))
        } else {
            self.confirm(&loaded.sub, &hash, base_url).await
        }
    }

    async fn confirm(
        &self,
        existing: &Subscription,
        hash: &str,
        base_url: &str,
    ) -> Result<(StatusCode, Value), ApiError> {
        if existing.config_hash != hash {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "SUBSCRIPTION_ALREADY_EXISTS",
                "Subscription already exists with different configuration",
            ));
        }
        self.0.store.set_listed(&existing.id, true).await?;
        let kid = self.key().await?.kid().to_owned();
        Ok((StatusCode::OK, existing.to_json(base_url, &kid)))
    }

    /// `GET`: the subscription.
    pub(crate) async fn get(&self, id: &str, base_url: &str) -> Result<Value, ApiError> {
        if !valid_id(id) {
            return Err(ApiError::not_found());
        }
        let Some(loaded) = self.0.store.load(id).await? else {
            return Err(ApiError::not_found());
        };
        let kid = self.key().await?.kid().to_owned();
        Ok(loaded.sub.to_json(base_url, &kid))
    }

    /// `DELETE`: removes the subscription (absent is fine).
    pub(crate) async fn delete(&self, id: &str) -> Result<(), ApiError> {
        if !valid_id(id) {
            return Ok(());
        }
        self.0.store.set_listed(id, false).await?;
        self.0.store.delete(id).await?;
        Ok(())
    }

    /// `GET __ds/jwks.json`.
    pub(crate) async fn jwks(&self) -> Result<Value, ApiError> {
        Ok(self.key().await?.jwks())
    }

    /// `POST .../streams`: links streams explicitly.
    pub(crate) async fn add_streams(&self, id: &str, streams: Vec<String>) -> Result<(), ApiError> {
        if !valid_id(id) {
            return Err(ApiError::not_found());
        }
        super::model::refuse_reserved("streams", streams.iter().map(String::as_str))?;
        let mut tails = Tails::new();
        for path in &streams {
            tails.insert(path.clone(), self.tail(path).await?);
        }
        self.commit(id, None, |draft, _, _| {
            for path in &streams {
                let link = draft.state.links.get(path);
                if link.is_some_and(|l| l.explicit) {
                    continue;
                }
                let acked = match link {
                    Some(link) => link.acked.clone(),
                    None => tails.get(path).cloned().flatten(),
                };
                draft.push(Event::Linked {
                    path: path.clone(),
                    link: LinkType::Explicit,
                    acked,
                });
            }
            Ok(())
        })
        .await?;
        // Other nodes skip appends their held state says do not concern a subscription.
        self.0.store.set_listed(id, true).await?;
        Ok(())
    }

    /// `DELETE .../streams/:path`: removes an explicit link (a pattern match stays).
    pub(crate) async fn remove_stream(&self, id: &str, path: &str) -> Result<(), ApiError> {
        if !valid_id(id) {
            return Err(ApiError::not_found());
        }
        let path = normalize_path(path);
        self.commit(id, None, |draft, _, _| {
            if draft.state.links.get(&path).is_some_and(|l| l.explicit) {
                draft.push(Event::Unlinked { path: path.clone() });
            }
            Ok(())
        })
        .await?;
        self.0.store.set_listed(id, true).await?;
        Ok(())
    }

    /// `POST .../callback` (webhook) and `POST .../ack` (pull-wake): acknowledges offsets and
    /// extends the lease, or with `done` ends the wake (and starts the next if data is
    /// pending: `next_wake`).
    pub(crate) async fn acknowledge(
        &self,
        id: &str,
        kind: Kind,
        token: &str,
        request: WakeRequest,
    ) -> Result<Value, ApiError> {
        if !valid_id(id) {
            return Err(ApiError::not_found());
        }
        let answer = self
            .commit(id, None, |draft, tails, now| {
                require(&draft.state, kind)?;
                check_token(&draft.state, token, &request)?;
                check_acks(&draft.state, &request.acks, tails)?;
                let generation = draft.state.generation;
                let mut next_wake = false;
                if request.done {
                    draft.push(Event::Finished {
                        generation,
                        acks: request.acks.clone(),
                    });
                    next_wake = self.wake_if_pending(draft, tails, now);
                } else {
                    draft.push(Event::Acked {
                        generation,
                        acks: request.acks.clone(),
                        lease_until: now + draft.state.config.lease_ttl_ms,
                    });
                }
                Ok(json!({ "ok": true, "next_wake": next_wake }))
            })
            .await?;
        if request.done {
            self.settle(id).await;
        }
        Ok(answer)
    }

    /// `POST .../claim`: a pull-wake worker takes the current wake (started now if data is
    /// pending and none is running) under a lease.
    pub(crate) async fn claim(&self, id: &str, worker: &str) -> Result<Value, ApiError> {
        if !valid_id(id) {
            return Err(ApiError::not_found());
        }
        self.commit(id, None, |draft, tails, now| {
            require(&draft.state, Kind::PullWake)?;
            if let Some(wake) = &draft.state.wake
                && let Some(holder) = &wake.holder
            {
                if wake.lease_until.is_some_and(|until| until > now) {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "ALREADY_CLAIMED",
                        "Subscription is already claimed",
                    )
                    .with_detail("current_holder", holder.clone())
                    .with_detail("generation", draft.state.generation));
                }
                // The holder's lease ran out: its wake ends here.
                let generation = draft.state.generation;
                draft.push(Event::Cleared { generation });
            }
            if draft.state.wake.is_none() && !self.wake_if_pending(draft, tails, now) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "NO_PENDING_WORK",
                    "Subscription has no pending work",
                ));
            }
            let generation = draft.state.generation;
            let token = random_token();
            let lease_ttl_ms = draft.state.config.lease_ttl_ms;
            draft.push(Event::Claimed {
                generation,
                holder: worker.to_owned(),
                token_hash: token_hash(&token),
                lease_until: now + lease_ttl_ms,
            });
            let wake_id = draft.state.wake.as_ref().map(|w| w.id.clone());
            Ok(json!({
                "wake_id": wake_id,
                "generation": generation,
                "token": token,
                "streams": draft.state.stream_infos(tails),
                "lease_ttl_ms": lease_ttl_ms,
            }))
        })
        .await
    }

    /// `POST .../release`: the worker gives the wake up without finishing it.
    pub(crate) async fn release(
        &self,
        id: &str,
        token: &str,
        request: WakeRequest,
    ) -> Result<(), ApiError> {
        if !valid_id(id) {
            return Err(ApiError::not_found());
        }
        self.commit(id, None, |draft: &mut Draft, tails, now| {
            require(&draft.state, Kind::PullWake)?;
            check_token(&draft.state, token, &request)?;
            let generation = draft.state.generation;
            draft.push(Event::Cleared { generation });
            self.wake_if_pending(draft, tails, now);
            Ok(())
        })
        .await?;
        self.settle(id).await;
        Ok(())
    }
}
