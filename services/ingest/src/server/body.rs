//! From the raw request body to the message bytes: content type, encoding, size limit.

use std::io::Read;

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use http::{HeaderMap, header};

use super::reply::{RequestError, Violation};

/// Content types of a binary protobuf body; every other one (or none) is JSON.
const PROTOBUF_TYPES: [&str; 3] = [
    "application/x-protobuf",
    "application/protobuf",
    "application/octet-stream",
];

/// How the (decoded) body encodes its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// Protojson (the default, as upstream: an absent or unknown `Content-Type` is JSON).
    Json,
    /// Binary protobuf (`application/x-protobuf`, `application/protobuf`,
    /// `application/octet-stream`).
    Protobuf,
}

/// A request body after its `Content-Encoding` was undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBody {
    /// The encoding of the message, from `Content-Type`.
    pub format: BodyFormat,
    /// The message bytes, inflated; without `Content-Encoding` the request's own buffer.
    pub bytes: Bytes,
}

/// Returns the message of a request whose raw body is `raw`, inflating gzip, with the format
/// its `Content-Type` names.
///
/// An absent or unknown `Content-Type` is read as JSON (upstream does the same).
/// `Content-Encoding` may be absent, `identity` or `gzip`; anything else is 415. More than
/// `limit` bytes, raw or inflated, is 413: inflation stops at `limit + 1` bytes and never
/// allocates more than that, whatever the compressed body claims. A body that is not
/// compressed is handed on as it is, not copied (a copy was ~11k instructions per 10 KB
/// request, ~0.2k per event of a batch of 50).
pub fn decode_body(
    headers: &HeaderMap,
    raw: Bytes,
    limit: usize,
) -> Result<DecodedBody, RequestError> {
    let format = body_format(headers);
    if raw.len() > limit {
        return Err(too_large(limit));
    }
    let mut gzip = false;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let value = value.to_str().unwrap_or("(not ASCII)");
        for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            match coding.to_ascii_lowercase().as_str() {
                "identity" => {}
                "gzip" | "x-gzip" if !gzip => gzip = true,
                _ => {
                    return Err(RequestError::UnsupportedMediaType(format!(
                        "Content-Encoding {value} is not supported; use gzip or none"
                    )));
                }
            }
        }
    }
    if !gzip {
        return Ok(DecodedBody { format, bytes: raw });
    }
    let mut bytes = Vec::new();
    inflate_into(&raw, limit, &mut bytes)?;
    Ok(DecodedBody {
        format,
        bytes: bytes.into(),
    })
}

fn body_format(headers: &HeaderMap) -> BodyFormat {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    match media {
        Some(media) if PROTOBUF_TYPES.contains(&media.as_str()) => BodyFormat::Protobuf,
        _ => BodyFormat::Json,
    }
}

fn too_large(limit: usize) -> RequestError {
    RequestError::TooLarge(format!("request body is over {limit} bytes"))
}

/// Inflates `gz` into `out`, failing with 413 as soon as more than `limit` bytes come out.
/// `out`'s capacity never exceeds `limit + 1`: it grows by doubling, clamped there.
fn inflate_into(gz: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), RequestError> {
    let cap = limit.saturating_add(1);
    let mut decoder = MultiGzDecoder::new(gz);
    let mut chunk = [0_u8; 16 * 1024];
    loop {
        let want = chunk.len().min(cap - out.len());
        let n = match decoder.read(&mut chunk[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(RequestError::BadRequest(vec![Violation::new(
                    "body",
                    format!("not valid gzip: {e}"),
                )]));
            }
        };
        if n == 0 {
            return Ok(());
        }
        if out.len() + n > out.capacity() {
            let grown = (out.capacity() * 2).max(out.len() + n).max(4096).min(cap);
            out.reserve_exact(grown - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
        if out.len() > limit {
            return Err(too_large(limit));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{Compression, write::GzEncoder};
    use http::HeaderValue;

    use super::*;

    const LIMIT: usize = 10 << 20;

    fn decode(headers: &HeaderMap, raw: &[u8], limit: usize) -> Result<DecodedBody, RequestError> {
        decode_body(headers, Bytes::copy_from_slice(raw), limit)
    }

    /// The body without `Content-Encoding` is the request's buffer itself: nothing copied.
    #[test]
    fn a_body_not_compressed_is_not_copied() {
        let raw = Bytes::from(br#"{"events":[]}"#.to_vec());
        for coding in [None, Some("identity")] {
            let map = coding.map_or_else(HeaderMap::new, |c| {
                headers(&[(header::CONTENT_ENCODING, c)])
            });
            let decoded = decode_body(&map, raw.clone(), LIMIT).expect("json");
            assert_eq!(decoded.bytes, raw);
            assert_eq!(decoded.bytes.as_ptr(), raw.as_ptr(), "{coding:?}");
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(data).expect("compress");
        encoder.finish().expect("compress")
    }

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn json_whatever_the_content_type_says_except_protobuf() {
        let body = br#"{"events":[]}"#;
        for content_type in [
            None,
            Some("application/json"),
            Some("text/plain"),
            Some("x/y; a=b"),
        ] {
            let map =
                content_type.map_or_else(HeaderMap::new, |t| headers(&[(header::CONTENT_TYPE, t)]));
            let decoded = decode(&map, body, LIMIT).expect("json");
            assert_eq!(decoded.format, BodyFormat::Json);
            assert_eq!(&decoded.bytes[..], body);
        }
        for t in [
            "application/x-protobuf",
            "Application/Octet-Stream; charset=x",
            "application/protobuf",
        ] {
            let mut map = headers(&[(header::CONTENT_TYPE, t)]);
            map.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            let decoded = decode(&map, &gzip(b"\x0a\x00"), LIMIT).expect("protobuf");
            assert_eq!(decoded.format, BodyFormat::Protobuf, "{t}");
            assert_eq!(&decoded.bytes[..], b"\x0a\x00");
        }
    }

    #[test]
    fn gzip_is_inflated_other_encodings_are_415() {
        let body = br#"{"events":[{"event_type":"x"}]}"#;
        let gz = gzip(body);
        for coding in ["gzip", "GZIP", "x-gzip", "identity, gzip"] {
            let map = headers(&[(header::CONTENT_ENCODING, coding)]);
            assert_eq!(
                &decode(&map, &gz, LIMIT).expect("inflated").bytes[..],
                body,
                "{coding}"
            );
        }
        assert_eq!(
            &decode(
                &headers(&[(header::CONTENT_ENCODING, "identity")]),
                body,
                LIMIT
            )
            .expect("identity")
            .bytes[..],
            body
        );
        for coding in ["br", "deflate", "gzip, gzip", "gzip, br", "zstd"] {
            let error = decode(&headers(&[(header::CONTENT_ENCODING, coding)]), &gz, LIMIT)
                .expect_err("refused");
            assert_eq!(error.status(), 415, "{coding}");
        }
        let error = decode(&headers(&[(header::CONTENT_ENCODING, "gzip")]), body, LIMIT)
            .expect_err("not gzip");
        assert_eq!(error.status(), 400);
        let mut truncated = gz.clone();
        truncated.truncate(gz.len() / 2);
        let error = decode(
            &headers(&[(header::CONTENT_ENCODING, "gzip")]),
            &truncated,
            LIMIT,
        )
        .expect_err("truncated");
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn i6_raw_body_over_the_limit_is_413() {
        let body = vec![b' '; 11 << 20];
        let error = decode(&HeaderMap::new(), &body, LIMIT).expect_err("too large");
        assert_eq!(error.status(), 413);
        let error = decode(
            &headers(&[(header::CONTENT_ENCODING, "gzip")]),
            &body,
            LIMIT,
        )
        .expect_err("too large before inflating");
        assert_eq!(error.status(), 413);
        let exact = vec![b' '; LIMIT];
        assert_eq!(
            decode(&HeaderMap::new(), &exact, LIMIT)
                .expect("at the limit")
                .bytes
                .len(),
            LIMIT
        );
    }

    /// I6's gzip bomb: deflate compresses at most ~1032:1, so a body inflating to 1 GiB is
    /// ~1 MiB of gzip (64 members of 16 MiB of zeros each); 1 KiB inflates to ~1 MiB.
    /// Inflation stops just past the 10 MiB limit and the buffer never grew beyond it.
    #[test]
    fn i6_gzip_bomb_is_413_without_inflating_past_the_limit() {
        let member = gzip(&vec![0_u8; 16 << 20]);
        let bomb: Vec<u8> = member
            .iter()
            .copied()
            .cycle()
            .take(member.len() * 64)
            .collect();
        assert!(bomb.len() < 2 << 20, "{} bytes compressed", bomb.len());
        let mut out = Vec::new();
        let error = inflate_into(&bomb, LIMIT, &mut out).expect_err("bomb");
        assert_eq!(error.status(), 413);
        assert_eq!(out.len(), LIMIT + 1);
        assert!(out.capacity() <= LIMIT + 1, "capacity {}", out.capacity());
        let error = decode(
            &headers(&[(header::CONTENT_ENCODING, "gzip")]),
            &bomb,
            LIMIT,
        )
        .expect_err("bomb");
        assert_eq!(error.status(), 413);

        // 1 KiB of gzip at most inflates to ~1 MiB: accepted under the default limit, 413
        // under a smaller one, with the same bound on the buffer.
        let small = gzip(&vec![b' '; 1_000_000]);
        assert!(small.len() <= 1024, "{} bytes", small.len());
        let mut out = Vec::new();
        inflate_into(&small, LIMIT, &mut out).expect("under the limit");
        assert_eq!(out.len(), 1_000_000);
        let mut out = Vec::new();
        assert_eq!(
            inflate_into(&small, 64 << 10, &mut out)
                .expect_err("over")
                .status(),
            413
        );
        assert!(out.capacity() <= (64 << 10) + 1);
    }
}
