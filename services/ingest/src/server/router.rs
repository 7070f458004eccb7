//! The HTTP surface: `POST /v1/events/batch` and `/v1/events/ingest`, `/health`, `/ready`,
//! `/metrics`, CORS preflight and `X-Request-ID`, with the valid events of a request written
//! to the app's stream by one keyed append.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use courier_traits::Classify;
use courier_traits::storage::{
    KeyedOutcome, KeyedRecord, StorageError, StreamConfig, StreamName, StreamStorage,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};

use super::auth::{ApiKeyChecker, AuthenticatedApp, is_lower_hex_64};
use super::body::{BodyFormat, DecodedBody, decode_body};
use super::event::{AcceptedEvent, EventOutcome, IngestContext};
use super::keys::AdminApi;
use super::metrics::{AuthFailure, IngestMetrics, TEXT_FORMAT};
use super::parse::{EventParser, Limits};
use super::protobuf::ProtobufBodies;
use super::rate::RateLimiter;
use super::reply::{RequestError, Violation};
use super::response::{ResultText, batch_json, single_accepted_json};
use super::schema::SchemaError;

/// Settings of the ingestion server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IngestConfig {
    /// Request limits.
    pub limits: Limits,
    /// How long a committed idempotency key suppresses its repeats (default 24 h, the mobile
    /// SDK's offline retention).
    pub dedup_window: Duration,
    /// How long the keyed append may take before the request is 503 (default 10 s).
    pub append_timeout: Duration,
    /// `Retry-After` of a 503 (default 1 s).
    pub retry_after: Duration,
    /// Per-app requests per second and burst of the token bucket (default 1 000, 2 000).
    pub rate_per_second: u32,
    /// See [`IngestConfig::rate_per_second`].
    pub rate_burst: u32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            dedup_window: Duration::from_secs(24 * 3600),
            append_timeout: Duration::from_secs(10),
            retry_after: Duration::from_secs(1),
            rate_per_second: 1_000,
            rate_burst: 2_000,
        }
    }
}

impl IngestConfig {
    /// Sets [`IngestConfig::limits`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets [`IngestConfig::dedup_window`].
    pub fn with_dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = window;
        self
    }

    /// Sets [`IngestConfig::append_timeout`].
    pub fn with_append_timeout(mut self, timeout: Duration) -> Self {
        self.append_timeout = timeout;
        self
    }

    /// Sets the token bucket of every app.
    pub fn with_rate_limit(mut self, per_second: u32, burst: u32) -> Self {
        self.rate_per_second = per_second;
        self.rate_burst = burst;
        self
    }
}

/// The ingestion server over a [`StreamStorage`] with keyed appends.
#[derive(Clone)]
pub struct IngestServer {
    pub(super) state: Arc<IngestState>,
    pub(super) admin: Option<AdminApi>,
}

pub(super) struct IngestState {
    parser: EventParser,
    protobuf: ProtobufBodies,
    keys: ApiKeyChecker,
    limiter: RateLimiter,
    storage: Arc<dyn StreamStorage>,
    /// Streams this node has created (or found): `create` is skipped for them.
    known_streams: Mutex<HashSet<String>>,
    config: IngestConfig,
    metrics: IngestMetrics,
}

impl std::fmt::Debug for IngestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestServer")
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

/// The server cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum IngestServerError {
    /// The checked-in schema is unusable (a build defect).
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The storage has no keyed appends, so dedup could not hold.
    #[error("the storage does not offer keyed appends (durable dedup); choose one that does")]
    NoKeyedAppend,
}

impl IngestServer {
    /// A server writing to `storage`, checking keys with `keys`. The storage must offer keyed
    /// appends ([`StorageCapabilities::keyed_append`](courier_traits::storage::StorageCapabilities)).
    pub fn new(
        storage: Arc<dyn StreamStorage>,
        keys: ApiKeyChecker,
        config: IngestConfig,
    ) -> Result<Self, IngestServerError> {
        if !storage.capabilities().keyed_append {
            return Err(IngestServerError::NoKeyedAppend);
        }
        Ok(Self {
            state: Arc::new(IngestState {
                parser: EventParser::new(config.limits.clone())?,
                protobuf: ProtobufBodies::load()?,
                keys,
                limiter: RateLimiter::new(config.rate_per_second, config.rate_burst),
                storage,
                known_streams: Mutex::new(HashSet::new()),
                config,
                metrics: IngestMetrics::new(),
            }),
            admin: None,
        })
    }

    /// Also serves the admin API (key management and the read-only event streams).
    pub fn with_admin(mut self, admin: AdminApi) -> Self {
        self.admin = Some(admin);
        self
    }

    /// The server's metrics (also served as `GET /metrics`).
    pub fn metrics(&self) -> &IngestMetrics {
        &self.state.metrics
    }

    /// The axum router: the event endpoints and the probes, under CORS and `X-Request-ID`.
    pub fn router(&self) -> Router {
        let state = Arc::clone(&self.state);
        // Only the event endpoints count as requests: probes and scrapes would drown them.
        let events = Router::new()
            .route("/v1/events/batch", post(batch))
            .route("/v1/events/ingest", post(ingest))
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(&state),
                count_request,
            ));
        let probes = Router::new()
            .route("/health", get(|| async { json_ok(br#"{"status":"ok"}"#) }))
            .route("/ready", get(ready))
            .route("/metrics", get(metrics));
        Router::new()
            .merge(events)
            .merge(probes)
            .with_state(state)
            .merge(
                self.admin
                    .as_ref()
                    .map(AdminApi::router)
                    .unwrap_or_default(),
            )
            .layer(axum::middleware::from_fn(cors))
            .layer(axum::middleware::from_fn(request_id))
    }
}

fn json_ok(body: &'static [u8]) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The stream of `app`'s events.
pub fn app_stream(app_id: &str) -> Result<StreamName, StorageError> {
    Ok(StreamName::new(&format!("ingest/{app_id}"))?)
}

async fn ready(State(state): State<Arc<IngestState>>) -> Response {
    // Any answer from the storage, "not found" included, shows it is reachable.
    let probe = app_stream("-ready-probe");
    match probe {
        Ok(name) => match state.storage.head(&name).await {
            Ok(_) | Err(StorageError::NotFound { .. }) => json_ok(br#"{"status":"ready"}"#),
            Err(e) => unavailable(&state, &e).into_response(),
        },
        Err(e) => unavailable(&state, &e).into_response(),
    }
}

async fn metrics(State(state): State<Arc<IngestState>>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT))],
        state.metrics.render(),
    )
        .into_response()
}

/// What a handler of the event endpoints learned about its request, for the request's log
/// line (attached to the response; absent when the key check failed).
#[derive(Debug, Clone, Default)]
struct RequestSummary {
    app: String,
    events: usize,
    stored: usize,
    duplicate: usize,
    rejected: usize,
}

/// Counts each answer of the event endpoints by status, and logs one line per request: its
/// id, status, and what the handler knew (app and counts). Never the key.
async fn count_request(
    State(state): State<Arc<IngestState>>,
    request_id: Option<Extension<RequestId>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    count(&state, request_id.as_deref(), &mut response);
    response
}

/// [`count_request`]'s work on the answer: the count by status and the log line.
fn count(state: &IngestState, request_id: Option<&RequestId>, response: &mut Response) {
    let status = response.status().as_u16();
    state.metrics.request(status);
    // Taken, not cloned: nothing after this reads it.
    let summary = response
        .extensions_mut()
        .remove::<RequestSummary>()
        .unwrap_or_default();
    tracing::info!(
        request_id = %RequestId::display(request_id),
        status,
        app = %if summary.app.is_empty() { "-" } else { summary.app.as_str() },
        events = summary.events,
        stored = summary.stored,
        duplicate = summary.duplicate,
        rejected = summary.rejected,
        "ingest request"
    );
}

/// The handler's answer (its error's, if it failed) with `summary` attached for the log line.
fn summarised(result: Result<Response, RequestError>, summary: RequestSummary) -> Response {
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(summary);
    response
}

impl RequestSummary {
    fn of(app: &AuthenticatedApp) -> Self {
        Self {
            app: app.app_id.clone(),
            ..Self::default()
        }
    }
}

fn unavailable(state: &IngestState, error: &StorageError) -> RequestError {
    tracing::warn!(error = %error, "ingest storage unavailable");
    // Not "nothing was written": an append that timed out, or whose connection broke after
    // the commit was sent, may have landed. What holds is that a retry with the same
    // idempotency keys stores each event once.
    RequestError::Unavailable {
        message: "storage unavailable, the batch was not confirmed stored; retry it with the \
                  same idempotency keys (events already stored answer with their first eventId)"
            .into(),
        retry_after: state.config.retry_after,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The storage refused a write: permanent refusals are 500 (nothing written, retrying will not
/// help), the storage's record limit 413 (the SDK halves the batch), the rest 503.
fn storage_refusal(state: &IngestState, error: StorageError) -> RequestError {
    match error {
        StorageError::TooLarge { .. } => RequestError::TooLarge(error.to_string()),
        // Deleted again between our create and append (another node, an expiry): a race a
        // retry resolves.
        StorageError::NotFound { .. } => unavailable(state, &error),
        ref e if e.is_retryable() => unavailable(state, e),
        // These name only the stream and its state: safe to tell the client.
        StorageError::Closed { .. }
        | StorageError::Gone { .. }
        | StorageError::ConfigConflict { .. }
        | StorageError::ContentTypeMismatch { .. } => {
            tracing::error!(error = %error, "ingest stream refuses writes");
            RequestError::Internal(format!("{error}; nothing was written"))
        }
        // A backend's own message may name hosts or queries: logged, not answered.
        other => {
            tracing::error!(error = %other, "ingest storage failed permanently");
            RequestError::Internal("storage error, nothing was written".into())
        }
    }
}

/// Auth, rate limit, body: what both endpoints do before parsing.
async fn admit(
    state: &IngestState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(AuthenticatedApp, DecodedBody), RequestError> {
    let key = headers.get("x-api-key").map(HeaderValue::as_bytes);
    let app = state.keys.check(key).await.inspect_err(|e| {
        let well_formed = key
            .and_then(|k| std::str::from_utf8(k).ok())
            .is_some_and(is_lower_hex_64);
        let reason = match e {
            RequestError::MissingApiKey => AuthFailure::Missing,
            RequestError::Unavailable { .. } => AuthFailure::StoreUnavailable,
            _ if well_formed => AuthFailure::UnknownOrRevoked,
            _ => AuthFailure::Malformed,
        };
        state.metrics.auth_failure(reason);
    })?;
    state
        .limiter
        .check(&app.app_id, tokio::time::Instant::now())?;
    let limit = state.config.limits.max_body_bytes;
    let raw = read_limited(body, limit).await?;
    let body = decode_body(headers, raw, limit)?;
    state.metrics.request_bytes(body.bytes.len());
    Ok((app, body))
}

/// The request's message as protojson, whatever its encoding.
fn message_json(
    state: &IngestState,
    body: DecodedBody,
    single: bool,
) -> Result<Bytes, RequestError> {
    match (body.format, single) {
        (BodyFormat::Json, _) => Ok(body.bytes),
        (BodyFormat::Protobuf, false) => state.protobuf.batch_json(&body.bytes).map(Bytes::from),
        (BodyFormat::Protobuf, true) => state.protobuf.single_json(&body.bytes).map(Bytes::from),
    }
}

/// Reads at most `limit` bytes of `body`; one more is 413 without reading further.
async fn read_limited(body: Body, limit: usize) -> Result<Bytes, RequestError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(RequestError::TooLarge(
            format!("request body is over {limit} bytes"),
        )),
        Err(e) => Err(RequestError::BadRequest(vec![Violation::new(
            "body",
            format!("could not be read: {e}"),
        )])),
    }
}

/// Which event endpoint a request came to.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    /// `POST /v1/events/batch`.
    Batch,
    /// `POST /v1/events/ingest`.
    Single,
}

// The request whole rather than `HeaderMap` and `Body` extractors: axum's `HeaderMap`
// extractor clones every header of the request.
async fn batch(State(state): State<Arc<IngestState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    handle(&state, &parts.headers, body, Endpoint::Batch).await
}

async fn ingest(State(state): State<Arc<IngestState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    handle(&state, &parts.headers, body, Endpoint::Single).await
}

/// Admits the request, then runs the endpoint's work for the key's app; the answer carries
/// the request's summary for its log line.
async fn handle(
    state: &IngestState,
    headers: &HeaderMap,
    body: Body,
    endpoint: Endpoint,
) -> Response {
    let (app, body) = match admit(state, headers, body).await {
        Ok(admitted) => admitted,
        Err(e) => return e.into_response(),
    };
    let mut summary = RequestSummary::of(&app);
    let result = match endpoint {
        Endpoint::Batch => batch_of_app(state, &app, body, &mut summary).await,
        Endpoint::Single => single_of_app(state, &app, body, &mut summary).await,
    };
    summarised(result, summary)
}

async fn batch_of_app(
    state: &IngestState,
    app: &AuthenticatedApp,
    body: DecodedBody,
    summary: &mut RequestSummary,
) -> Result<Response, RequestError> {
    let json = message_json(state, body, false)?;
    let context = IngestContext {
        app_id: &app.app_id,
        received_ms: now_ms(),
    };
    let outcomes = state.parser.parse_batch(&json, &context)?;
    state.metrics.request_events(outcomes.len());
    summary.events = outcomes.len();
    let stored = store(state, &app.app_id, &outcomes).await?;
    let duplicates = stored.duplicates;
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, EventOutcome::Valid(_)))
        .count();
    let rejected = outcomes.len() - accepted;
    // `store` answers one entry per valid event, in order.
    let mut originals = stored.originals.iter();
    let results = outcomes.iter().map(|outcome| match outcome {
        EventOutcome::Rejected(error) => ResultText::Rejected(error),
        EventOutcome::Valid(event) => ResultText::Accepted(
            originals
                .next()
                .and_then(Option::as_deref)
                .unwrap_or(&event.id),
        ),
    });
    let body = batch_json(accepted, results);
    state
        .metrics
        .events(accepted - duplicates, duplicates, rejected);
    summary.stored = accepted - duplicates;
    summary.duplicate = duplicates;
    summary.rejected = rejected;
    Ok(json_response(StatusCode::OK, body))
}

async fn single_of_app(
    state: &IngestState,
    app: &AuthenticatedApp,
    body: DecodedBody,
    summary: &mut RequestSummary,
) -> Result<Response, RequestError> {
    let json = message_json(state, body, true)?;
    let context = IngestContext {
        app_id: &app.app_id,
        received_ms: now_ms(),
    };
    let outcome = state.parser.parse_single(&json, &context)?;
    state.metrics.request_events(1);
    summary.events = 1;
    if let EventOutcome::Rejected(error) = &outcome {
        return Err(RequestError::BadRequest(vec![Violation::new(
            "event", error,
        )]));
    }
    let stored = store(state, &app.app_id, std::slice::from_ref(&outcome)).await?;
    let duplicate = stored.duplicates;
    state.metrics.events(1 - duplicate, duplicate, 0);
    summary.stored = 1 - duplicate;
    summary.duplicate = duplicate;
    let original = stored.originals.into_iter().next().flatten();
    let id = match (&original, &outcome) {
        (Some(original), _) => original.as_str(),
        (None, EventOutcome::Valid(event)) => event.id.as_str(),
        (None, EventOutcome::Rejected(_)) => "",
    };
    Ok(json_response(StatusCode::OK, single_accepted_json(id)))
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// What [`store`] did with a request's valid events.
struct Stored {
    /// For each valid event, in order: the original's id if it is a duplicate, `None` if it
    /// was written (its own id stands).
    originals: Vec<Option<String>>,
    /// How many were duplicates.
    duplicates: usize,
}

/// Writes the valid events with one keyed append to the app's stream and answers, for each,
/// the original's event id if its key was committed before (`None`: written, its own id). On any
/// storage failure ([`storage_refusal`] says which status) the append wrote nothing.
async fn store(
    state: &IngestState,
    app_id: &str,
    outcomes: &[EventOutcome],
) -> Result<Stored, RequestError> {
    let valid = || {
        outcomes.iter().filter_map(|o| match o {
            EventOutcome::Valid(event) => Some(event),
            EventOutcome::Rejected(_) => None,
        })
    };
    let count = valid().count();
    if count == 0 {
        return Ok(Stored {
            originals: Vec::new(),
            duplicates: 0,
        });
    }
    let stream = app_stream(app_id).map_err(|e| unavailable(state, &e))?;
    let mut created_now = false;
    if !is_known(state, &stream) {
        ensure_stream(state, &stream).await?;
        created_now = true;
    }
    // The records are built again for the retry rather than cloned for every first attempt.
    let records = || valid().map(keyed_record).collect::<Vec<_>>();
    let mut attempt = append(state, &stream, records()).await;
    // A stream another node deleted or that expired since we saw it: create it again, once.
    if matches!(attempt, Err(StorageError::NotFound { .. })) && !created_now {
        forget(state, &stream);
        ensure_stream(state, &stream).await?;
        attempt = append(state, &stream, records()).await;
    }
    let outcomes = attempt.map_err(|e| storage_refusal(state, e))?;
    if outcomes.len() != count {
        return Err(unavailable(
            state,
            &StorageError::Backend {
                message: "keyed append answered a different number of outcomes".into(),
                source: None,
            },
        ));
    }
    let mut duplicates = 0;
    let originals = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            KeyedOutcome::Appended { .. } => None,
            KeyedOutcome::Duplicate { tag } => {
                duplicates += 1;
                Some(tag)
            }
        })
        .collect();
    Ok(Stored {
        originals,
        duplicates,
    })
}

/// The keyed record of a valid event: its idempotency key, its id as the tag.
fn keyed_record(event: &AcceptedEvent) -> KeyedRecord {
    KeyedRecord {
        key: event.idempotency_key.clone(),
        tag: event.id.clone(),
        // A view of the request's records (see `AcceptedEvent::record`), not a copy.
        data: event.record.clone(),
    }
}

async fn append(
    state: &IngestState,
    stream: &StreamName,
    records: Vec<KeyedRecord>,
) -> Result<Vec<KeyedOutcome>, StorageError> {
    let call = state
        .storage
        .append_keyed(stream, records, state.config.dedup_window);
    let started = Instant::now();
    let result = tokio::time::timeout(state.config.append_timeout, call).await;
    state.metrics.append(started.elapsed());
    match result {
        Ok(result) => result,
        Err(_) => Err(StorageError::Unavailable {
            message: format!(
                "keyed append timed out after {:?}",
                state.config.append_timeout
            ),
            source: None,
        }),
    }
}

fn is_known(state: &IngestState, stream: &StreamName) -> bool {
    let known = state
        .known_streams
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    known.contains(stream.as_str())
}

fn forget(state: &IngestState, stream: &StreamName) {
    let mut known = state
        .known_streams
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    known.remove(stream.as_str());
}

async fn ensure_stream(state: &IngestState, stream: &StreamName) -> Result<(), RequestError> {
    state
        .storage
        .create(
            stream,
            StreamConfig::with_content_type("application/json"),
            Vec::new(),
        )
        .await
        .map_err(|e| storage_refusal(state, e))?;
    let mut known = state
        .known_streams
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    known.insert(stream.as_str().to_owned());
    Ok(())
}

const ALLOWED_HEADERS: &str = "Content-Type, Content-Encoding, X-API-Key, X-Request-ID";

/// CORS: a preflight `OPTIONS` is 204 before any auth; every answer to a request with an
/// `Origin` allows it (the endpoint is public to any origin holding a key, as upstream's `*`).
async fn cors(request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = if request.method() == Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        response
    } else {
        next.run(request).await
    };
    if origin.is_some() {
        allow_origin(&mut response);
    }
    response
}

/// The CORS headers of every answer to a request with an `Origin`.
fn allow_origin(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("X-Request-ID, Retry-After"),
    );
}

/// The request's id (the client's `X-Request-ID` or a fresh one), for the logs.
#[derive(Debug, Clone)]
struct RequestId(HeaderValue);

impl RequestId {
    fn display(id: Option<&RequestId>) -> String {
        id.map_or_else(
            || "-".to_owned(),
            |id| String::from_utf8_lossy(id.0.as_bytes()).into_owned(),
        )
    }
}

/// Echoes the client's `X-Request-ID`, or gives the request a fresh one; the handlers find it
/// in the request's extensions.
async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request_id_of(request.headers());
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    response.headers_mut().insert("x-request-id", id);
    response
}

/// The client's `X-Request-ID` if it gave a usable one, else a fresh one.
fn request_id_of(headers: &HeaderMap) -> HeaderValue {
    headers
        .get("x-request-id")
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .cloned()
        .unwrap_or_else(|| {
            // From the thread's CSPRNG: `Uuid::new_v4` is a system call per request.
            HeaderValue::from_str(&super::fresh_id::idempotency_key())
                .unwrap_or(HeaderValue::from_static("-"))
        })
}

/// `POST /v1/events/batch` as the router answers it, without the router (see
/// [`IngestService`]): the layers' steps in their order around the handler, outermost
/// first: the request id, CORS, the count and log line.
pub(super) async fn answer_batch(state: &IngestState, request: Request) -> Response {
    let id = RequestId(request_id_of(request.headers()));
    let origin = request.headers().contains_key(header::ORIGIN);
    let (parts, body) = request.into_parts();
    let mut response = handle(state, &parts.headers, body, Endpoint::Batch).await;
    count(state, Some(&id), &mut response);
    if origin {
        allow_origin(&mut response);
    }
    response.headers_mut().insert("x-request-id", id.0);
    // What the router's route does last to every answer (`set_content_length`): the length
    // of a body of known size, unless the answer set one.
    if !response.headers().contains_key(header::CONTENT_LENGTH)
        && let Some(size) = response.body().size_hint().exact()
    {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    response
}
