//! Issue 19 asks to measure both candidates for the durable embedded storage before choosing:
//! SQLite (what `courier streams` runs by default) and a purpose-built log (append-only file,
//! group-commit `fdatasync`). This driver measures their **write paths** side by side in one
//! process, without HTTP, so what differs is only the storage:
//!
//! * `sqlite`: [`SqliteStreamStorage`] with its defaults (WAL, `synchronous = FULL`: an append
//!   returns after the commit's fsync), appends through `StreamStorage::append`.
//! * `log`: a prototype of the log's write path only, not a storage: one preallocated segment
//!   file, a writer thread that takes every queued append, writes each as a frame
//!   (length, CRC-32, stream, offset, payload), calls `fdatasync` once for the group and then
//!   answers each append with its offset. No index, no reads, no recovery, no producers, TTL or
//!   forks: it is the least a durable log must do per append, so it bounds what such a backend
//!   could gain on appends.
//!
//! Load: `TASKS` concurrent loops (1 and 32 by default) each append 100-byte records for `DUR`
//! seconds, to one stream or spread over 1 000 streams (stream = next counter mod 1 000).
//! Reported per case: appends/s, this process's CPU µs per append (`getrusage`, the loops'
//! own work included, the same for both), latency p50/p99 and, for the log, appends per fsync.
//!
//! ```text
//! DUR=5 cargo bench -p courier-cli --bench embedded_log      # DIR: where the files go (a temp dir)
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use courier::impls::sqlite::{SqliteStorageConfig, SqliteStreamStorage};
use courier::traits::storage::{AppendRequest, StreamConfig, StreamName, StreamStorage};
use tokio::sync::oneshot;

const RECORD_BYTES: usize = 100;
const MANY_STREAMS: u64 = 1000;
/// The log's preallocated segment per second of a run (warm-up included): 64 MiB is over 3x
/// what 141k appends/s of 120-byte frames write. A run that still passes the end fails
/// rather than measure appends that grow the file.
const SEGMENT_BYTES_PER_SECOND: u64 = 64 << 20;

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` / `cargo bench -- --list`: nothing to run unattended
    }
    let duration = Duration::from_secs(env("DUR", 5));
    let dir = match std::env::var("DIR") {
        Ok(dir) => tempfile::tempdir_in(dir),
        Err(_) => tempfile::tempdir(),
    }
    .expect("a directory for the files");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "| storage | streams | tasks | appends/s | CPU µs/append | p50 ms | p99 ms | appends per fsync |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let tasks: Vec<u64> = std::env::var("TASKS")
        .unwrap_or_else(|_| "1 32".into())
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    let mut case = 0;
    for streams in [1, MANY_STREAMS] {
        for &tasks in &tasks {
            // Alternate which runs first, so neither always meets a warmer page cache.
            let order = if case % 2 == 0 {
                ["sqlite", "log"]
            } else {
                ["log", "sqlite"]
            };
            case += 1;
            for storage in order {
                let path = dir.path().join(format!("{storage}-{streams}-{tasks}"));
                let row = runtime.block_on(async {
                    match storage {
                        "sqlite" => {
                            let store = SqliteStreamStorage::connect(
                                path.with_extension("db"),
                                SqliteStorageConfig::default(),
                            )
                            .await
                            .expect("open SQLite");
                            let row =
                                measure(Appender::Sqlite(store.clone()), streams, tasks, duration)
                                    .await;
                            store.close().await;
                            row
                        }
                        _ => {
                            let segment = SEGMENT_BYTES_PER_SECOND * (duration.as_secs() + 1);
                            let log = LogWriter::open(&path.with_extension("log"), segment);
                            let row =
                                measure(Appender::Log(log.clone()), streams, tasks, duration).await;
                            let per_fsync = log.appends.load(Ordering::Relaxed) as f64
                                / log.fsyncs.load(Ordering::Relaxed).max(1) as f64;
                            Row {
                                per_fsync: Some(per_fsync),
                                ..row
                            }
                        }
                    }
                });
                println!(
                    "| {storage} | {streams} | {tasks} | {:.0} | {:.1} | {:.2} | {:.2} | {} |",
                    row.rate,
                    row.cpu_us,
                    row.p50_ms,
                    row.p99_ms,
                    row.per_fsync.map_or("-".into(), |n| format!("{n:.1}"))
                );
            }
        }
    }
}

struct Row {
    rate: f64,
    cpu_us: f64,
    p50_ms: f64,
    p99_ms: f64,
    per_fsync: Option<f64>,
}

#[derive(Clone)]
enum Appender {
    Sqlite(SqliteStreamStorage),
    Log(LogWriter),
}

impl Appender {
    async fn append(&self, stream: u64, names: &[StreamName], record: Vec<u8>) {
        match self {
            Appender::Sqlite(store) => {
                store
                    .append(&names[stream as usize], AppendRequest::record(record))
                    .await
                    .expect("SQLite append");
            }
            Appender::Log(log) => log.append(stream as u32, record).await,
        }
    }
}

/// `tasks` loops appending for `duration` (after one second of warm-up that is not counted).
async fn measure(appender: Appender, streams: u64, tasks: u64, duration: Duration) -> Row {
    let names: Arc<Vec<StreamName>> = Arc::new(
        (0..streams)
            .map(|i| StreamName::new(&format!("s{i}")).expect("stream name"))
            .collect(),
    );
    if let Appender::Sqlite(store) = &appender {
        for name in names.iter() {
            store
                .create(name, StreamConfig::with_content_type("text/plain"), vec![])
                .await
                .expect("create stream");
        }
    }
    let counter = Arc::new(AtomicU64::new(0));
    let run = |until: Instant, timed: bool| {
        let loops: Vec<_> = (0..tasks)
            .map(|_| {
                let (appender, names, counter) = (appender.clone(), names.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while Instant::now() < until {
                        let stream = counter.fetch_add(1, Ordering::Relaxed) % streams;
                        let started = Instant::now();
                        appender
                            .append(stream, &names, vec![b'x'; RECORD_BYTES])
                            .await;
                        if timed {
                            latencies.push(started.elapsed().as_micros() as u64);
                        }
                    }
                    latencies
                })
            })
            .collect::<Vec<_>>();
        async move {
            let mut all = Vec::new();
            for handle in loops {
                all.extend(handle.await.expect("append loop"));
            }
            all
        }
    };
    run(Instant::now() + Duration::from_secs(1), false).await;
    let (cpu_before, started) = (cpu_seconds(), Instant::now());
    let mut latencies = run(started + duration, true).await;
    let (cpu, wall) = (cpu_seconds() - cpu_before, started.elapsed().as_secs_f64());
    latencies.sort_unstable();
    let n = latencies.len().max(1) as f64;
    let quantile = |p: f64| {
        latencies
            .get(((n - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Row {
        rate: n / wall,
        cpu_us: cpu * 1e6 / n,
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        per_fsync: None,
    }
}

/// The log prototype's write path: a bounded queue to one writer thread that owns the file.
#[derive(Clone)]
struct LogWriter {
    queue: SyncSender<(u32, Vec<u8>, oneshot::Sender<u64>)>,
    appends: Arc<AtomicU64>,
    fsyncs: Arc<AtomicU64>,
}

impl LogWriter {
    fn open(path: &std::path::Path, segment: u64) -> LogWriter {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)
            .expect("open the log file");
        // A segment written with zeros before use, as a log preallocates its next segment off
        // the append path: an append then overwrites allocated blocks, so `fdatasync` flushes
        // the data alone. Appending to a growing file would also flush its size and extents
        // each time (on ext4 here, about half the rate at one task).
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..segment >> 20 {
            file.write_all(&zeros).expect("preallocate the segment");
        }
        file.sync_all().expect("sync the preallocated segment");
        let (queue, incoming) = sync_channel(4096);
        let (appends, fsyncs) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let counts = (appends.clone(), fsyncs.clone());
        // Ends when every sender is dropped (the bench's last clone goes with its runtime task).
        std::thread::spawn(move || write_groups(file, segment, incoming, counts));
        LogWriter {
            queue,
            appends,
            fsyncs,
        }
    }

    async fn append(&self, stream: u32, record: Vec<u8>) {
        let (reply, answer) = oneshot::channel();
        // Bounded at 4096, more than the loops can have in flight (each awaits its answer), so
        // `try_send` never meets a full queue and the runtime never blocks on it.
        if self.queue.try_send((stream, record, reply)).is_err() {
            panic!("log queue full or closed (4096 appends in flight)");
        }
        answer.await.expect("the log writer answers every append");
    }
}

/// Takes the first queued append (waiting), then every other already queued, writes their
/// frames with one `write`, one `fdatasync`, and answers them all.
fn write_groups(
    file: std::fs::File,
    segment: u64,
    incoming: Receiver<(u32, Vec<u8>, oneshot::Sender<u64>)>,
    (appends, fsyncs): (Arc<AtomicU64>, Arc<AtomicU64>),
) {
    let mut next_offset: HashMap<u32, u64> = HashMap::new();
    let mut frames = Vec::with_capacity(1 << 20);
    let mut position = 0u64;
    let mut replies = Vec::new();
    while let Ok(first) = incoming.recv() {
        let mut item = Some(first);
        while let Some((stream, record, reply)) = item.take() {
            let offset = next_offset.entry(stream).or_insert(0);
            frames.extend_from_slice(&(record.len() as u32).to_le_bytes());
            frames.extend_from_slice(&crc32fast::hash(&record).to_le_bytes());
            frames.extend_from_slice(&stream.to_le_bytes());
            frames.extend_from_slice(&offset.to_le_bytes());
            frames.extend_from_slice(&record);
            replies.push((reply, *offset));
            *offset += 1;
            item = incoming.try_recv().ok();
        }
        assert!(
            position + frames.len() as u64 <= segment,
            "the log outgrew its preallocated segment ({segment} bytes): appends past it would \
             also flush the file's size, not what this measures"
        );
        file.write_all_at(&frames, position).expect("write the log");
        position += frames.len() as u64;
        file.sync_data().expect("fdatasync the log");
        fsyncs.fetch_add(1, Ordering::Relaxed);
        appends.fetch_add(replies.len() as u64, Ordering::Relaxed);
        frames.clear();
        for (reply, offset) in replies.drain(..) {
            let _ = reply.send(offset);
        }
    }
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given, which is valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
