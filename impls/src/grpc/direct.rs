//! [`DirectChannel`]: gRPC calls written by the caller's own task onto one HTTP/2 connection
//! (h2), for plaintext and in-process servers.
//!
//! Why not tonic's `Channel`: it hands every request through a bounded queue to a worker task
//! (tower's `Buffer`), which hands it to hyper's connection task, which spawns one more task
//! per request to await the answer and pass it back: three task hand-offs and a spawn per
//! call, each a wake-up (on a loaded machine, a context switch). Here the caller opens the
//! HTTP/2 stream and queues its frames in h2's shared state itself; the connection task only
//! reads and writes the socket and wakes the caller when the answer is in.
//!
//! The connection is dialled on the first call, shared by every clone, and dialled anew by the
//! first call after it failed (peer gone, `GOAWAY`, keep-alive ping unanswered). TLS channels
//! stay on tonic's `Channel` ([`super::GrpcChannels`] picks).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use courier_traits::error::BoxError;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use h2::client::{Connection as H2Connection, SendRequest};
use h2::{Ping, PingPong, Reason, RecvStream, SendStream};
use http_body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::codegen::http::uri::{Authority, PathAndQuery, Scheme};
use tonic::codegen::http::{Request, Response, Uri};

use super::error::ConnectFailed;
use super::in_process::InProcessNetwork;
use super::options::ChannelOptions;

/// Flow-control windows, as hyper's HTTP/2 client sets them (h2's 64 KiB default would stall
/// a busy server stream for a window update every 64 messages of 1 KiB).
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;

/// What a channel dials.
#[derive(Clone, Debug)]
pub(crate) enum Dialer {
    Tcp,
    InProcess(InProcessNetwork),
}

/// A channel to one server over one HTTP/2 connection (see the module docs). Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct DirectChannel {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: String,
    scheme: Scheme,
    authority: Authority,
    dialer: Dialer,
    options: ChannelOptions,
    state: Mutex<State>,
    generations: AtomicU64,
}

/// Where the channel's connection is.
enum State {
    Idle,
    /// Callers arriving meanwhile wait on the same attempt.
    Connecting(Dialling),
    Ready(Connection),
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Idle => "Idle",
            State::Connecting(_) => "Connecting",
            State::Ready(_) => "Ready",
        })
    }
}

/// A connection attempt that several callers can await.
type Dialling = Shared<BoxFuture<'static, Result<Connection, ConnectFailed>>>;

/// One live HTTP/2 connection.
#[derive(Clone)]
struct Connection {
    send: SendRequest<Bytes>,
    /// Calls in progress, so that keep-alive pings only run while there are any.
    active: Arc<AtomicUsize>,
    generation: u64,
}

impl DirectChannel {
    /// A channel to `url` (normalised, `http://`), connected on its first call.
    pub(crate) fn new(
        url: &str,
        uri: &Uri,
        dialer: Dialer,
        options: ChannelOptions,
    ) -> Option<DirectChannel> {
        Some(DirectChannel {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                scheme: uri.scheme()?.clone(),
                authority: uri.authority()?.clone(),
                dialer,
                options,
                state: Mutex::new(State::Idle),
                generations: AtomicU64::new(0),
            }),
        })
    }

    /// Sends `request` (a path-only URI, as tonic's generated clients make) and returns the
    /// answer's head once it arrives; its body streams the rest.
    pub(crate) async fn send(
        self,
        request: Request<tonic::body::Body>,
    ) -> Result<Response<DirectBody>, BoxError> {
        let (mut head, body) = request.into_parts();
        head.uri = self.absolute(head.uri)?;
        let mut connection = self.ready_sender().await?;
        let call = ActiveCall::new(connection.active);
        let end_of_stream = body.is_end_stream();
        let (mut answer, stream) = match connection
            .send
            .send_request(Request::from_parts(head, ()), end_of_stream)
        {
            Ok(opened) => opened,
            Err(error) => {
                // The connection refuses new streams (it is going away or broken): the next
                // call dials anew. An error of the request itself (h2 refuses e.g. a
                // connection-specific header: no I/O, no GOAWAY or reset reason) leaves the
                // shared connection to the other calls.
                if error.is_io() || error.reason().is_some() {
                    self.forget(connection.generation);
                }
                return Err(error.into());
            }
        };
        let mut pipe: Option<Pipe> = None;
        if !end_of_stream {
            let sending: Pipe = Box::pin(pipe_body(body, stream));
            pipe = Some(sending);
        }
        // The request body goes out while the answer is awaited (a server may answer early).
        let answer = std::future::poll_fn(|cx| {
            if let Some(sending) = pipe.as_mut()
                && let Poll::Ready(sent) = sending.as_mut().poll(cx)
            {
                pipe = None;
                sent?;
            }
            Pin::new(&mut answer).poll(cx).map_err(BoxError::from)
        })
        .await?;
        let (parts, recv) = answer.into_parts();
        Ok(Response::from_parts(
            parts,
            DirectBody {
                recv,
                pipe,
                data_done: false,
                finished: false,
                _call: call,
            },
        ))
    }

    /// `uri` with the channel's scheme and authority (h2 sends them as `:scheme` and
    /// `:authority`).
    fn absolute(&self, uri: Uri) -> Result<Uri, BoxError> {
        let mut parts = uri.into_parts();
        parts.scheme = Some(self.inner.scheme.clone());
        parts.authority = Some(self.inner.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        Ok(Uri::from_parts(parts)?)
    }

    /// A sender ready for one more stream. A cached connection that turns out dead is
    /// dropped and dialled once more: nothing of this call was sent yet.
    async fn ready_sender(&self) -> Result<Connection, BoxError> {
        let Connection {
            send,
            active,
            generation,
        } = self.connection().await?;
        match send.ready().await {
            Ok(send) => Ok(Connection {
                send,
                active,
                generation,
            }),
            Err(error) => {
                tracing::debug!(url = %self.inner.url, %error, "HTTP/2 connection gone: dialling again");
                self.forget(generation);
                let Connection {
                    send,
                    active,
                    generation,
                } = self.connection().await?;
                Ok(Connection {
                    send: send.ready().await?,
                    active,
                    generation,
                })
            }
        }
    }

    fn forget(&self, generation: u64) {
        let mut state = lock(&self.inner.state);
        if matches!(&*state, State::Ready(c) if c.generation == generation) {
            *state = State::Idle;
        }
    }

    /// The live connection, dialling one if there is none (one attempt for all callers).
    async fn connection(&self) -> Result<Connection, ConnectFailed> {
        let attempt = {
            let mut state = lock(&self.inner.state);
            match &*state {
                State::Ready(connection) => return Ok(connection.clone()),
                State::Connecting(attempt) => attempt.clone(),
                State::Idle => {
                    let attempt = dial(Arc::downgrade(&self.inner), self.inner.clone_settings())
                        .boxed()
                        .shared();
                    *state = State::Connecting(attempt.clone());
                    attempt
                }
            }
        };
        attempt.await
    }
}

/// What dialling needs, without the channel itself (the attempt is stored in the channel:
/// holding the channel would make a cycle).
struct DialSettings {
    url: String,
    authority: Authority,
    dialer: Dialer,
    options: ChannelOptions,
    generation: u64,
}

impl Inner {
    fn clone_settings(&self) -> DialSettings {
        DialSettings {
            url: self.url.clone(),
            authority: self.authority.clone(),
            dialer: self.dialer.clone(),
            options: self.options.clone(),
            generation: self.generations.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// Dials, within the connect timeout, and records the outcome in the channel's state.
async fn dial(channel: Weak<Inner>, settings: DialSettings) -> Result<Connection, ConnectFailed> {
    let timeout = settings.options.connect_timeout;
    let outcome = match tokio::time::timeout(timeout, open(&settings)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(ConnectFailed {
            url: settings.url.clone(),
            message: format!("no connection within {timeout:?}"),
        }),
    };
    if let Some(channel) = channel.upgrade() {
        *lock(&channel.state) = match &outcome {
            Ok(connection) => State::Ready(connection.clone()),
            Err(_) => State::Idle,
        };
    }
    outcome
}

async fn open(settings: &DialSettings) -> Result<Connection, ConnectFailed> {
    let failed = |message: String| ConnectFailed {
        url: settings.url.clone(),
        message,
    };
    match &settings.dialer {
        Dialer::Tcp => {
            let stream = tokio::net::TcpStream::connect(settings.authority.as_str())
                .await
                .map_err(|e| failed(e.to_string()))?;
            // Small frames (one call each) must not wait for Nagle's timer.
            stream
                .set_nodelay(true)
                .map_err(|e| failed(e.to_string()))?;
            start(stream, settings).await
        }
        Dialer::InProcess(network) => {
            let uri = Uri::try_from(settings.url.as_str()).map_err(|e| failed(e.to_string()))?;
            let stream = network
                .connect(&uri)
                .await
                .map_err(|e| failed(e.to_string()))?;
            start(stream, settings).await
        }
    }
}

/// The HTTP/2 handshake on `io`, and the task that drives the connection.
async fn start<T>(io: T, settings: &DialSettings) -> Result<Connection, ConnectFailed>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, mut connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .enable_push(false)
        .handshake::<T, Bytes>(io)
        .await
        .map_err(|e| ConnectFailed {
            url: settings.url.clone(),
            message: format!("HTTP/2 handshake: {e}"),
        })?;
    let active = Arc::new(AtomicUsize::new(0));
    let keep_alive = settings
        .options
        .keep_alive_interval
        // Zero is "no pings" (a zero period would panic in `interval_at`).
        .filter(|interval| !interval.is_zero())
        .map(|interval| KeepAlive {
            interval,
            timeout: settings.options.keep_alive_timeout,
            while_idle: settings.options.keep_alive_while_idle,
            pings: connection.ping_pong(),
        });
    // Owned by the connection's handles: it ends when the peer closes, on an error or an
    // unanswered ping, and when every sender and stream of the connection is dropped (h2
    // then closes the connection).
    tokio::spawn(drive(
        connection,
        keep_alive,
        active.clone(),
        settings.url.clone(),
    ));
    Ok(Connection {
        send,
        active,
        generation: settings.generation,
    })
}

struct KeepAlive {
    interval: Duration,
    timeout: Duration,
    while_idle: bool,
    pings: Option<PingPong>,
}

/// Runs the connection until it ends, pinging every `interval` while calls are open (or
/// always, `while_idle`) and dropping it when a ping goes unanswered for `timeout`, so that a
/// long server stream notices a dead peer. Dropping the connection fails its open streams.
async fn drive<T>(
    mut connection: H2Connection<T, Bytes>,
    keep_alive: Option<KeepAlive>,
    active: Arc<AtomicUsize>,
    url: String,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let Some(KeepAlive {
        interval,
        timeout,
        while_idle,
        pings: Some(mut pings),
    }) = keep_alive
    else {
        if let Err(error) = connection.await {
            tracing::debug!(%url, %error, "HTTP/2 connection ended");
        }
        return;
    };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unanswered: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        tokio::select! {
            ended = &mut connection => {
                if let Err(error) = ended {
                    tracing::debug!(%url, %error, "HTTP/2 connection ended");
                }
                return;
            }
            _ = ticks.tick(), if unanswered.is_none() => {
                if while_idle || active.load(Ordering::Relaxed) > 0 {
                    if pings.send_ping(Ping::opaque()).is_err() {
                        return;
                    }
                    unanswered = Some(Box::pin(tokio::time::sleep(timeout)));
                }
            }
            pong = std::future::poll_fn(|cx| pings.poll_pong(cx)), if unanswered.is_some() => {
                unanswered = None;
                if pong.is_err() {
                    return;
                }
            }
            _ = std::future::poll_fn(|cx| match unanswered.as_mut() {
                Some(sleep) => sleep.as_mut().poll(cx),
                None => Poll::Pending,
            }), if unanswered.is_some() => {
                tracing::debug!(%url, ?timeout, "keep-alive ping unanswered: closing the connection");
                return;
            }
        }
    }
}

/// The rest of a request body being sent.
type Pipe = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// Writes `body` onto `stream` as HTTP/2 flow control allows, ending the stream after it.
/// Fails only for an error of the body itself (the stream is then reset): when the stream
/// closes under it (the server answered early, or reset it), the answer says why.
async fn pipe_body(
    mut body: tonic::body::Body,
    mut stream: SendStream<Bytes>,
) -> Result<(), BoxError> {
    match write_body(&mut body, &mut stream).await {
        Ok(()) => Ok(()),
        Err(Stop::Body(error)) => {
            stream.send_reset(Reason::CANCEL);
            Err(error)
        }
        Err(Stop::Stream(error)) => {
            tracing::trace!(?error, "request stream closed before its body was sent");
            Ok(())
        }
    }
}

/// Why a request body stopped being written.
enum Stop {
    /// The body failed (encoding).
    Body(BoxError),
    /// The HTTP/2 stream closed or failed.
    Stream(Option<h2::Error>),
}

impl From<h2::Error> for Stop {
    fn from(error: h2::Error) -> Stop {
        Stop::Stream(Some(error))
    }
}

async fn write_body(
    body: &mut tonic::body::Body,
    stream: &mut SendStream<Bytes>,
) -> Result<(), Stop> {
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
        let frame = match frame {
            None => {
                stream.send_data(Bytes::new(), true)?;
                return Ok(());
            }
            Some(Err(status)) => return Err(Stop::Body(status.into())),
            Some(Ok(frame)) => frame,
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    stream.send_trailers(trailers)?;
                    return Ok(());
                }
                continue;
            }
        };
        let last = body.is_end_stream();
        if data.is_empty() {
            if last {
                stream.send_data(data, true)?;
                return Ok(());
            }
            continue;
        }
        while !data.is_empty() {
            stream.reserve_capacity(data.len());
            let granted = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(granted) => granted?,
                None => return Err(Stop::Stream(None)),
            };
            if granted == 0 {
                continue;
            }
            let chunk = data.split_to(granted.min(data.len()));
            stream.send_data(chunk, last && data.is_empty())?;
        }
        if last {
            return Ok(());
        }
    }
}

/// Counts a call as open while it lives.
struct ActiveCall(Arc<AtomicUsize>);

impl ActiveCall {
    fn new(active: Arc<AtomicUsize>) -> ActiveCall {
        active.fetch_add(1, Ordering::Relaxed);
        ActiveCall(active)
    }
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The body of an answer on a [`DirectChannel`]: its DATA frames, then its trailers (where
/// gRPC puts the status). Dropping it early resets the stream (the server stops).
pub(crate) struct DirectBody {
    recv: RecvStream,
    /// The request body, when the answer started before it was all sent.
    pipe: Option<Pipe>,
    data_done: bool,
    finished: bool,
    _call: ActiveCall,
}

impl Body for DirectBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(sending) = this.pipe.as_mut()
            && sending.as_mut().poll(cx).is_ready()
        {
            // Failing to send the rest once the server answered is the server's to report
            // (it ends the answer with a status or resets the stream).
            this.pipe = None;
        }
        if this.finished {
            return Poll::Ready(None);
        }
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Fails only when the stream is already gone; the next poll reports that.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(error.into())));
                }
                None => this.data_done = true,
            }
        }
        let trailers = ready!(this.recv.poll_trailers(cx));
        this.finished = true;
        Poll::Ready(match trailers {
            Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
            Ok(None) => None,
            Err(error) => Some(Err(error.into())),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}

impl std::fmt::Debug for DirectBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectBody")
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}
