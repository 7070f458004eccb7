//! [`HttpTransport`]: a [`RequestTransport`] over HTTP/1.1 (hyper), with pooled keep-alive
//! connections and streamed response bodies (SSE, long downloads). A read whose connection
//! closes before its answer is sent once more; a write is not.

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
/// A `GET`, `HEAD` or `OPTIONS` whose connection closes (or is reset) before any answer comes
/// is sent once more on a new connection, within the same timeout: a server closing a
/// kept-alive connection just as the request goes out. Other methods fail with
/// [`TransportError::Io`] (a retryable error): the server may have stored a `POST` it never
/// answered, so sending it again is the caller's decision (with a producer id, safely).
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

/// Whether a request of method `m` may be sent again when its connection closed before an
/// answer: the safe methods only (RFC 9110 §9.2.1), which change nothing on the server. An
/// append (`POST`) sent twice could be stored twice, so it is never repeated here.
fn may_resend(m: Method) -> bool {
    matches!(m, Method::Get | Method::Head | Method::Options)
}

/// Whether `e` says the connection closed (or was reset) under a request before any answer
/// came: the server closing a kept-alive connection as the request went out, which a second
/// connection does not meet. hyper already resends a request it had not begun to write.
fn closed_before_answer(e: &hyper_util::client::legacy::Error) -> bool {
    use std::error::Error as _;
    if e.is_connect() {
        return false;
    }
    let Some(hyper_error) = e.source().and_then(|s| s.downcast_ref::<hyper::Error>()) else {
        return false;
    };
    if hyper_error.is_incomplete_message() || hyper_error.is_canceled() || hyper_error.is_closed() {
        return true;
    }
    hyper_error
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            )
        })
}

#[async_trait]
impl RequestTransport for HttpTransport {
    async fn send(&self, request: Request) -> Result<Response, TransportError> {
        let url = format!("{}{}", self.base, request.target);
        let build = || {
            let mut builder = http::Request::builder()
                .method(method(request.method))
                .uri(&url);
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            builder
                .body(Full::new(request.body.clone()))
                .map_err(|e| TransportError::Protocol(format!("request to {url}: {e}")))
        };
        let timeout = request.timeout.unwrap_or(self.timeout);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut resent = false;
        let response = loop {
            let sent = tokio::time::timeout_at(deadline, self.client.request(build()?))
                .await
                .map_err(|_| TransportError::Timeout(timeout))?;
            match sent {
                Ok(response) => break response,
                // Once, within the same deadline, on a new connection (the pool drops the
                // closed one).
                Err(e) if !resent && may_resend(request.method) && closed_before_answer(&e) => {
                    tracing::debug!(%url, error = %e, "connection closed before an answer; sending again");
                    resent = true;
                }
                Err(e) => return Err(client_error(&url, e)),
            }
        };
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

    /// A server that closes connection `number` (1, 2, ...) without an answer when
    /// `closes(number, answered)` says so at a request, having answered `answered` on it (as a
    /// server closing a kept-alive connection just as a request arrives). Each answer is its
    /// connection's number; `seen` gets every request line, with its connection's number.
    async fn closing_server(
        closes: fn(u32, u32) -> bool,
    ) -> (
        HttpTransport,
        std::sync::Arc<std::sync::Mutex<Vec<(u32, String)>>>,
        tokio::task::JoinSet<()>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        let log = seen.clone();
        tasks.spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            for number in 1u32.. {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                connections.spawn(async move {
                    let mut buffered = Vec::new();
                    for answered in 0u32.. {
                        // A request head (the tests' bodies are small and come with it).
                        let end = loop {
                            if let Some(at) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                                break at + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match tcp.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffered.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buffered[..end]).into_owned();
                        buffered.clear();
                        let line = head.lines().next().unwrap_or_default().to_owned();
                        log.lock().expect("log").push((number, line));
                        if closes(number, answered) {
                            return; // closed, unanswered
                        }
                        let body = number.to_string();
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if tcp.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let http = HttpTransport::new(&format!("http://{addr}"))
            .expect("valid")
            .with_timeout(Duration::from_secs(10));
        (http, seen, tasks)
    }

    /// The answer to `GET target`, as text.
    async fn get(http: &HttpTransport, target: &str) -> String {
        let response = http
            .send(Request::new(Method::Get, target))
            .await
            .expect("answered");
        match response.body {
            ResponseBody::Full(body) => String::from_utf8(body.to_vec()).expect("text"),
            ResponseBody::Stream(_) => panic!("a body with a length is read whole"),
        }
    }

    /// Asserts the requests the server saw: (connection, method and target).
    fn assert_seen(seen: &std::sync::Mutex<Vec<(u32, String)>>, expected: &[(u32, &str)]) {
        let expected: Vec<(u32, String)> = expected
            .iter()
            .map(|(number, request)| (*number, format!("{request} HTTP/1.1")))
            .collect();
        assert_eq!(*seen.lock().expect("log"), expected);
    }

    /// The first connection answers one request and closes on the next.
    fn second_request_on_the_first_connection(number: u32, answered: u32) -> bool {
        number == 1 && answered == 1
    }

    #[tokio::test]
    async fn a_read_whose_connection_closes_before_its_answer_is_sent_again() {
        let (http, seen, _server) = closing_server(second_request_on_the_first_connection).await;
        assert_eq!(get(&http, "/a").await, "1");
        assert_eq!(
            get(&http, "/b").await,
            "2",
            "sent again on a new connection"
        );
        assert_seen(&seen, &[(1, "GET /a"), (1, "GET /b"), (2, "GET /b")]);
    }

    #[tokio::test]
    async fn an_append_whose_connection_closes_before_its_answer_is_not_sent_again() {
        let (http, seen, _server) = closing_server(second_request_on_the_first_connection).await;
        assert_eq!(get(&http, "/a").await, "1");
        let append = Request::new(Method::Post, "/b").body(Bytes::from_static(b"x"));
        let error = http.send(append).await.expect_err("the connection closed");
        assert!(matches!(error, TransportError::Io(_)), "{error:?}");
        // The server read the append's head and closed: it must not get it a second time.
        assert_seen(&seen, &[(1, "GET /a"), (1, "POST /b")]);
    }

    #[tokio::test]
    async fn a_read_is_sent_again_only_once() {
        let (http, seen, _server) = closing_server(|_, _| true).await;
        let error = http
            .send(Request::new(Method::Get, "/a"))
            .await
            .expect_err("no connection answers");
        assert!(matches!(error, TransportError::Io(_)), "{error:?}");
        assert_seen(&seen, &[(1, "GET /a"), (2, "GET /a")]);
    }
}
