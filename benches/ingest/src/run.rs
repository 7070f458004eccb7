//! `ingest-bench run`: every section in turn, a progress line per measurement on stderr and
//! the tables (markdown) on stdout at the end. Fails if any measurement failed or lost events.

use std::fmt::Write as _;

use crate::backends::Backend;
use crate::child::ServerProcess;
use crate::settings::Settings;

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
        if wants_accept {
            for &batch in &settings.batches {
                let failed = crate::rounds::accept_row(
                    settings,
                    storage,
                    &backend,
                    batch,
                    &mut accept_table,
                )
                .await;
                failures.extend(failed);
            }
        }
        if wants_e2e {
            let courier = settings.server_bin.as_deref();
            let mut server =
                ServerProcess::start(&backend.server_spec, &[(E2E_APP, E2E_KEY)], courier).await?;
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
            server.stop().await?;
        }
        drop(backend);
    }
    print_tables(&accept_table, &track_table, &e2e_table);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("failed:\n  {}", failures.join("\n  ")))
    }
}

fn print_tables(accept: &str, track: &str, e2e: &str) {
    if !accept.is_empty() {
        println!(
            "\n| storage | batch | rounds | server events/s | server CPU µs/event | ceiling (append_keyed) events/s | ceiling CPU µs/event | server / ceiling | per round | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n{accept}"
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
