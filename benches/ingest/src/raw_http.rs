//! The lean load generator's HTTP/1.1: one keep-alive connection per closed loop, each request
//! written whole (head and body pre-built) with one `write_all`, each answer read into a
//! buffer the connection keeps, its status and `Content-Length` read from the head.
//!
//! Courier's `HttpTransport` (hyper's pooled client: a dispatch task per connection, a pool
//! checkout, a timeout and a collected body per request, then a `serde_json` pass over the
//! whole answer) cost the load generator ~1 µs of CPU per event at batch 50 on the two cores
//! the server runs on. This does the least an HTTP client can while still checking each
//! answer: status 200 and its `acceptedCount`.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer's head may not be larger (the server's are ~150 bytes).
const MAX_HEAD: usize = 16 << 10;

/// An answer's body may not be larger (a batch of 10 000 is ~700 KB).
const MAX_BODY: usize = 16 << 20;

/// `POST /v1/events/batch` of `body` with the API key `key`: the bytes to write.
pub(crate) fn batch_request(key: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST /v1/events/batch HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n\
         x-api-key: {key}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut request = Vec::with_capacity(head.len() + body.len());
    request.extend_from_slice(head.as_bytes());
    request.extend_from_slice(body);
    request
}

/// One keep-alive connection, one request at a time.
pub(crate) struct RawConnection {
    stream: TcpStream,
    /// The answer being read (head and body), kept between requests.
    buffer: Vec<u8>,
    timeout: Duration,
}

impl RawConnection {
    /// Connects to `addr` (`host:port`); each exchange must finish within `timeout`.
    pub(crate) async fn connect(addr: &str, timeout: Duration) -> Result<Self, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("nodelay: {e}"))?;
        Ok(Self {
            stream,
            buffer: Vec::with_capacity(64 << 10),
            timeout,
        })
    }

    /// Writes `request` and reads its answer: the status and the body.
    pub(crate) async fn exchange(&mut self, request: &[u8]) -> Result<(u16, &[u8]), String> {
        let timeout = self.timeout;
        let (status, body) = tokio::time::timeout(timeout, self.exchange_unbounded(request))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))??;
        Ok((status, &self.buffer[body..]))
    }

    async fn exchange_unbounded(&mut self, request: &[u8]) -> Result<(u16, usize), String> {
        self.stream
            .write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.buffer.clear();
        let head_end = loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                break at + 4;
            }
            if self.buffer.len() > MAX_HEAD {
                return Err(format!("answer head over {MAX_HEAD} bytes"));
            }
            self.read_more().await?;
        };
        let head = Head::parse(&self.buffer[..head_end])?;
        if head.content_length > MAX_BODY {
            return Err(format!("answer body of {} bytes", head.content_length));
        }
        let end = head_end + head.content_length;
        while self.buffer.len() < end {
            self.read_more().await?;
        }
        if self.buffer.len() > end {
            // One request at a time: nothing may follow the answer.
            return Err(format!(
                "{} bytes after the answer's body",
                self.buffer.len() - end
            ));
        }
        Ok((head.status, head_end))
    }

    async fn read_more(&mut self) -> Result<(), String> {
        if self.buffer.capacity() - self.buffer.len() < 4096 {
            self.buffer.reserve(self.buffer.capacity().max(4096));
        }
        let n = self
            .stream
            .read_buf(&mut self.buffer)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        Ok(())
    }
}

/// What the load reads of an answer's head.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    content_length: usize,
}

impl Head {
    /// Reads `HTTP/1.1 STATUS ...` and the `Content-Length` header; a chunked or unsized
    /// answer is an error (the server sizes every answer it writes whole).
    fn parse(head: &[u8]) -> Result<Head, String> {
        let text = std::str::from_utf8(head).map_err(|_| "answer head is not UTF-8".to_owned())?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("unexpected status line {status_line:?}"))?;
        let mut content_length = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(format!("answer with transfer-encoding {}", value.trim()));
            }
        }
        let content_length =
            content_length.ok_or_else(|| "answer without a content-length".to_owned())?;
        Ok(Head {
            status,
            content_length,
        })
    }
}

/// The `acceptedCount` of a 200 body of `/v1/events/batch`, which the server writes first:
/// `{"acceptedCount":N,...`. `None` if the body does not start so.
pub(crate) fn accepted_count(body: &[u8]) -> Option<u64> {
    let rest = body.strip_prefix(b"{\"acceptedCount\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || rest.get(digits) != Some(&b',') || !body.ends_with(b"}") {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_gives_status_and_length_and_refuses_chunks() {
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 42\r\n\r\n";
        assert_eq!(
            Head::parse(head),
            Ok(Head {
                status: 200,
                content_length: 42
            })
        );
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(Head::parse(chunked).is_err());
        assert!(Head::parse(b"HTTP/1.1 503 x\r\n\r\n").is_err());
        assert!(Head::parse(b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n").is_err());
    }

    #[test]
    fn accepted_count_is_read_from_the_body_the_server_writes() {
        assert_eq!(
            accepted_count(br#"{"acceptedCount":50,"rejectedCount":0,"results":[]}"#),
            Some(50)
        );
        assert_eq!(accepted_count(br#"{"acceptedCount":,"x":1}"#), None);
        assert_eq!(
            accepted_count(br#"{"rejectedCount":0,"acceptedCount":5}"#),
            None
        );
        assert_eq!(accepted_count(br#"{"acceptedCount":5"#), None);
        assert_eq!(accepted_count(b""), None);
    }

    #[test]
    fn the_request_is_sized_by_its_body() {
        let request = batch_request("k", b"{}");
        let text = String::from_utf8(request).expect("utf-8");
        assert!(text.starts_with("POST /v1/events/batch HTTP/1.1\r\n"));
        assert!(text.contains("\r\nx-api-key: k\r\n"));
        assert!(text.ends_with("content-length: 2\r\n\r\n{}"));
    }
}
