//! The random streams workload: concurrent clients, a fault schedule, then final reads.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{ProducerStamp, STREAM_CONFIGS, StreamOp, StreamRet, StreamsApi};
use crate::checker::faults::{FaultTarget, Schedule};
use crate::checker::history::{Entry, History, Outcome};
use crate::checker::report::RunReport;
use crate::checker::rng::{Rng, Seed};

/// Process id of the final reads in the history.
const FINAL_PROCESS: usize = 10_000;
/// How many live streams clients spread over (fewer means more contention).
const MAX_LIVE_STREAMS: usize = 6;
/// Attempts of one idempotent append while its outcome stays unclear.
const PRODUCER_ATTEMPTS: usize = 5;
/// How long the final phase retries a read that keeps failing (the system should be healed).
const FINAL_READ_PATIENCE: Duration = Duration::from_secs(30);

/// The shape of a run.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Concurrent clients.
    pub clients: usize,
    /// How long clients issue operations (faults stop at the same time).
    pub duration: Duration,
    /// Upper bound of operations per client.
    pub max_ops_per_client: usize,
    /// Per stream, how many acknowledged offsets the final phase reads back from.
    pub offset_reads_per_stream: usize,
    /// The fault schedule.
    pub schedule: Schedule,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            clients: 6,
            duration: Duration::from_secs(25),
            max_ops_per_client: 5_000,
            offset_reads_per_stream: 40,
            schedule: Schedule::default(),
        }
    }
}

/// Names and producer offsets the clients share.
#[derive(Default)]
struct Registry {
    next_name: u64,
    /// Streams new operations may use.
    live: Vec<String>,
    /// Forks and closed streams: read only.
    read_only: Vec<String>,
    /// Every name ever used, for the final reads.
    all: BTreeSet<String>,
    /// Acknowledged offsets per stream, for reads from an offset.
    offsets: HashMap<String, Vec<String>>,
}

type Shared = Arc<Mutex<Registry>>;

fn with<T>(registry: &Shared, f: impl FnOnce(&mut Registry) -> T) -> T {
    f(&mut registry.lock().unwrap_or_else(|e| e.into_inner()))
}

struct Client {
    id: usize,
    rng: Rng,
    api: Arc<dyn StreamsApi>,
    history: Arc<History<StreamOp, StreamRet>>,
    registry: Shared,
    /// (epoch, next seq) of this client's producer on each stream.
    producers: HashMap<String, (u64, u64)>,
    next_record: u64,
}

impl Workload {
    /// Runs the workload against `api` while the schedule injects faults into `target`, then
    /// reads every stream back and checks the history. `name` labels the report.
    pub async fn run(
        &self,
        name: &str,
        api: Arc<dyn StreamsApi>,
        target: &dyn FaultTarget,
        seed: Seed,
    ) -> RunReport {
        let history = Arc::new(History::new());
        let registry: Shared = Arc::default();
        let until = Instant::now() + self.duration;
        let mut clients = JoinSet::new();
        for id in 0..self.clients {
            let mut client = Client {
                id,
                rng: seed.rng(id as u64 + 1),
                api: api.clone(),
                history: history.clone(),
                registry: registry.clone(),
                producers: HashMap::new(),
                next_record: 0,
            };
            let max_ops = self.max_ops_per_client;
            clients.spawn(async move {
                let mut ops = 0;
                while Instant::now() < until && ops < max_ops {
                    client.step().await;
                    ops += 1;
                }
            });
        }
        let faults = self.schedule.run(target, seed.rng(0), until).await;
        while clients.join_next().await.is_some() {}
        let workload_ops = history.len();
        eprintln!(
            "checker {name}: workload done ({workload_ops} operations, {faults}); final reads"
        );
        self.final_reads(&api, &history, &registry).await;
        let entries = history.entries();
        let report = RunReport::new(name, seed, &entries, faults, super::check(&entries));
        if !report.violations.is_empty() {
            dump(&report, &entries);
        }
        report
    }

    /// Reads every stream from the start, then from a sample of its acknowledged offsets,
    /// retrying unclear reads while the system settles.
    async fn final_reads(
        &self,
        api: &Arc<dyn StreamsApi>,
        history: &History<StreamOp, StreamRet>,
        registry: &Shared,
    ) {
        let (names, offsets) = with(registry, |r| (r.all.clone(), r.offsets.clone()));
        let deadline = Instant::now() + FINAL_READ_PATIENCE;
        for stream in names {
            let mut reads = vec![None];
            let acked = offsets.get(&stream).cloned().unwrap_or_default();
            let step = (acked.len() / self.offset_reads_per_stream.max(1)).max(1);
            reads.extend(acked.iter().step_by(step).cloned().map(Some));
            for from in reads {
                let op = StreamOp::Read {
                    stream: stream.clone(),
                    from,
                };
                loop {
                    let node = 0;
                    let id = history.invoke(FINAL_PROCESS, op.clone());
                    let outcome = api.call(node, &op).await;
                    // A refusal (e.g. an offset past the tail of a stream made anew) is an
                    // answer too; only unclear outcomes are worth another try.
                    let settled = !outcome.is_info();
                    history.complete(id, outcome);
                    if settled || Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

impl Client {
    /// Runs `op` through a random node.
    async fn call(&mut self, op: StreamOp) -> Outcome<StreamRet> {
        let node = self.rng.below(self.api.nodes().max(1) as u64) as usize;
        self.call_on(node, self.id, op).await
    }

    async fn call_on(&self, node: usize, process: usize, op: StreamOp) -> Outcome<StreamRet> {
        let id = self.history.invoke(process, op.clone());
        let outcome = self.api.call(node, &op).await;
        self.history.complete(id, outcome.clone());
        outcome
    }

    fn record_id(&mut self, kind: char) -> String {
        self.next_record += 1;
        format!("{kind}{}-{}", self.id, self.next_record)
    }

    fn any_stream(&mut self, with_read_only: bool) -> Option<String> {
        let pick = self.rng.next_u64();
        with(&self.registry, |r| {
            let forks = if with_read_only { r.read_only.len() } else { 0 };
            let n = r.live.len() + forks;
            if n == 0 {
                return None;
            }
            let i = (pick % n as u64) as usize;
            Some(if i < r.live.len() {
                r.live[i].clone()
            } else {
                r.read_only[i - r.live.len()].clone()
            })
        })
    }

    async fn step(&mut self) {
        let choice = self.rng.weighted(&[10, 40, 20, 25, 1, 1, 2]);
        let Some(stream) = self.any_stream(choice == 3) else {
            return self.create().await;
        };
        match choice {
            0 => self.create().await,
            1 => self.idempotent_append(stream).await,
            2 => {
                let record = self.record_id('r');
                let op = StreamOp::Append {
                    stream: stream.clone(),
                    record,
                    producer: None,
                };
                let outcome = self.call(op).await;
                self.note_offset(&stream, &outcome);
            }
            3 => {
                let from = if self.rng.percent(40) {
                    let pick = self.rng.next_u64();
                    with(&self.registry, |r| {
                        let offsets = r.offsets.get(&stream)?;
                        offsets
                            .get((pick % offsets.len().max(1) as u64) as usize)
                            .cloned()
                    })
                } else {
                    None
                };
                self.call(StreamOp::Read { stream, from }).await;
            }
            4 => {
                let closing = stream.clone();
                if self.call(StreamOp::Close { stream }).await.ok().is_some() {
                    // Appends to it would only be refused from now on: read it only.
                    with(&self.registry, |r| {
                        if let Some(i) = r.live.iter().position(|s| *s == closing) {
                            let closed = r.live.remove(i);
                            r.read_only.push(closed);
                        }
                    });
                }
            }
            5 => {
                // Retire the name first: nothing new starts on it, so a later operation never
                // meets a new incarnation of the stream.
                with(&self.registry, |r| r.live.retain(|s| *s != stream));
                self.call(StreamOp::Delete { stream }).await;
            }
            _ => {
                let fork = with(&self.registry, |r| {
                    r.next_name += 1;
                    let name = format!("f{}", r.next_name);
                    r.all.insert(name.clone());
                    r.read_only.push(name.clone());
                    name
                });
                self.call(StreamOp::Fork {
                    stream: fork,
                    source: stream,
                })
                .await;
            }
        }
    }

    /// Creates a new stream, or races to create an existing one; sometimes two creates of a
    /// new name at once, through different nodes, with random configurations.
    async fn create(&mut self) {
        let live = with(&self.registry, |r| r.live.len());
        let fresh = live < MAX_LIVE_STREAMS && self.rng.percent(60);
        let existing = if fresh { None } else { self.any_stream(false) };
        let stream = match existing {
            Some(stream) => stream,
            None => with(&self.registry, |r| {
                r.next_name += 1;
                let name = format!("s{}", r.next_name);
                r.all.insert(name.clone());
                if r.live.len() < MAX_LIVE_STREAMS {
                    r.live.push(name.clone());
                }
                name
            }),
        };
        let op = |client: &mut Client| StreamOp::Create {
            stream: stream.clone(),
            config: client.rng.below(STREAM_CONFIGS as u64) as usize,
            init: client.record_id('i'),
        };
        if self.rng.percent(40) {
            let (first, second) = (op(self), op(self));
            let nodes = self.api.nodes().max(1);
            let second_process = self.id + 1_000;
            tokio::join!(
                self.call_on(0, self.id, first),
                self.call_on(1 % nodes, second_process, second)
            );
        } else {
            let first = op(self);
            self.call(first).await;
        }
    }

    /// An idempotent producer's append, retried with the same stamp while the outcome is
    /// unclear. After a refusal or too many unclear attempts the producer starts a new epoch,
    /// since it cannot know which sequence number the stream expects.
    async fn idempotent_append(&mut self, stream: String) {
        let (epoch, seq) = *self.producers.entry(stream.clone()).or_insert((0, 0));
        let op = StreamOp::Append {
            stream: stream.clone(),
            record: self.record_id('p'),
            producer: Some(ProducerStamp {
                id: format!("c{}", self.id),
                epoch,
                seq,
            }),
        };
        for attempt in 0..PRODUCER_ATTEMPTS {
            let outcome = self.call(op.clone()).await;
            self.note_offset(&stream, &outcome);
            match outcome {
                Outcome::Ok(_) => {
                    self.producers.insert(stream, (epoch, seq + 1));
                    return;
                }
                Outcome::Fail(_) => break,
                Outcome::Info(_) if attempt + 1 < PRODUCER_ATTEMPTS => {
                    let pause = self
                        .rng
                        .duration(Duration::from_millis(100), Duration::from_millis(600));
                    tokio::time::sleep(pause).await;
                }
                Outcome::Info(_) => {}
            }
        }
        self.producers.insert(stream, (epoch + 1, 0));
    }

    fn note_offset(&self, stream: &str, outcome: &Outcome<StreamRet>) {
        if let Outcome::Ok(StreamRet::Appended {
            next_offset,
            duplicate: false,
        }) = outcome
        {
            with(&self.registry, |r| {
                r.offsets
                    .entry(stream.to_owned())
                    .or_default()
                    .push(next_offset.clone())
            });
        }
    }
}

/// Writes the operations on every stream named in a violation to a file in the temp dir, for
/// the failure's investigation, and prints its path.
fn dump(report: &RunReport, entries: &[Entry<StreamOp, StreamRet>]) {
    let named: BTreeSet<&str> = report
        .violations
        .iter()
        .filter_map(|v| v.detail.split(':').next())
        .collect();
    let mut text = String::new();
    for entry in entries {
        let stream = entry.op.stream();
        let related = named.contains(stream)
            || matches!(&entry.op, StreamOp::Fork { source, .. } if named.contains(source.as_str()));
        if related {
            text.push_str(&format!(
                "#{} p{} [{}..{:?}] {:?} -> {:?}\n",
                entry.id, entry.process, entry.invoked, entry.completed, entry.op, entry.outcome
            ));
        }
    }
    let path = std::env::temp_dir().join(format!(
        "courier-checker-{}-{}.txt",
        report.name.replace(' ', "-"),
        report.seed.0
    ));
    match std::fs::write(&path, text) {
        Ok(()) => eprintln!(
            "checker: history of the streams in violation: {}",
            path.display()
        ),
        Err(e) => eprintln!("checker: cannot write {}: {e}", path.display()),
    }
}
