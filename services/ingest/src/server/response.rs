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

    /// `{"acceptedCount","rejectedCount","results":[...]}` and nothing else.
    ///
    /// Written by hand rather than through a derived `Serialize` of a wire struct: a batch
    /// answers one result per event, and the derived form escapes every field name of every
    /// result again. Strings from the request go through `serde_json`'s escaping; the bytes are
    /// those `serde_json` wrote for the wire structs (the tests compare them).
    pub fn to_json(&self) -> Vec<u8> {
        let accepted = self.accepted_count();
        // An accepted result of a UUID id is ~70 bytes.
        let mut out = Vec::with_capacity(64 + self.results.len() * 72);
        out.extend_from_slice(b"{\"acceptedCount\":");
        write_number(&mut out, accepted);
        out.extend_from_slice(b",\"rejectedCount\":");
        write_number(&mut out, self.results.len() - accepted);
        out.extend_from_slice(b",\"results\":[");
        for (index, result) in self.results.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"index\":");
            write_number(&mut out, index);
            match result {
                EventResult::Accepted { event_id } => {
                    out.extend_from_slice(b",\"eventId\":");
                    write_json_string(&mut out, event_id);
                    out.extend_from_slice(b",\"status\":\"accepted\"}");
                }
                EventResult::Rejected { error } => {
                    out.extend_from_slice(b",\"status\":\"rejected\",\"error\":");
                    write_json_string(&mut out, error);
                    out.push(b'}');
                }
            }
        }
        out.extend_from_slice(b"]}");
        out
    }
}

/// A count as `serde_json` writes it.
fn write_number(out: &mut Vec<u8>, n: usize) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &n);
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
