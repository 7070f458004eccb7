//! Which HTTP client the accept section's load generator sends with (`LOAD`).

/// The load generator's HTTP client (`LOAD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoadClient {
    /// `raw` (the default since 2026-11-30 15:30Z): [`crate::raw_http`], one connection per
    /// loop, requests pre-built whole, status and `acceptedCount` read from each answer.
    Raw,
    /// `transport`: Courier's `HttpTransport` (hyper's pooled client), each 200 body parsed
    /// whole with `serde_json`; the load generator of every run before.
    Transport,
}

impl std::str::FromStr for LoadClient {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "raw" => Ok(LoadClient::Raw),
            "transport" => Ok(LoadClient::Transport),
            _ => Err(format!("LOAD={text:?}: expected raw or transport")),
        }
    }
}
