//! `ingest-bench`: benchmarks of the ingestion server and its SDK (run by
//! `benches/ingest/run.sh`; method and figures in `benches/README.md`).
//!
//! ```text
//! ingest-bench run                 # everything, settings from the environment (see settings.rs)
//! ingest-bench serve SPEC APP=KEY… # the server process `run` starts for itself
//! ingest-bench ceiling SPEC BATCH WRITERS SECONDS # the ceiling's process (see ceiling.rs)
//! ingest-bench cost BATCH BATCHES  # the server's work per event in process (see cost.rs)
//!                                   # COST_SHAPES=k: events of k shapes in turn
//! ```

mod accept;
mod backends;
mod ceiling;
mod child;
mod cost;
mod drive;
mod e2e;
mod events;
mod latency;
mod load_client;
mod proc_cpu;
mod raw_http;
mod rounds;
mod run;
mod serve;
mod settings;
mod stream_check;
mod track;

use std::process::ExitCode;

// The `courier` binary's allocator, so the server's CPU per event is what it would be there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ingest-bench: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match args.first().map(String::as_str) {
        Some("serve") if args.len() >= 2 => runtime.block_on(serve::serve(&args[1], &args[2..])),
        Some("cost") if args.len() == 3 => match (args[1].parse(), args[2].parse()) {
            (Ok(batch), Ok(batches)) => runtime.block_on(cost::cost(batch, batches)),
            _ => Err("usage: ingest-bench cost BATCH BATCHES".to_owned()),
        },
        Some("ceiling") if args.len() == 5 => {
            match (args[2].parse(), args[3].parse(), args[4].parse()) {
                (Ok(batch), Ok(writers), Ok(seconds)) => runtime.block_on(ceiling::child(
                    &args[1],
                    batch,
                    writers,
                    std::time::Duration::from_secs_f64(seconds),
                )),
                _ => Err("usage: ingest-bench ceiling SPEC BATCH WRITERS SECONDS".to_owned()),
            }
        }
        Some("run") => settings::Settings::from_env().and_then(|s| runtime.block_on(run::run(&s))),
        _ => Err("usage: ingest-bench run | ingest-bench serve SPEC APP=KEY... | ingest-bench ceiling SPEC BATCH WRITERS SECONDS | ingest-bench cost BATCH BATCHES".to_owned()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingest-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
