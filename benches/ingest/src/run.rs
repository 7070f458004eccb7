//! `ingest-bench run`: every section in turn, a progress line per measurement on stderr and
//! the tables (markdown) on stdout at the end. Fails if any measurement failed or lost events.

use std::fmt::Write as _;

use crate::backends::Backend;
use crate::child::ServerProcess;
use crate::settings::Settings;

/// The app whose stream the accept runs fill, and its key (any 64 lowercase hex).
const ACCEPT_APP: &str = "bench-accept";
const ACCEPT_KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";
/// The app of the end-to-end run, in a stream of its own so its count is exact.
const E2E_APP: &str = "bench-e2e";
const E2E_KEY: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// Runs what `settings` asks for.
pub(crate) async fn run(settings: &Settings) -> Result<(), String> {
    let mut accept_table = String::new();
    let mut e2e_table = String::new();
    let mut track_table = String::new();
    let mut failures = Vec::new();
    if settings.runs("track") {
        let t = crate::track::run(settings.track_calls, settings.track_queue).await?;
        eprintln!("track (transport stalled): {t:?}");
        let _ = writeln!(
            track_table,
            "| {} | {} | {} / {} / {} / {} | {} | {} / {} / {} / {} | {} ms | {} | {} | {} |",
            settings.track_calls,
            t.queued.calls,
            t.queued.p50,
            t.queued.p99,
            t.queued.p999,
            t.queued.max,
            t.refused.calls,
            t.refused.p50,
            t.refused.p99,
            t.refused.p999,
            t.refused.max,
            t.wall.as_millis(),
            t.capacity,
            t.dropped_queue_full,
            t.clock_overhead_ns,
        );
        if t.other_errors > 0 || t.dropped_queue_full != t.refused.calls as u64 {
            failures.push(format!("track: {t:?}"));
        }
    }
    for storage in &settings.storages {
        let wants_accept = settings.runs("accept");
        let wants_e2e = settings.runs("e2e") && settings.e2e_storages.contains(storage);
        if !wants_accept && !wants_e2e {
            continue;
        }
        let backend = Backend::start(storage).await?;
        let apps = [(ACCEPT_APP, ACCEPT_KEY), (E2E_APP, E2E_KEY)];
        let courier = settings.server_bin.as_deref();
        let mut server = ServerProcess::start(&backend.server_spec, &apps, courier).await?;
        if wants_accept {
            let mut accepted_total = 0;
            for &batch in &settings.batches {
                accept_row(
                    settings,
                    storage,
                    &backend,
                    &server,
                    batch,
                    &mut accept_table,
                )
                .await
                .map(|accepted| accepted_total += accepted)
                .unwrap_or_else(|e| {
                    eprintln!("{storage} batch {batch}: {e}");
                    failures.push(format!("{storage} batch {batch}: {e}"));
                });
            }
            // The stream holds what the server said it accepted: no more, no fewer.
            match server.check(ACCEPT_APP, None).await? {
                Some(count) if count == format!("records={accepted_total}") => {
                    eprintln!("{storage}: stream {count}, as accepted");
                }
                Some(count) => failures.push(format!(
                    "{storage}: stream {count} but the server accepted {accepted_total}"
                )),
                None => eprintln!("{storage}: stream not readable from here; not counted"),
            }
        }
        if wants_e2e {
            let e = crate::e2e::run(
                &mut server,
                E2E_APP,
                E2E_KEY,
                settings.e2e_events,
                settings.e2e_batch,
            )
            .await?;
            eprintln!("{storage} e2e: {e:?}");
            let _ = writeln!(
                e2e_table,
                "| {storage} | {} | {} | {:.1} | {:.0} | {} | {} | {} | {} / {} | {:.2} | {} |",
                e.events,
                settings.e2e_batch,
                e.wall.as_secs_f64(),
                e.events as f64 / e.wall.as_secs_f64().max(1e-9),
                e.report.delivered,
                e.stream
                    .as_deref()
                    .unwrap_or("not readable (courier ingest on memory)"),
                e.queue_full,
                e.track.p50,
                e.track.p99,
                e.server_cpu.as_secs_f64() * 1e6 / e.events.max(1) as f64,
                match e.lossless() {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "unchecked",
                },
            );
            if e.lossless() == Some(false) {
                failures.push(format!("{storage} e2e lost or duplicated events: {e:?}"));
            }
        }
        server.stop().await?;
        drop(backend);
    }
    print_tables(&accept_table, &track_table, &e2e_table);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("failed:\n  {}", failures.join("\n  ")))
    }
}

/// The ceiling, then the server, for one batch size; appends the table row and answers the
/// events the server accepted (warm-up included).
async fn accept_row(
    settings: &Settings,
    storage: &str,
    backend: &Backend,
    server: &ServerProcess,
    batch: usize,
    table: &mut String,
) -> Result<u64, String> {
    let (conns, dur) = (settings.connections, settings.duration);
    let own_before = crate::proc_cpu::cpu_time(std::process::id())?;
    let ceiling = crate::ceiling::run(backend.ceiling.clone(), batch, conns, dur).await?;
    let own = crate::proc_cpu::cpu_time(std::process::id())?.saturating_sub(own_before);
    eprintln!("{storage} batch {batch} ceiling: {ceiling:?}, bench process cpu {own:?}");
    let crate::accept::Load {
        tally: load,
        warm_up_events,
        pre_built,
        built_inline,
        server_cpu: cpu,
    } = crate::accept::run(
        server.pid,
        &server.addr,
        ACCEPT_APP,
        ACCEPT_KEY,
        batch,
        conns,
        dur,
    )
    .await?;
    eprintln!(
        "{storage} batch {batch} server: {load:?}, server cpu {cpu:?}; bodies pre-built {pre_built}, \
         built while timed {built_inline}"
    );
    if built_inline > 0 {
        eprintln!(
            "WARNING: {storage} batch {batch}: the pool ran out; {built_inline} bodies were \
             formatted during the timed run (raise accept::POOL_MARGIN)"
        );
    }
    let _ = writeln!(
        table,
        "| {storage} | {batch} | {:.0} | {:.2} | {:.0} | {:.2} | {} |",
        load.rate(),
        // The warm-up ran before the CPU reading, so it is not in either figure.
        cpu.as_secs_f64() * 1e6 / load.events.max(1) as f64,
        ceiling.rate(),
        load.rate() / ceiling.rate().max(1e-9),
        load.failures + ceiling.failures,
    );
    match (&load.first_error, &ceiling.first_error) {
        (None, None) => Ok(load.events + warm_up_events),
        (server, ceiling) => Err(format!(
            "server error: {server:?}; ceiling error: {ceiling:?}"
        )),
    }
}

fn print_tables(accept: &str, track: &str, e2e: &str) {
    if !accept.is_empty() {
        println!(
            "\n| storage | batch | server events/s | server CPU µs/event | ceiling (append_keyed) events/s | server / ceiling | errors |\n|---|---:|---:|---:|---:|---:|---:|\n{accept}"
        );
    }
    if !track.is_empty() {
        println!(
            "\n| track calls | queued | queued p50 / p99 / p99.9 / max (ns) | refused (queue full) | refused p50 / p99 / p99.9 / max (ns) | wall | queue capacity | dropped.queue_full | clock read (ns) |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n{track}"
        );
    }
    if !e2e.is_empty() {
        println!(
            "\n| storage | events | SDK batch | wall (s) | events/s | delivered | stream | queue-full retries | track p50 / p99 (ns) | server CPU µs/event | zero loss |\n|---|---:|---:|---:|---:|---:|---|---:|---:|---:|:-:|\n{e2e}"
        );
    }
}
