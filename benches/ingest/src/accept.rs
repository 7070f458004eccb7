//! Events/s the server accepts: batches of fixed-size events over HTTP/1.1 keep-alive
//! connections, each batch answered before the connection sends the next.

use std::sync::Arc;
use std::time::Duration;

use courier::impls::http::HttpTransport;
use courier::traits::transport::{Method, Request, RequestTransport};
use serde::Deserialize;

use crate::drive::{Tally, drive};
use crate::events::EventWriter;

/// The part of the 200 body the load reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Accepted {
    accepted_count: u64,
}

/// One batch to `transport`; the number the server accepted (all of them, or it is an error).
async fn post(
    transport: &HttpTransport,
    key: &str,
    body: String,
    expected: u64,
) -> Result<u64, String> {
    let request = Request::new(Method::Post, "/v1/events/batch")
        .header("content-type", "application/json")
        .header("x-api-key", key)
        .body(body);
    let response = transport
        .send(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status;
    let body = response
        .body
        .collect(16 << 20)
        .await
        .map_err(|e| format!("response body: {e}"))?;
    if status != 200 {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let accepted: Accepted =
        serde_json::from_slice(&body).map_err(|e| format!("unexpected 200 body: {e}"))?;
    if accepted.accepted_count != expected {
        return Err(format!(
            "{} of {expected} accepted: {}",
            accepted.accepted_count,
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        ));
    }
    Ok(accepted.accepted_count)
}

/// Drives the server at `addr` for `duration` with `connections` loops of `batch` events for
/// `app` (key `key`); one warm-up batch first (stream creation, connection set-up).
pub(crate) async fn run(
    addr: &str,
    app: &str,
    key: &str,
    batch: usize,
    connections: usize,
    duration: Duration,
) -> Result<Tally, String> {
    let transport = Arc::new(
        HttpTransport::new(&format!("http://{addr}"))
            .map_err(|e| format!("transport: {e}"))?
            .with_timeout(Duration::from_secs(60)),
    );
    let writer = Arc::new(EventWriter::new(app)?);
    let key: Arc<str> = key.into();
    // Event numbers of the timed run start after the warm-up's.
    let offset = batch as u64;
    post(&transport, &key, writer.batch(0, batch), batch as u64).await?;
    let tally = drive(connections, duration, batch, move |first| {
        let (transport, writer, key) = (transport.clone(), writer.clone(), key.clone());
        async move {
            let body = writer.batch(offset + first, batch);
            post(&transport, &key, body, batch as u64).await
        }
    })
    .await;
    Ok(tally)
}
