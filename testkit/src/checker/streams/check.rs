//! The pure check of a streams history. Invariants, per stream:
//!
//! * `lost-ack`: every acknowledged append is in the final read exactly once;
//! * `duplicate`: no record appears twice in any read (an idempotent retry never writes twice,
//!   an unacknowledged append appears at most once);
//! * `failed-write-applied`: a write whose every attempt definitely failed is not there;
//! * `not-at-offset`: reading after an acknowledged append's offset gives exactly the records
//!   that follow it;
//! * `offsets-not-increasing`: acknowledged offsets grow strictly in stream order;
//! * `create-clobbered`: one create wins (one 201), its initial record stays first and no other
//!   create's initial record appears; a create with another configuration is not accepted;
//! * `read-not-prefix` / `read-went-back`: every read from the start is a prefix of what later
//!   reads see (acknowledged data never disappears), unless the stream was deleted;
//! * `ack-invisible`: a read started after an append was acknowledged contains it;
//! * `append-after-close`: no append started after a close was acknowledged is written;
//! * `stream-vanished`: an acknowledged stream still exists at the end unless deleted;
//! * `fork-not-prefix`: a fork's records are a prefix of its source's.
//!
//! The "final read" of a stream is a read from the start invoked after every write to it
//! completed; the workload makes one per stream once the faults are healed.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{ReadResult, StreamOp, StreamRet};
use crate::checker::history::Entry;
use crate::checker::report::Violation;

type Op = Entry<StreamOp, StreamRet>;

/// Checks `history`; returns the violations and how many streams had a final read to judge.
pub fn check(history: &[Op]) -> (Vec<Violation>, usize) {
    let mut by_stream: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for entry in history {
        by_stream.entry(entry.op.stream()).or_default().push(entry);
    }
    let mut violations = Vec::new();
    let mut finals: HashMap<&str, Option<&ReadResult>> = HashMap::new();
    for (stream, ops) in &by_stream {
        if let Some(final_read) = final_read(ops) {
            finals.insert(stream, final_read);
        }
        check_stream(stream, ops, finals.get(stream).copied(), &mut violations);
    }
    check_forks(history, &finals, &mut violations);
    (violations, finals.len())
}

/// The result of the last read from the start invoked after every write to the stream completed.
fn final_read<'a>(ops: &[&'a Op]) -> Option<Option<&'a ReadResult>> {
    let writes_done = ops
        .iter()
        .filter(|e| e.op.writes())
        .map(|e| e.completed)
        .try_fold(0u64, |latest, done| done.map(|d| latest.max(d)))?;
    ops.iter()
        .filter(|e| matches!(&e.op, StreamOp::Read { from: None, .. }) && e.invoked > writes_done)
        .filter_map(|e| match e.ok() {
            Some(StreamRet::Read(result)) => Some((e.invoked, result.as_ref())),
            _ => None,
        })
        .max_by_key(|(invoked, _)| *invoked)
        .map(|(_, result)| result)
}

fn reads_from_start<'a>(ops: &[&'a Op]) -> Vec<(&'a Op, Option<&'a ReadResult>)> {
    ops.iter()
        .filter(|e| matches!(&e.op, StreamOp::Read { from: None, .. }))
        .filter_map(|e| match e.ok() {
            Some(StreamRet::Read(result)) => Some((*e, result.as_ref())),
            _ => None,
        })
        .collect()
}

fn is_prefix(short: &[String], long: &[String]) -> bool {
    short.len() <= long.len() && long[..short.len()] == *short
}

fn check_stream(
    stream: &str,
    ops: &[&Op],
    final_read: Option<Option<&ReadResult>>,
    out: &mut Vec<Violation>,
) {
    let deleted = ops
        .iter()
        .any(|e| matches!(e.op, StreamOp::Delete { .. }) && !e.failed());
    let reads = reads_from_start(ops);

    // Duplicates, in any read.
    for (entry, result) in &reads {
        if let Some(result) = result {
            let mut seen = HashSet::new();
            for record in &result.records {
                if !seen.insert(record) {
                    out.push(Violation::new(
                        "duplicate",
                        format!("{stream}: read #{} holds record {record} twice", entry.id),
                    ));
                }
            }
        }
    }

    // Reads only grow, in real-time order (the final read is checked below, more strictly),
    // unless a delete (and a create racing it) may have come in between.
    let delete_invoked_before = |done: Option<u64>| {
        ops.iter().any(|d| {
            matches!(d.op, StreamOp::Delete { .. })
                && !d.failed()
                && d.invoked < done.unwrap_or(u64::MAX)
        })
    };
    for (a, ra) in &reads {
        for (b, rb) in &reads {
            if let (Some(ra), Some(rb)) = (ra, rb)
                && a.precedes(b)
                && !delete_invoked_before(b.completed)
                && !is_prefix(&ra.records, &rb.records)
            {
                out.push(Violation::new(
                    "read-went-back",
                    format!(
                        "{stream}: read #{} saw {} records, the later read #{} does not extend them ({} records)",
                        a.id,
                        ra.records.len(),
                        b.id,
                        rb.records.len()
                    ),
                ));
            }
        }
    }

    // Acknowledged appends are visible to every read from the start that begins after the ack,
    // unless a delete may have happened.
    for append in ops
        .iter()
        .filter(|e| matches!(e.op, StreamOp::Append { .. }))
    {
        let (StreamOp::Append { record, .. }, Some(StreamRet::Appended { .. })) =
            (&append.op, append.ok())
        else {
            continue;
        };
        for (read, result) in &reads {
            if append.precedes(read) && !delete_invoked_before(read.completed) {
                let present = result.is_some_and(|r| r.records.contains(record));
                if !present {
                    out.push(Violation::new(
                        "ack-invisible",
                        format!(
                            "{stream}: append #{} of {record} was acknowledged before read #{} began, which does not have it",
                            append.id, read.id
                        ),
                    ));
                }
            }
        }
    }

    check_creates(stream, ops, final_read.flatten(), out);
    check_close(stream, ops, final_read.flatten(), out);

    let Some(final_read) = final_read else {
        return;
    };
    let Some(last) = final_read else {
        let acknowledged = ops.iter().any(|e| {
            matches!(
                (&e.op, e.ok()),
                (StreamOp::Create { .. }, Some(_)) | (StreamOp::Fork { .. }, Some(_))
            )
        });
        if acknowledged && !deleted {
            out.push(Violation::new(
                "stream-vanished",
                format!("{stream}: created (acknowledged) and never deleted, but the final read found no stream"),
            ));
        }
        return;
    };
    check_final(stream, ops, &reads, last, deleted, out);
}

/// The invariants that need the stream's final contents.
fn check_final(
    stream: &str,
    ops: &[&Op],
    reads: &[(&Op, Option<&ReadResult>)],
    last: &ReadResult,
    deleted: bool,
    out: &mut Vec<Violation>,
) {
    let position: HashMap<&str, usize> = last
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.as_str(), i))
        .collect();
    let count = |record: &str| last.records.iter().filter(|r| *r == record).count();

    // Every read from the start is a prefix of the final one (nothing acknowledged or seen
    // disappears), unless the stream was deleted and made anew in between.
    if !deleted {
        for (read, result) in reads {
            if let Some(result) = result
                && !is_prefix(&result.records, &last.records)
            {
                out.push(Violation::new(
                    "read-not-prefix",
                    format!(
                        "{stream}: read #{} ({} records) is not a prefix of the final read ({} records)",
                        read.id,
                        result.records.len(),
                        last.records.len()
                    ),
                ));
            }
        }
    }

    // Per record: acknowledged -> exactly once; definitely failed -> absent.
    let mut attempts: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for entry in ops {
        if let StreamOp::Append { record, .. } = &entry.op {
            attempts.entry(record).or_default().push(entry);
        }
    }
    for (record, tries) in &attempts {
        let n = count(record);
        // After a delete, a create racing it may have made the stream anew, legitimately
        // without the older records: only their duplication is judged then.
        if tries.iter().any(|t| t.ok().is_some()) && n != 1 && !(deleted && n == 0) {
            out.push(Violation::new(
                if n == 0 { "lost-ack" } else { "duplicate" },
                format!(
                    "{stream}: record {record} acknowledged (#{}) but present {n} times in the final read",
                    tries.iter().find(|t| t.ok().is_some()).map_or(0, |t| t.id)
                ),
            ));
        } else if tries.iter().all(|t| t.failed()) && n > 0 {
            out.push(Violation::new(
                "failed-write-applied",
                format!(
                    "{stream}: record {record} was refused on every attempt (#{}) but is in the final read",
                    tries[0].id
                ),
            ));
        } else if n > 1 {
            out.push(Violation::new(
                "duplicate",
                format!("{stream}: unacknowledged record {record} present {n} times"),
            ));
        }
    }

    // Offsets: each acknowledged record sits right before its offset, and offsets grow.
    let mut acked: Vec<(usize, &str, &Op)> = Vec::new();
    for entry in ops {
        if let (
            StreamOp::Append { record, .. },
            Some(StreamRet::Appended {
                next_offset,
                duplicate: false,
            }),
        ) = (&entry.op, entry.ok())
            && let Some(&index) = position.get(record.as_str())
        {
            acked.push((index, next_offset, entry));
        }
    }
    acked.sort_by_key(|(index, _, _)| *index);
    for pair in acked.windows(2) {
        let ((ia, oa, a), (ib, ob, b)) = (pair[0], pair[1]);
        if oa >= ob {
            out.push(Violation::new(
                "offsets-not-increasing",
                format!(
                    "{stream}: record at position {ia} (#{}) got offset {oa}, the later record at {ib} (#{}) got {ob}",
                    a.id, b.id
                ),
            ));
        }
    }
    let writes_done = ops
        .iter()
        .filter(|e| e.op.writes())
        .filter_map(|e| e.completed)
        .max()
        .unwrap_or(0);
    // Offsets start again when a stream is deleted and made anew, so a read and an
    // acknowledgement with a delete possibly between them may speak of different incarnations.
    let delete_may_separate = |a: &Op, b: &Op| {
        let (start, end) = (
            a.invoked.min(b.invoked),
            a.completed
                .unwrap_or(u64::MAX)
                .max(b.completed.unwrap_or(u64::MAX)),
        );
        ops.iter().any(|d| {
            matches!(d.op, StreamOp::Delete { .. })
                && !d.failed()
                && d.invoked < end
                && d.completed.is_none_or(|done| done > start)
        })
    };
    for (index, offset, ack) in &acked {
        let expected = &last.records[index + 1..];
        for read in ops.iter().filter(|e| {
            matches!(&e.op, StreamOp::Read { from: Some(from), .. } if from == offset)
                && !delete_may_separate(ack, e)
        }) {
            let Some(StreamRet::Read(result)) = read.ok() else {
                continue;
            };
            let Some(result) = result else {
                if !deleted {
                    out.push(Violation::new(
                        "not-at-offset",
                        format!(
                            "{stream}: read #{} after offset {offset} found no stream",
                            read.id
                        ),
                    ));
                }
                continue;
            };
            let quiescent = read.invoked > writes_done;
            // A quiescent read must reach the tail; one racing writes (or a delete) may stop short.
            let fits = if quiescent && !deleted {
                result.records == expected
            } else {
                is_prefix(&result.records, expected)
            };
            if !fits {
                out.push(Violation::new(
                    "not-at-offset",
                    format!(
                        "{stream}: append #{} acknowledged offset {offset} for the record at position {index}; read #{} from there gave {} records starting {:?}, expected {} starting {:?}",
                        ack.id,
                        read.id,
                        result.records.len(),
                        result.records.first(),
                        expected.len(),
                        expected.first()
                    ),
                ));
            }
        }
    }
}

/// One winner per stream; its initial record first; no other create's initial record anywhere.
fn check_creates(stream: &str, ops: &[&Op], last: Option<&ReadResult>, out: &mut Vec<Violation>) {
    let creates: Vec<(&Op, usize, &str)> = ops
        .iter()
        .filter_map(|e| match &e.op {
            StreamOp::Create { config, init, .. } => Some((*e, *config, init.as_str())),
            _ => None,
        })
        .collect();
    if creates.is_empty() {
        return;
    }
    let deleted = ops
        .iter()
        .any(|e| matches!(e.op, StreamOp::Delete { .. }) && !e.failed());
    let winners: Vec<&(&Op, usize, &str)> = creates
        .iter()
        .filter(|(e, _, _)| e.ok() == Some(&StreamRet::Created { created: true }))
        .collect();
    if winners.len() > 1 && !deleted {
        out.push(Violation::new(
            "create-clobbered",
            format!(
                "{stream}: {} creates answered 201: {:?}",
                winners.len(),
                winners.iter().map(|(e, _, _)| e.id).collect::<Vec<_>>()
            ),
        ));
    }
    let Some(last) = last else { return };
    if deleted {
        return;
    }
    let inits: HashMap<&str, &(&Op, usize, &str)> = creates.iter().map(|c| (c.2, c)).collect();
    let present: Vec<(usize, &str)> = last
        .records
        .iter()
        .enumerate()
        .filter(|(_, r)| inits.contains_key(r.as_str()))
        .map(|(i, r)| (i, r.as_str()))
        .collect();
    for (index, init) in &present {
        let (creator, _, _) = inits[init];
        let lost_the_race =
            creator.failed() || creator.ok() == Some(&StreamRet::Created { created: false });
        if *index != 0 || present.len() > 1 || lost_the_race {
            out.push(Violation::new(
                "create-clobbered",
                format!(
                    "{stream}: the initial record {init} of create #{} ({}) is at position {index} of the final read, with {} initial records in it",
                    creator.id,
                    outcome_name(creator),
                    present.len()
                ),
            ));
        }
    }
    if let Some(&(winner, winner_config, winner_init)) = winners.first() {
        if last.records.first().map(String::as_str) != Some(*winner_init) {
            out.push(Violation::new(
                "create-clobbered",
                format!(
                    "{stream}: create #{} answered 201 but the stream starts with {:?}, not its initial record {winner_init}",
                    winner.id,
                    last.records.first()
                ),
            ));
        }
        for (other, config, _) in &creates {
            if *config != *winner_config && other.ok().is_some() {
                out.push(Violation::new(
                    "create-clobbered",
                    format!(
                        "{stream}: create #{} with configuration {config} was accepted ({}) although #{} created the stream with configuration {winner_config}",
                        other.id,
                        outcome_name(other),
                        winner.id
                    ),
                ));
            }
        }
    }
}

/// After a close is acknowledged, nothing new is written, and the stream stays closed.
fn check_close(stream: &str, ops: &[&Op], last: Option<&ReadResult>, out: &mut Vec<Violation>) {
    let deleted = ops
        .iter()
        .any(|e| matches!(e.op, StreamOp::Delete { .. }) && !e.failed());
    for close in ops
        .iter()
        .filter(|e| matches!(e.op, StreamOp::Close { .. }) && e.ok().is_some())
    {
        if let Some(last) = last
            && !last.closed
            && !deleted
        {
            out.push(Violation::new(
                "append-after-close",
                format!(
                    "{stream}: close #{} was acknowledged but the final read says open",
                    close.id
                ),
            ));
        }
        for append in ops.iter().filter(|e| {
            matches!(e.op, StreamOp::Append { .. })
                && close.precedes(e)
                && matches!(
                    e.ok(),
                    Some(StreamRet::Appended {
                        duplicate: false,
                        ..
                    })
                )
        }) {
            out.push(Violation::new(
                "append-after-close",
                format!(
                    "{stream}: append #{} began after close #{} was acknowledged and was accepted",
                    append.id, close.id
                ),
            ));
        }
    }
}

/// A fork's records are a prefix of its source's; a refused fork made no stream.
fn check_forks(
    history: &[Op],
    finals: &HashMap<&str, Option<&ReadResult>>,
    out: &mut Vec<Violation>,
) {
    for fork in history {
        let StreamOp::Fork { stream, source } = &fork.op else {
            continue;
        };
        let Some(Some(forked)) = finals.get(stream.as_str()) else {
            continue;
        };
        if fork.failed() {
            out.push(Violation::new(
                "failed-write-applied",
                format!(
                    "{stream}: fork #{} was refused but the stream exists",
                    fork.id
                ),
            ));
        }
        if let Some(Some(origin)) = finals.get(source.as_str())
            && !is_prefix(&forked.records, &origin.records)
        {
            out.push(Violation::new(
                "fork-not-prefix",
                format!(
                    "{stream}: fork #{} of {source} holds {} records, not a prefix of the source's {}",
                    fork.id,
                    forked.records.len(),
                    origin.records.len()
                ),
            ));
        }
    }
}

fn outcome_name(entry: &Op) -> &'static str {
    match entry.ok() {
        Some(StreamRet::Created { created: true }) => "201",
        Some(StreamRet::Created { created: false }) => "200",
        Some(_) => "ok",
        None if entry.failed() => "refused",
        None => "unknown outcome",
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
