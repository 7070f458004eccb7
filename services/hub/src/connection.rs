//! One client connection: its bounded outbound queue, a writer task (queue, pings, write
//! timeout) and a reader task (read deadline, dispatcher). Any end stops both.

use std::sync::Arc;

use courier_traits::transport::{self, FrameReceiver, FrameSender};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::channels::{Channels, is_channel_message};
use crate::client::{ClientEntry, CloseReason, Offer};
use crate::client_options::ClientOptions;
use crate::compression::Compression;
use crate::config::HubConfig;
use crate::dispatcher::{Dispatcher, RequestContext};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::{Frame, HubError};

/// What every connection's tasks share: limits, where clients register, the dispatcher,
/// and the hub's stop signal and task tracker (the owner that stops and awaits them).
pub(crate) struct Connections {
    pub(crate) config: HubConfig,
    pub(crate) node_id: Arc<str>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) channels: Arc<Channels>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stop: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

/// Creates the entry, registers it, and only then starts the connection's two tasks on the
/// hub's tracker: the writer sends the greeting first thing, and a client that has its
/// greeting must already receive every broadcast (a broadcast made between the greeting and
/// the registration would miss it, although the client counts as connected).
pub(crate) fn start(
    hub: &Arc<Connections>,
    id: Arc<str>,
    conn_id: u64,
    sender: Box<dyn FrameSender>,
    receiver: Box<dyn FrameReceiver>,
    options: ClientOptions,
) -> Arc<ClientEntry> {
    let ClientOptions {
        greeting: first,
        grants,
        compression,
    } = options;
    let (tx, rx) = mpsc::channel(hub.config.message_buffer_cap.max(1));
    if let Some(first) = first {
        // The channel is new and has room: the greeting is the first frame the client sees.
        let _ = tx.try_send(first);
    }
    let entry = Arc::new(ClientEntry::new(
        id,
        conn_id,
        tx,
        hub.stop.child_token(),
        grants,
    ));
    hub.registry.insert(entry.clone());
    let writer_hub = hub.clone();
    let writer_entry = entry.clone();
    hub.tasks.spawn(async move {
        write_loop(&writer_hub, &writer_entry, sender, rx, compression).await;
        writer_entry.stop.cancel();
    });
    let reader_hub = hub.clone();
    let reader_entry = entry.clone();
    hub.tasks.spawn(async move {
        read_loop(&reader_hub, &reader_entry, receiver).await;
        reader_entry.stop.cancel();
        // The reader outlives nothing else: remove the client once both loops are ending.
        reader_hub.registry.unregister(&reader_entry);
        reader_hub.channels.connection_ended(&reader_entry);
    });
    entry
}

async fn write_loop(
    hub: &Connections,
    entry: &ClientEntry,
    mut sender: Box<dyn FrameSender>,
    mut rx: mpsc::Receiver<Frame>,
    compression: Option<Compression>,
) {
    let config = &hub.config;
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + config.ping_interval,
        config.ping_interval,
    );
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wire = tokio::select! {
            biased;
            () = entry.stop.cancelled() => break,
            frame = rx.recv() => match frame {
                Some(mut frame) => {
                    let wire = match compression {
                        Some(compression) => compression.encode(frame.to_wire()),
                        None => frame.to_wire(),
                    };
                    let result = write(&mut *sender, wire, config.write_timeout).await;
                    match result {
                        Ok(()) => {
                            Metrics::inc(&hub.metrics.frames_out);
                            frame.acknowledge(Ok(()));
                            continue;
                        }
                        Err(timed_out) => {
                            frame.acknowledge(Err(HubError::NotDelivered(entry.id.to_string())));
                            if timed_out {
                                tracing::warn!(client = %entry.id, timeout = ?config.write_timeout, "write timed out: evicting slow client");
                                Metrics::inc(&hub.metrics.evictions);
                                entry.disconnect(CloseReason::Slow);
                            }
                            break;
                        }
                    }
                }
                None => break,
            },
            _ = ping.tick() => transport::Frame::Ping(bytes::Bytes::new()),
        };
        if let Err(timed_out) = write(&mut *sender, wire, config.write_timeout).await {
            if timed_out {
                Metrics::inc(&hub.metrics.evictions);
                entry.disconnect(CloseReason::Slow);
            }
            break;
        }
    }
    // Frames still queued will not be written: fail their acks.
    rx.close();
    while let Ok(mut frame) = rx.try_recv() {
        frame.acknowledge(Err(HubError::NotDelivered(entry.id.to_string())));
    }
    let (code, text) = entry.reason().code();
    let _ = tokio::time::timeout(
        config.write_timeout.min(std::time::Duration::from_secs(2)),
        sender.close(code, text),
    )
    .await;
}

/// Writes one frame within `timeout`; `Err(true)` on timeout, `Err(false)` on a broken socket.
async fn write(
    sender: &mut dyn FrameSender,
    frame: transport::Frame,
    timeout: std::time::Duration,
) -> Result<(), bool> {
    match tokio::time::timeout(timeout, sender.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(false),
        Err(_) => Err(true),
    }
}

async fn read_loop(
    hub: &Connections,
    entry: &Arc<ClientEntry>,
    mut receiver: Box<dyn FrameReceiver>,
) {
    let ctx = RequestContext {
        client_id: entry.id.clone(),
        node_id: hub.node_id.clone(),
    };
    loop {
        let next = tokio::select! {
            biased;
            () = entry.stop.cancelled() => return,
            next = tokio::time::timeout(hub.config.read_timeout, receiver.recv()) => next,
        };
        let frame = match next {
            Err(_) => {
                tracing::info!(client = %entry.id, timeout = ?hub.config.read_timeout, "no frame within the read timeout: removing client");
                Metrics::inc(&hub.metrics.heartbeat_timeouts);
                entry.disconnect(CloseReason::HeartbeatTimeout);
                return;
            }
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return,
            Ok(Err(transport::TransportError::TooLarge { size, .. })) => {
                return close_too_large(hub, entry, size);
            }
            Ok(Err(e)) => {
                tracing::debug!(client = %entry.id, error = %e, "connection broken");
                return;
            }
        };
        Metrics::inc(&hub.metrics.frames_in);
        let bytes: &[u8] = match &frame {
            transport::Frame::Text(text) => text.as_bytes(),
            transport::Frame::Binary(bytes) => bytes,
            // Any frame refreshes the deadline; pings are answered by the WebSocket layer.
            transport::Frame::Ping(_) | transport::Frame::Pong(_) => continue,
        };
        if bytes.len() > hub.config.max_message_bytes {
            return close_too_large(hub, entry, bytes.len());
        }
        let reply = match Dispatcher::parse(bytes) {
            Err(refusal) => Some(refusal),
            Ok(message)
                if is_channel_message(&message.message_type)
                    && !hub.dispatcher.handles(&message.message_type) =>
            {
                hub.channels.handle(entry, message).await
            }
            Ok(message) => hub.dispatcher.dispatch_message(&ctx, message).await,
        };
        if let Some(reply) = reply
            && let Offer::Full { .. } =
                entry.offer(Frame::text(reply.to_json()), hub.config.slow_client_grace)
        {
            Metrics::inc(&hub.metrics.drops);
        }
    }
}

/// Ends a connection whose client sent a message over the limit: close 1009 (Message Too Big)
/// and a warning with the sizes (never the content, which may be anything).
fn close_too_large(hub: &Connections, entry: &ClientEntry, size: usize) {
    tracing::warn!(
        client = %entry.id,
        size,
        limit = hub.config.max_message_bytes,
        "message over max_message_bytes: closing the connection with 1009"
    );
    entry.disconnect(CloseReason::TooLarge);
}
