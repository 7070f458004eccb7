//! `courier hub`: the WebSocket hub, alone or as a cluster node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use courier::hub::server::{HubServer, ServerOptions};
use courier::hub::{Hub, HubConfig};
use courier::traits::bus::MessageBus;
use serde::Deserialize;

use crate::config::{self, parse_duration};
use crate::hub_channels::ChannelsSection;

/// Flags (each also from the environment); they override the config file.
#[derive(Args, Debug)]
pub(crate) struct HubArgs {
    /// YAML config file (server:, cluster: and channels: sections, see deploy/hub.yaml).
    #[arg(long, short, env = "COURIER_HUB_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, HOST:PORT or :PORT [default: :8080].
    #[arg(long, env = "COURIER_HUB_ADDR")]
    addr: Option<String>,
    /// Key backends present to the HTTP API (the API is off without one).
    #[arg(long, env = "COURIER_HUB_API_KEY")]
    api_key: Option<String>,
    /// Token WebSocket clients must present (open without one).
    #[arg(long, env = "COURIER_HUB_CLIENT_TOKEN")]
    client_token: Option<String>,
    /// Run as a cluster node (exchange frames over the bus).
    #[arg(long, env = "COURIER_HUB_CLUSTER")]
    cluster: Option<bool>,
    /// Cluster bus: etcd | redis | postgres [default: etcd].
    #[arg(long, env = "COURIER_HUB_BUS")]
    bus: Option<String>,
    /// etcd endpoints, comma separated.
    #[arg(long, env = "COURIER_HUB_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Option<Vec<String>>,
    /// Redis URL for bus = redis.
    #[arg(long, env = "COURIER_HUB_REDIS_URL")]
    redis_url: Option<String>,
    /// Postgres URL for bus = postgres.
    #[arg(long, env = "COURIER_HUB_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// This node's id (random when unset).
    #[arg(long, env = "COURIER_HUB_NODE_ID")]
    node_id: Option<String>,
    /// Storage for channel history (memory | sqlite:PATH | log:DIR | redis://… | postgres://…), shared
    /// by every node of a cluster; overrides channels.history_storage.
    #[arg(long, env = "COURIER_HUB_HISTORY_STORAGE")]
    history_storage: Option<String>,
    /// Client read timeout, e.g. 3m.
    #[arg(long, env = "COURIER_HUB_READ_TIMEOUT", value_parser = parse_duration)]
    read_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    cluster: ClusterSection,
    #[serde(default)]
    channels: ChannelsSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    addr: Option<String>,
    #[serde(default, with = "config::duration")]
    read_timeout: Option<Duration>,
    #[serde(default, with = "config::duration")]
    write_timeout: Option<Duration>,
    #[serde(default, with = "config::duration")]
    ping_interval: Option<Duration>,
    #[serde(default, with = "config::duration")]
    slow_client_grace: Option<Duration>,
    message_buffer_cap: Option<usize>,
    max_message_bytes: Option<usize>,
    api_key: Option<String>,
    client_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterSection {
    enabled: Option<bool>,
    bus: Option<String>,
    node_id: Option<String>,
    #[serde(default, with = "config::duration")]
    heartbeat_interval: Option<Duration>,
    #[serde(default)]
    etcd: EtcdSection,
    #[serde(default)]
    redis: RedisSection,
    #[serde(default)]
    postgres: PostgresSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EtcdSection {
    endpoints: Option<Vec<String>>,
    #[serde(default, with = "config::duration")]
    dial_timeout: Option<Duration>,
    key_prefix: Option<String>,
    #[serde(default, with = "config::duration")]
    lease_ttl: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisSection {
    url: Option<String>,
    key_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresSection {
    url: Option<String>,
}

/// `:8080` means every interface, as in the spec's config.
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_owned()
    };
    full.parse()
        .map_err(|_| format!("server.addr / --addr {text:?} is not HOST:PORT or :PORT"))
}

pub(crate) async fn run(args: HubArgs) -> Result<(), String> {
    let file: FileConfig = config::load(args.config.as_deref())?;
    let server = file.server;
    let cluster = file.cluster;
    let channels = file.channels;
    let addr = parse_addr(
        args.addr
            .as_deref()
            .or(server.addr.as_deref())
            .unwrap_or(":8080"),
    )?;
    let defaults = HubConfig::default();
    let hub_config = HubConfig::default()
        .with_read_timeout(
            args.read_timeout
                .or(server.read_timeout)
                .unwrap_or(defaults.read_timeout),
        )
        .with_write_timeout(server.write_timeout.unwrap_or(defaults.write_timeout))
        .with_ping_interval(server.ping_interval.unwrap_or(defaults.ping_interval))
        .with_slow_client_grace(
            server
                .slow_client_grace
                .unwrap_or(defaults.slow_client_grace),
        )
        .with_message_buffer_cap(
            server
                .message_buffer_cap
                .unwrap_or(defaults.message_buffer_cap),
        )
        .with_max_message_bytes(
            server
                .max_message_bytes
                .unwrap_or(defaults.max_message_bytes),
        )
        .with_node_id(args.node_id.or(cluster.node_id.clone()).unwrap_or_default())
        .with_heartbeat_interval(
            cluster
                .heartbeat_interval
                .unwrap_or(defaults.heartbeat_interval),
        );
    let mut hub_config = channels.apply_rules(hub_config)?;
    if let Some(spec) = args.history_storage.or(channels.history_storage.clone()) {
        tracing::info!(storage = %crate::storage::redacted(&spec), "channel history storage");
        hub_config = hub_config.with_history_storage(crate::storage::open(&spec).await?);
    } else if channels.wants_history() {
        return Err(
            "a channel rule keeps history: set channels.history_storage or --history-storage"
                .into(),
        );
    }
    if hub_config.message_buffer_cap == 0 {
        return Err("server.message_buffer_cap must be at least 1".into());
    }
    let enabled = args.cluster.or(cluster.enabled).unwrap_or(false);
    let bus = if enabled {
        let kind = args
            .bus
            .or(cluster.bus.clone())
            .unwrap_or_else(|| "etcd".into());
        Some(
            open_bus(
                &kind,
                args.etcd_endpoints,
                args.redis_url,
                args.postgres_url,
                &cluster,
            )
            .await?,
        )
    } else {
        None
    };
    let hub = Hub::new(bus, hub_config)
        .await
        .map_err(|e| format!("cannot start the hub: {e}"))?;
    let mut options = ServerOptions::default();
    if let Some(key) = args.api_key.or(server.api_key) {
        options = options.with_api_key(key);
    }
    if let Some(token) = args.client_token.or(server.client_token) {
        options = options.with_client_token(token);
    }
    let options = channels.apply_server(options)?;
    if options.api_key.is_none() {
        tracing::warn!("no api_key set: the HTTP API (push, broadcast, count) answers 403");
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(
        addr = %local,
        node = hub.node_id(),
        cluster = enabled,
        "hub listening: ws://{local}/ws, demo page http://{local}/"
    );
    HubServer::new(hub, options)
        .serve(listener, crate::shutdown::signal())
        .await
        .map_err(|e| format!("server failed: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

async fn open_bus(
    kind: &str,
    etcd_endpoints: Option<Vec<String>>,
    redis_url: Option<String>,
    postgres_url: Option<String>,
    cluster: &ClusterSection,
) -> Result<Arc<dyn MessageBus>, String> {
    let fail = |e: courier::traits::bus::BusError| format!("cannot connect to the {kind} bus: {e}");
    match kind {
        "etcd" => {
            use courier::impls::etcd::{EtcdBus, EtcdBusConfig};
            let etcd = &cluster.etcd;
            let endpoints = etcd_endpoints
                .or(etcd.endpoints.clone())
                .unwrap_or_else(|| vec!["http://127.0.0.1:2379".into()]);
            let mut config = EtcdBusConfig::default().with_prefix(
                etcd.key_prefix
                    .clone()
                    .unwrap_or_else(|| "/courier-hub".into()),
            );
            if let Some(ttl) = etcd.lease_ttl {
                config = config.with_lease_ttl(ttl);
            }
            if let Some(timeout) = etcd.dial_timeout {
                config = config.with_request_timeout(timeout);
            }
            tracing::info!(endpoints = ?endpoints, prefix = %config.prefix, "cluster bus: etcd");
            Ok(Arc::new(
                EtcdBus::connect(&endpoints, config).await.map_err(fail)?,
            ))
        }
        "redis" => {
            use courier::impls::redis::{RedisBus, RedisBusConfig};
            let url = redis_url
                .or(cluster.redis.url.clone())
                .unwrap_or_else(|| "redis://127.0.0.1:6379/".into());
            let config = RedisBusConfig::default().with_key_prefix(
                cluster
                    .redis
                    .key_prefix
                    .clone()
                    .unwrap_or_else(|| "courier-hub".into()),
            );
            tracing::info!(url = %crate::storage::redacted(&url), prefix = %config.key_prefix, "cluster bus: redis");
            Ok(Arc::new(
                RedisBus::connect(&url, config).await.map_err(fail)?,
            ))
        }
        "postgres" => {
            use courier::impls::postgres::{PgBus, PgBusConfig};
            let url = postgres_url
                .or(cluster.postgres.url.clone())
                .ok_or("bus = postgres needs cluster.postgres.url or --postgres-url")?;
            tracing::info!("cluster bus: postgres");
            Ok(Arc::new(
                PgBus::connect(&url, PgBusConfig::default())
                    .await
                    .map_err(fail)?,
            ))
        }
        other => Err(format!(
            "cluster.bus / --bus {other:?}: use etcd, redis or postgres"
        )),
    }
}
