//! One connection's loop: read a head, answer it if it is ours, else hand the connection to
//! hyper (see the [module docs](super)).

use std::future::Future;

use axum::body::Body;
use axum::response::Response;
use bytes::BytesMut;
use courier_impls::http_server::WriteLimited;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::super::hot_routes::HotRoutes;
use super::head::{self, Head};
use super::lapse::{Lapse, READ_TIMEOUT};
use super::{handoff, response};

/// How much more is read at a time.
const READ_CHUNK: usize = 8 << 10;
/// A head longer than this is hyper's, which answers it with 431.
const MAX_HEAD: usize = 64 << 10;
/// The most room made for a body at a time: a length alone reserves no more than this.
const MAX_RESERVE: usize = 64 << 10;
/// Between requests, a read buffer larger than this (grown for a large body) is replaced by
/// a small one, so an idle connection holds little.
const MAX_IDLE_CAPACITY: usize = 64 << 10;

/// Serves `tcp` until the client closes it, an error, or `stop` (between requests).
pub(super) async fn run(mut tcp: TcpStream, routes: HotRoutes, stop: CancellationToken) {
    let mut buffered = BytesMut::with_capacity(READ_CHUNK);
    // The start of `buffered` holds no complete head as far as this: a head read a few bytes
    // at a time is parsed once it may be whole, not once per read.
    let mut no_head_end_before = 0;
    let mut head_scratch = Vec::with_capacity(1024);
    // Runs from the start of the wait for a head (a new connection, the last answer) to the
    // head's end, then from each read of a body to the next.
    let mut limit = Lapse::new(READ_TIMEOUT);
    loop {
        let parsed = if head_may_end(&buffered, no_head_end_before) {
            head::parse(&buffered)
        } else {
            Head::Partial
        };
        let (request, head_len, body_len) = match parsed {
            Head::Partial if buffered.len() < MAX_HEAD => {
                no_head_end_before = buffered.len();
                // Waiting for a request (or the rest of its head): a stop closes the connection.
                match read_more(&mut tcp, &mut buffered, READ_CHUNK, Some(&stop), &mut limit).await
                {
                    Read::More => continue,
                    Read::TimedOut if !buffered.is_empty() => {
                        tracing::debug!(
                            bytes = buffered.len(),
                            "no whole request head in {READ_TIMEOUT:?}; closing the connection"
                        );
                        return;
                    }
                    Read::TimedOut | Read::Ended => return,
                }
            }
            Head::Partial | Head::Theirs => {
                return handoff::serve_with_hyper(tcp, buffered, routes, stop).await;
            }
            Head::Ours {
                request,
                head_len,
                body_len,
            } => (request, head_len, body_len),
        };
        let route = routes
            .route(&request)
            .filter(|_| !is_streaming_read(&request));
        let Some((hot, name)) = route.filter(|_| body_len <= routes.max_append_bytes()) else {
            // Another route, an SSE read, or a body over the limit (whose refusal is the
            // handler's, reading the body as hyper streams it).
            return handoff::serve_with_hyper(tcp, buffered, routes, stop).await;
        };
        while buffered.len() < head_len + body_len {
            // Room for the body in steps of at most `MAX_RESERVE`, so a length alone reserves
            // little; a body being sent is read to its end, stop or not, unless it falls
            // silent for `READ_TIMEOUT`.
            let missing = head_len + body_len - buffered.len();
            limit.restart();
            match read_more(
                &mut tcp,
                &mut buffered,
                missing.min(MAX_RESERVE),
                None,
                &mut limit,
            )
            .await
            {
                Read::More => {}
                Read::TimedOut => {
                    tracing::debug!(
                        missing,
                        "no byte of a request body in {READ_TIMEOUT:?}; closing the connection"
                    );
                    return;
                }
                Read::Ended => return,
            }
        }
        let mut message = buffered.split_to(head_len + body_len);
        no_head_end_before = 0;
        let body = message.split_off(head_len).freeze();
        let waits = is_long_poll(&request);
        let answer = routes.answer(hot, name, request.map(|()| Body::from(body)));
        let response = if waits {
            // A long-poll may wait long: a client gone meanwhile ends it, as hyper would.
            match unless_client_leaves(&mut tcp, &mut buffered, answer).await {
                Some(response) => response,
                None => return,
            }
        } else {
            answer.await
        };
        // Once stopping, this answer is the last, and says so.
        let last = stop.is_cancelled();
        // A client that stops taking its answers is let go (`WRITE_STALL_LIMIT`).
        let mut writes = WriteLimited::new(&mut tcp);
        match response::write(&mut writes, response, last, &mut head_scratch).await {
            Ok(true) if !last => limit.restart(),
            Ok(_) => return,
            Err(error) => {
                tracing::debug!(%error, "writing a response failed; closing the connection");
                return;
            }
        }
        if buffered.capacity() > MAX_IDLE_CAPACITY && buffered.len() < READ_CHUNK {
            let mut small = BytesMut::with_capacity(READ_CHUNK);
            small.extend_from_slice(&buffered);
            buffered = small;
        }
    }
}

/// Whether `buffered` may hold a whole head: an empty line ends one (`\r\n\r\n`, or `\n\n`
/// which `httparse` also takes), searched for past `known_without`, less the 3 bytes a line
/// end could straddle.
fn head_may_end(buffered: &[u8], known_without: usize) -> bool {
    let from = known_without.saturating_sub(3).min(buffered.len());
    buffered[from..].windows(2).enumerate().any(|(i, pair)| {
        pair == b"\n\n" || (pair == b"\n\r" && buffered.get(from + i + 2) == Some(&b'\n'))
    })
}

/// What a [`read_more`] found.
enum Read {
    /// Bytes were added.
    More,
    /// The connection is closed or failed, or `stop` fired.
    Ended,
    /// The limit passed first.
    TimedOut,
}

/// Reads more of the connection into `buffered`, with room for at least `room` more bytes,
/// unless it is closed, fails, `stop` fires or `limit` passes first.
async fn read_more(
    tcp: &mut TcpStream,
    buffered: &mut BytesMut,
    room: usize,
    stop: Option<&CancellationToken>,
    limit: &mut Lapse,
) -> Read {
    buffered.reserve(room);
    // `read_buf` is cancel-safe: a stop or a timeout loses no byte (nothing more is read).
    // Bytes that arrived count even when the limit has passed meanwhile.
    let stopped = async {
        match stop {
            Some(stop) => stop.cancelled().await,
            None => std::future::pending().await,
        }
    };
    let read = tokio::select! {
        biased;
        read = tcp.read_buf(buffered) => read,
        () = stopped => return Read::Ended,
        () = limit.passed() => return Read::TimedOut,
    };
    if matches!(read, Ok(n) if n > 0) {
        Read::More
    } else {
        Read::Ended
    }
}

/// `answer`, unless the client closes the connection first (`None`). What it sends meanwhile
/// (a pipelined request) is kept in `buffered`.
async fn unless_client_leaves(
    tcp: &mut TcpStream,
    buffered: &mut BytesMut,
    answer: impl Future<Output = Response>,
) -> Option<Response> {
    tokio::pin!(answer);
    loop {
        buffered.reserve(READ_CHUNK);
        tokio::select! {
            response = &mut answer => return Some(response),
            // Cancel-safe: a read dropped when the answer comes first has read nothing.
            read = tcp.read_buf(buffered), if buffered.len() < MAX_HEAD => {
                if !matches!(read, Ok(n) if n > 0) {
                    return None;
                }
            }
        }
    }
}

/// A read whose answer is a stream of events (`live=sse`), or a `live` the loop does not know:
/// hyper's. Plain and long-poll reads answer with one body.
fn is_streaming_read(request: &axum::http::Request<()>) -> bool {
    live_modes(request).any(|live| live != "long-poll")
}

/// A read that waits for data (`live=long-poll`).
fn is_long_poll(request: &axum::http::Request<()>) -> bool {
    live_modes(request).any(|live| live == "long-poll")
}

/// The values of the request's `live` query parameters, as sent.
fn live_modes(request: &axum::http::Request<()>) -> impl Iterator<Item = &str> {
    request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.strip_prefix("live="))
}

#[cfg(test)]
mod tests {
    use super::head_may_end;

    #[test]
    fn a_head_may_end_only_past_an_empty_line() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for len in 0..head.len() {
            assert!(!head_may_end(&head[..len], 0), "{len} bytes hold no end");
        }
        // Searched from any point the bytes before were known to hold no end.
        for known in 0..head.len() {
            assert!(head_may_end(head, known), "found past {known}");
        }
        assert!(head_may_end(b"GET / HTTP/1.1\n\n", 10));
        assert!(!head_may_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0));
    }
}
