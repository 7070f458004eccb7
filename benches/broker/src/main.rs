//! Broker benchmarks (issue 15): produce rate, end-to-end latency, server and client CPU per message
//! for 1 KiB messages, `courier broker` (reliable on SQLite, the log storage (`log`), Redis,
//! Postgres; non-reliable)
//! beside NATS JetStream (file storage, acked publish, explicit-ack pull consumer) in the
//! same run. Prints a markdown table; `benches/broker/run.sh` builds and runs it, and
//! benches/README.md ("Broker") has the method.
//!
//! Settings (environment): DUR seconds of producing per case [5], PRODUCERS ["1 16"],
//! SYSTEMS ["sqlite sqlite-normal redis postgres non-reliable jetstream"], DRAIN seconds to wait for the
//! last messages once producers are done [10], COURIER_BIN [target/release/courier],
//! NATS_BIN [nats-server].

mod courier;
mod measure;
mod nats;

use std::time::Duration;

use courier_testkit::fixtures::{Postgres, Redis};

use crate::courier::BrokerProcess;
use crate::measure::{Outcome, quantile};
use crate::nats::NatsProcess;

/// The benchmark's settings, from the environment.
struct Settings {
    duration: Duration,
    producers: Vec<usize>,
    systems: Vec<String>,
    drain: Duration,
    courier_bin: String,
    nats_bin: String,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        let seconds = |name: &str, default: &str| -> Result<Duration, String> {
            var(name, default)
                .parse::<f64>()
                .map(Duration::from_secs_f64)
                .map_err(|e| format!("{name}: {e}"))
        };
        let producers = var("PRODUCERS", "1 16")
            .split_whitespace()
            .map(|n| n.parse().map_err(|e| format!("PRODUCERS: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Settings {
            duration: seconds("DUR", "5")?,
            producers,
            systems: var(
                "SYSTEMS",
                "sqlite sqlite-normal redis postgres non-reliable jetstream",
            )
            .split_whitespace()
            .map(String::from)
            .collect(),
            drain: seconds("DRAIN", "10")?,
            courier_bin: var("COURIER_BIN", "target/release/courier"),
            nats_bin: var("NATS_BIN", "nats-server"),
        })
    }
}

#[tokio::main]
async fn main() {
    // On a worker thread, as an application's tasks run: `block_on`'s future runs on the main
    // thread, outside the workers, so every send's answer would cost a wake of that thread
    // (a futex and a context switch per message, the same for both systems).
    let outcome = match tokio::spawn(run()).await {
        Ok(outcome) => outcome,
        Err(e) => Err(format!("the bench task failed: {e}")),
    };
    if let Err(e) = outcome {
        eprintln!("broker-bench: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let settings = Settings::from_env()?;
    println!(
        "| system | producers | produced msg/s | received / sent | e2e p50 | e2e p99 | server CPU per msg | client CPU per msg |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for system in &settings.systems {
        for &producers in &settings.producers {
            let name = format!("{}-{producers}", system.replace('-', ""));
            let outcome = run_system(&settings, system, &name, producers).await;
            match outcome {
                Ok(outcome) => print_row(system, producers, outcome),
                Err(e) => println!("| {system} | {producers} | failed: {e} | | | | | |"),
            }
        }
    }
    Ok(())
}

/// One case on a fresh server (and a fresh backing server for Redis and Postgres).
async fn run_system(
    settings: &Settings,
    system: &str,
    name: &str,
    producers: usize,
) -> Result<Outcome, String> {
    let (dur, drain) = (settings.duration, settings.drain);
    let topic = format!("/default/bench-{name}");
    let courier = |storage: String| async move {
        let broker = BrokerProcess::start(&settings.courier_bin, &storage).await?;
        let reliable = system != "non-reliable";
        let outcome = courier::run_case(&broker, &topic, reliable, producers, dur, drain).await;
        broker.stop().await;
        outcome
    };
    match system {
        "sqlite" | "non-reliable" => courier("sqlite:./broker.db".into()).await,
        // Acknowledged once in the OS page cache, as JetStream's default file storage acks
        // (it fsyncs at most every 2 minutes): the same guarantee, kill -9 safe.
        "sqlite-normal" => courier("sqlite:./broker.db?sync=normal".into()).await,
        // The log storage: acknowledged after its journal group's fdatasync (a stronger
        // guarantee than JetStream's default file storage).
        "log" => courier("log:./broker-log".into()).await,
        // The log storage acknowledging once written to the OS: JetStream's guarantee.
        "log-normal" => courier("log:./broker-log?sync=normal".into()).await,
        "redis" => {
            let redis = Redis::start().await.map_err(|e| format!("redis: {e}"))?;
            courier(redis.url()).await
        }
        "postgres" => {
            let postgres = Postgres::start()
                .await
                .map_err(|e| format!("postgres: {e}"))?;
            courier(postgres.url()).await
        }
        "jetstream" => {
            let server = NatsProcess::start(&settings.nats_bin).await?;
            let outcome =
                nats::run_case(&server, &name.to_uppercase(), producers, dur, drain).await;
            server.stop().await;
            outcome
        }
        other => Err(format!("unknown system {other}")),
    }
}

fn print_row(system: &str, producers: usize, mut outcome: Outcome) {
    let rate = outcome.sent as f64 / outcome.produce_time.as_secs_f64();
    let p50 = quantile(&mut outcome.latencies, 0.50);
    let p99 = quantile(&mut outcome.latencies, 0.99);
    let messages = outcome.sent.max(outcome.received);
    let per_msg = |cpu: Duration| {
        if messages == 0 {
            0.0
        } else {
            cpu.as_secs_f64() * 1e6 / messages as f64
        }
    };
    println!(
        "| {system} | {producers} | {rate:.0} | {} / {} | {} | {} | {:.1} µs | {:.1} µs |",
        outcome.received,
        outcome.sent,
        millis(p50),
        millis(p99),
        per_msg(outcome.server_cpu),
        per_msg(outcome.client_cpu),
    );
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
