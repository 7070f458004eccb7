//! The streams checker on hand-made histories: a clean one passes, and each kind of broken
//! history is caught by the invariant it breaks.

use super::check;
use crate::checker::history::{History, Outcome};
use crate::checker::streams::{ProducerStamp, ReadResult, StreamOp, StreamRet};

type H = History<StreamOp, StreamRet>;

/// Runs `op` to completion before anything else happens.
fn run(h: &H, op: StreamOp, outcome: Outcome<StreamRet>) {
    let id = h.invoke(0, op);
    h.complete(id, outcome);
}

fn create(h: &H, config: usize, init: &str, created: bool) {
    run(
        h,
        StreamOp::Create {
            stream: "s".into(),
            config,
            init: init.into(),
        },
        Outcome::Ok(StreamRet::Created { created }),
    );
}

fn append_op(record: &str, seq: Option<u64>) -> StreamOp {
    StreamOp::Append {
        stream: "s".into(),
        record: record.into(),
        producer: seq.map(|seq| ProducerStamp {
            id: "p".into(),
            epoch: 0,
            seq,
        }),
    }
}

fn appended(offset: &str) -> Outcome<StreamRet> {
    Outcome::Ok(StreamRet::Appended {
        next_offset: offset.into(),
        duplicate: false,
    })
}

fn read_from(from: Option<&str>) -> StreamOp {
    StreamOp::Read {
        stream: "s".into(),
        from: from.map(str::to_owned),
    }
}

fn saw(records: &[&str], next: &str) -> Outcome<StreamRet> {
    Outcome::Ok(StreamRet::Read(Some(ReadResult {
        records: records.iter().map(|r| (*r).to_owned()).collect(),
        next_offset: next.into(),
        closed: false,
    })))
}

fn invariants(h: &H) -> Vec<&'static str> {
    let (violations, _) = check(&h.entries());
    violations.iter().map(|v| v.invariant).collect()
}

/// A stream with an initial record and two acknowledged appends, read consistently.
fn clean() -> H {
    let h = H::new();
    create(&h, 0, "i1", true);
    run(&h, append_op("a1", Some(0)), appended("02"));
    run(&h, read_from(None), saw(&["i1", "a1"], "02"));
    run(&h, append_op("a2", None), appended("03"));
    h
}

#[test]
fn a_clean_history_passes() {
    let h = clean();
    run(&h, read_from(Some("02")), saw(&["a2"], "03"));
    run(&h, read_from(None), saw(&["i1", "a1", "a2"], "03"));
    let (violations, histories) = check(&h.entries());
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(histories, 1);
}

#[test]
fn an_idempotent_retry_after_an_unclear_result_is_fine_once() {
    let h = clean();
    run(
        &h,
        append_op("a3", Some(1)),
        Outcome::Info("timeout".into()),
    );
    run(
        &h,
        append_op("a3", Some(1)),
        Outcome::Ok(StreamRet::Appended {
            next_offset: "04".into(),
            duplicate: true,
        }),
    );
    run(&h, read_from(None), saw(&["i1", "a1", "a2", "a3"], "04"));
    assert_eq!(invariants(&h), Vec::<&str>::new());
}

#[test]
fn a_lost_acknowledged_append_is_caught() {
    let h = clean();
    run(&h, read_from(None), saw(&["i1", "a1"], "02"));
    assert!(invariants(&h).contains(&"lost-ack"), "{:?}", invariants(&h));
}

#[test]
fn a_producer_duplicate_is_caught() {
    let h = clean();
    run(
        &h,
        append_op("a3", Some(1)),
        Outcome::Info("connection lost".into()),
    );
    run(&h, append_op("a3", Some(1)), appended("05"));
    run(
        &h,
        read_from(None),
        saw(&["i1", "a1", "a2", "a3", "a3"], "05"),
    );
    assert!(
        invariants(&h).contains(&"duplicate"),
        "{:?}",
        invariants(&h)
    );
}

#[test]
fn a_clobbered_create_is_caught() {
    let h = clean();
    // A second create with the other configuration also answered 201 and replaced the stream.
    create(&h, 1, "i2", true);
    run(&h, read_from(None), saw(&["i2"], "01"));
    let found = invariants(&h);
    assert!(found.contains(&"create-clobbered"), "{found:?}");
    assert!(found.contains(&"lost-ack"), "{found:?}");
}

#[test]
fn a_create_with_another_configuration_must_not_be_accepted() {
    let h = clean();
    create(&h, 1, "i2", false);
    run(&h, read_from(None), saw(&["i1", "a1", "a2"], "03"));
    assert_eq!(invariants(&h), vec!["create-clobbered"]);
}

#[test]
fn a_disappearing_read_is_caught() {
    let h = clean();
    // A later read no longer shows a1, which an earlier read saw.
    run(&h, read_from(None), saw(&["i1"], "01"));
    let found = invariants(&h);
    assert!(found.contains(&"read-went-back"), "{found:?}");
    assert!(found.contains(&"ack-invisible"), "{found:?}");
}

#[test]
fn a_refused_append_that_was_written_is_caught() {
    let h = clean();
    run(&h, append_op("a3", None), Outcome::Fail("409".into()));
    run(&h, read_from(None), saw(&["i1", "a1", "a2", "a3"], "04"));
    assert_eq!(invariants(&h), vec!["failed-write-applied"]);
}

#[test]
fn an_unclear_append_may_appear_once_but_not_twice() {
    let h = clean();
    run(&h, append_op("a3", None), Outcome::Info("timeout".into()));
    run(&h, read_from(None), saw(&["i1", "a1", "a2", "a3"], "04"));
    assert_eq!(invariants(&h), Vec::<&str>::new());
    run(
        &h,
        read_from(None),
        saw(&["i1", "a1", "a2", "a3", "a3"], "05"),
    );
    assert!(invariants(&h).contains(&"duplicate"));
}

#[test]
fn a_record_away_from_its_offset_is_caught() {
    let h = clean();
    // Reading after a1's offset must start with a2.
    run(&h, read_from(Some("02")), saw(&["a1", "a2"], "03"));
    run(&h, read_from(None), saw(&["i1", "a1", "a2"], "03"));
    assert_eq!(invariants(&h), vec!["not-at-offset"]);
}

#[test]
fn offsets_that_do_not_grow_are_caught() {
    let h = H::new();
    create(&h, 0, "i1", true);
    run(&h, append_op("a1", None), appended("05"));
    run(&h, append_op("a2", None), appended("03"));
    run(&h, read_from(None), saw(&["i1", "a1", "a2"], "05"));
    assert!(invariants(&h).contains(&"offsets-not-increasing"));
}

#[test]
fn an_append_accepted_after_a_close_is_caught() {
    let h = clean();
    run(
        &h,
        StreamOp::Close { stream: "s".into() },
        Outcome::Ok(StreamRet::Done),
    );
    run(&h, append_op("a3", None), appended("04"));
    run(&h, read_from(None), saw(&["i1", "a1", "a2", "a3"], "04"));
    assert!(invariants(&h).contains(&"append-after-close"));
}

#[test]
fn a_deleted_stream_may_be_gone_but_an_acknowledged_one_may_not() {
    let deleted = clean();
    run(
        &deleted,
        StreamOp::Delete { stream: "s".into() },
        Outcome::Ok(StreamRet::Done),
    );
    run(
        &deleted,
        read_from(None),
        Outcome::Ok(StreamRet::Read(None)),
    );
    assert_eq!(invariants(&deleted), Vec::<&str>::new());

    let vanished = clean();
    run(
        &vanished,
        read_from(None),
        Outcome::Ok(StreamRet::Read(None)),
    );
    let found = invariants(&vanished);
    assert!(found.contains(&"stream-vanished"), "{found:?}");
}

#[test]
fn concurrent_operations_are_not_ordered() {
    // A read that overlaps an append may or may not see it.
    let h = H::new();
    create(&h, 0, "i1", true);
    let append = h.invoke(1, append_op("a1", None));
    let read = h.invoke(2, read_from(None));
    h.complete(append, appended("02"));
    h.complete(read, saw(&["i1"], "01"));
    run(&h, read_from(None), saw(&["i1", "a1"], "02"));
    assert_eq!(invariants(&h), Vec::<&str>::new());
}

#[test]
fn a_stream_deleted_and_made_anew_may_start_over() {
    let h = clean();
    // A create racing a delete: the delete wins first, the create makes the stream anew.
    let delete = h.invoke(1, StreamOp::Delete { stream: "s".into() });
    let create = h.invoke(
        2,
        StreamOp::Create {
            stream: "s".into(),
            config: 1,
            init: "i2".into(),
        },
    );
    h.complete(delete, Outcome::Ok(StreamRet::Done));
    h.complete(create, Outcome::Ok(StreamRet::Created { created: true }));
    run(&h, read_from(None), saw(&["i2"], "01"));
    assert_eq!(invariants(&h), Vec::<&str>::new());
}

#[test]
fn offsets_of_a_stream_made_anew_are_not_judged_against_the_old_one() {
    // The old incarnation is read after a1's offset ("02") and holds a2 there; then the stream
    // is deleted and made anew, and its own first append is acknowledged at the same "02".
    let h = clean();
    run(&h, read_from(Some("02")), saw(&["a2"], "03"));
    run(
        &h,
        StreamOp::Delete { stream: "s".into() },
        Outcome::Ok(StreamRet::Done),
    );
    create(&h, 0, "i2", true);
    run(&h, append_op("b1", None), appended("02"));
    run(&h, read_from(None), saw(&["i2", "b1"], "02"));
    assert_eq!(invariants(&h), Vec::<&str>::new());

    // Without a delete between them, the same pair of offsets is a violation.
    let kept = H::new();
    create(&kept, 0, "i2", true);
    run(&kept, append_op("b1", None), appended("02"));
    run(&kept, read_from(Some("02")), saw(&["a2"], "03"));
    run(&kept, read_from(None), saw(&["i2", "b1"], "02"));
    assert_eq!(invariants(&kept), vec!["not-at-offset"]);
}
