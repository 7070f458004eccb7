//! The 200 bodies, with exactly upstream's protojson field set: a protojson client refuses a
//! field it does not know and would retry a 200 it cannot read.

use serde::Serialize;

use super::json_text::write_json_string;

/// What became of one event of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventResult {
    /// Stored (or a duplicate of an event already stored, whose id this is).
    Accepted {
        /// The stored event's id.
        event_id: String,
    },
    /// Not stored; the rest of the batch was.
    Rejected {
        /// The field and the rule it broke.
        error: String,
    },
}

/// `IngestEventBatchResponse`: counts and one result per input event, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResponse {
    results: Vec<EventResult>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireSingle<'a> {
    event_id: &'a str,
    status: &'static str,
}

impl BatchResponse {
    /// The response for `results`, the i-th being the outcome of the i-th event.
    pub fn new(results: Vec<EventResult>) -> Self {
        Self { results }
    }

    /// Events accepted (duplicates included).
    pub fn accepted_count(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r, EventResult::Accepted { .. }))
            .count()
    }

    /// Events rejected.
    pub fn rejected_count(&self) -> usize {
        self.results.len() - self.accepted_count()
    }

    /// The per-event results, in input order.
    pub fn results(&self) -> &[EventResult] {
        &self.results
    }

    /// `{"acceptedCount","rejectedCount","results":[...]}` and nothing else, counts first.
    pub fn to_json(&self) -> Vec<u8> {
        batch_json(
            self.accepted_count(),
            self.results.iter().map(|result| match result {
                EventResult::Accepted { event_id } => ResultText::Accepted(event_id),
                EventResult::Rejected { error } => ResultText::Rejected(error),
            }),
        )
    }
}

/// One event's result as [`batch_json`] writes it, borrowed from wherever it is kept.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ResultText<'a> {
    /// Accepted, with the stored event's id.
    Accepted(&'a str),
    /// Rejected, with the field and the rule.
    Rejected(&'a str),
}

/// The 200 body of a batch whose results are `results`, `accepted` of them accepted:
/// `{"acceptedCount","rejectedCount","results":[...]}` and nothing else.
///
/// Written by hand from borrowed results rather than through a derived `Serialize` of a wire
/// struct: a batch answers one result per event, and the derived form escapes every field name
/// of every result again (and the handler would first build a `Vec` of owned results). Strings
/// from the request go through `serde_json`'s escaping when they need it; the bytes are those
/// `serde_json` wrote for the wire structs (the tests compare them).
pub(crate) fn batch_json<'a>(
    accepted: usize,
    results: impl ExactSizeIterator<Item = ResultText<'a>>,
) -> Vec<u8> {
    let count = results.len();
    // An accepted result of a UUID id is 70-75 bytes.
    let mut out = Vec::with_capacity(64 + count * 80);
    out.extend_from_slice(b"{\"acceptedCount\":");
    write_number(&mut out, accepted);
    out.extend_from_slice(b",\"rejectedCount\":");
    write_number(&mut out, count.saturating_sub(accepted));
    out.extend_from_slice(b",\"results\":[");
    for (index, result) in results.enumerate() {
        let open: &[u8] = if index == 0 {
            b"{\"index\":"
        } else {
            b",{\"index\":"
        };
        out.extend_from_slice(open);
        write_number(&mut out, index);
        match result {
            ResultText::Accepted(event_id) => {
                out.extend_from_slice(b",\"eventId\":");
                write_json_string(&mut out, event_id);
                out.extend_from_slice(b",\"status\":\"accepted\"}");
            }
            ResultText::Rejected(error) => {
                out.extend_from_slice(b",\"status\":\"rejected\",\"error\":");
                write_json_string(&mut out, error);
                out.push(b'}');
            }
        }
    }
    out.extend_from_slice(b"]}");
    out
}

/// A count in decimal, as `serde_json` writes it (digits only), without going through its
/// serializer for every result's index.
fn write_number(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0_u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // A digit: `n % 10` is below 10.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `IngestEventResponse` of `POST /v1/events/ingest`: `{"eventId","status":"accepted"}`.
pub fn single_accepted_json(event_id: &str) -> Vec<u8> {
    serde_json::to_vec(&WireSingle {
        event_id,
        status: "accepted",
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i3_only_the_upstream_field_set_and_counts_match_results() {
        let response = BatchResponse::new(vec![
            EventResult::Accepted {
                event_id: "a".into(),
            },
            EventResult::Rejected {
                error: "device_id: required".into(),
            },
            EventResult::Accepted {
                event_id: "c".into(),
            },
        ]);
        assert_eq!(
            String::from_utf8(response.to_json()).expect("utf-8"),
            concat!(
                r#"{"acceptedCount":2,"rejectedCount":1,"results":["#,
                r#"{"index":0,"eventId":"a","status":"accepted"},"#,
                r#"{"index":1,"status":"rejected","error":"device_id: required"},"#,
                r#"{"index":2,"eventId":"c","status":"accepted"}]}"#
            )
        );
        assert_eq!(
            single_accepted_json("e1"),
            br#"{"eventId":"e1","status":"accepted"}"#
        );
    }

    /// The response as derived `Serialize` structs wrote it before `to_json` wrote it by hand.
    fn derived(results: &[EventResult]) -> Vec<u8> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct WireBatch<'a> {
            accepted_count: usize,
            rejected_count: usize,
            results: Vec<WireResult<'a>>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct WireResult<'a> {
            index: usize,
            #[serde(skip_serializing_if = "Option::is_none")]
            event_id: Option<&'a str>,
            status: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'a str>,
        }
        fn wire((index, result): (usize, &EventResult)) -> WireResult<'_> {
            match result {
                EventResult::Accepted { event_id } => WireResult {
                    index,
                    event_id: Some(event_id),
                    status: "accepted",
                    error: None,
                },
                EventResult::Rejected { error } => WireResult {
                    index,
                    event_id: None,
                    status: "rejected",
                    error: Some(error),
                },
            }
        }
        let accepted = results
            .iter()
            .filter(|r| matches!(r, EventResult::Accepted { .. }))
            .count();
        serde_json::to_vec(&WireBatch {
            accepted_count: accepted,
            rejected_count: results.len() - accepted,
            results: results.iter().enumerate().map(wire).collect(),
        })
        .expect("json")
    }

    #[test]
    fn numbers_are_written_as_serde_json_writes_them() {
        let mut numbers = vec![0, usize::MAX, usize::MAX / 10];
        for digits in 1..20 {
            let power = 10_usize.pow(digits);
            numbers.extend([power - 1, power, power + 1]);
        }
        for n in numbers {
            let mut ours = b"x".to_vec();
            write_number(&mut ours, n);
            let mut theirs = b"x".to_vec();
            serde_json::to_writer(&mut theirs, &n).expect("writes");
            assert_eq!(ours, theirs, "{n}");
        }
    }

    #[test]
    fn the_written_body_is_the_derived_one_with_escapes() {
        let mut results: Vec<EventResult> = ["", "a\"b\\c", "\u{1}\n\t\u{7f}", "é😀", "0190-uuid"]
            .into_iter()
            .map(|id| EventResult::Accepted {
                event_id: id.into(),
            })
            .collect();
        results.push(EventResult::Rejected {
            error: "x: \"bad\"\r".into(),
        });
        results.extend((0..12).map(|i| EventResult::Accepted {
            event_id: format!("id-{i}"),
        }));
        for n in 1..=results.len() {
            let response = BatchResponse::new(results[..n].to_vec());
            assert_eq!(
                String::from_utf8(response.to_json()).expect("utf-8"),
                String::from_utf8(derived(&results[..n])).expect("utf-8")
            );
        }
    }
}
