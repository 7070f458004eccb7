//! The consumers attached to one subscription and who gets the next message: the rules of the
//! four subscription types (spec §2 "Subscriptions"), shared by reliable and live dispatch.

use super::error::SubscribeError;
use super::key_shared;
use courier_impls::grpc::proto::danube::consumer_request::SubscriptionType;

/// Whether a consumer can be given messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Presence {
    /// Subscribed, its stream not opened yet: it buffers what it is given.
    Waiting,
    /// Its `ReceiveMessages` stream is open.
    Streaming,
    /// Its stream ended: it gets nothing until it reopens one.
    Detached,
}

#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) id: u64,
    pub(crate) name: String,
    filters: Vec<String>,
    pub(crate) presence: Presence,
}

impl Member {
    fn eligible(&self) -> bool {
        self.presence != Presence::Detached
    }
}

/// What attaching a consumer did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attached {
    /// The new consumer's id.
    pub consumer_id: u64,
    /// An Exclusive consumer of the same name (or one whose stream had ended) that the new one
    /// replaced: its stream must be cancelled.
    pub replaced: Option<u64>,
}

/// The consumers of one subscription, in the order they attached.
#[derive(Debug)]
pub(crate) struct Members {
    kind: SubscriptionType,
    members: Vec<Member>,
    /// The index (among eligible members) the next Shared message goes to.
    next_shared: usize,
}

impl Members {
    pub(crate) fn new(kind: SubscriptionType) -> Members {
        Members {
            kind,
            members: Vec::new(),
            next_shared: 0,
        }
    }

    pub(crate) fn kind(&self) -> SubscriptionType {
        self.kind
    }

    /// Attaches consumer `id`. Exclusive: a consumer of another name still attached refuses it;
    /// one of the same name, or one whose stream has ended, is replaced.
    pub(crate) fn attach(
        &mut self,
        kind: SubscriptionType,
        id: u64,
        name: &str,
        filters: Vec<String>,
    ) -> Result<Attached, SubscribeError> {
        if kind != self.kind {
            return Err(SubscribeError::TypeMismatch {
                existing: self.kind,
                requested: kind,
            });
        }
        if self.get(id).is_some() {
            return Err(SubscribeError::DuplicateId { consumer_id: id });
        }
        let mut replaced = None;
        if self.kind == SubscriptionType::Exclusive
            && let Some(holder) = self.members.first()
        {
            if holder.name != name && holder.presence != Presence::Detached {
                return Err(SubscribeError::ExclusiveHeld {
                    holder: holder.name.clone(),
                });
            }
            replaced = Some(holder.id);
            self.members.clear();
        }
        self.members.push(Member {
            id,
            name: name.to_owned(),
            filters,
            presence: Presence::Waiting,
        });
        Ok(Attached {
            consumer_id: id,
            replaced,
        })
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Member> {
        self.members.iter().find(|member| member.id == id)
    }

    /// Sets consumer `id`'s presence; false if it is not attached.
    pub(crate) fn set_presence(&mut self, id: u64, presence: Presence) -> bool {
        match self.members.iter_mut().find(|member| member.id == id) {
            Some(member) => {
                member.presence = presence;
                true
            }
            None => false,
        }
    }

    /// Detaches consumer `id` for good; false if it was not attached.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        let before = self.members.len();
        self.members.retain(|member| member.id != id);
        self.members.len() != before
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The consumers not detached (waiting for or streaming messages).
    pub(crate) fn present(&self) -> usize {
        self.members
            .iter()
            .filter(|member| member.eligible())
            .count()
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.members.iter().map(|member| member.id)
    }

    /// Whether any consumer can be given messages now.
    pub(crate) fn any_eligible(&self) -> bool {
        self.members.iter().any(Member::eligible)
    }

    /// Who gets the next message whose routing key is `key`, or `None` when no consumer can
    /// take it (none eligible, or under KeyShared none whose filters accept the key). Shared
    /// advances its round-robin, so call it once per message.
    pub(crate) fn pick(&mut self, key: &str) -> Option<u64> {
        let mut eligible = self.members.iter().filter(|member| member.eligible());
        match self.kind {
            // The only consumer, or under Failover the first connected one still present.
            SubscriptionType::Exclusive | SubscriptionType::Failover => {
                eligible.next().map(|member| member.id)
            }
            SubscriptionType::Shared => {
                let count = eligible.clone().count();
                if count == 0 {
                    return None;
                }
                let index = self.next_shared % count;
                self.next_shared = (index + 1) % count;
                eligible.nth(index).map(|member| member.id)
            }
            SubscriptionType::KeyShared => eligible
                .filter(|member| key_shared::accepts(&member.filters, key))
                .max_by_key(|member| key_shared::score(key, member.id))
                .map(|member| member.id),
        }
    }
}
