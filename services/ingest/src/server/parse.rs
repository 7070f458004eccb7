//! The batch: its top level, its limits, and each event handed to the parser of its shape.

use std::fmt;
use std::fmt::Write as _;

use courier_traits::storage::MAX_DEDUP_KEY_LEN;
use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::canonical_pass::CanonicalPass;
use super::event::{EventOutcome, IngestContext};
use super::reply::{RequestError, Violation};
use super::schema::{Schema, SchemaError};
use super::{envelope, lean_batch, simple, strict_json};

/// Request limits, upstream's raised as the spec explains (the upstream Go SDK sends far more
/// than its batch size under bursts).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Body bytes, after decompression (default 10 MiB).
    pub max_body_bytes: usize,
    /// Events per batch (default 10 000).
    pub max_events: usize,
    /// Bytes of one event's JSON (default 256 KiB); a larger event is rejected alone.
    pub max_event_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 << 20,
            max_events: 10_000,
            max_event_bytes: 256 << 10,
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_body_bytes`].
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets [`Limits::max_events`].
    pub fn with_max_events(mut self, events: usize) -> Self {
        self.max_events = events;
        self
    }

    /// Sets [`Limits::max_event_bytes`].
    pub fn with_max_event_bytes(mut self, bytes: usize) -> Self {
        self.max_event_bytes = bytes;
        self
    }
}

/// Reads batches and single events of both shapes (see the module docs of
/// [`server`](crate::server)).
#[derive(Debug, Clone)]
pub struct EventParser {
    schema: Schema,
    /// The one-pass reading of valid canonical envelopes (`None`: the schema does not allow
    /// it, every event takes the general reading).
    canonical: Option<CanonicalPass>,
    limits: Limits,
}

/// Violations collected before answering 400: enough to fix a batch, bounded in size.
const MAX_VIOLATIONS: usize = 100;

impl EventParser {
    /// A parser with `limits`, its schema decoded from the checked-in descriptor set.
    pub fn new(limits: Limits) -> Result<Self, SchemaError> {
        let schema = Schema::load()?;
        let canonical = if schema.json_name_shadows_proto_name {
            None
        } else {
            CanonicalPass::new(&schema)
        };
        Ok(Self {
            schema,
            canonical,
            limits,
        })
    }

    /// The limits this parser applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Reads `{"events":[...]}` (the JSON body, already decoded). A body that is not such a
    /// batch, or whose events have unknown, duplicate or mistyped fields, is 400 naming the
    /// fields; events that parse but break a rule are [`EventOutcome::Rejected`].
    pub fn parse_batch(
        &self,
        json: &[u8],
        context: &IngestContext<'_>,
    ) -> Result<Vec<EventOutcome>, RequestError> {
        if let Some(outcomes) = self.accept_canonical_batch(json, context) {
            return Ok(outcomes);
        }
        let raw_events = match events_in_one_pass(json, self.limits.max_events) {
            Some(raw_events) => raw_events,
            None => self.events(json)?,
        };
        if raw_events.is_empty() {
            return Err(bad("events", "at least 1 event is required"));
        }
        let mut outcomes = Vec::with_capacity(raw_events.len());
        let mut violations = Vec::new();
        // One buffer for every event's path (`events[i]`), which only errors read.
        let mut path = String::with_capacity(16);
        for (index, raw) in raw_events.iter().enumerate() {
            if let Some(outcome) = self.accept_canonical(raw.get(), context) {
                outcomes.push(outcome);
                continue;
            }
            path.clear();
            // Writing to a String cannot fail.
            let _ = write!(path, "events[{index}]");
            match self.parse_general(raw.get(), &path, context) {
                Ok(outcome) => outcomes.push(outcome),
                Err(violation) if violations.len() < MAX_VIOLATIONS => violations.push(violation),
                Err(_) => {}
            }
        }
        if violations.is_empty() {
            Ok(outcomes)
        } else {
            Err(RequestError::BadRequest(violations))
        }
    }

    /// The events of the batch `json` as unparsed values, or the error naming what is wrong.
    fn events<'a>(&self, json: &'a [u8]) -> Result<Vec<&'a RawValue>, RequestError> {
        let events = top_level(json, "events")?;
        if !events.get().starts_with('[') {
            return Err(bad("events", "must be an array of events"));
        }
        let mut de = serde_json::Deserializer::from_str(events.get());
        let seed = BoundedList {
            max: self.limits.max_events,
        };
        seed.deserialize(&mut de)
            .map_err(|e| bad("events", e.to_string()))
    }

    /// Reads `{"event":{...}}` of `POST /v1/events/ingest`.
    pub fn parse_single(
        &self,
        json: &[u8],
        context: &IngestContext<'_>,
    ) -> Result<EventOutcome, RequestError> {
        let event = top_level(json, "event")?;
        self.parse_event(event.get(), "event", context)
            .map_err(|v| RequestError::BadRequest(vec![v]))
    }

    fn parse_event(
        &self,
        raw: &str,
        path: &str,
        context: &IngestContext<'_>,
    ) -> Result<EventOutcome, Violation> {
        match self.accept_canonical(raw, context) {
            Some(outcome) => Ok(outcome),
            None => self.parse_general(raw, path, context),
        }
    }

    /// Every event's outcome when all are valid canonical envelopes, read in one pass over
    /// the body ([`CanonicalPass::accept_batch`]); `None` for the batch read event by event.
    /// Only for a body within the size limit of one event, so that no event is over it.
    fn accept_canonical_batch(
        &self,
        json: &[u8],
        context: &IngestContext<'_>,
    ) -> Option<Vec<EventOutcome>> {
        if json.len() > self.limits.max_event_bytes {
            return None;
        }
        let text = std::str::from_utf8(json).ok()?;
        let pass = self.canonical.as_ref()?;
        // The byte-level reader of the common case first; what it is not sure of, the pass.
        let max = self.limits.max_events;
        let outcomes = lean_batch::accept_batch(pass, text, max, context)
            .or_else(|| pass.accept_batch(text, max, context))?;
        // An empty batch is an error, worded by the event-by-event reading.
        (!outcomes.is_empty()).then(|| outcomes.into_iter().map(within_dedup_limits).collect())
    }

    /// The outcome of a valid canonical envelope within the size limit, read in one pass
    /// ([`CanonicalPass`]); `None` for [`EventParser::parse_general`].
    fn accept_canonical(&self, raw: &str, context: &IngestContext<'_>) -> Option<EventOutcome> {
        if raw.len() > self.limits.max_event_bytes {
            return None;
        }
        let pass = self.canonical.as_ref()?;
        let outcome =
            lean_batch::accept(pass, raw, context).or_else(|| pass.accept(raw, context))?;
        Some(within_dedup_limits(outcome))
    }

    /// Any event, through the general reading, its errors naming `path`.
    fn parse_general(
        &self,
        raw: &str,
        path: &str,
        context: &IngestContext<'_>,
    ) -> Result<EventOutcome, Violation> {
        if raw.len() > self.limits.max_event_bytes {
            return Ok(EventOutcome::Rejected(format!(
                "event is {} bytes, over the limit of {} bytes",
                raw.len(),
                self.limits.max_event_bytes
            )));
        }
        let value = strict_json::parse(raw, path).map_err(|e| Violation::new(e.path, e.message))?;
        let Value::Object(object) = value else {
            return Err(Violation::new(path, "must be an object"));
        };
        let outcome = if object.contains_key("event_type") {
            simple::parse(object, path, context)?
        } else {
            envelope::parse(&self.schema, Value::Object(object), path, context)?
        };
        Ok(within_dedup_limits(outcome))
    }
}

/// The id is the dedup tag and the idempotency key the dedup key of the keyed append, which
/// refuses the whole call for one over [`MAX_DEDUP_KEY_LEN`]: such an event is rejected alone.
fn within_dedup_limits(outcome: EventOutcome) -> EventOutcome {
    let EventOutcome::Valid(event) = &outcome else {
        return outcome;
    };
    for (field, value) in [
        ("id", &event.id),
        ("idempotency_key", &event.idempotency_key),
    ] {
        if value.len() > MAX_DEDUP_KEY_LEN {
            return EventOutcome::Rejected(format!(
                "{field}: {} bytes, over the limit of {MAX_DEDUP_KEY_LEN}",
                value.len()
            ));
        }
    }
    outcome
}

fn bad(field: &str, description: impl Into<String>) -> RequestError {
    RequestError::BadRequest(vec![Violation::new(field, description)])
}

/// The value of `key`, the only key the body's object may have.
fn top_level<'a>(json: &'a [u8], key: &str) -> Result<&'a RawValue, RequestError> {
    let text = std::str::from_utf8(json).map_err(|e| bad("body", format!("not UTF-8: {e}")))?;
    let fields: Fields<'a> =
        serde_json::from_str(text).map_err(|e| bad("body", format!("not a JSON object: {e}")))?;
    let mut found = None;
    for (name, value) in fields.0 {
        if name != key {
            return Err(bad(&name, "unknown field"));
        }
        if found.replace(value).is_some() {
            return Err(bad(&name, "duplicate field"));
        }
    }
    found.ok_or_else(|| bad(key, "required"))
}

/// [`EventParser::events`] of a well-formed batch (`{"events":[...]}` and nothing else, at most
/// `max` events) in one pass over the body; `None` for anything else, which
/// [`EventParser::events`] reads again to word its error (its messages locate the error in
/// the body, then in the array, as they always did).
fn events_in_one_pass(json: &[u8], max: usize) -> Option<Vec<&RawValue>> {
    let text = std::str::from_utf8(json).ok()?;
    let mut de = serde_json::Deserializer::from_str(text);
    let events = OnlyEvents { max }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(events)
}

/// An object whose only member is `events`, an array read by [`BoundedList`].
struct OnlyEvents {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for OnlyEvents {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OnlyEvents {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a batch")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut events = None;
        while let Some(key) = map.next_key::<&'de str>()? {
            if key != "events" || events.is_some() {
                return Err(A::Error::custom("not a batch"));
            }
            events = Some(map.next_value_seed(BoundedList { max: self.max })?);
        }
        events.ok_or_else(|| A::Error::custom("not a batch"))
    }
}

/// A JSON object's members in order, duplicates kept, values unparsed.
struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// A JSON array of at most `max` values, left unparsed; one more is an error before it is
/// even read, so 10 million `{}`s cost no more than 10 001.
struct BoundedList {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for BoundedList {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BoundedList {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            if items.len() == self.max {
                return Err(A::Error::custom(format!(
                    "more than {} events in one request",
                    self.max
                )));
            }
            items.push(item);
        }
        Ok(items)
    }
}
