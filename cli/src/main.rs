//! `courier`: the reference services from the command line.
//!
//! ```text
//! courier streams [--storage memory|sqlite:PATH|log:DIR|redis://..|postgres://..] [--addr HOST:PORT]
//!                 [--long-poll-timeout 30s] [--config courier.yaml]
//! courier hub     [--addr :8080] [--api-key K] [--cluster true --bus etcd|redis|postgres]
//!                 [--config hub.yaml]
//! courier ingest  [--storage memory|sqlite:PATH|log:DIR|redis://..|postgres://..] [--addr HOST:PORT]
//!                 [--keys-file keys.json] [--admin-token T] [--config ingest.yaml]
//! courier ingest keys create --app-id APP [--name N] | revoke ID | list [--app-id APP]
//!                 [--storage ...]
//! courier broker  [--storage memory|sqlite:PATH|log:DIR|redis://..|postgres://..] [--addr HOST:PORT]
//!                 [--advertised-url http://HOST:PORT] [--config broker.yaml]
//!                 [--auth-mode jwt --keys-file keys.yaml] [--tls-cert C --tls-key K]
//! courier broker hash-key [KEY]
//! courier broker token --keys-file keys.yaml --jwt-secret-file S [--ttl 1h] [KEY]
//! ```

mod broker;
mod broker_security;
mod config;
mod hub;
mod hub_channels;
mod ingest;
mod ingest_keys;
mod shutdown;
mod storage;
mod streams;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// glibc's malloc spends a measurable share of a small append's CPU time (benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "courier", version, about = "Courier reference services")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Durable Streams HTTP server.
    Streams(streams::StreamsArgs),
    /// Run the WebSocket hub (alone, or as a cluster node over etcd, Redis or Postgres).
    Hub(hub::HubArgs),
    /// Run the event-ingestion server (`POST /v1/events/batch`, Causality-compatible).
    Ingest(ingest::IngestArgs),
    /// Run the gRPC broker (Danube's protocol: producers, discovery, health checks).
    Broker(Box<broker::BrokerArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COURIER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("courier: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Streams(args) => streams::run(args).await,
            Command::Hub(args) => hub::run(args).await,
            Command::Ingest(args) => ingest::run(args).await,
            Command::Broker(args) => broker::run(*args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("courier: {e}");
            ExitCode::FAILURE
        }
    }
}
