//! Normalising the URLs gRPC channels are cached under, so that spellings of one server share
//! one connection.

use tonic::codegen::http::Uri;

use super::GrpcError;

/// The canonical form of a gRPC server URL: `http://host:port` or `https://host:port`, scheme
/// and host lowercased, the default port (80, 443) written out, a trailing `/` dropped.
///
/// Refused: no scheme or host, a scheme other than `http` or `https` (`https` only with the
/// `grpc-tls` feature), user info, and a path, query or fragment (a gRPC channel addresses a
/// server; method paths are per call).
pub fn normalise_url(url: &str) -> Result<String, GrpcError> {
    let trimmed = url.trim();
    let uri: Uri = trimmed
        .parse()
        .map_err(|e| GrpcError::invalid_url(url, format!("not a URL: {e}")))?;
    let scheme = uri
        .scheme_str()
        .ok_or_else(|| GrpcError::invalid_url(url, "no scheme: write http://host:port"))?
        .to_ascii_lowercase();
    if scheme == "https" && !cfg!(feature = "grpc-tls") {
        return Err(GrpcError::invalid_url(
            url,
            "https needs TLS, which this build of the gRPC transport does not include \
             (feature grpc-tls)",
        ));
    }
    if scheme != "http" && scheme != "https" {
        return Err(GrpcError::invalid_url(
            url,
            "the scheme must be http or https",
        ));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| GrpcError::invalid_url(url, "no host"))?;
    if authority.as_str().contains('@') {
        return Err(GrpcError::invalid_url(url, "user info is not allowed"));
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(GrpcError::invalid_url(url, "no host"));
    }
    // `http::Uri` accepts "http://h:1/?" and "http://h:1#f" as a path "/" with an empty query;
    // check the raw text too so that no suffix is silently dropped.
    let after_authority = trimmed
        .split_once("://")
        .map(|(_, rest)| &rest[authority.as_str().len().min(rest.len())..])
        .unwrap_or_default();
    if !(after_authority.is_empty() || after_authority == "/") {
        return Err(GrpcError::invalid_url(
            url,
            "a server URL has no path, query or fragment (method paths are per call)",
        ));
    }
    let port = authority
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Ok(format!("{scheme}://{}:{port}", host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_server_normalise_alike() {
        for url in [
            "http://broker.local:6650",
            "HTTP://Broker.Local:6650",
            "http://broker.local:6650/",
            "  http://broker.local:6650  ",
        ] {
            assert_eq!(
                normalise_url(url).expect(url),
                "http://broker.local:6650",
                "{url}"
            );
        }
        assert_eq!(
            normalise_url("http://127.0.0.1").expect("default port"),
            "http://127.0.0.1:80"
        );
        assert_eq!(
            normalise_url("http://[::1]:6650").expect("IPv6"),
            "http://[::1]:6650"
        );
        assert_ne!(
            normalise_url("http://a:1").expect("a"),
            normalise_url("http://a:2").expect("a")
        );
    }

    #[test]
    fn https_is_kept_apart_from_http_with_tls_and_refused_without() {
        if cfg!(feature = "grpc-tls") {
            assert_eq!(
                normalise_url("HTTPS://Broker:6650/").expect("https"),
                "https://broker:6650"
            );
            assert_eq!(
                normalise_url("https://broker").expect("default port"),
                "https://broker:443"
            );
            assert_ne!(
                normalise_url("https://b:1").expect("https"),
                normalise_url("http://b:1").expect("http")
            );
        } else {
            let error = normalise_url("https://broker:6650").expect_err("no TLS here");
            assert!(error.to_string().contains("grpc-tls"), "{error}");
        }
    }

    #[test]
    fn urls_a_channel_cannot_dial_are_refused_with_a_reason() {
        for (url, reason) in [
            ("broker:6650", "scheme"),
            ("127.0.0.1:6650", "scheme"),
            ("ftp://broker:6650", "scheme must be http"),
            ("http://user@broker:6650", "user info"),
            ("http://broker:6650/danube", "no path"),
            ("http://broker:6650/?x=1", "no path"),
            ("http://broker:6650/#frag", "no path"),
            ("http://broker:6650?x=1", "no path"),
            ("", "not a URL"),
            ("http://", "not a URL"),
            ("http://bro ker:1", "not a URL"),
        ] {
            let error = normalise_url(url).expect_err(url);
            assert!(
                matches!(&error, GrpcError::InvalidUrl { reason: r, .. } if r.contains(reason)),
                "{url:?}: {error}"
            );
        }
    }
}
