//! [`HttpTransport`]: a [`RequestTransport`] over HTTP/1.1 (hyper), with pooled keep-alive
//! connections and streamed response bodies (SSE, long downloads).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use courier_traits::transport::{
    Method, Request, RequestTransport, Response, ResponseBody, TransportError,
};
use futures::StreamExt;
use http_body_util::{BodyExt, BodyStream, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Requests without their own timeout give up after this long (waiting for the headers).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A pooled connection idle this long is not used again; the next request opens a new one.
///
/// Why 20 s: Courier's servers close a connection 30 s after its last answer
/// (`http_server::HEADER_READ_TIMEOUT`). A client that kept connections as long would now and
/// then send on one the server is closing at that moment, and get an error for a request the
/// server never read. Other servers close sooner (Node's after 5 s): set
/// [`HttpTransport::with_pool_idle_timeout`] below theirs.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// HTTP/1.1 client for one base URL (`http://host:port[/prefix]`). Cheap to clone; clones
/// share the connection pool.
///
/// Bodies of `text/event-stream` responses and of responses without a `Content-Length` are
/// returned as [`ResponseBody::Stream`]; others are read whole within the request's timeout.
///
/// ```no_run
/// # async fn demo() -> Result<(), courier_traits::TransportError> {
/// use courier_impls::http::HttpTransport;
/// use courier_traits::transport::{Method, Request, RequestTransport};
///
/// let http = HttpTransport::new("http://127.0.0.1:4437")?;
/// let response = http.send(Request::new(Method::Get, "/health")).await?;
/// assert_eq!(response.status, 200);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct HttpTransport {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl HttpTransport {
    /// A transport for `base_url` (`http://` only; TLS is left to a proxy or a later feature).
    pub fn new(base_url: &str) -> Result<HttpTransport, TransportError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let uri: http::Uri = base.parse().map_err(|e: http::uri::InvalidUri| {
            TransportError::Protocol(format!("base URL {base_url:?}: {e}"))
        })?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(TransportError::Protocol(format!(
                "base URL {base_url:?} must be http://host:port[/prefix]"
            )));
        }
        Ok(HttpTransport {
            base,
            client: pooled_client(DEFAULT_POOL_IDLE_TIMEOUT),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sets how long a pooled connection may stay idle and still be used (default
    /// [`DEFAULT_POOL_IDLE_TIMEOUT`]); keep it below the server's own idle limit. Starts a new
    /// pool: clones made before keep the old one.
    pub fn with_pool_idle_timeout(mut self, idle: Duration) -> HttpTransport {
        self.client = pooled_client(idle);
        self
    }

    /// Sets the timeout of requests that do not carry their own.
    pub fn with_timeout(mut self, timeout: Duration) -> HttpTransport {
        self.timeout = timeout;
        self
    }

    /// The base URL requests are sent under.
    pub fn base_url(&self) -> &str {
        &self.base
    }
}

/// A client whose pool drops connections idle longer than `idle`. The pool reads the time from
/// tokio's clock (its timer), so tests on a paused clock see the rule.
fn pooled_client(idle: Duration) -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(idle)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

fn method(m: Method) -> http::Method {
    match m {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Options => http::Method::OPTIONS,
    }
}

#[async_trait]
impl RequestTransport for HttpTransport {
    async fn send(&self, request: Request) -> Result<Response, TransportError> {
        let url = format!("{}{}", self.base, request.target);
        let mut builder = http::Request::builder()
            .method(method(request.method))
            .uri(&url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let http_request = builder
            .body(Full::new(request.body))
            .map_err(|e| TransportError::Protocol(format!("request to {url}: {e}")))?;
        let timeout = request.timeout.unwrap_or(self.timeout);
        let deadline = tokio::time::Instant::now() + timeout;
        let response = tokio::time::timeout_at(deadline, self.client.request(http_request))
            .await
            .map_err(|_| TransportError::Timeout(timeout))?
            .map_err(|e| client_error(&url, e))?;
        let (parts, body) = response.into_parts();
        let headers = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let streaming = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
            || (parts.headers.get(http::header::CONTENT_LENGTH).is_none()
                && request.method != Method::Head);
        let body = if streaming {
            let chunks = BodyStream::new(body).filter_map(|frame| async move {
                match frame {
                    Ok(frame) => frame.into_data().ok().map(Ok),
                    Err(e) => Some(Err(TransportError::Io(std::io::Error::other(e)))),
                }
            });
            ResponseBody::Stream(chunks.boxed())
        } else {
            let collected = tokio::time::timeout_at(deadline, body.collect())
                .await
                .map_err(|_| TransportError::Timeout(timeout))?
                .map_err(|e| TransportError::Io(std::io::Error::other(e)))?;
            ResponseBody::Full(collected.to_bytes())
        };
        Ok(Response {
            status: parts.status.as_u16(),
            headers,
            body,
        })
    }
}

fn client_error(url: &str, e: hyper_util::client::legacy::Error) -> TransportError {
    if e.is_connect() {
        TransportError::Connect {
            target: url.to_owned(),
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    } else {
        // The connection broke before a response arrived (reset, closed by the peer).
        TransportError::Io(std::io::Error::other(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        assert!(HttpTransport::new("http://127.0.0.1:1").is_ok());
        assert!(HttpTransport::new("http://127.0.0.1:1/prefix/").is_ok());
        assert!(HttpTransport::new("https://example.com").is_err());
        assert!(HttpTransport::new("not a url").is_err());
    }

    #[tokio::test]
    async fn refused_connections_are_retryable() {
        use courier_traits::Classify;
        // Bind then drop a listener: nothing answers on that port afterwards.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("ephemeral port");
        let http = HttpTransport::new(&format!("http://127.0.0.1:{port}")).expect("valid");
        let err = http
            .send(Request::new(Method::Get, "/"))
            .await
            .expect_err("nothing listens");
        assert!(err.is_retryable(), "{err}");
    }

    /// A server with Courier's idle limit that answers each request with the number of the
    /// connection it came on (1, 2, ...).
    #[cfg(feature = "http-server")]
    async fn numbering_server() -> (HttpTransport, tokio::sync::oneshot::Sender<()>) {
        use std::convert::Infallible;

        use crate::http_server::{HEADER_READ_TIMEOUT, accept_until, until_stopped};
        use hyper_util::rt::TokioIo;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut accepted = 0u32;
        let shutdown = async move {
            let _ = stopped.await;
        };
        tokio::spawn(accept_until(listener, shutdown, move |tcp, stop| {
            accepted += 1;
            let number = accepted;
            let answer = hyper::service::service_fn(move |_request| async move {
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                    number.to_string(),
                ))))
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), answer);
            async move {
                tokio::pin!(connection);
                until_stopped(connection, &stop, |c| c.graceful_shutdown()).await;
            }
        }));
        // On a paused clock the request timeout must not fire while bytes are in flight.
        let http = HttpTransport::new(&format!("http://{addr}"))
            .expect("valid")
            .with_timeout(Duration::from_secs(300));
        (http, stop)
    }

    #[cfg(feature = "http-server")]
    async fn connection_number(http: &HttpTransport) -> String {
        let response = http
            .send(Request::new(Method::Get, "/"))
            .await
            .expect("answered");
        match response.body {
            ResponseBody::Full(body) => String::from_utf8(body.to_vec()).expect("text"),
            ResponseBody::Stream(_) => panic!("a body with a length is read whole"),
        }
    }

    #[cfg(feature = "http-server")]
    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_used_again_within_the_pool_limit() {
        let (http, _stop) = numbering_server().await;
        assert_eq!(connection_number(&http).await, "1");
        tokio::time::sleep(DEFAULT_POOL_IDLE_TIMEOUT - Duration::from_secs(1)).await;
        assert_eq!(connection_number(&http).await, "1");
    }

    #[cfg(feature = "http-server")]
    #[tokio::test(start_paused = true)]
    async fn a_connection_near_the_servers_idle_limit_is_not_used_again() {
        use crate::http_server::HEADER_READ_TIMEOUT;

        const { assert!(DEFAULT_POOL_IDLE_TIMEOUT.as_secs() + 5 <= HEADER_READ_TIMEOUT.as_secs()) };
        let (http, _stop) = numbering_server().await;
        assert_eq!(connection_number(&http).await, "1");
        // Idle for a moment less than the server's limit: the server would still read the
        // connection, but a request sent now could meet its closing on a slower machine.
        tokio::time::sleep(HEADER_READ_TIMEOUT - Duration::from_millis(100)).await;
        assert_eq!(connection_number(&http).await, "2");
        assert_eq!(connection_number(&http).await, "2");
    }

    #[cfg(feature = "http-server")]
    #[tokio::test(start_paused = true)]
    async fn the_pool_limit_can_be_set() {
        let (http, _stop) = numbering_server().await;
        let http = http.with_pool_idle_timeout(Duration::from_secs(4));
        assert_eq!(connection_number(&http).await, "1");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(connection_number(&http).await, "2");
    }
}
