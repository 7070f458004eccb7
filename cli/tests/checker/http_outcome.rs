//! HTTP for the checkers: one transport per node, and the honest reading of an answer: 2xx is
//! `ok`; a 4xx refusal, or a connection that could not be made, is `fail`; a timeout, a broken
//! connection or a 5xx is `info` (the request may have taken effect).

use std::time::Duration;

use courier::impls::http::HttpTransport;
use courier::traits::TransportError;
use courier_testkit::checker::Outcome;

/// One transport per address, each giving up after `timeout`.
pub(crate) fn transports(addrs: &[std::net::SocketAddr], timeout: Duration) -> Vec<HttpTransport> {
    addrs
        .iter()
        .map(|a| {
            HttpTransport::new(&format!("http://{a}"))
                .expect("url")
                .with_timeout(timeout)
        })
        .collect()
}

/// The outcome of a request that got no answer.
pub(crate) fn transport_error<R>(e: TransportError) -> Outcome<R> {
    match e {
        TransportError::Connect { .. } => Outcome::Fail(e.to_string()),
        other => Outcome::Info(other.to_string()),
    }
}

/// The outcome of a non-2xx answer, `detail` added to the reason.
pub(crate) fn refused_or_unknown<R>(status: u16, detail: &str) -> Outcome<R> {
    let reason = format!("status {status}{detail}");
    if (400..500).contains(&status) {
        Outcome::Fail(reason)
    } else {
        Outcome::Info(reason)
    }
}
