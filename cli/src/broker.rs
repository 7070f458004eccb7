//! `courier broker`: the gRPC broker speaking Danube's protocol.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use courier::broker::consumer::ConsumerConfig;
use courier::broker::directory::NodeUrls;
use courier::broker::ownership::OwnershipConfig;
use courier::broker::producer::ProducerConfig;
use courier::broker::server::{BrokerConfig, BrokerServer, DEFAULT_KEEP_ALIVE};
use courier::broker::subscription::SubscriptionConfig;
use serde::Deserialize;

use crate::broker_security::{AuthFile, HashKeyArgs, Security, SecurityArgs, TlsFile, TokenArgs};
use crate::config::{self, parse_duration};
use crate::storage::{self, STORAGE_FORMS};

/// Default storage: embedded SQLite under `./data`, so reliable topics, their messages and the
/// catalog survive a restart with no server.
const DEFAULT_STORAGE: &str = "sqlite:./data/broker.db";
/// Danube's port.
const DEFAULT_ADDR: &str = "127.0.0.1:6650";
/// How often Danube clients (and ours) health-check each producer.
const CLIENT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// How long the metrics endpoint may take to finish its scrapes once the broker stopped.
const METRICS_SHUTDOWN: Duration = Duration::from_secs(2);

/// Tools next to the server (`courier broker <SUBCOMMAND>`; server flags are then ignored).
#[derive(Subcommand, Debug)]
pub(crate) enum BrokerCommand {
    /// Print the SHA-256 of an API key: the `sha256` of its entry in the keys file.
    HashKey(HashKeyArgs),
    /// Print a signed token (HS256 JWT) for an API key of the keys file, for clients that
    /// send a pre-made token (danube-client's `with_token`) instead of calling Authenticate.
    Token(TokenArgs),
}

/// Server flags (each also from the environment); they override the config file.
#[derive(Args, Debug)]
pub(crate) struct BrokerArgs {
    #[command(subcommand)]
    command: Option<BrokerCommand>,
    /// YAML config file (keys: addr, storage, advertised_url, max_message_bytes,
    /// max_producers_per_topic, auto_create_topics, max_unacked, ack_timeout, nack_delay,
    /// max_nack_delay, max_redeliveries, consumer_queue, cluster, node_id, lease, renew_every,
    /// metrics_addr, producer_idle_timeout, max_subscriptions_per_topic,
    /// max_consumers_per_subscription, keep_alive; sections auth: {mode, keys_file, secret_file,
    /// token_ttl, accept_api_key_as_bearer, allow_plaintext} and tls: {cert, key, client_ca}).
    #[arg(long, short, env = "COURIER_BROKER_CONFIG")]
    config: Option<PathBuf>,
    /// Where reliable topics and the catalog live: memory | sqlite:PATH[?sync=normal] | log:DIR | redis://.. |
    /// postgres://.. [default: sqlite:./data/broker.db]
    #[arg(long, env = "COURIER_BROKER_STORAGE")]
    storage: Option<String>,
    /// Address to listen on [default: 127.0.0.1:6650].
    #[arg(long, env = "COURIER_BROKER_ADDR")]
    addr: Option<SocketAddr>,
    /// The URL clients are told to connect to (TopicLookup), with its scheme
    /// [default: http://ADDR, with 127.0.0.1 for an unspecified address].
    #[arg(long, env = "COURIER_BROKER_ADVERTISED_URL")]
    advertised_url: Option<String>,
    /// Largest encoded message a producer may send, in bytes [default: 4128768 = 4 MiB − 64 KiB].
    #[arg(long, env = "COURIER_BROKER_MAX_MESSAGE_BYTES")]
    max_message_bytes: Option<usize>,
    /// Producers per topic (each partition alone) [default: 1000].
    #[arg(long, env = "COURIER_BROKER_MAX_PRODUCERS_PER_TOPIC")]
    max_producers_per_topic: Option<usize>,
    /// A producer whose client is not heard from (sends, health checks) for this long gives
    /// its place and Exclusive claim to the next producer on its topic, or is swept; at least
    /// 10s, two of the clients' 5 s health checks [default: 30s].
    #[arg(long, env = "COURIER_BROKER_PRODUCER_IDLE_TIMEOUT", value_parser = parse_duration)]
    producer_idle_timeout: Option<Duration>,
    /// Whether the first producer creates its topic [default: true].
    #[arg(long, env = "COURIER_BROKER_AUTO_CREATE_TOPICS")]
    auto_create_topics: Option<bool>,
    /// Reliable: unacked messages in flight per subscription [default: 1000].
    #[arg(long, env = "COURIER_BROKER_MAX_UNACKED")]
    max_unacked: Option<usize>,
    /// Reliable: how long a delivery may stay unacked before it comes again [default: 30s].
    #[arg(long, env = "COURIER_BROKER_ACK_TIMEOUT", value_parser = parse_duration)]
    ack_timeout: Option<Duration>,
    /// Reliable: first delay after a Nack without its own, doubling [default: 1s].
    #[arg(long, env = "COURIER_BROKER_NACK_DELAY", value_parser = parse_duration)]
    nack_delay: Option<Duration>,
    /// Reliable: the longest doubled Nack delay [default: 60s].
    #[arg(long, env = "COURIER_BROKER_MAX_NACK_DELAY", value_parser = parse_duration)]
    max_nack_delay: Option<Duration>,
    /// Reliable: redeliveries before a message is dead-lettered [default: 5].
    #[arg(long, env = "COURIER_BROKER_MAX_REDELIVERIES")]
    max_redeliveries: Option<u32>,
    /// Subscriptions per topic (each partition alone); more are refused `ResourceExhausted`
    /// [default: 1000].
    #[arg(long, env = "COURIER_BROKER_MAX_SUBSCRIPTIONS_PER_TOPIC")]
    max_subscriptions_per_topic: Option<usize>,
    /// Consumers attached to one subscription; more are refused `ResourceExhausted`
    /// [default: 1000].
    #[arg(long, env = "COURIER_BROKER_MAX_CONSUMERS_PER_SUBSCRIPTION")]
    max_consumers_per_subscription: Option<usize>,
    /// Non-reliable: messages queued per consumer; more are dropped [default: 1000].
    #[arg(long, env = "COURIER_BROKER_CONSUMER_QUEUE")]
    consumer_queue: Option<usize>,
    /// Share the storage with other nodes: topics are claimed by one node at a time
    /// (Redis or Postgres storage) [default: false].
    #[arg(long, env = "COURIER_BROKER_CLUSTER")]
    cluster: Option<bool>,
    /// Cluster: this node's id, kept across restarts [default: from the advertised URL].
    #[arg(long, env = "COURIER_BROKER_NODE_ID")]
    node_id: Option<String>,
    /// Cluster: how long after its last renewal a node counts as gone [default: 15s].
    #[arg(long, env = "COURIER_BROKER_LEASE", value_parser = parse_duration)]
    lease: Option<Duration>,
    /// Cluster: how often a node renews its liveness and re-reads its claims [default: 5s].
    #[arg(long, env = "COURIER_BROKER_RENEW_EVERY", value_parser = parse_duration)]
    renew_every: Option<Duration>,
    /// Serve Prometheus metrics as `GET /metrics` on this address (HTTP/1.1, a listener of
    /// its own) [default: off].
    #[arg(long, env = "COURIER_BROKER_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// HTTP/2 ping to every client connection this often; a connection whose ping goes
    /// unanswered as long is closed, so a client whose host vanished releases its consumers
    /// and their unacked messages; 0s turns pings off [default: 20s].
    #[arg(long, env = "COURIER_BROKER_KEEP_ALIVE", value_parser = parse_duration)]
    keep_alive: Option<Duration>,
    #[command(flatten)]
    security: SecurityArgs,
}

/// The `courier broker` config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    addr: Option<SocketAddr>,
    storage: Option<String>,
    advertised_url: Option<String>,
    max_message_bytes: Option<usize>,
    max_producers_per_topic: Option<usize>,
    auto_create_topics: Option<bool>,
    max_unacked: Option<usize>,
    #[serde(default, with = "config::duration")]
    ack_timeout: Option<Duration>,
    #[serde(default, with = "config::duration")]
    nack_delay: Option<Duration>,
    #[serde(default, with = "config::duration")]
    max_nack_delay: Option<Duration>,
    max_redeliveries: Option<u32>,
    consumer_queue: Option<usize>,
    cluster: Option<bool>,
    node_id: Option<String>,
    #[serde(default, with = "config::duration")]
    lease: Option<Duration>,
    #[serde(default, with = "config::duration")]
    renew_every: Option<Duration>,
    metrics_addr: Option<SocketAddr>,
    #[serde(default, with = "config::duration")]
    producer_idle_timeout: Option<Duration>,
    max_subscriptions_per_topic: Option<usize>,
    max_consumers_per_subscription: Option<usize>,
    #[serde(default, with = "config::duration")]
    keep_alive: Option<Duration>,
    auth: Option<AuthFile>,
    tls: Option<TlsFile>,
}

/// Cluster settings given (the node's URLs are known only once listening).
struct ClusterSettings {
    node_id: Option<String>,
    lease: Option<Duration>,
    renew_every: Option<Duration>,
}

impl ClusterSettings {
    fn config(&self, here: &NodeUrls) -> Result<OwnershipConfig, String> {
        let defaults = OwnershipConfig::new(here);
        let config = OwnershipConfig {
            node: self.node_id.clone().unwrap_or(defaults.node),
            lease: self.lease.unwrap_or(defaults.lease),
            renew_every: self.renew_every.unwrap_or(defaults.renew_every),
        };
        if config.renew_every.is_zero() || config.renew_every >= config.lease {
            return Err("renew_every must be above zero and below lease".into());
        }
        Ok(config)
    }
}

/// Every setting, resolved: flag, then environment, then file, then default.
struct Settings {
    addr: SocketAddr,
    storage: String,
    /// `None`: derived from the bound address (known once listening).
    advertised_url: Option<String>,
    producer: ProducerConfig,
    subscription: SubscriptionConfig,
    /// (subscriptions per topic, consumers per subscription).
    consumer_caps: (usize, usize),
    cluster: Option<ClusterSettings>,
    /// Off unless given: a default port would collide between nodes on one host.
    metrics_addr: Option<SocketAddr>,
    keep_alive: Duration,
    security: Security,
}

impl Settings {
    fn resolve(args: BrokerArgs, file: FileConfig) -> Result<Settings, String> {
        let addr = match args.addr.or(file.addr) {
            Some(addr) => addr,
            None => DEFAULT_ADDR.parse().map_err(|e| format!("{e}"))?,
        };
        let defaults = ProducerConfig::default();
        let producer = ProducerConfig {
            max_message_bytes: args
                .max_message_bytes
                .or(file.max_message_bytes)
                .unwrap_or(defaults.max_message_bytes),
            max_producers_per_topic: args
                .max_producers_per_topic
                .or(file.max_producers_per_topic)
                .unwrap_or(defaults.max_producers_per_topic),
            auto_create_topics: args
                .auto_create_topics
                .or(file.auto_create_topics)
                .unwrap_or(defaults.auto_create_topics),
            idle_timeout: args
                .producer_idle_timeout
                .or(file.producer_idle_timeout)
                .unwrap_or(defaults.idle_timeout),
        };
        if producer.max_message_bytes == 0 || producer.max_producers_per_topic == 0 {
            return Err("max_message_bytes and max_producers_per_topic must be at least 1".into());
        }
        let least_idle = CLIENT_HEALTH_INTERVAL * 2;
        if producer.idle_timeout < least_idle {
            // A live producer that only health-checks would lose its place (an Exclusive one
            // its claim) whenever one check is late.
            return Err(format!(
                "producer_idle_timeout {:?} is below {least_idle:?}, twice the clients' \
                 {CLIENT_HEALTH_INTERVAL:?} health-check interval",
                producer.idle_timeout
            ));
        }
        let spec = SubscriptionConfig::default();
        let subscription = SubscriptionConfig {
            max_unacked: args
                .max_unacked
                .or(file.max_unacked)
                .unwrap_or(spec.max_unacked),
            ack_timeout: args
                .ack_timeout
                .or(file.ack_timeout)
                .unwrap_or(spec.ack_timeout),
            nack_delay: args
                .nack_delay
                .or(file.nack_delay)
                .unwrap_or(spec.nack_delay),
            max_nack_delay: args
                .max_nack_delay
                .or(file.max_nack_delay)
                .unwrap_or(spec.max_nack_delay),
            max_redeliveries: args
                .max_redeliveries
                .or(file.max_redeliveries)
                .unwrap_or(spec.max_redeliveries),
            consumer_queue: args
                .consumer_queue
                .or(file.consumer_queue)
                .unwrap_or(spec.consumer_queue),
        };
        if subscription.max_unacked == 0 || subscription.consumer_queue == 0 {
            return Err("max_unacked and consumer_queue must be at least 1".into());
        }
        if subscription.nack_delay > subscription.max_nack_delay {
            return Err("nack_delay must not exceed max_nack_delay".into());
        }
        let consumer_defaults = ConsumerConfig::default();
        let consumer_caps = (
            args.max_subscriptions_per_topic
                .or(file.max_subscriptions_per_topic)
                .unwrap_or(consumer_defaults.max_subscriptions_per_topic),
            args.max_consumers_per_subscription
                .or(file.max_consumers_per_subscription)
                .unwrap_or(consumer_defaults.max_consumers_per_subscription),
        );
        if consumer_caps.0 == 0 || consumer_caps.1 == 0 {
            return Err(
                "max_subscriptions_per_topic and max_consumers_per_subscription must be at least 1"
                    .into(),
            );
        }
        let security = Security::resolve(args.security, file.auth, file.tls)?;
        let advertised_url = args.advertised_url.or(file.advertised_url);
        let metrics_addr = args.metrics_addr.or(file.metrics_addr);
        let keep_alive = args
            .keep_alive
            .or(file.keep_alive)
            .unwrap_or(DEFAULT_KEEP_ALIVE);
        if let Some(url) = &advertised_url {
            NodeUrls::same(url).map_err(|e| e.to_string())?;
        }
        Ok(Settings {
            addr,
            storage: args
                .storage
                .or(file.storage)
                .unwrap_or_else(|| DEFAULT_STORAGE.to_owned()),
            advertised_url,
            metrics_addr,
            keep_alive,
            security,
            producer,
            subscription,
            consumer_caps,
            cluster: args
                .cluster
                .or(file.cluster)
                .unwrap_or(false)
                .then_some(ClusterSettings {
                    node_id: args.node_id.or(file.node_id),
                    lease: args.lease.or(file.lease),
                    renew_every: args.renew_every.or(file.renew_every),
                }),
        })
    }

    /// The advertised URL: the configured one, else `http://` (`https://` under TLS) + the
    /// bound address (loopback standing in for an unspecified IP, which no client can dial).
    fn urls(&self, bound: SocketAddr) -> Result<NodeUrls, String> {
        let url = match &self.advertised_url {
            Some(url) => url.clone(),
            None => {
                let mut reachable = bound;
                if reachable.ip().is_unspecified() && self.cluster.is_some() {
                    // Every node would advertise 127.0.0.1:<port>, take the same node id and
                    // read every claim as its own, and redirects would point at loopback.
                    return Err(format!(
                        "--cluster with --addr {bound} needs --advertised-url (the URL other \
                         nodes and clients reach this node at)"
                    ));
                }
                if reachable.ip().is_unspecified() {
                    reachable.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                if self.security.scheme() == "https" {
                    // Lookups hand clients this URL, and a client verifying the certificate
                    // checks the host it dials against the certificate's names.
                    tracing::warn!(
                        url = %format!("https://{reachable}"),
                        "TLS without --advertised-url: clients are sent to an IP address;                          set --advertised-url https://<a name in the certificate>:<port>                          unless the certificate names this IP"
                    );
                }
                format!("{}://{reachable}", self.security.scheme())
            }
        };
        NodeUrls::same(&url).map_err(|e| e.to_string())
    }
}

pub(crate) async fn run(args: BrokerArgs) -> Result<(), String> {
    match args.command {
        Some(BrokerCommand::HashKey(args)) => return crate::broker_security::hash_key(args),
        Some(BrokerCommand::Token(args)) => return crate::broker_security::token(args),
        None => {}
    }
    let file: FileConfig = config::load(args.config.as_deref())?;
    let settings = Settings::resolve(args, file)?;
    let storage = storage::open(&settings.storage)
        .await
        .map_err(|e| format!("{e}\n  (--storage takes {STORAGE_FORMS})"))?;
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.addr))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let urls = settings.urls(local)?;
    let mut config = BrokerConfig::new(urls.clone());
    config.producer = settings.producer.clone();
    config.consumer.subscription = settings.subscription.clone();
    config.keep_alive = settings.keep_alive;
    (
        config.consumer.max_subscriptions_per_topic,
        config.consumer.max_consumers_per_subscription,
    ) = settings.consumer_caps;
    if let Some(cluster) = &settings.cluster {
        config.cluster = Some(cluster.config(&urls)?);
    }
    (config.auth, config.tls) = settings.security.load(settings.cluster.is_some())?;
    let (config_auth, config_tls) = (
        config.auth.is_some(),
        match &config.tls {
            Some(tls) if tls.is_mutual() => "mtls",
            Some(_) => "tls",
            None => "off",
        },
    );
    let server = BrokerServer::open(storage, config)
        .await
        .map_err(|e| format!("cannot open the broker: {e}"))?;
    let (stop_metrics, metrics) = match settings.metrics_addr {
        Some(addr) => {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            tracing::info!("metrics on http://{local}/metrics");
            let served = tokio::spawn(courier::broker::metrics::serve(
                listener,
                server.metrics_endpoint(),
                async move {
                    let _ = stopped.await;
                },
            ));
            (Some(stop), Some(served))
        }
        None => (None, None),
    };
    tracing::info!(
        addr = %local,
        storage = %storage::redacted(&settings.storage),
        advertised_url = %urls.connect_url,
        auth = if config_auth { "jwt" } else { "none" },
        tls = config_tls,
        max_message_bytes = settings.producer.max_message_bytes,
        "broker listening on {}",
        urls.connect_url
    );
    let served = server
        .serve(listener, crate::shutdown::signal())
        .await
        .map_err(|e| format!("server failed: {e}"));
    // Also when serving failed: the endpoint's task is stopped, not left behind.
    if let (Some(stop), Some(metrics)) = (stop_metrics, metrics) {
        stop_metrics_endpoint(stop, metrics).await;
    }
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Stops the metrics endpoint. Its graceful shutdown waits for open requests, so one a
/// scraper half-sent is given [`METRICS_SHUTDOWN`], then aborted: a stop must not hang on it.
async fn stop_metrics_endpoint(
    stop: tokio::sync::oneshot::Sender<()>,
    mut served: tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let _ = stop.send(());
    match tokio::time::timeout(METRICS_SHUTDOWN, &mut served).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "metrics listener failed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics task failed"),
        Err(_) => {
            tracing::warn!(
                "metrics endpoint still busy {METRICS_SHUTDOWN:?} after the stop; aborted"
            );
            served.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        broker: BrokerArgs,
    }

    fn settings(argv: &[&str], yaml: &str) -> Result<Settings, String> {
        let cli = Cli::try_parse_from(std::iter::once("broker").chain(argv.iter().copied()))
            .expect("flags parse");
        let file: FileConfig = serde_yaml_ng::from_str(yaml).expect("yaml parses");
        Settings::resolve(cli.broker, file)
    }

    #[test]
    fn defaults_then_file_then_flags() {
        let s = settings(&[], "").expect("defaults");
        assert_eq!(s.addr, DEFAULT_ADDR.parse::<SocketAddr>().expect("addr"));
        assert_eq!(s.storage, DEFAULT_STORAGE);
        assert_eq!(s.producer, ProducerConfig::default());
        assert_eq!(s.subscription, SubscriptionConfig::default());
        let s = settings(
            &["--addr", "127.0.0.1:7000", "--max-message-bytes", "1000"],
            "addr: 127.0.0.1:7001\nmax_message_bytes: 2000\nmax_producers_per_topic: 3\n\
             auto_create_topics: false\nstorage: memory\n",
        )
        .expect("resolves");
        assert_eq!(s.addr.port(), 7000);
        assert_eq!(s.producer.max_message_bytes, 1000);
        assert_eq!(s.producer.max_producers_per_topic, 3);
        assert!(!s.producer.auto_create_topics);
        assert_eq!(s.storage, "memory");
        let s = settings(
            &["--ack-timeout", "5s", "--max-redeliveries", "2"],
            "ack_timeout: 10s\nnack_delay: 500ms\nmax_unacked: 10\nconsumer_queue: 7\n",
        )
        .expect("resolves");
        assert_eq!(s.subscription.ack_timeout, Duration::from_secs(5));
        assert_eq!(s.subscription.nack_delay, Duration::from_millis(500));
        assert_eq!(s.subscription.max_nack_delay, Duration::from_secs(60));
        assert_eq!(
            (s.subscription.max_unacked, s.subscription.consumer_queue),
            (10, 7)
        );
        assert_eq!(s.subscription.max_redeliveries, 2);
        assert!(
            settings(&["--nack-delay", "2m"], "").is_err(),
            "above the cap"
        );
        assert!(settings(&["--max-unacked", "0"], "").is_err());
        let s = settings(
            &["--producer-idle-timeout", "2m"],
            "producer_idle_timeout: 10s\n",
        )
        .expect("resolves");
        assert_eq!(s.producer.idle_timeout, Duration::from_secs(120));
        let s = settings(&[], "producer_idle_timeout: 10s\n").expect("resolves");
        assert_eq!(s.producer.idle_timeout, Duration::from_secs(10));
        assert!(settings(&["--producer-idle-timeout", "0s"], "").is_err());
        // Below two health-check intervals a live producer would lose its place.
        assert!(settings(&["--producer-idle-timeout", "9s"], "").is_err());
        assert_eq!(
            settings(&[], "").expect("defaults").consumer_caps,
            (1000, 1000)
        );
        let s = settings(
            &["--max-consumers-per-subscription", "5"],
            "max_subscriptions_per_topic: 3\nmax_consumers_per_subscription: 4\n",
        )
        .expect("resolves");
        assert_eq!(s.consumer_caps, (3, 5));
        assert!(settings(&["--max-subscriptions-per-topic", "0"], "").is_err());
        assert_eq!(
            settings(&[], "").expect("defaults").keep_alive,
            Duration::from_secs(20)
        );
        let s = settings(&[], "keep_alive: 5s\n").expect("resolves");
        assert_eq!(s.keep_alive, Duration::from_secs(5));
        let s = settings(&["--keep-alive", "0s"], "keep_alive: 5s\n").expect("resolves");
        assert_eq!(
            s.keep_alive,
            Duration::ZERO,
            "the flag wins; zero turns pings off"
        );
    }

    #[test]
    fn metrics_are_off_unless_an_address_is_given() {
        assert_eq!(settings(&[], "").expect("defaults").metrics_addr, None);
        let s = settings(&[], "metrics_addr: 127.0.0.1:9650\n").expect("file");
        assert_eq!(
            s.metrics_addr,
            Some("127.0.0.1:9650".parse().expect("addr"))
        );
        let s = settings(
            &["--metrics-addr", "127.0.0.1:9651"],
            "metrics_addr: 127.0.0.1:9650\n",
        )
        .expect("flag wins");
        assert_eq!(
            s.metrics_addr,
            Some("127.0.0.1:9651".parse().expect("addr"))
        );
    }

    #[test]
    fn the_advertised_url_is_absolute_and_defaults_to_a_dialable_address() {
        let s = settings(&["--addr", "0.0.0.0:6650"], "").expect("resolves");
        let urls = s.urls("0.0.0.0:6650".parse().expect("addr")).expect("urls");
        assert_eq!(urls.connect_url, "http://127.0.0.1:6650");
        let s = settings(&["--advertised-url", "https://broker.example:443"], "").expect("ok");
        let urls = s.urls("0.0.0.0:6650".parse().expect("addr")).expect("urls");
        assert_eq!(urls.broker_url, "https://broker.example:443");
        assert!(settings(&["--advertised-url", "broker:6650"], "").is_err());
        assert!(settings(&["--max-producers-per-topic", "0"], "").is_err());
    }

    #[test]
    fn a_cluster_node_on_an_unspecified_address_must_say_where_it_is_reached() {
        let bound: SocketAddr = "0.0.0.0:6650".parse().expect("addr");
        let s = settings(&["--cluster", "true", "--addr", "0.0.0.0:6650"], "").expect("parses");
        let error = s
            .urls(bound)
            .expect_err("two hosts would share 127.0.0.1:6650");
        assert!(error.contains("--advertised-url"), "{error}");
        let s = settings(
            &[
                "--cluster",
                "true",
                "--advertised-url",
                "http://10.0.0.7:6650",
            ],
            "",
        )
        .expect("parses");
        assert_eq!(
            s.urls(bound).expect("urls").connect_url,
            "http://10.0.0.7:6650"
        );
        let loopback = settings(&["--cluster", "true"], "").expect("parses");
        let local: SocketAddr = "127.0.0.1:7001".parse().expect("addr");
        assert_eq!(
            loopback.urls(local).expect("urls").connect_url,
            "http://127.0.0.1:7001"
        );
    }

    #[test]
    fn unknown_file_key_is_an_error() {
        let error = serde_yaml_ng::from_str::<FileConfig>("max_mesage_bytes: 1\n")
            .err()
            .map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains("max_mesage_bytes")),
            "{error:?}"
        );
    }
}
