//! [`BrokerError`]: what the broker client's calls end in, classified retryable or permanent
//! the way Danube's client retries (spec §1 rule 3).

use courier_impls::grpc::GrpcError;
use courier_traits::error::{Classify, ErrorClass, InvalidInput};
use tonic::Code;

/// Errors of the broker client. Every variant is classified ([`Classify`]): retryable are
/// connection failures and the three codes the broker uses for "try again"
/// (`Unavailable`, `DeadlineExceeded`, `ResourceExhausted`); everything else is permanent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// A call to the broker failed: the server's status or a transport failure.
    #[error("{operation} for {topic}: {source}")]
    Rpc {
        /// The RPC (`CreateProducer`, `SendMessage`, `Subscribe`, ...).
        operation: &'static str,
        /// The topic (or partition) the call was about.
        topic: String,
        /// What the call ended in.
        #[source]
        source: GrpcError,
    },
    /// A name, URL or option given to a builder is not valid.
    #[error(transparent)]
    InvalidInput(#[from] InvalidInput),
    /// `TopicPartitions` answered no partition: the topic does not exist.
    #[error("topic {0} does not exist (the broker lists no partitions for it)")]
    NoSuchTopic(String),
    /// A message's `msg_id` names a topic this consumer is not subscribed to, so its ack or
    /// nack has nowhere to go.
    #[error("cannot ack or nack a message of topic {0:?}: this consumer is not subscribed to it")]
    NotSubscribed(String),
    /// The broker broke the protocol (a delivery without `msg_id`, a partition of another
    /// topic).
    #[error("the broker broke the protocol: {0}")]
    Protocol(String),
    /// The producer or consumer was closed.
    #[error("closed")]
    Closed,
}

impl BrokerError {
    pub(crate) fn rpc(operation: &'static str, topic: &str, source: GrpcError) -> BrokerError {
        BrokerError::Rpc {
            operation,
            topic: topic.to_owned(),
            source,
        }
    }

    /// The gRPC status code of an [`BrokerError::Rpc`] (the one clients report for transport
    /// failures: `Unavailable`, `DeadlineExceeded`), `None` for the other variants.
    pub fn code(&self) -> Option<Code> {
        match self {
            BrokerError::Rpc { source, .. } => Some(source.code()),
            _ => None,
        }
    }
}

/// Whether the broker client retries a call that failed with `error`: connection failures,
/// broken connections and timeouts, and the codes `Unavailable`, `DeadlineExceeded` and
/// `ResourceExhausted` (with the server's pushback hint). Other codes are permanent here even
/// where gRPC's generic classification retries them (`Aborted`): the broker answers
/// "wrong node / not ready" with `Unavailable` only, so anything else is a real refusal.
pub fn rpc_class(error: &GrpcError) -> ErrorClass {
    match error {
        GrpcError::Connect { .. } | GrpcError::Timeout(_) | GrpcError::Broken { .. } => {
            ErrorClass::TRANSIENT
        }
        GrpcError::Status {
            code: Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted,
            retry_after,
            ..
        } => ErrorClass::Transient {
            retry_after: *retry_after,
        },
        _ => ErrorClass::Permanent,
    }
}

impl Classify for BrokerError {
    fn class(&self) -> ErrorClass {
        match self {
            BrokerError::Rpc { source, .. } => rpc_class(source),
            BrokerError::InvalidInput(_)
            | BrokerError::NoSuchTopic(_)
            | BrokerError::NotSubscribed(_)
            | BrokerError::Protocol(_)
            | BrokerError::Closed => ErrorClass::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::Status;

    use super::*;

    fn from_server(code: Code) -> BrokerError {
        let status = GrpcError::from_status(Status::new(code, "m"), "http://b:6650", None);
        BrokerError::rpc("SendMessage", "/default/t", status)
    }

    #[test]
    fn only_the_three_try_again_codes_are_retried() {
        // Every code gRPC defines: 0 (Ok) to 16 (Unauthenticated).
        for code in (0..=16).map(Code::from_i32) {
            let expected = matches!(
                code,
                Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
            );
            let error = from_server(code);
            assert_eq!(error.is_retryable(), expected, "{code:?}: {error}");
            assert_eq!(error.code(), Some(code));
        }
        // gRPC's generic table retries Aborted; the broker client does not (spec §1 rule 3).
        assert!(courier_impls::grpc::code_class(Code::Aborted).is_retryable());
        assert!(!from_server(Code::Aborted).is_retryable());
    }

    #[test]
    fn transport_failures_are_retried_and_pushback_is_kept() {
        let refused = GrpcError::Connect {
            url: "http://b:6650".into(),
            message: "refused".into(),
            source: None,
        };
        assert!(BrokerError::rpc("Subscribe", "/a/b", refused).is_retryable());
        let broken = GrpcError::Broken {
            message: "reset".into(),
            source: None,
        };
        assert!(BrokerError::rpc("Subscribe", "/a/b", broken).is_retryable());
        let timeout = GrpcError::Timeout(Duration::from_secs(1));
        let error = BrokerError::rpc("Subscribe", "/a/b", timeout);
        assert!(error.is_retryable());
        assert_eq!(error.code(), Some(Code::DeadlineExceeded));

        let pushed = GrpcError::Status {
            code: Code::ResourceExhausted,
            message: "limit".into(),
            retry_after: Some(Duration::from_millis(700)),
        };
        let error = BrokerError::rpc("CreateProducer", "/a/b", pushed);
        assert_eq!(
            error.class().retry_after(),
            Some(Duration::from_millis(700))
        );
        let bad_url = BrokerError::rpc("Subscribe", "/a/b", GrpcError::NoRuntime("x".into()));
        assert!(!bad_url.is_retryable());
    }

    #[test]
    fn client_side_errors_are_permanent_and_say_what() {
        let invalid = BrokerError::from(InvalidInput::new("topic", "a", "must start with /"));
        assert!(!invalid.is_retryable());
        assert!(invalid.to_string().contains("topic"), "{invalid}");
        for error in [
            BrokerError::NoSuchTopic("/a/b".into()),
            BrokerError::NotSubscribed("/a/c".into()),
            BrokerError::Protocol("no msg_id".into()),
            BrokerError::Closed,
        ] {
            assert!(!error.is_retryable(), "{error}");
            assert_eq!(error.code(), None);
        }
        let rpc = from_server(Code::NotFound);
        assert!(
            rpc.to_string().contains("SendMessage for /default/t"),
            "{rpc}"
        );
    }
}
