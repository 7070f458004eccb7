//! JSON read into a `serde_json::Value` with duplicate keys refused, naming the key's path.
//!
//! `serde_json::Value` keeps the last of two equal keys silently; protojson refuses them, and
//! so must we: two `app_id`s in one event must not let the second one win unseen.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Where in the document a value sits; rendered only for an error.
#[derive(Clone, Copy)]
enum Segment<'a> {
    Root(&'a str),
    Key(&'a Segment<'a>, &'a str),
    Index(&'a Segment<'a>, usize),
}

impl fmt::Display for Segment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Root(root) => f.write_str(root),
            Segment::Key(parent, key) => write!(f, "{parent}.{key}"),
            Segment::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// A duplicate key (its path) or malformed JSON (the parser's message, path = the root).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StrictError {
    pub(crate) path: String,
    pub(crate) message: String,
}

/// Parses `text` (whose position in the request is `root`, e.g. `events[3]`).
pub(crate) fn parse(text: &str, root: &str) -> Result<Value, StrictError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = Strict {
        at: Segment::Root(root),
        duplicate: &duplicate,
    };
    let parsed = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match (parsed, duplicate.into_inner()) {
        (_, Some(path)) => Err(StrictError {
            path,
            message: "duplicate field".into(),
        }),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(StrictError {
            path: root.to_owned(),
            message: e.to_string(),
        }),
    }
}

struct Strict<'a> {
    at: Segment<'a>,
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // serde_json never yields a non-finite float from JSON text.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let seed = Strict {
                at: Segment::Index(&self.at, items.len()),
                duplicate: self.duplicate,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let at = Segment::Key(&self.at, &key);
            if object.contains_key(&key) {
                *self.duplicate.borrow_mut() = Some(at.to_string());
                return Err(A::Error::custom("duplicate field"));
            }
            let value = map.next_value_seed(Strict {
                at,
                duplicate: self.duplicate,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_with_their_path() {
        let error = parse(r#"{"a":{"b":[1,{"c":1,"c":2}]}}"#, "events[3]").expect_err("dup");
        assert_eq!(error.path, "events[3].a.b[1].c");
        assert_eq!(error.message, "duplicate field");
        let error = parse(r#"{"app_id":"x","app_id":"y"}"#, "events[0]").expect_err("dup");
        assert_eq!(error.path, "events[0].app_id");
    }

    #[test]
    fn values_are_kept_and_bad_json_names_the_root() {
        let value = parse(
            r#"{"s":"x","n":-1,"u":18446744073709551615,"f":0.5,"b":true,"z":null,"l":[]}"#,
            "e",
        )
        .expect("valid");
        assert_eq!(
            value,
            serde_json::json!({"s":"x","n":-1,"u":18446744073709551615_u64,"f":0.5,"b":true,"z":null,"l":[]})
        );
        let error = parse(r#"{"s":"#, "events[1]").expect_err("truncated");
        assert_eq!(error.path, "events[1]");
        assert!(error.message.contains("EOF"), "{}", error.message);
        assert!(parse("{} x", "e").is_err(), "trailing characters");
    }
}
