//! One connection's loop: read a head, answer it if it is ours, else hand the connection to
//! hyper (see the [module docs](super)).

use axum::body::Body;
use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::super::hot_routes::HotRoutes;
use super::head::{self, Head};
use super::{handoff, response};

/// How much more is read at a time.
const READ_CHUNK: usize = 8 << 10;
/// A head longer than this is hyper's, which answers it with 431.
const MAX_HEAD: usize = 64 << 10;
/// The most room made for a body before its bytes arrive.
const MAX_RESERVE: usize = 1 << 20;

/// Serves `tcp` until the client closes it, an error, or `stop` (between requests).
pub(super) async fn run(mut tcp: TcpStream, routes: HotRoutes, stop: CancellationToken) {
    let mut buffered = BytesMut::with_capacity(READ_CHUNK);
    let mut head_scratch = Vec::with_capacity(1024);
    loop {
        let (request, head_len, body_len) = match head::parse(&buffered) {
            Head::Partial if buffered.len() < MAX_HEAD => {
                // Waiting for a request (or the rest of its head): a stop closes the connection.
                if !read_more(&mut tcp, &mut buffered, Some(&stop)).await {
                    return;
                }
                continue;
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
        // Room for the body at once, rather than growing the buffer as it arrives; past
        // `MAX_RESERVE` it grows with what arrives, so a length alone reserves little.
        let missing = (head_len + body_len).saturating_sub(buffered.len());
        buffered.reserve(missing.min(MAX_RESERVE));
        while buffered.len() < head_len + body_len {
            // A body being sent is read to its end, stop or not.
            if !read_more(&mut tcp, &mut buffered, None).await {
                return;
            }
        }
        let mut message = buffered.split_to(head_len + body_len);
        let body = message.split_off(head_len).freeze();
        let answer = routes.answer(hot, name, request.map(|()| Body::from(body)));
        match response::write(&mut tcp, answer.await, &mut head_scratch).await {
            Ok(true) if !stop.is_cancelled() => {}
            Ok(_) => return,
            Err(error) => {
                tracing::debug!(%error, "writing a response failed; closing the connection");
                return;
            }
        }
    }
}

/// Reads more of the connection into `buffered`; false once it is closed, failed, or `stop`
/// fires.
async fn read_more(
    tcp: &mut TcpStream,
    buffered: &mut BytesMut,
    stop: Option<&CancellationToken>,
) -> bool {
    buffered.reserve(READ_CHUNK);
    let read = match stop {
        // `read_buf` is cancel-safe: a stop loses no byte (nothing more is read).
        Some(stop) => tokio::select! {
            read = tcp.read_buf(buffered) => read,
            () = stop.cancelled() => return false,
        },
        None => tcp.read_buf(buffered).await,
    };
    matches!(read, Ok(n) if n > 0)
}

/// A read whose answer is a stream of events (`live=sse`), or a `live` the loop does not know:
/// hyper's. Plain and long-poll reads answer with one body.
fn is_streaming_read(request: &axum::http::Request<()>) -> bool {
    request.uri().query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair.starts_with("live=") && pair != "live=long-poll")
    })
}
