//! Transfer codings: only `chunked` is understood. hyper decodes `chunked` when it is the last
//! coding and passes the header on, so a body sent as `gzip, chunked` would reach a handler
//! still gzip-coded and be stored as such. RFC 9112 §6.1: a server that receives a transfer
//! coding it does not understand should answer 501 (Not Implemented).

use axum::http::Request;
use axum::http::header::TRANSFER_ENCODING;
use axum::response::{IntoResponse, Response};

use super::reply::Failure;

/// The 501 for a request whose `Transfer-Encoding` names any coding other than `chunked`, if
/// it does (checked before its body is read).
pub(crate) fn refusal<B>(request: &Request<B>) -> Option<Response> {
    let coding = unsupported_coding(request)?;
    Some(
        Failure::NotImplemented(format!(
            "transfer coding {coding:?} is not implemented: send the body with \
             Transfer-Encoding: chunked alone, or with Content-Length"
        ))
        .into_response(),
    )
}

/// The first coding named by the request's `Transfer-Encoding` headers that is not `chunked`
/// (a value that is not text counts as one).
fn unsupported_coding<B>(request: &Request<B>) -> Option<String> {
    for value in request.headers().get_all(TRANSFER_ENCODING) {
        let Ok(text) = value.to_str() else {
            return Some(String::from_utf8_lossy(value.as_bytes()).into_owned());
        };
        for coding in text.split(',') {
            // A coding's name comes before any parameters (`name;param=value`).
            let name = coding.split(';').next().unwrap_or_default().trim();
            if !name.is_empty() && !name.eq_ignore_ascii_case("chunked") {
                return Some(name.to_owned());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coding_of(values: &[&str]) -> Option<String> {
        let mut request = Request::new(());
        for value in values {
            request
                .headers_mut()
                .append(TRANSFER_ENCODING, value.parse().expect("header value"));
        }
        unsupported_coding(&request)
    }

    #[test]
    fn only_chunked_is_understood() {
        assert_eq!(coding_of(&[]), None);
        assert_eq!(coding_of(&["chunked"]), None);
        assert_eq!(coding_of(&["Chunked"]), None);
        assert_eq!(coding_of(&["gzip, chunked"]).as_deref(), Some("gzip"));
        assert_eq!(coding_of(&["gzip", "chunked"]).as_deref(), Some("gzip"));
        assert_eq!(
            coding_of(&["x-custom;q=1 , chunked"]).as_deref(),
            Some("x-custom")
        );
    }
}
