//! How the server checks the secrets clients and backends present.

use axum::http::HeaderMap;

/// Whether a presented secret (API key, client token) is the expected one, compared in
/// constant time: how long a refusal takes says nothing about how much of a guess was right.
/// (Its length may show; the content does not.)
pub(super) fn secret_matches(given: Option<&str>, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.is_some_and(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())))
}

/// The token of an `Authorization: Bearer` header.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

#[cfg(test)]
mod tests {
    use super::secret_matches;

    #[test]
    fn only_the_exact_secret_matches() {
        assert!(secret_matches(Some("s3cret-key"), "s3cret-key"));
        for wrong in [
            None,
            Some(""),
            Some("s3cret-kez"),
            Some("s3cret"),
            Some("s3cret-key!"),
        ] {
            assert!(!secret_matches(wrong, "s3cret-key"), "{wrong:?}");
        }
    }
}
