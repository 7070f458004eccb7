//! The 200 bodies, with exactly upstream's protojson field set: a protojson client refuses a
//! field it does not know and would retry a 200 it cannot read.

use serde::Serialize;

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
    pub fn to_json(&self) -> Vec<u8> {
        let wire = WireBatch {
            accepted_count: self.accepted_count(),
            rejected_count: self.rejected_count(),
            results: self
                .results
                .iter()
                .enumerate()
                .map(|(index, result)| match result {
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
                })
                .collect(),
        };
        // Strings and integers only: serialising cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }
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
}
