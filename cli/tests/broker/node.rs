//! A `courier broker` process for the process tests: started on a free loopback port and
//! waited for until Discovery answers.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use courier::impls::grpc::GrpcChannel;
use courier::impls::grpc::proto::danube::TopicLookupRequest;
use courier::impls::grpc::proto::danube::discovery_client::DiscoveryClient;
use courier::impls::grpc::{ChannelOptions, GrpcChannels};
use tokio::process::{Child, Command};

/// A port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The metrics port of the latest broker logging to `log`, started with `--metrics-addr
/// 127.0.0.1:0` (it binds the port itself, so no other process can take it between a check
/// and the bind; it logs `metrics on http://ADDR/metrics` before it serves).
#[allow(
    dead_code,
    reason = "not every test binary including this file scrapes metrics"
)]
pub(crate) fn metrics_port(log: &Path) -> u16 {
    let text = std::fs::read_to_string(log).expect("the broker's log");
    let addr = text
        .rsplit_once("metrics on http://")
        .and_then(|(_, rest)| rest.split_once("/metrics"))
        .map(|(addr, _)| addr)
        .expect("the broker logs its metrics address");
    addr.parse::<std::net::SocketAddr>()
        .expect("a socket address")
        .port()
}

/// The URL of the broker on `port`.
pub(crate) fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// A fresh channel to the broker on `port`.
pub(crate) fn channel(port: u16) -> GrpcChannel {
    GrpcChannels::new(ChannelOptions::default())
        .channel(&url(port))
        .expect("channel")
}

/// Starts `courier broker --addr 127.0.0.1:PORT ARGS…`, output appended to `log`, and waits
/// (at most 30 s) until Discovery answers.
pub(crate) async fn start_broker(port: u16, args: &[&str], log: &Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    let err = out.try_clone().expect("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(["broker", "--addr", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .expect("courier starts");
    for _ in 0..600 {
        let request = TopicLookupRequest {
            request_id: 1,
            topic: "/default/started".into(),
        };
        if DiscoveryClient::new(channel(port))
            .topic_partitions(request)
            .await
            .is_ok()
        {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "courier broker exited at start: {status}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("courier broker not answering after 30 s");
}
