//! The common case of [`CanonicalPass`] read straight from the request's bytes: a batch (or
//! one event) of valid canonical envelopes whose strings have no escapes and whose nested
//! values are already in the record's form, turned into records without `serde_json`.
//!
//! Why: the canonical pass drives `serde_json`'s deserializer through visitors, builds a
//! `Member` per key and an `Out` tree per value (a `Vec` per nested object), then writes them
//! out again; for the bench's 200 B events that was ~10k instructions per event, most of the
//! server's CPU beyond the storage's. Here one scan over the bytes checks every value against
//! the field tables as the canonical pass does, and the record is written by copying each
//! envelope member's value as it stands in the request: a string without escapes, an integer,
//! a boolean, and a nested object or array that is already compact, in sorted key order and
//! without a member the record would drop (null or a default) reads exactly as `serde_json`
//! writes it. Only the envelope's own members are reordered, and the record's added members
//! (`event_type`, `received_ms`, fresh `id` and `idempotency_key`) are inserted at their place.
//!
//! It answers only when it is sure the canonical pass answers the same: anything else (an
//! escape, whitespace or a dropped member inside a nested value, keys out of order there, any
//! invalid, non-canonical or rejected event) returns `None`, and the caller asks
//! [`CanonicalPass`], which gives up to the general reading in turn; so every error message
//! and per-event outcome stays as it was. `tests` compare the two on generated inputs.
//! After an event is read in full, its shape is the template of the next ones
//! ([`lean_template`](super::lean_template)): the events of one batch nearly always have the
//! same members, and one of the same shape is then read by comparing its bytes with the
//! template's and deciding only its values again.

use bytes::Bytes;

use super::canonical_pass::CanonicalPass;
use super::event::{EventOutcome, IngestContext};
use super::lean_reader::{Reader, Records, read_event};
#[cfg(doc)]
use super::lean_template::Template;
use super::lean_template::Templates;

/// [`CanonicalPass::accept_batch`] of a batch this reader is sure of, `None` otherwise. The
/// caller makes sure no event can be over the size limit (the body is not).
pub(crate) fn accept_batch(
    pass: &CanonicalPass,
    json: &str,
    max_events: usize,
    context: &IngestContext<'_>,
) -> Option<Vec<EventOutcome>> {
    accept_batch_counted(pass, json, max_events, context).map(|(outcomes, _)| outcomes)
}

/// [`accept_batch`], and how many of the events were read by a [`Template`].
fn accept_batch_counted(
    pass: &CanonicalPass,
    json: &str,
    max_events: usize,
    context: &IngestContext<'_>,
) -> Option<(Vec<EventOutcome>, usize)> {
    let mut reader = Reader::new(json);
    reader.skip_ws();
    reader.eat(b'{')?;
    reader.skip_ws();
    reader.eat_literal(b"\"events\"")?;
    reader.skip_ws();
    reader.eat(b':')?;
    reader.skip_ws();
    reader.eat(b'[')?;
    reader.skip_ws();
    let mut events = Vec::new();
    // As in the canonical pass: one working buffer for every record of the batch, sized for
    // the worst case, then moved to an allocation of the exact size the storage keeps.
    let mut records = Records::new(2 * json.len() + 256, true);
    let mut kept = Vec::with_capacity(16);
    let received = received_ms_json(context);
    // The shapes of the last events read in full: the next events of a batch nearly always
    // have one of them, and are then read by comparing bytes instead of walking the field
    // tables.
    let mut templates = Templates::new();
    let mut found = Vec::with_capacity(16);
    reader.recording = true;
    if reader.peek() == Some(b']') {
        reader.at += 1;
    } else {
        loop {
            if events.len() == max_events {
                return None;
            }
            let start = reader.at;
            let matched =
                templates.read(&pass.tables, &mut reader, &mut found, &mut records, context);
            let written = if let Some(written) = matched {
                written
            } else {
                let written = read_event(
                    pass,
                    &mut reader,
                    &mut kept,
                    &mut records,
                    context,
                    &received,
                )?;
                if templates.on() {
                    templates.add(
                        pass,
                        start..reader.at,
                        &reader.leaves,
                        &kept,
                        &records,
                        &written,
                    );
                    // Given up: no more notes for templates.
                    reader.recording = templates.on();
                    records.recording = templates.on();
                }
                written
            };
            events.push(written);
            reader.skip_ws();
            match reader.next()? {
                b',' => reader.skip_ws(),
                b']' => break,
                _ => return None,
            }
        }
    }
    reader.skip_ws();
    reader.eat(b'}')?;
    reader.skip_ws();
    reader.at_end()?;
    let records = Bytes::copy_from_slice(&records.bytes);
    Some((
        events
            .into_iter()
            .map(|event| event.into_outcome(&records))
            .collect(),
        templates.hits(),
    ))
}

/// [`CanonicalPass::accept`] of one event this reader is sure of, `None` otherwise.
pub(crate) fn accept(
    pass: &CanonicalPass,
    raw: &str,
    context: &IngestContext<'_>,
) -> Option<EventOutcome> {
    let mut reader = Reader::new(raw);
    reader.skip_ws();
    let mut record = Records::new(raw.len() + 128, false);
    let received = received_ms_json(context);
    let written = read_event(
        pass,
        &mut reader,
        &mut Vec::new(),
        &mut record,
        context,
        &received,
    )?;
    reader.skip_ws();
    reader.at_end()?;
    Some(written.into_outcome(&Bytes::from(record.bytes)))
}

/// The request's `received_ms` as the record writes it (as `serde_json` writes an `i64`):
/// the same for every event of the request, so written once.
fn received_ms_json(context: &IngestContext<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &context.received_ms);
    out
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::server::envelope::tests::CANONICAL_EVENTS;
    use crate::server::field_table::{FieldInfo, FieldTables, MessageTable, Shape, ValueKind};
    use crate::server::schema::Schema;

    const CONTEXT: IngestContext<'static> = IngestContext {
        app_id: "app",
        received_ms: 1_770_000_000_000,
    };

    fn pass() -> CanonicalPass {
        CanonicalPass::new(&Schema::load().expect("schema")).expect("the schema allows the pass")
    }

    /// Asserts that the reader's outcome is the canonical pass's: the same record bytes, id
    /// and key, except that a fresh id or key (one the event did not give) is random on each
    /// side, so the reader's is replaced by the pass's before comparing. An id or key that
    /// appears in the event must be the same on both sides.
    fn assert_same(lean: &EventOutcome, serde: &EventOutcome, input: &str) {
        let (EventOutcome::Valid(lean), EventOutcome::Valid(serde)) = (lean, serde) else {
            // The reader answers only for valid events.
            panic!("reader {lean:?}, pass {serde:?}: {input}");
        };
        let mut record = String::from_utf8(lean.record.to_vec()).expect("UTF-8 record");
        for (ours, theirs) in [
            (&lean.id, &serde.id),
            (&lean.idempotency_key, &serde.idempotency_key),
        ] {
            if ours != theirs {
                // Only values neither side took from the event may differ: an id or key the
                // event gave must come out the same on both sides.
                assert!(
                    !input.contains(&format!("\"{theirs}\""))
                        && !input.contains(&format!("\"{ours}\"")),
                    "an id or key of the event differs: reader {ours}, pass {theirs}: {input}"
                );
                assert!(
                    ours.len() == 36 && theirs.len() == 36,
                    "{ours} / {theirs}: {input}"
                );
                record = record.replace(&format!("\"{ours}\""), &format!("\"{theirs}\""));
            }
        }
        assert_eq!(
            record,
            String::from_utf8_lossy(&serde.record),
            "record of {input}"
        );
    }

    /// The bench's event and the canonical events the envelope tests use: the reader takes
    /// the common shapes itself (else the fast path would silently never run).
    #[test]
    fn the_common_shapes_are_read_here_and_match_the_pass() {
        let pass = pass();
        let bench = r#"{"app_id":"app","device_id":"d","timestamp_ms":1764500000000,"idempotency_key":"0000002a-0000-4000-8000-000000000007","custom_event":{"event_name":"bench","string_params":{"p":"xxxxxxxxxxxxxxxxxxxxxxxx"}}}"#;
        // What the Rust SDK writes (`sdk::event`, payload members in name order).
        let sdk = [
            r#"{"app_id":"app","device_id":"host-1","timestamp_ms":1,"device_context":{"os_version":"linux/x86_64","sdk_version":"courier-ingest-rust/0.1.0"},"idempotency_key":"k1","custom_event":{"bool_params":{"trial":true},"event_name":"signup","int_params":{"seats":5},"string_params":{"plan":"pro","user_id":"u1"}}}"#,
            r#"{"id":"e-9","app_id":"app","device_id":"host-1","timestamp_ms":1,"device_context":{"os_version":"linux/x86_64","sdk_version":"courier-ingest-rust/0.1.0"},"idempotency_key":"k2","user_login":{"method":"email","user_id":"u1"}}"#,
        ];
        let mut read_here = 0;
        for text in CANONICAL_EVENTS.into_iter().chain([bench]).chain(sdk) {
            let serde = pass.accept(text, &CONTEXT);
            match (accept(&pass, text, &CONTEXT), &serde) {
                (Some(lean), Some(serde)) => {
                    assert_same(&lean, serde, text);
                    read_here += 1;
                }
                (None, _) => {}
                (Some(lean), None) => panic!("only the reader accepts {text}: {lean:?}"),
            }
        }
        // Of CANONICAL_EVENTS, none: the valid ones have an escape or a nested default, which
        // the pass drops from the record; so the bench's event and the SDK's.
        assert_eq!(read_here, 3);
        let body = format!(r#"{{"events":[{bench},{bench}]}}"#);
        assert_eq!(
            accept_batch(&pass, &body, 2, &CONTEXT).map(|o| o.len()),
            Some(2)
        );
    }

    /// What the reader leaves to the pass although the pass accepts it: escapes, whitespace,
    /// keys out of order or a dropped member inside a nested value.
    #[test]
    fn what_the_pass_would_rewrite_is_left_to_it() {
        let pass = pass();
        let head = r#""app_id":"app","device_id":"d","timestamp_ms":1"#;
        for text in [
            format!(r#"{{{head},"correlation_id":"a\"b","button_tap":{{"button_id":"b"}}}}"#),
            r#"{"app\u005fid":"app","device_id":"d","timestamp_ms":1,"button_tap":{"button_id":"b"}}"#
                .to_owned(),
            format!(r#"{{{head},"button_tap":{{ "button_id":"b"}}}}"#),
            format!(r#"{{{head},"button_tap":{{"screen_name":"s","button_id":"b"}}}}"#),
            format!(r#"{{{head},"button_tap":{{"button_id":"b","button_text":""}}}}"#),
            format!(r#"{{{head},"button_tap":{{"button_id":"b","button_text":null}}}}"#),
            format!(
                r#"{{{head},"custom_event":{{"event_name":"x","string_params":{{"b":"1","a":"2"}}}}}}"#
            ),
            format!(r#"{{{head},"custom_event":{{"event_name":"x","string_params":{{}}}}}}"#),
        ] {
            assert!(pass.accept(&text, &CONTEXT).is_some(), "pass: {text}");
            assert_eq!(accept(&pass, &text, &CONTEXT), None, "{text}");
        }
    }

    /// Random JSON around the envelope's schema: valid shapes and every way to leave them.
    struct Gen {
        /// Draws the structure: which fields, keys and whitespace, and the kinds of values.
        rng: StdRng,
        /// Draws the scalar values (string texts, numbers, booleans), if set apart from `rng`:
        /// two events drawn with the same `rng` seed and different leaf seeds have the same
        /// shape and different values.
        leaf: Option<StdRng>,
        tables: FieldTables,
    }

    const STRINGS: [&str; 14] = [
        "",
        "x",
        "app",
        "bench",
        "é字😀",
        "PLATFORM_IOS",
        "PLATFORM_UNSPECIFIED",
        "NETWORK_TYPE_WIFI",
        "SWIPE_DIRECTION_UP",
        r#"q\"uote"#,
        r"\u00e9",
        r"tab\t",
        "raw\u{1}control",
        "0192f2a4-7c1e-7000-8000-000000000001",
    ];

    const NUMBERS: [&str; 24] = [
        "0",
        "1",
        "7",
        "-1",
        "-0",
        "01",
        "1.0",
        "1e3",
        "1E3",
        "2147483647",
        "2147483648",
        "-2147483648",
        "-2147483649",
        "4294967295",
        "4294967296",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "1764500000000",
        "-",
        "1-",
    ];

    const MAP_KEYS: [&str; 7] = ["a", "b", "p", "z", "é", r"a\u0062", "ab"];

    const ODD_VALUES: [&str; 9] = [
        "1", "\"s\"", "true", "{}", "[]", "null", "1.5", "nul", "[1]",
    ];

    impl Gen {
        fn chance(&mut self, p: f64) -> bool {
            self.rng.random_bool(p)
        }

        fn pick<'s>(&mut self, items: &[&'s str]) -> &'s str {
            items[self.rng.random_range(0..items.len())]
        }

        /// Mostly nothing, sometimes JSON whitespace (or a byte that is not).
        fn ws(&mut self, out: &mut String) {
            if self.chance(0.06) {
                out.push_str(self.pick(&[" ", "\n", "\t", "\r", "  \n ", "\u{b}"]));
            }
        }

        fn leaf_rng(&mut self) -> &mut StdRng {
            match &mut self.leaf {
                Some(leaf) => leaf,
                None => &mut self.rng,
            }
        }

        fn string(&mut self, out: &mut String) {
            out.push('"');
            out.push_str(STRINGS[self.leaf_rng().random_range(0..STRINGS.len())]);
            out.push('"');
        }

        fn item(&mut self, kind: ValueKind, depth: usize, out: &mut String) {
            if self.chance(0.01) {
                out.push_str(self.pick(&ODD_VALUES));
                return;
            }
            match kind {
                ValueKind::Str | ValueKind::Enum(_) => {
                    if self.leaf_rng().random_bool(0.7) && kind == ValueKind::Str {
                        let n = self.leaf_rng().random_range(0..50);
                        out.push_str(&format!("\"v{n}\""));
                    } else {
                        self.string(out);
                    }
                }
                ValueKind::Bool => out.push_str(if self.leaf_rng().random_bool(0.5) {
                    "true"
                } else {
                    "false"
                }),
                ValueKind::I32 | ValueKind::I64 | ValueKind::U32 | ValueKind::U64 => {
                    out.push_str(NUMBERS[self.leaf_rng().random_range(0..NUMBERS.len())]);
                }
                ValueKind::Message(message) => self.message(message, depth + 1, out),
                ValueKind::Never => out.push_str(self.pick(&ODD_VALUES)),
            }
        }

        fn value(&mut self, field: &FieldInfo, depth: usize, out: &mut String) {
            if self.chance(0.02) {
                out.push_str("null");
                return;
            }
            match field.shape {
                Shape::Single => self.item(field.kind, depth, out),
                Shape::List => {
                    out.push('[');
                    for i in 0..self.rng.random_range(0..4) {
                        if i > 0 {
                            out.push(',');
                        }
                        self.ws(out);
                        self.item(field.kind, depth, out);
                    }
                    out.push(']');
                }
                Shape::Map => {
                    out.push('{');
                    let mut keys: Vec<&str> = (0..self.rng.random_range(0..4))
                        .map(|_| self.pick(&MAP_KEYS))
                        .collect();
                    if self.chance(0.7) {
                        keys.sort_unstable();
                        keys.dedup();
                    }
                    for (i, key) in keys.into_iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        self.ws(out);
                        out.push_str(&format!("\"{key}\":"));
                        self.item(field.kind, depth, out);
                    }
                    out.push('}');
                }
            }
        }

        /// A message object: some of its fields, mostly in the record's order, sometimes a
        /// key repeated, unknown or escaped.
        fn message(&mut self, message: usize, depth: usize, out: &mut String) {
            let table = self.tables.messages[message].clone();
            let mut fields: Vec<usize> = (0..table.fields.len())
                .filter(|&i| {
                    let ruled = table.min_len.iter().any(|&(f, _)| f == i);
                    depth < 3 && self.chance(if ruled { 0.95 } else { 0.3 })
                })
                .collect();
            self.order_and_write(&table, &mut fields, depth, out);
        }

        fn order_and_write(
            &mut self,
            table: &MessageTable,
            fields: &mut Vec<usize>,
            depth: usize,
            out: &mut String,
        ) {
            if self.chance(0.7) {
                fields.sort_unstable_by_key(|&i| table.fields[i].rank);
            } else {
                for i in (1..fields.len()).rev() {
                    fields.swap(i, self.rng.random_range(0..=i));
                }
            }
            if !fields.is_empty() && self.chance(0.03) {
                fields.push(fields[0]);
            }
            out.push('{');
            for (n, &i) in fields.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                self.ws(out);
                let field = &table.fields[i];
                match self.rng.random_range(0..100) {
                    0 => out.push_str("\"nope\""),
                    1 => out.push_str(&format!("\"{}\"", field.name.replace('_', r"\u005f"))),
                    _ => out.push_str(&format!("\"{}\"", field.name)),
                }
                self.ws(out);
                out.push(':');
                self.ws(out);
                // The envelope's fields every valid event needs, mostly valid.
                let usual = match &*field.name {
                    "app_id" => Some(r#""app""#),
                    "device_id" => Some(r#""d""#),
                    "timestamp_ms" => Some("1764500000000"),
                    _ => None,
                };
                match usual {
                    Some(usual) if depth == 0 && self.chance(0.9) => {
                        // Drawn apart, sometimes another value (not valid for every field).
                        if self.leaf.is_some() && self.leaf_rng().random_bool(0.1) {
                            if &*field.name == "timestamp_ms" {
                                let n = self.leaf_rng().random_range(0..NUMBERS.len());
                                out.push_str(NUMBERS[n]);
                            } else {
                                self.string(out);
                            }
                        } else {
                            out.push_str(usual);
                        }
                    }
                    _ => self.value(field, depth, out),
                }
                self.ws(out);
            }
            out.push('}');
        }

        /// An envelope: mostly a valid event of this app with one payload.
        fn envelope(&mut self) -> String {
            let envelope = self.tables.envelope;
            let table = self.tables.messages[envelope].clone();
            let payloads: Vec<usize> = (0..table.fields.len())
                .filter(|&i| table.fields[i].in_payload)
                .collect();
            let mut fields = Vec::new();
            for (i, field) in table.fields.iter().enumerate() {
                let p = match &*field.name {
                    "app_id" | "device_id" | "timestamp_ms" => 0.97,
                    "idempotency_key" => 0.7,
                    _ if field.in_payload => 0.0,
                    _ => 0.4,
                };
                if self.chance(p) {
                    fields.push(i);
                }
            }
            for _ in 0..[0, 1, 1, 1, 1, 1, 1, 1, 1, 2][self.rng.random_range(0..10)] {
                fields.push(payloads[self.rng.random_range(0..payloads.len())]);
            }
            let mut out = String::new();
            self.ws(&mut out);
            self.order_and_write(&table, &mut fields, 0, &mut out);
            self.ws(&mut out);
            out
        }

        /// Sometimes cut short or with one ASCII byte replaced or added.
        fn damage(&mut self, text: String) -> String {
            let ascii: Vec<usize> = text
                .char_indices()
                .filter(|(_, c)| c.is_ascii())
                .map(|(i, _)| i)
                .collect();
            if ascii.is_empty() {
                return text;
            }
            let at = ascii[self.rng.random_range(0..ascii.len())];
            let byte = self.pick(&["{", "}", "[", "]", ",", ":", "\"", "\\", " ", "0", "a", "-"]);
            match self.rng.random_range(0..10) {
                0 => text[..at].to_owned(),
                1 => format!("{}{byte}{}", &text[..at], &text[at + 1..]),
                2 => format!("{}{byte}{}", &text[..at], &text[at..]),
                _ => text,
            }
        }
    }

    fn generator(seed: u64) -> Gen {
        let pass = pass();
        Gen {
            rng: StdRng::seed_from_u64(seed),
            leaf: None,
            tables: pass.tables,
        }
    }

    /// The differential test: on generated events (valid shapes, escapes, unicode, numbers,
    /// nesting, whitespace, truncated and invalid input) the reader answers only where the
    /// canonical pass accepts, and then with the same record, id and key.
    #[test]
    fn the_reader_agrees_with_the_pass_on_generated_events() {
        let pass = pass();
        let mut generator = generator(14);
        let (mut lean_count, mut pass_count) = (0, 0);
        for _ in 0..20_000 {
            let event = generator.envelope();
            let text = generator.damage(event);
            let serde = pass.accept(&text, &CONTEXT);
            pass_count += usize::from(serde.is_some());
            if let Some(lean) = accept(&pass, &text, &CONTEXT) {
                lean_count += 1;
                let serde = serde.unwrap_or_else(|| panic!("only the reader accepts {text}"));
                assert_same(&lean, &serde, &text);
            }
        }
        // Not vacuous: many events are valid, and the reader takes a good part of those.
        eprintln!("of 20 000 events, the pass accepted {pass_count}, the reader {lean_count}");
        assert!(pass_count > 2_000, "pass accepted {pass_count}");
        assert!(
            lean_count > pass_count / 4,
            "reader {lean_count} of {pass_count}"
        );
    }

    /// The same over whole batches: all or nothing, the same records in the same order.
    #[test]
    fn the_reader_agrees_with_the_pass_on_generated_batches() {
        let pass = pass();
        let mut generator = generator(50);
        let (mut lean_count, mut pass_count) = (0, 0);
        for _ in 0..3_000 {
            let mut body = String::new();
            generator.ws(&mut body);
            body.push_str(if generator.chance(0.97) { "{" } else { "[" });
            generator.ws(&mut body);
            body.push_str(generator.pick(&[r#""events""#, r#""events""#, r#""event""#]));
            generator.ws(&mut body);
            body.push(':');
            generator.ws(&mut body);
            body.push('[');
            let count = generator.rng.random_range(0..4);
            for i in 0..count {
                if i > 0 {
                    body.push(',');
                }
                // Mostly events the reader takes, so that whole batches pass.
                let event = loop {
                    let event = generator.envelope();
                    if generator.chance(0.2) || accept(&pass, &event, &CONTEXT).is_some() {
                        break event;
                    }
                };
                body.push_str(&event);
            }
            body.push(']');
            generator.ws(&mut body);
            body.push_str(generator.pick(&[
                "}",
                "}",
                "}",
                "}",
                "}",
                "}",
                "},",
                "}}",
                r#","x":1}"#,
            ]));
            generator.ws(&mut body);
            let body = generator.damage(body);
            let max = if generator.chance(0.8) {
                4
            } else {
                generator.rng.random_range(1..4)
            };
            let serde = pass.accept_batch(&body, max, &CONTEXT);
            pass_count += usize::from(serde.is_some());
            if let Some(lean) = accept_batch(&pass, &body, max, &CONTEXT) {
                lean_count += 1;
                let serde = serde.unwrap_or_else(|| panic!("only the reader accepts {body}"));
                assert_eq!(lean.len(), serde.len(), "{body}");
                for (lean, serde) in lean.iter().zip(&serde) {
                    assert_same(lean, serde, &body);
                }
            }
        }
        eprintln!("of 3 000 batches, the pass accepted {pass_count}, the reader {lean_count}");
        assert!(pass_count > 300, "pass accepted {pass_count}");
        assert!(
            lean_count > pass_count / 2,
            "reader {lean_count} of {pass_count}"
        );
    }

    /// Asserts that the reader's batch is the pass's, event by event.
    fn assert_same_batch(lean: &[EventOutcome], serde: Option<Vec<EventOutcome>>, body: &str) {
        let serde = serde.unwrap_or_else(|| panic!("only the reader accepts {body}"));
        assert_eq!(lean.len(), serde.len(), "{body}");
        for (lean, serde) in lean.iter().zip(&serde) {
            assert_same(lean, serde, body);
        }
    }

    /// The bench's batch: 50 events of one shape, each with its own key. The first is read in
    /// full, the 49 others by its template, with the pass's records.
    #[test]
    fn a_batch_of_one_shape_is_read_by_its_first_events_template() {
        let pass = pass();
        let events: Vec<String> = (0..50)
            .map(|n| {
                format!(
                    r#"{{"app_id":"app","device_id":"d{n}","timestamp_ms":{},"idempotency_key":"0000002a-0000-4000-8000-{n:012x}","custom_event":{{"event_name":"bench","string_params":{{"p":"{}"}}}}}}"#,
                    1_764_500_000_000_u64 + n,
                    "x".repeat(n as usize % 7 + 20),
                )
            })
            .collect();
        let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
        let (lean, by_template) =
            accept_batch_counted(&pass, &body, 50, &CONTEXT).expect("the reader takes it");
        assert_eq!(by_template, 49);
        assert_same_batch(&lean, pass.accept_batch(&body, 50, &CONTEXT), &body);
    }

    /// An event of the template's shape whose leaf is decided otherwise (a default where the
    /// template had none, or the other way round) is read in full, and so is every event of
    /// another shape; each becomes the template of the events after it.
    #[test]
    fn a_leaf_decided_otherwise_or_another_shape_is_read_in_full() {
        let pass = pass();
        let event = |key: &str, ts: &str, device: &str| {
            format!(
                r#"{{"app_id":"app","device_id":"{device}","timestamp_ms":{ts},"idempotency_key":"{key}","user_login":{{"method":"email","user_id":"u1"}}}}"#
            )
        };
        for (events, by_template) in [
            // The same shape three times.
            (
                vec![
                    event("k1", "5", "d"),
                    event("k2", "6", "d"),
                    event("k3", "7", "d"),
                ],
                2,
            ),
            // An empty key is the default: dropped, a fresh key written instead.
            (
                vec![
                    event("k1", "5", "d"),
                    event("", "6", "d"),
                    event("", "7", "d"),
                ],
                1,
            ),
            // The third has the first's shape: the last three shapes are kept.
            (
                vec![
                    event("", "5", "d"),
                    event("k2", "6", "d"),
                    event("", "7", "d"),
                ],
                1,
            ),
            // Another shape in between (a longer device id is not another shape; a space is).
            (
                vec![
                    event("k1", "5", "d"),
                    event("k2", "6", "device-2"),
                    event("k3", "7", "d").replace(r#""app_id":"#, r#""app_id": "#),
                    event("k4", "8", "d").replace(r#""app_id":"#, r#""app_id": "#),
                ],
                2,
            ),
        ] {
            let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
            let (lean, counted) =
                accept_batch_counted(&pass, &body, 10, &CONTEXT).expect("the reader takes it");
            assert_eq!(counted, by_template, "{body}");
            assert_same_batch(&lean, pass.accept_batch(&body, 10, &CONTEXT), &body);
        }
        // A leaf the reader gives up on, in the template's shape: nothing is accepted here
        // (the timestamp must be positive, the app is the request's, an escape is not read).
        for bad in [
            event("k2", "-6", "d"),
            event("k2", "6", "d").replace(r#""app""#, r#""other""#),
            event(r"k\u0032", "6", "d"),
            event("k2", "6.5", "d"),
        ] {
            let body = format!(r#"{{"events":[{},{bad}]}}"#, event("k1", "5", "d"));
            assert!(accept_batch(&pass, &body, 10, &CONTEXT).is_none(), "{body}");
        }
        // A nested integer that is its default in the second event only: the record drops
        // it, which only the pass writes (the template would copy it).
        let exit = |ms: u32| {
            format!(
                r#"{{"app_id":"app","device_id":"d","timestamp_ms":5,"screen_exit":{{"duration_ms":{ms},"screen_name":"home"}}}}"#
            )
        };
        let body = format!(r#"{{"events":[{},{}]}}"#, exit(7), exit(0));
        assert!(pass.accept_batch(&body, 10, &CONTEXT).is_some());
        assert!(accept_batch(&pass, &body, 10, &CONTEXT).is_none(), "{body}");
    }

    /// Events of a few shapes in turn are read by their templates; when most events of a batch
    /// are unlike each other, the batch stops making templates (and is still read right).
    #[test]
    fn shapes_in_turn_are_read_by_their_templates_and_many_shapes_give_up() {
        let pass = pass();
        let event = |n: usize, shape: usize| {
            format!(
                r#"{{"app_id":"app","device_id":"d","timestamp_ms":{},"idempotency_key":"k{n}","custom_event":{{"event_name":"e","string_params":{{"p{shape}":"v{n}"}}}}}}"#,
                n + 1
            )
        };
        for (shapes, count, by_template) in [
            // Two or three shapes in turn: each read in full once.
            (2, 12, 10),
            (3, 12, 9),
            // Twelve shapes: after four events read in full and none by a template, none is
            // tried any more.
            (12, 12, 0),
            (12, 24, 0),
        ] {
            let events: Vec<String> = (0..count).map(|n| event(n, n % shapes)).collect();
            let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
            let (lean, counted) =
                accept_batch_counted(&pass, &body, 100, &CONTEXT).expect("the reader takes it");
            assert_eq!(counted, by_template, "{shapes} shapes, {count} events");
            assert_same_batch(&lean, pass.accept_batch(&body, 100, &CONTEXT), &body);
        }
        // Many shapes first, then one: given up for the batch, every event read in full.
        let events: Vec<String> = (0..20).map(|n| event(n, n.min(6))).collect();
        let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
        let (lean, counted) = accept_batch_counted(&pass, &body, 100, &CONTEXT).expect("taken");
        assert_eq!(counted, 0);
        assert_same_batch(&lean, pass.accept_batch(&body, 100, &CONTEXT), &body);
    }

    /// The differential test of templates: batches of events drawn with one shape and
    /// different values (strings with escapes, unicode, control characters, enum names,
    /// numbers at every edge, defaults, another app, a bad timestamp), now and then another
    /// shape, and damaged bodies. Wherever the reader answers it answers as the pass does,
    /// and a good part of the events it takes are read by a template.
    #[test]
    fn templates_agree_with_the_pass_on_events_of_one_shape() {
        let pass = pass();
        let mut generator = generator(19);
        let mut seeds = StdRng::seed_from_u64(20);
        let (mut batches, mut pass_count, mut events_read, mut by_template) = (0, 0, 0, 0);
        // A shape (structure seed) whose event, with one draw of its values, the reader takes.
        let shape = |generator: &mut Gen, seeds: &mut StdRng| loop {
            let seed = seeds.random();
            generator.rng = StdRng::seed_from_u64(seed);
            generator.leaf = Some(StdRng::seed_from_u64(seeds.random()));
            if accept(&pass, &generator.envelope(), &CONTEXT).is_some() {
                break seed;
            }
        };
        for _ in 0..3_000 {
            let mut seed = shape(&mut generator, &mut seeds);
            let mut events = Vec::new();
            for _ in 0..seeds.random_range(2..7) {
                if seeds.random_bool(0.1) {
                    seed = shape(&mut generator, &mut seeds);
                }
                generator.rng = StdRng::seed_from_u64(seed);
                generator.leaf = Some(StdRng::seed_from_u64(seeds.random()));
                events.push(generator.envelope());
            }
            let mut body = format!(r#"{{"events":[{}]}}"#, events.join(","));
            if seeds.random_bool(0.1) {
                generator.leaf = None;
                body = generator.damage(body);
            }
            batches += 1;
            let serde = pass.accept_batch(&body, 8, &CONTEXT);
            pass_count += usize::from(serde.is_some());
            if let Some((lean, counted)) = accept_batch_counted(&pass, &body, 8, &CONTEXT) {
                events_read += lean.len();
                by_template += counted;
                assert_same_batch(&lean, serde, &body);
            }
        }
        eprintln!(
            "of {batches} batches the pass accepted {pass_count}; the reader read {events_read} \
             events, {by_template} of them by a template"
        );
        assert!(pass_count > 1_000, "pass accepted {pass_count}");
        assert!(
            by_template > events_read / 2,
            "{by_template} of {events_read} by a template"
        );
    }

    /// One base event per kind of leaf (strings, enum names, integers of every width, in the
    /// envelope, in nested messages, lists and maps), with `<<s:text>>` and `<<i:number>>`
    /// marking its leaves: the events of a batch are the base with some leaves drawn from
    /// edge values (empty, unicode, escapes, raw quotes and control characters at every place
    /// of a word, enum names, numbers at every edge, whitespace, another kind of value).
    const LEAF_BASES: [&str; 12] = [
        r#"{"app_id":"<<s:app>>","device_id":"<<s:d>>","timestamp_ms":<<i:1764500000000>>,"idempotency_key":"<<s:k1>>","custom_event":{"event_name":"<<s:bench>>","string_params":{"p":"<<s:xxxxxxxxxxxxxxxxxxxxxxxx>>"}}}"#,
        r#"{"id":"<<s:e-1>>","app_id":"<<s:app>>","device_id":"<<s:host-1>>","timestamp_ms":<<i:1>>,"device_context":{"os_version":"<<s:linux/x86_64>>","sdk_version":"<<s:courier-ingest-rust/0.1.0>>"},"idempotency_key":"<<s:k2>>","user_login":{"method":"<<s:email>>","user_id":"<<s:u1>>"}}"#,
        r#"{"app_id":"<<s:app>>","device_id":"<<s:d>>","timestamp_ms":<<i:5>>,"device_context":{"is_emulator":true,"network_type":"<<s:NETWORK_TYPE_WIFI>>","platform":"<<s:PLATFORM_IOS>>","screen_height":<<i:2532>>,"screen_width":<<i:1170>>},"custom_event":{"bool_params":{"a":true,"b":false},"event_name":"<<s:n>>","int_params":{"a":<<i:-3>>,"b":<<i:0>>,"c":<<i:9223372036854775807>>},"string_params":{"a":"<<s:>>","b":"<<s:é字😀>>"}}}"#,
        r#"{"app_id":"<<s:app>>","device_id":"<<s:d>>","timestamp_ms":<<i:5>>,"user_profile_update":{"fields_updated":["<<s:>>","<<s:name>>","<<s:x>>"],"user_id":"<<s:u>>"}}"#,
        r#"{"app_id":"<<s:app>>","device_id":"<<s:d>>","timestamp_ms":<<i:5>>,"purchase_complete":{"cart_id":"<<s:c>>","currency":"<<s:EUR>>","item_count":<<i:2>>,"items":[{"price_cents":<<i:100>>,"product_id":"<<s:p1>>","quantity":<<i:1>>},{}],"order_id":"<<s:o>>","total_cents":<<i:-2147483649>>}}"#,
        r#"{"app_id":"<<s:app>>","device_id":"<<s:d>>","timestamp_ms":<<i:5>>,"network_change":{"current_type":"<<s:NETWORK_TYPE_CELLULAR_5G>>","previous_type":"<<s:NETWORK_TYPE_WIFI>>"}}"#,
        r#"{"app_id":"<<s:app>>","device_id":"<<s:d>>","timestamp_ms":<<i:5>>,"screen_exit":{"duration_ms":<<i:7>>,"screen_name":"<<s:home>>"}}"#,
        r#"{"app_id":"<<s:app>>","device_id":"<<s:d>>","timestamp_ms":<<i:5>>,"swipe_gesture":{"direction":"<<s:SWIPE_DIRECTION_UP>>","duration_ms":<<i:4294967296>>,"screen_name":"<<s:s>>"}}"#,
        r#" { "timestamp_ms" : <<i:5>> , "device_id":"<<s:d>>" ,"id": "<<s:>>","app_id":"<<s:app>>", "battery_change":{"battery_level":<<i:2147483647>>,"state":"<<s:BATTERY_STATE_FULL>>"} } "#,
        r#"{"correlation_id":"<<s:c>>","app_id":"<<s:app>>","device_id":"<<s:d>>","timestamp_ms":<<i:5>>,"idempotency_key":"<<s:>>","memory_warning":{"available_memory_bytes":<<i:-9223372036854775808>>,"level":"<<s:MEMORY_WARNING_LEVEL_LOW>>","used_memory_bytes":<<i:1>>}}"#,
        r#"{"app_id":"<<s:app>>","device_id":"<<s:d>>","timestamp_ms":<<i:5>>,"screen_view":{"params":{"":"<<s:v>>","a":"<<s:>>"},"screen_name":"<<s:s>>"},"id":null}"#,
        r#"{"app_id":"<<s:app>>","device_id":"<<s:d>>","timestamp_ms":<<i:5>>,"text_input":{"field_id":"<<s:f>>","text_length":<<i:-2147483648>>},"device_context":{"locale":"<<s:fr>>","platform":"<<s:PLATFORM_WEB>>"}}"#,
    ];

    /// Edge strings beyond [`STRINGS`]: raw quotes, backslashes and control characters at
    /// every place of a word, structure in a string, other enum names.
    const MORE_STRINGS: [&str; 30] = [
        "apq",
        "ap",
        "d",
        "é",
        "字",
        "😀",
        "é字😀aaaaaa",
        "aaaaaaa\u{7f}bbbbbbbb",
        r#"a"b"#,
        r#"abcdefg"hij"#,
        r#"abcdefgh"ij"#,
        r"a\b",
        r"abcdefgh\\ij",
        r"\u0061pp",
        "abcdefgh\u{1f}",
        "\u{0}",
        r#"d","correlation_id":"z"#,
        r#"app","app_id":"app"#,
        r#"""#,
        "PLATFORM_ANDROID",
        "platform_ios",
        "NETWORK_TYPE_UNSPECIFIED",
        "NETWORK_TYPE_OFFLINE",
        "SWIPE_DIRECTION_UNSPECIFIED",
        "BATTERY_STATE_UNSPECIFIED",
        "BATTERY_STATE_CHARGING",
        "MEMORY_WARNING_LEVEL_UNSPECIFIED",
        "MEMORY_WARNING_LEVEL_CRITICAL",
        " ",
        "k1",
    ];

    /// Edge numbers beyond [`NUMBERS`]: whitespace, another kind of value, nothing, more
    /// members.
    const MORE_NUMBERS: [&str; 13] = [
        "5",
        "9",
        "10",
        "00",
        "1.",
        " 5",
        "5 ",
        "\"5\"",
        "true",
        "null",
        "",
        "5,\"x\":1",
        "{}",
    ];

    /// `base` with each leaf's marker replaced by its own value, or (with probability `p`)
    /// by an edge value of its kind.
    fn fill_leaves(base: &str, p: f64, rng: &mut StdRng) -> String {
        let mut out = String::new();
        let mut rest = base;
        while let Some(at) = rest.find("<<") {
            out.push_str(&rest[..at]);
            let end = rest[at..].find(">>").expect("marker end") + at;
            let (kind, own) = rest[at + 2..end].split_once(':').expect("marker kind");
            let edge = rng.random_bool(p);
            out.push_str(match (kind, edge) {
                (_, false) => own,
                ("s", true) => {
                    let n = rng.random_range(0..STRINGS.len() + MORE_STRINGS.len());
                    STRINGS.iter().chain(&MORE_STRINGS).nth(n).expect("drawn")
                }
                (_, true) => {
                    let n = rng.random_range(0..NUMBERS.len() + MORE_NUMBERS.len());
                    NUMBERS.iter().chain(&MORE_NUMBERS).nth(n).expect("drawn")
                }
            });
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }

    /// Review: the template path against the pass on events of one base with their leaves
    /// drawn from edge values (each leaf's tokenization, default, enum name, integer width and
    /// the record's checks decided again), now and then another base in between.
    #[test]
    fn templates_agree_with_the_pass_on_edge_leaves() {
        let pass = pass();
        let mut rng = StdRng::seed_from_u64(7);
        for base in LEAF_BASES {
            let text = fill_leaves(base, 0.0, &mut rng);
            assert!(
                accept(&pass, &text, &CONTEXT).is_some(),
                "base not read: {text}"
            );
        }
        let (mut batches, mut lean_count, mut pass_count, mut by_template) = (0, 0, 0, 0);
        for _ in 0..30_000 {
            let mut base = LEAF_BASES[rng.random_range(0..LEAF_BASES.len())];
            let count = rng.random_range(2..6);
            let p = [0.0, 0.05, 0.2, 0.5][rng.random_range(0..4)];
            let mut events = Vec::new();
            for i in 0..count {
                if rng.random_bool(0.05) {
                    base = LEAF_BASES[rng.random_range(0..LEAF_BASES.len())];
                }
                // The first event mostly as it is, so that a template is built.
                let p = if i == 0 { p / 4.0 } else { p };
                events.push(fill_leaves(base, p, &mut rng));
            }
            let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
            let max = if rng.random_bool(0.9) { 8 } else { count - 1 };
            batches += 1;
            let serde = pass.accept_batch(&body, max, &CONTEXT);
            pass_count += usize::from(serde.is_some());
            if let Some((lean, counted)) = accept_batch_counted(&pass, &body, max, &CONTEXT) {
                lean_count += 1;
                by_template += counted;
                assert_same_batch(&lean, serde, &body);
            }
        }
        eprintln!(
            "of {batches} batches the pass accepted {pass_count}, the reader {lean_count}, \
             {by_template} events by a template"
        );
        assert!(by_template > 5_000, "{by_template} events by a template");
    }

    /// Review: empty strings next to longer ones whose length changes from event to event (an
    /// empty map value or list item right before the closing bracket of a kept member, an
    /// empty map key): every place after them is found again by this event's leaves. (An
    /// empty string matches only an empty one: its emptiness is its default.)
    #[test]
    fn empty_leaves_next_to_longer_ones_are_placed_by_this_events_leaves() {
        let pass = pass();
        let map = |value: &str| {
            format!(
                r#"{{"app_id":"app","custom_event":{{"event_name":"{value}","string_params":{{"":"{value}","a":""}}}},"device_id":"d","timestamp_ms":5}}"#
            )
        };
        let list = |value: &str| {
            format!(
                r#"{{"app_id":"app","device_id":"d","timestamp_ms":5,"user_profile_update":{{"fields_updated":["{value}","","{value}",""]}}}}"#
            )
        };
        for event in [map, list] {
            let events = ["y", "é字😀", &"x".repeat(20), "z"].map(event);
            let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
            let (lean, counted) =
                accept_batch_counted(&pass, &body, 10, &CONTEXT).expect("the reader takes it");
            assert_eq!(counted, 3, "{body}");
            assert_same_batch(&lean, pass.accept_batch(&body, 10, &CONTEXT), &body);
        }
    }

    /// Review: every one-byte edit (replaced, inserted or deleted, ASCII structure bytes and a
    /// UTF-8 character) of one event of a batch of two events of each base, the other as it
    /// is (the edited one is the template or is read by it), against the pass.
    #[test]
    fn templates_agree_with_the_pass_on_every_one_byte_edit() {
        let pass = pass();
        let mut rng = StdRng::seed_from_u64(0);
        let (mut lean_count, mut by_template) = (0, 0);
        for base in LEAF_BASES {
            let event = fill_leaves(base, 0.0, &mut rng);
            for at in 0..=event.len() {
                if !event.is_char_boundary(at) {
                    continue;
                }
                let next = event[at..].chars().next().map_or(0, char::len_utf8);
                for edit in [
                    "", "\"", "\\", ",", ":", "{", "}", "[", "]", " ", "0", "1", "-", "a", "é", "n",
                ] {
                    for edited in [
                        format!("{}{edit}{}", &event[..at], &event[at..]),
                        format!("{}{edit}{}", &event[..at], &event[at + next..]),
                    ] {
                        for body in [
                            format!(r#"{{"events":[{event},{edited}]}}"#),
                            format!(r#"{{"events":[{edited},{event}]}}"#),
                        ] {
                            let serde = pass.accept_batch(&body, 8, &CONTEXT);
                            if let Some((lean, counted)) =
                                accept_batch_counted(&pass, &body, 8, &CONTEXT)
                            {
                                lean_count += 1;
                                by_template += counted;
                                assert_same_batch(&lean, serde, &body);
                            }
                        }
                    }
                }
            }
        }
        eprintln!("the reader took {lean_count} edited batches, {by_template} by a template");
    }
}
