//! The race cases of the universal [`StreamStorage`] suite: two instances of the backend (two
//! nodes over one server) send conflicting operations released at the same moment by a
//! barrier, round after round on fresh streams, and every outcome must be one a serial order of
//! the two could give. An unsafe interleaving shows in some rounds, not in every one, hence the
//! repetition (bounded by `ROUNDS` rounds and a `TIME_BUDGET` per case).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use courier_traits::storage::{
    AppendOutcome, AppendRequest, CreateOutcome, Offset, StorageError, StreamConfig, StreamName,
    StreamStorage,
};
use tokio::sync::Barrier;
use tokio::time::Instant;

use super::storage::{append, create, data, fork_at_tail, name, read_all, rec, stamp, text_config};
use super::{StorageFactory, within};

/// Rounds per case, each on fresh streams.
const ROUNDS: usize = 40;
/// A case starts no new round after this long, so a slow backend runs fewer rounds.
const TIME_BUDGET: Duration = Duration::from_secs(15);

type Created = Result<CreateOutcome, StorageError>;
type Appended = Result<AppendOutcome, StorageError>;

/// Two instances on the factory's backend.
async fn two_nodes<F: StorageFactory>(factory: &F) -> (Arc<F::Storage>, Arc<F::Storage>) {
    (
        Arc::new(factory.connect().await),
        Arc::new(factory.connect().await),
    )
}

/// Runs `round(i)` for i = 0.. until [`ROUNDS`] or [`TIME_BUDGET`] is reached.
async fn repeat<Fut: Future<Output = ()>>(mut round: impl FnMut(usize) -> Fut) {
    let started = Instant::now();
    for i in 0..ROUNDS {
        if i > 0 && started.elapsed() >= TIME_BUDGET {
            break;
        }
        round(i).await;
    }
}

/// Runs `a` and `b` on tasks of their own, released together by a barrier.
async fn at_once<A, B>(a: A, b: B) -> (A::Output, B::Output)
where
    A: Future + Send + 'static,
    A::Output: Send + 'static,
    B: Future + Send + 'static,
    B::Output: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let first = tokio::spawn({
        let barrier = barrier.clone();
        async move {
            barrier.wait().await;
            a.await
        }
    });
    let second = tokio::spawn(async move {
        barrier.wait().await;
        b.await
    });
    let a = within("the first racer", first).await.expect("racer task");
    let b = within("the second racer", second)
        .await
        .expect("racer task");
    (a, b)
}

fn create_on<S: StreamStorage + 'static>(
    s: &Arc<S>,
    n: &StreamName,
    config: StreamConfig,
    initial: Vec<Bytes>,
) -> impl Future<Output = Created> + Send + 'static {
    let (s, n) = (s.clone(), n.clone());
    async move { s.create(&n, config, initial).await }
}

fn append_on<S: StreamStorage + 'static>(
    s: &Arc<S>,
    n: &StreamName,
    request: AppendRequest,
) -> impl Future<Output = Appended> + Send + 'static {
    let (s, n) = (s.clone(), n.clone());
    async move { s.append(&n, request).await }
}

fn delete_on<S: StreamStorage + 'static>(
    s: &Arc<S>,
    n: &StreamName,
) -> impl Future<Output = Result<(), StorageError>> + Send + 'static {
    let (s, n) = (s.clone(), n.clone());
    async move { s.delete(&n).await }
}

/// Creates a text stream holding `initial`.
async fn create_text_with(s: &dyn StreamStorage, n: &StreamName, initial: Vec<Bytes>) {
    match s.create(n, text_config(), initial).await {
        Ok(CreateOutcome::Created(_)) => {}
        other => panic!("create {n}: expected Created, got {other:?}"),
    }
}

fn is_created(result: &Created) -> bool {
    matches!(result, Ok(CreateOutcome::Created(_)))
}

/// The same (producer, epoch, seq) from both nodes at once is written exactly once; the other
/// gets the duplicate answer. Raced for a producer new to the stream and for a known one.
pub async fn race_same_producer_seq<F: StorageFactory>(factory: &F) {
    let (a, b) = two_nodes(factory).await;
    repeat(|round| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let n = name(&format!("race-producer-{round}"));
            create(&*a, &n, text_config()).await;
            for seq in 0..2u64 {
                let request = AppendRequest::record(rec("p", seq as usize))
                    .with_producer(stamp("racer", 0, seq));
                let (from_a, from_b) = at_once(
                    append_on(&a, &n, request.clone()),
                    append_on(&b, &n, request),
                )
                .await;
                let outcomes = [from_a, from_b].map(|r| {
                    r.unwrap_or_else(|e| panic!("round {round}: a producer's append failed: {e}"))
                });
                let written = outcomes.iter().filter(|o| !o.duplicate).count();
                assert_eq!(
                    written, 1,
                    "round {round}, seq {seq}: the same (producer, epoch, seq) sent by two \
                     nodes at once must be written exactly once: {outcomes:?}"
                );
            }
            let (records, _) = read_all(&*b, &n, None).await;
            assert_eq!(
                data(&records),
                vec![rec("p", 0), rec("p", 1)],
                "round {round}: a producer's records lost or duplicated"
            );
        }
    })
    .await;
}

/// Two creates of one name with the same configuration (different initial bodies): one is
/// `Created`, the other `AlreadyExists`, and the winner's body is the stream's, once.
pub async fn race_creates_same_config<F: StorageFactory>(factory: &F) {
    let (a, b) = two_nodes(factory).await;
    repeat(|round| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let n = name(&format!("race-create-{round}"));
            let (from_a, from_b) = at_once(
                create_on(&a, &n, text_config(), vec![rec("a", round)]),
                create_on(&b, &n, text_config(), vec![rec("b", round)]),
            )
            .await;
            let (winner_body, loser) = match (is_created(&from_a), is_created(&from_b)) {
                (true, false) => (rec("a", round), &from_b),
                (false, true) => (rec("b", round), &from_a),
                _ => panic!(
                    "round {round}: exactly one of two concurrent creates must create: \
                     {from_a:?} / {from_b:?}"
                ),
            };
            assert!(
                matches!(loser, Ok(CreateOutcome::AlreadyExists(_))),
                "round {round}: the losing create with the same config must see the stream: \
                 {loser:?}"
            );
            let (records, _) = read_all(&*a, &n, None).await;
            assert_eq!(
                data(&records),
                vec![winner_body],
                "round {round}: the created stream's initial body was replaced or doubled"
            );
        }
    })
    .await;
}

/// Two creates of one name with different configurations: one is `Created`, the other a
/// `ConfigConflict`, and the stream keeps the winner's content type and body.
pub async fn race_creates_different_configs<F: StorageFactory>(factory: &F) {
    let (a, b) = two_nodes(factory).await;
    const JSON: &str = "application/json";
    repeat(|round| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let n = name(&format!("race-conflict-{round}"));
            let json_body = Bytes::from(format!("[{round}]"));
            let (from_a, from_b) = at_once(
                create_on(&a, &n, text_config(), vec![rec("a", round)]),
                create_on(
                    &b,
                    &n,
                    StreamConfig::with_content_type(JSON),
                    vec![json_body.clone()],
                ),
            )
            .await;
            let (winner_type, winner_body, loser) = match (is_created(&from_a), is_created(&from_b))
            {
                (true, false) => (text_config().content_type, rec("a", round), &from_b),
                (false, true) => (Some(JSON.to_owned()), json_body, &from_a),
                _ => panic!(
                    "round {round}: exactly one of two concurrent creates must create: \
                         {from_a:?} / {from_b:?}"
                ),
            };
            assert!(
                matches!(loser, Err(StorageError::ConfigConflict { .. })),
                "round {round}: the losing create with another config must conflict: {loser:?}"
            );
            let (records, batch) = read_all(&*b, &n, None).await;
            assert_eq!(
                Some(batch.content_type),
                winner_type,
                "round {round}: the created stream was replaced"
            );
            assert_eq!(
                data(&records),
                vec![winner_body],
                "round {round}: the created stream's initial body was replaced"
            );
        }
    })
    .await;
}

/// An append racing the stream's delete: the delete succeeds, the append either lands before
/// it or is refused, and nothing of it survives into a stream created anew under the name.
pub async fn race_append_delete<F: StorageFactory>(factory: &F) {
    let (a, b) = two_nodes(factory).await;
    repeat(|round| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let n = name(&format!("race-delete-{round}"));
            create(&*a, &n, text_config()).await;
            let (appended, deleted) = at_once(
                append_on(&a, &n, AppendRequest::record(rec("late", round))),
                delete_on(&b, &n),
            )
            .await;
            deleted.unwrap_or_else(|e| panic!("round {round}: deleting an existing stream: {e}"));
            assert!(
                matches!(
                    appended,
                    Ok(_) | Err(StorageError::NotFound { .. } | StorageError::Gone { .. })
                ),
                "round {round}: an append racing a delete lands or finds no stream: {appended:?}"
            );
            for node in [&a, &b] {
                assert!(
                    matches!(node.head(&n).await, Err(StorageError::NotFound { .. })),
                    "round {round}: the deleted stream is back"
                );
            }
            // Written after the raced append, a record of the new stream must be alone there
            // (an orphaned record would show, or hold its index).
            create(&*b, &n, text_config()).await;
            append(&*b, &n, AppendRequest::record(rec("fresh", round))).await;
            let (records, _) = read_all(&*a, &n, None).await;
            assert_eq!(
                data(&records),
                vec![rec("fresh", round)],
                "round {round}: the raced append leaked into the re-created stream"
            );
        }
    })
    .await;
}

/// An append racing the stream's close: either it lands before the close (acknowledged and
/// readable, before the closed tail) or it is refused as `Closed`; nothing follows the close.
pub async fn race_append_close<F: StorageFactory>(factory: &F) {
    let (a, b) = two_nodes(factory).await;
    repeat(|round| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let n = name(&format!("race-close-{round}"));
            let initial = rec("init", round);
            create_text_with(&*a, &n, vec![initial.clone()]).await;
            let racer = rec("racer", round);
            let (appended, closed) = at_once(
                append_on(&a, &n, AppendRequest::record(racer.clone())),
                append_on(&b, &n, AppendRequest::close_only()),
            )
            .await;
            let closed =
                closed.unwrap_or_else(|e| panic!("round {round}: closing an open stream: {e}"));
            assert!(
                closed.closed,
                "round {round}: the close reports the stream open"
            );
            let (records, batch) = read_all(&*a, &n, None).await;
            assert!(batch.closed, "round {round}: the close was lost");
            assert_eq!(
                batch.next_offset, closed.next_offset,
                "round {round}: the stream grew after its close"
            );
            match appended {
                Ok(outcome) => {
                    assert_eq!(
                        data(&records),
                        vec![initial, racer],
                        "round {round}: an acknowledged append is not readable"
                    );
                    let first = outcome.first_offset.expect("an append that wrote a record");
                    assert!(
                        first < closed.next_offset,
                        "round {round}: an append was acknowledged after the close"
                    );
                }
                Err(StorageError::Closed { .. }) => assert_eq!(
                    data(&records),
                    vec![initial],
                    "round {round}: a refused append was written"
                ),
                Err(other) => panic!("round {round}: an append racing a close: {other}"),
            }
        }
    })
    .await;
}

/// A fork racing the delete of its source: either the fork is created first (it reads the
/// inherited records; the source is kept, `Gone`, until the fork is deleted, then reclaimed)
/// or the source is deleted first (the fork is refused and nothing is left under either name).
pub async fn race_fork_delete_source<F: StorageFactory>(factory: &F) {
    let (a, b) = two_nodes(factory).await;
    repeat(|round| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let src = name(&format!("race-src-{round}"));
            let inherited = vec![rec("src", 0), rec("src", 1)];
            create_text_with(&*a, &src, inherited.clone()).await;
            let fork = name(&format!("race-fork-{round}"));
            let (forked, deleted) = at_once(
                create_on(&a, &fork, fork_at_tail(&src), vec![]),
                delete_on(&b, &src),
            )
            .await;
            deleted.unwrap_or_else(|e| panic!("round {round}: deleting the fork source: {e}"));
            match forked {
                Ok(CreateOutcome::Created(_)) => {
                    let (records, _) = read_all(&*b, &fork, None).await;
                    assert_eq!(
                        data(&records),
                        inherited,
                        "round {round}: the fork lost its inherited records"
                    );
                    assert!(
                        matches!(a.head(&src).await, Err(StorageError::Gone { .. })),
                        "round {round}: a source deleted with a live fork must be kept (Gone)"
                    );
                    b.delete(&fork)
                        .await
                        .unwrap_or_else(|e| panic!("round {round}: deleting the fork: {e}"));
                    assert!(
                        matches!(a.head(&src).await, Err(StorageError::NotFound { .. })),
                        "round {round}: the source must be reclaimed with its last fork"
                    );
                }
                Err(
                    StorageError::ForkSourceNotFound { .. } | StorageError::ForkSourceGone { .. },
                ) => {
                    for stream in [&src, &fork] {
                        assert!(
                            matches!(a.head(stream).await, Err(StorageError::NotFound { .. })),
                            "round {round}: {stream} exists after the fork was refused"
                        );
                    }
                }
                other => panic!("round {round}: a fork racing its source's delete: {other:?}"),
            }
            // The source's name is free again: a new stream there holds only its own record.
            create(&*b, &src, text_config()).await;
            append(&*b, &src, AppendRequest::record(rec("fresh", round))).await;
            let (records, _) = read_all(&*a, &src, None).await;
            assert_eq!(
                data(&records),
                vec![rec("fresh", round)],
                "round {round}: old data under a re-created name"
            );
        }
    })
    .await;
}

/// What [`race_batches`] sends from one node at once: every producer's append of `seq` twice,
/// plain records tagged `tag`, and with `close` a close among them. Answers each append's
/// record (none for the close) and outcome.
fn batch_on<S: StreamStorage + 'static>(
    s: &Arc<S>,
    n: &StreamName,
    tag: &str,
    seq: u64,
    close: bool,
) -> impl Future<Output = Vec<(Option<Bytes>, Appended)>> + Send + 'static + use<S> {
    const PRODUCERS: usize = 4;
    const PLAIN: usize = 6;
    let mut requests = Vec::new();
    for p in 0..PRODUCERS {
        let body = rec(&format!("p{p}"), seq as usize);
        let stamped = AppendRequest::record(body).with_producer(stamp(&format!("p{p}"), 0, seq));
        requests.push(stamped.clone());
        requests.push(stamped);
    }
    for i in 0..PLAIN {
        requests.push(AppendRequest::record(rec(tag, seq as usize * PLAIN + i)));
    }
    if close {
        requests.insert(requests.len() / 2, AppendRequest::close_only());
    }
    let calls: Vec<_> = requests
        .into_iter()
        .map(|r| {
            let body = r.records.first().cloned();
            let (s, n) = (s.clone(), n.clone());
            async move { (body, s.append(&n, r).await) }
        })
        .collect();
    futures::future::join_all(calls)
}

/// Many appends from each node to one stream at once, racing the other node's (a backend that
/// commits a node's concurrent appends as one batch races batches here). Each node sends every
/// producer's next sequence twice (a retry racing its original) and plain records: each
/// producer sequence is written exactly once, every acknowledged record is readable at its
/// offset, and nothing else is there. Then a close among the appends: what was acknowledged
/// lies before the closed tail, the rest is refused as `Closed`.
pub async fn race_batches<F: StorageFactory>(factory: &F) {
    const PRODUCERS: usize = 4;
    let (a, b) = two_nodes(factory).await;
    repeat(|round| {
        let (a, b) = (a.clone(), b.clone());
        async move {
            let n = name(&format!("race-batch-{round}"));
            create(&*a, &n, text_config()).await;
            let mut acknowledged: Vec<(Offset, Bytes)> = Vec::new();
            for seq in 0..2u64 {
                let (from_a, from_b) = at_once(
                    batch_on(&a, &n, "a", seq, false),
                    batch_on(&b, &n, "b", seq, false),
                )
                .await;
                let outcomes: Vec<(Option<Bytes>, AppendOutcome)> = from_a
                    .into_iter()
                    .chain(from_b)
                    .map(|(body, r)| {
                        let outcome = r.unwrap_or_else(|e| {
                            panic!("round {round}, seq {seq}: a batched append failed: {e}")
                        });
                        (body, outcome)
                    })
                    .collect();
                for p in 0..PRODUCERS {
                    let body = rec(&format!("p{p}"), seq as usize);
                    let written = outcomes
                        .iter()
                        .filter(|(b, o)| b.as_ref() == Some(&body) && !o.duplicate)
                        .count();
                    assert_eq!(
                        written, 1,
                        "round {round}, seq {seq}: producer p{p}'s append, sent four times by \
                         two nodes at once, must be written exactly once: {outcomes:?}"
                    );
                }
                for (body, outcome) in outcomes {
                    if outcome.duplicate {
                        continue;
                    }
                    let first = outcome.first_offset.unwrap_or_else(|| {
                        panic!("round {round}: an acknowledged write has no first offset")
                    });
                    acknowledged.push((first, body.unwrap_or_default()));
                }
            }
            let (closing, other) = at_once(
                batch_on(&a, &n, "ca", 2, true),
                batch_on(&b, &n, "cb", 2, false),
            )
            .await;
            let mut closed_at = None;
            for (body, result) in closing.into_iter().chain(other) {
                match (body, result) {
                    (None, Ok(outcome)) => closed_at = Some(outcome.next_offset),
                    (None, Err(e)) => panic!("round {round}: closing an open stream: {e}"),
                    (Some(body), Ok(outcome)) if !outcome.duplicate => acknowledged.push((
                        outcome.first_offset.unwrap_or_else(|| {
                            panic!("round {round}: an acknowledged write has no first offset")
                        }),
                        body,
                    )),
                    (Some(_), Ok(_)) | (Some(_), Err(StorageError::Closed { .. })) => {}
                    (Some(_), Err(e)) => {
                        panic!("round {round}: an append racing a close in a batch: {e}")
                    }
                }
            }
            let closed_at = closed_at.unwrap_or_else(|| panic!("round {round}: no close"));
            acknowledged.sort();
            for pair in acknowledged.windows(2) {
                assert_ne!(
                    pair[0].0, pair[1].0,
                    "round {round}: two acknowledged appends share an offset"
                );
            }
            let (records, batch) = read_all(&*b, &n, None).await;
            assert!(batch.closed, "round {round}: the close was lost");
            assert_eq!(
                batch.next_offset, closed_at,
                "round {round}: the stream grew after its close"
            );
            let stored: Vec<(Offset, Bytes)> =
                records.into_iter().map(|r| (r.offset, r.data)).collect();
            assert_eq!(
                stored, acknowledged,
                "round {round}: the stream must hold exactly the acknowledged records at their \
                 offsets"
            );
        }
    })
    .await;
}

/// Sends `count` one-record appends to `name` on one storage instance at once (each from its
/// own task, so a backend that batches concurrent appends gets the chance) and returns their
/// first offsets, sorted and deduplicated: `count` of them when every append got its own.
/// Backend tests pair it with the backend's own count of writes (script calls, transactions).
///
/// Panics (it is a test helper) when an append fails.
pub async fn append_at_once<S>(storage: &S, name: &StreamName, count: usize) -> Vec<Offset>
where
    S: StreamStorage + Clone + 'static,
{
    let appends = (0..count).map(|i| {
        let (storage, name) = (storage.clone(), name.clone());
        tokio::spawn(async move {
            storage
                .append(&name, AppendRequest::record(format!("r{i}")))
                .await
        })
    });
    let mut offsets = Vec::with_capacity(count);
    for append in futures::future::join_all(appends).await {
        let outcome = append.expect("append task").expect("append");
        offsets.push(outcome.first_offset.expect("a written record"));
    }
    offsets.sort();
    offsets.dedup();
    offsets
}
