//! Why a consumer could not attach or act.

use courier_traits::error::{Classify, ErrorClass};

use courier_impls::grpc::proto::danube::consumer_request::SubscriptionType;

/// Why a consumer could not attach or act.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The subscription exists with another type (`FailedPrecondition`).
    #[error("subscription type {requested:?} does not match the subscription's {existing:?}")]
    TypeMismatch {
        /// The subscription's type.
        existing: SubscriptionType,
        /// The type asked for.
        requested: SubscriptionType,
    },
    /// An Exclusive subscription is held by a consumer of another name
    /// (`FailedPrecondition`).
    #[error("the exclusive subscription is held by consumer {holder:?}")]
    ExclusiveHeld {
        /// The holder's name.
        holder: String,
    },
    /// The consumer id is already attached (a caller bug: ids are random and fresh).
    #[error("consumer id {consumer_id} is already attached")]
    DuplicateId {
        /// The id.
        consumer_id: u64,
    },
    /// The subscription has as many consumers as allowed (`ResourceExhausted`).
    #[error("the subscription already has {limit} consumers (max_consumers_per_subscription)")]
    TooManyConsumers {
        /// The limit.
        limit: usize,
    },
    /// No consumer with this id is attached (`Unavailable`: the client subscribes again).
    #[error("consumer {consumer_id} is not attached here")]
    UnknownConsumer {
        /// The id.
        consumer_id: u64,
    },
}

impl Classify for SubscribeError {
    fn class(&self) -> ErrorClass {
        match self {
            // Consumers leave (or go idle and are detached): a later attempt may fit.
            SubscribeError::UnknownConsumer { .. } | SubscribeError::TooManyConsumers { .. } => {
                ErrorClass::TRANSIENT
            }
            SubscribeError::TypeMismatch { .. }
            | SubscribeError::ExclusiveHeld { .. }
            | SubscribeError::DuplicateId { .. } => ErrorClass::Permanent,
        }
    }
}
