//! Writing a handler's response as HTTP/1.1, framed as hyper frames it: `Content-Length` when
//! the body's size is known, chunked otherwise, no body on 1xx, 204 and 304, a `Date` header.

use std::cell::RefCell;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use axum::response::Response;
use bytes::Buf;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Writes `response` on `tcp` (`head` is scratch space for its head); `last` adds
/// `connection: close`, as hyper does for the last answer of a connection it is closing.
/// Whether the connection may carry another request (not if the response says
/// `Connection: close`).
pub(super) async fn write(
    tcp: &mut (impl AsyncWrite + Unpin),
    response: Response,
    last: bool,
    head: &mut Vec<u8>,
) -> io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    let bodyless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    head.clear();
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    let (mut length_given, mut date_given, mut keep_open) = (false, false, true);
    for (name, value) in &parts.headers {
        if *name == CONTENT_LENGTH || *name == TRANSFER_ENCODING {
            // The framing is decided here; a length the handler set is kept, as hyper keeps it.
            if bodyless || *name == TRANSFER_ENCODING {
                continue;
            }
            length_given = true;
        } else if *name == DATE {
            date_given = true;
        } else if *name == CONNECTION
            && value
                .to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("close"))
        {
            keep_open = false;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if last && keep_open {
        head.extend_from_slice(b"connection: close\r\n");
        keep_open = false;
    }
    if !date_given {
        head.extend_from_slice(b"date: ");
        with_date(|date| head.extend_from_slice(date.as_bytes()));
        head.extend_from_slice(b"\r\n");
    }
    if bodyless {
        head.extend_from_slice(b"\r\n");
        tcp.write_all(head).await?;
        return Ok(keep_open);
    }
    let chunked = match body.size_hint().exact() {
        _ if length_given => false,
        Some(len) => {
            head.extend_from_slice(format!("content-length: {len}\r\n").as_bytes());
            false
        }
        None => {
            head.extend_from_slice(b"transfer-encoding: chunked\r\n");
            true
        }
    };
    head.extend_from_slice(b"\r\n");
    // The head goes out with the body's first frame, in one write for a full body.
    let mut head_sent = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers: not sent, as hyper does not for a body it frames by length
        };
        if data.is_empty() {
            continue;
        }
        let pending: &[u8] = if head_sent { &[] } else { head };
        if chunked {
            let size = format!("{:x}\r\n", data.len());
            let mut out = pending
                .chain(size.as_bytes())
                .chain(&mut data)
                .chain(&b"\r\n"[..]);
            tcp.write_all_buf(&mut out).await?;
        } else {
            tcp.write_all_buf(&mut pending.chain(&mut data)).await?;
        }
        head_sent = true;
    }
    let end: &[u8] = if chunked { b"0\r\n\r\n" } else { b"" };
    if head_sent {
        if !end.is_empty() {
            tcp.write_all(end).await?;
        }
    } else {
        head.extend_from_slice(end);
        tcp.write_all(head).await?;
    }
    Ok(keep_open)
}

/// Calls `f` with the current time as an HTTP date, formatted at most once a second per thread.
fn with_date(f: impl FnOnce(&str)) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(formatted_at, date)| {
        if *formatted_at != second {
            *date = httpdate::fmt_http_date(now);
            *formatted_at = second;
        }
        f(date);
    });
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// What `write` puts on the wire for `response`, with the date line taken out.
    async fn wire(response: Response) -> (String, bool) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (mut server, _) = listener.accept().await.expect("accept");
        let keep_open = write(&mut server, response, false, &mut Vec::new())
            .await
            .expect("written");
        drop(server);
        let mut bytes = Vec::new();
        client.read_to_end(&mut bytes).await.expect("read");
        let text = String::from_utf8(bytes).expect("text");
        let text = text
            .split_inclusive("\r\n")
            .filter(|line| !line.starts_with("date: "))
            .collect();
        (text, keep_open)
    }

    fn response(status: StatusCode, body: Body) -> Response {
        let mut response = Response::new(body);
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert("stream-next-offset", "7".parse().expect("value"));
        response
    }

    #[tokio::test]
    async fn a_full_body_is_framed_by_its_length() {
        let (text, keep_open) = wire(response(StatusCode::OK, Body::from("hello"))).await;
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nstream-next-offset: 7\r\ncontent-length: 5\r\n\r\nhello"
        );
        assert!(keep_open);
        let (text, _) = wire(response(StatusCode::OK, Body::empty())).await;
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nstream-next-offset: 7\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn no_content_and_not_modified_have_no_body_and_no_length() {
        for (status, line) in [
            (StatusCode::NO_CONTENT, "204 No Content"),
            (StatusCode::NOT_MODIFIED, "304 Not Modified"),
        ] {
            let mut answer = response(status, Body::from("ignored"));
            answer
                .headers_mut()
                .insert(CONTENT_LENGTH, "7".parse().expect("value"));
            let (text, _) = wire(answer).await;
            assert_eq!(
                text,
                format!("HTTP/1.1 {line}\r\nstream-next-offset: 7\r\n\r\n")
            );
        }
    }

    #[tokio::test]
    async fn a_body_of_unknown_size_is_chunked() {
        let frames =
            futures::stream::iter(["ab", "", "cde"].map(|s| {
                Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(s.as_bytes()))
            }));
        let (text, _) = wire(response(StatusCode::OK, Body::from_stream(frames))).await;
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nstream-next-offset: 7\r\ntransfer-encoding: chunked\r\n\r\n\
             2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn the_last_answer_says_connection_close() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (mut server, _) = listener.accept().await.expect("accept");
        let answer = response(StatusCode::NO_CONTENT, Body::empty());
        let keep_open = write(&mut server, answer, true, &mut Vec::new())
            .await
            .expect("written");
        assert!(!keep_open);
        drop(server);
        let mut text = String::new();
        client.read_to_string(&mut text).await.expect("read");
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    }

    #[tokio::test]
    async fn connection_close_in_the_response_ends_the_connection() {
        let mut answer = response(StatusCode::OK, Body::empty());
        answer
            .headers_mut()
            .insert(CONNECTION, "close".parse().expect("value"));
        let (_, keep_open) = wire(answer).await;
        assert!(!keep_open);
    }
}
