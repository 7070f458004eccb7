//! One webhook delivery attempt: a signed `POST` to a checked address ([`post`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::ClientConfig;

use super::delivery_error::DeliveryError;
use super::keys::SigningKey;
use super::target::WebhookTarget;
use super::tls;

/// The most of a receiver's answer that is read (it only needs to say `{"done":true}`).
const MAX_ANSWER_BYTES: usize = 64 << 10;

/// Where and how one delivery goes.
pub(crate) struct Attempt<'a> {
    pub(crate) target: &'a WebhookTarget,
    /// The checked addresses of the target's host.
    pub(crate) addrs: &'a [SocketAddr],
    /// TLS settings for `https` targets.
    pub(crate) tls: Option<Arc<ClientConfig>>,
    pub(crate) key: &'a SigningKey,
    pub(crate) unix_seconds: u64,
}

/// POSTs `body` as `attempt` says, signed, within `timeout`; the receiver's answer body on a
/// 2xx status.
pub(crate) async fn post(
    attempt: Attempt<'_>,
    body: Bytes,
    timeout: Duration,
) -> Result<Bytes, DeliveryError> {
    let Attempt {
        target,
        addrs,
        tls,
        key,
        unix_seconds,
    } = attempt;
    let attempt = post_unbounded(target, addrs, tls, key, unix_seconds, body);
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| DeliveryError::TimedOut(timeout))?
}

async fn post_unbounded(
    target: &WebhookTarget,
    addrs: &[SocketAddr],
    tls: Option<Arc<ClientConfig>>,
    key: &SigningKey,
    unix_seconds: u64,
    body: Bytes,
) -> Result<Bytes, DeliveryError> {
    let stream = connect(addrs).await?;
    if target.https {
        let config = tls.ok_or_else(|| DeliveryError::Refused("no TLS settings".into()))?;
        let tls = tls::connect(config, stream, &target.host).await?;
        exchange(TokioIo::new(tls), target, key, unix_seconds, body).await
    } else {
        exchange(TokioIo::new(stream), target, key, unix_seconds, body).await
    }
}

/// One request and its answer over an open connection.
async fn exchange<IO>(
    io: IO,
    target: &WebhookTarget,
    key: &SigningKey,
    unix_seconds: u64,
    body: Bytes,
) -> Result<Bytes, DeliveryError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| DeliveryError::Unreachable(e.to_string()))?;
    // The connection task ends with the exchange: it is dropped (and so stopped) when this
    // attempt returns or times out.
    let connection = async move {
        let _ = connection.await;
    };
    let exchange = async {
        let path = target
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let host = match target.uri.authority() {
            Some(authority) => authority.as_str().to_owned(),
            None => target.host.clone(),
        };
        let request = http::Request::post(path)
            .header(http::header::HOST, host)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                "webhook-signature",
                key.signature_header(unix_seconds, &body),
            )
            .body(Full::new(body))
            .map_err(|e| DeliveryError::Refused(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| DeliveryError::Unreachable(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(DeliveryError::Status(status.as_u16()));
        }
        let answer = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| DeliveryError::Unreachable(e.to_string()))?;
        Ok(answer.to_bytes())
    };
    tokio::pin!(exchange);
    tokio::select! {
        biased;
        answer = &mut exchange => answer,
        // Closed (answer complete or failed): the exchange finishes with what it has.
        () = connection => exchange.await,
    }
}

/// The first of `addrs` that accepts a connection.
async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, DeliveryError> {
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(DeliveryError::Unreachable(last))
}
