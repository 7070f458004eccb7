//! One row of the accept table: `ROUNDS` rounds of the server and its ceiling for one storage
//! and batch size, medians reported.
//!
//! Both sides get the same preconditions in every round: a fresh process (the server's
//! `serve` or `courier ingest`, the ceiling's `ingest-bench ceiling`), the storage opened anew,
//! a stream nobody wrote to before (the server's app is new each round), one batch and the
//! same warm-up before the same timed run. Which side goes first alternates (even rounds: the
//! ceiling), so neither always meets the machine in the state the other left it in. The
//! ratio is read per round (two runs seconds apart) and its median reported beside the
//! median of each side's figures.

use std::fmt::Write as _;

use crate::backends::Backend;
use crate::ceiling::CeilingRun;
use crate::child::ServerProcess;
use crate::settings::Settings;

/// One round's two runs.
#[derive(Debug)]
struct Round {
    server: crate::accept::Load,
    ceiling: CeilingRun,
}

impl Round {
    fn server_rate(&self) -> f64 {
        self.server.tally.rate()
    }

    fn ceiling_rate(&self) -> f64 {
        self.ceiling.tally.rate()
    }

    fn ratio(&self) -> f64 {
        self.server_rate() / self.ceiling_rate().max(1e-9)
    }

    fn server_cpu_us(&self) -> f64 {
        per_event_us(self.server.server_cpu, self.server.tally.events)
    }

    fn ceiling_cpu_us(&self) -> f64 {
        per_event_us(self.ceiling.cpu, self.ceiling.tally.events)
    }
}

fn per_event_us(cpu: std::time::Duration, events: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / events.max(1) as f64
}

/// The median (the mean of the middle two for an even count); 0 for none.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The rounds for `storage` at `batch`: appends the table row and answers the failures.
pub(crate) async fn accept_row(
    settings: &Settings,
    storage: &str,
    backend: &Backend,
    batch: usize,
    table: &mut String,
) -> Vec<String> {
    let mut rounds = Vec::new();
    let mut failures = Vec::new();
    let mut errors = 0;
    for round in 0..settings.rounds {
        // The fastest server run so far sizes the next pool of bodies.
        let hint = rounds.iter().map(Round::server_rate).fold(0.0, f64::max);
        match one_round(settings, backend, batch, round, hint).await {
            Ok(r) => {
                eprintln!(
                    "{storage} batch {batch} round {round} ({} first): server {:.0} events/s, \
                     {:.2} µs/event (load generator {:.2}), slowest batch {:?}; ceiling {:.0} events/s, {:.2} µs/event, \
                     slowest batch {:?}; server / ceiling {:.2}; bodies pre-built {}",
                    if ceiling_first(round) {
                        "ceiling"
                    } else {
                        "server"
                    },
                    r.server_rate(),
                    r.server_cpu_us(),
                    per_event_us(r.server.load_cpu, r.server.tally.events),
                    r.server.tally.slowest,
                    r.ceiling_rate(),
                    r.ceiling_cpu_us(),
                    r.ceiling.tally.slowest,
                    r.ratio(),
                    r.server.pre_built,
                );
                if r.server.built_inline > 0 {
                    eprintln!(
                        "WARNING: {storage} batch {batch} round {round}: the pool ran out; {} \
                         bodies were formatted during the timed run",
                        r.server.built_inline
                    );
                }
                let failed = r.server.tally.failures + r.ceiling.tally.failures;
                if failed > 0 {
                    errors += failed;
                    failures.push(format!(
                        "{storage} batch {batch} round {round}: server error {:?}, ceiling error \
                         {:?}",
                        r.server.tally.first_error, r.ceiling.tally.first_error
                    ));
                }
                rounds.push(r);
            }
            Err(e) => {
                eprintln!("{storage} batch {batch} round {round}: {e}");
                failures.push(format!("{storage} batch {batch} round {round}: {e}"));
            }
        }
    }
    let of = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let per_round: Vec<String> = rounds.iter().map(|r| format!("{:.2}", r.ratio())).collect();
    let _ = writeln!(
        table,
        "| {storage} | {batch} | {} | {:.0} | {:.2} | {:.0} | {:.2} | {:.2} | {} | {errors} |",
        rounds.len(),
        of(Round::server_rate),
        of(Round::server_cpu_us),
        of(Round::ceiling_rate),
        of(Round::ceiling_cpu_us),
        of(Round::ratio),
        per_round.join(" "),
    );
    failures
}

/// Whether the ceiling runs before the server in `round` (even rounds).
fn ceiling_first(round: usize) -> bool {
    round.is_multiple_of(2)
}

/// Round `round`: the ceiling and the server, in the order [`ceiling_first`] says.
async fn one_round(
    settings: &Settings,
    backend: &Backend,
    batch: usize,
    round: usize,
    hint: f64,
) -> Result<Round, String> {
    let (conns, dur) = (settings.connections, settings.duration);
    let ceiling = || crate::ceiling::run_in_child(&backend.ceiling_spec, batch, conns, dur);
    if ceiling_first(round) {
        let ceiling = ceiling().await?;
        let server = server_run(settings, backend, batch, round, hint).await?;
        Ok(Round { server, ceiling })
    } else {
        let server = server_run(settings, backend, batch, round, hint).await?;
        let ceiling = ceiling().await?;
        Ok(Round { server, ceiling })
    }
}

/// A fresh server process with an app of this round's own, the timed load, and the count of
/// the app's stream, which must hold exactly what the server accepted.
async fn server_run(
    settings: &Settings,
    backend: &Backend,
    batch: usize,
    round: usize,
    hint: f64,
) -> Result<crate::accept::Load, String> {
    let app = format!("bench-accept-b{batch}-r{round}");
    // Any 64 lowercase hex digits are a well-formed key; one per app.
    let key = format!("{:064x}", ((batch as u64) << 16) | (round as u64 + 1));
    let courier = settings.server_bin.as_deref();
    let mut server = ServerProcess::start(&backend.server_spec, &[(&app, &key)], courier).await?;
    let load = on_load_runtime(
        settings.load_threads,
        crate::accept::run(&server, &app, &key, batch, settings, hint),
    );
    let counted = match &load {
        // A failed batch may have been written without its answer: nothing to compare.
        Ok(load) if load.tally.failures == 0 => {
            let accepted = load.tally.events + load.warm_up_events;
            match server.check(&app, None).await? {
                Some(count) if count == format!("records={accepted}") => Ok(()),
                Some(count) => Err(format!("stream {count} but the server accepted {accepted}")),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    };
    server.stop().await?;
    counted?;
    load
}

/// Runs `load` to completion on a runtime of its own with `threads` workers (1: a
/// current-thread runtime, 2 or more: a multi-thread one), on a thread of its own, while
/// this task's worker blocks.
///
/// Why: the load generator shares the machine's two cores with the server it measures, so
/// its CPU is the server's loss. On one thread (as `wrk -t1` in the streams bench) its loops
/// never hop between workers; measured, that is about 10 % less load CPU per event than on
/// the bench's 2-worker runtime, and no change in server / ceiling (benches/README.md).
fn on_load_runtime<T: Send>(
    threads: usize,
    load: impl std::future::Future<Output = Result<T, String>> + Send,
) -> Result<T, String> {
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut builder = if threads == 1 {
                        tokio::runtime::Builder::new_current_thread()
                    } else {
                        let mut builder = tokio::runtime::Builder::new_multi_thread();
                        builder.worker_threads(threads);
                        builder
                    };
                    let runtime = builder
                        .enable_all()
                        .build()
                        .map_err(|e| format!("load runtime: {e}"))?;
                    runtime.block_on(load)
                })
                .join()
                .map_err(|_| "the load generator panicked".to_owned())?
        })
    })
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_even_and_no_values() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }
}
