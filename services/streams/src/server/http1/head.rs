//! A request's head, read with `httparse`, and whether the connection loop answers it.

use axum::http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

/// More headers than this and the request is hyper's (whose limit is 100).
const MAX_HEADERS: usize = 64;

/// What the buffered bytes hold.
#[expect(
    clippy::large_enum_variant,
    reason = "made once per request and taken apart at once; a box would be an allocation per request"
)]
pub(super) enum Head {
    /// The head is not all there yet.
    Partial,
    /// A request the loop may answer: its head, the head's length in bytes, its body's.
    Ours {
        request: Request<()>,
        head_len: usize,
        body_len: usize,
    },
    /// A request the loop leaves to hyper (see the [module docs](super)).
    Theirs,
}

/// Reads the request head at the start of `buffered`.
pub(super) fn parse(buffered: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buffered) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Theirs,
    };
    match ours(&parsed) {
        Some((request, body_len)) => Head::Ours {
            request,
            head_len,
            body_len,
        },
        None => Head::Theirs,
    }
}

/// The request and its body's length, if it is one the loop answers.
fn ours(parsed: &httparse::Request<'_, '_>) -> Option<(Request<()>, usize)> {
    if parsed.version != Some(1) {
        return None;
    }
    let method = match parsed.method? {
        "GET" => Method::GET,
        "POST" => Method::POST,
        _ => return None,
    };
    let uri = Uri::try_from(parsed.path?).ok()?;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    let mut body_len = None;
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        if name == TRANSFER_ENCODING || name == EXPECT || name == UPGRADE {
            return None;
        }
        if name == CONNECTION && !header.value.eq_ignore_ascii_case(b"keep-alive") {
            return None;
        }
        if name == CONTENT_LENGTH {
            if body_len.is_some() {
                return None;
            }
            body_len = Some(decimal(header.value)?);
        }
        headers.append(name, HeaderValue::from_bytes(header.value).ok()?);
    }
    let body_len = body_len.unwrap_or(0);
    if method == Method::GET && body_len != 0 {
        return None;
    }
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some((request, body_len))
}

/// A `Content-Length` value: ASCII digits only, as RFC 9110 §8.6 has it.
fn decimal(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        parse(text.as_bytes())
    }

    fn is_theirs(text: &str) -> bool {
        matches!(head(text), Head::Theirs)
    }

    #[test]
    fn a_plain_read_and_append_are_ours() {
        let get = "GET /v1/stream/a?offset=-1 HTTP/1.1\r\nHost: x\r\n\r\n";
        let Head::Ours {
            request,
            head_len,
            body_len,
        } = head(get)
        else {
            panic!("a plain GET is ours");
        };
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri().query(), Some("offset=-1"));
        assert_eq!(request.headers()["host"], "x");
        assert_eq!((head_len, body_len), (get.len(), 0));
        let text = "POST /v1/stream/a HTTP/1.1\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello";
        let Head::Ours {
            head_len, body_len, ..
        } = head(text)
        else {
            panic!("a POST with a length is ours");
        };
        assert_eq!((head_len, body_len), (text.len() - 5, 5));
    }

    #[test]
    fn an_unfinished_head_is_partial() {
        assert!(matches!(
            head("GET /v1/stream/a HTTP/1.1\r\nHost:"),
            Head::Partial
        ));
    }

    #[test]
    fn anything_unusual_is_left_to_hyper() {
        for text in [
            "GET /v1/stream/a HTTP/1.0\r\n\r\n",
            "PUT /v1/stream/a HTTP/1.1\r\n\r\n",
            "HEAD /v1/stream/a HTTP/1.1\r\n\r\n",
            "POST /v1/stream/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /v1/stream/a HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            "POST /v1/stream/a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST /v1/stream/a HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST /v1/stream/a HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "GET /v1/stream/a HTTP/1.1\r\nConnection: close\r\n\r\n",
            "GET /v1/stream/a HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
            "GET /v1/stream/a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "GET /v1/stream/a HTTP/1.1\r\nBad Header: x\r\n\r\n",
            "GARBAGE\r\n\r\n",
        ] {
            assert!(is_theirs(text), "{text:?} should be hyper's");
        }
        let many = format!(
            "GET /v1/stream/a HTTP/1.1\r\n{}\r\n",
            "x-h: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(is_theirs(&many), "too many headers should be hyper's");
    }
}
