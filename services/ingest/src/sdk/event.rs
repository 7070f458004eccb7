//! [`Event`]: what an application tracks, and its encoding as the upstream `EventEnvelope`.
//!
//! The SDK writes envelopes with the proto field names (`app_id`, `timestamp_ms`,
//! `custom_event`), which protojson servers accept alongside the JSON names, so the same bytes
//! work against Courier's endpoint and against upstream Causality servers. int64 values are
//! JSON numbers, as protojson accepts.

use std::collections::BTreeMap;

use serde::ser::{Serialize, SerializeMap, Serializer};

/// One event to track: a payload (exactly one of the envelope's payload kinds) and the
/// envelope fields the caller may set. The client fills in the rest (app id, device id,
/// device context, and the timestamp and idempotency key unless given).
///
/// ```
/// use courier_ingest::sdk::Event;
///
/// let signup = Event::custom("signup")
///     .param("plan", "pro")
///     .param("seats", 5)
///     .param("trial", false)
///     .user_id("u1");
/// let view = Event::screen_view("checkout").idempotency_key("order-42-view");
/// # let _ = (signup, view);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub(crate) payload: Payload,
    pub(crate) id: Option<String>,
    pub(crate) timestamp_ms: Option<i64>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) idempotency_key: Option<String>,
    /// A builder call that does not fit the payload, reported by `track` (builders cannot
    /// fail, and a silently ignored parameter would lose data).
    pub(crate) misuse: Option<EventMisuse>,
}

/// A builder call that does not fit the event's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EventMisuse {
    pub(crate) field: &'static str,
    pub(crate) reason: String,
}

/// A parameter value of a custom event: string, integer, float or bool, each going into the
/// matching map of the upstream `CustomEvent` (`string_params`, `int_params`, ...).
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    /// Goes into `string_params`.
    String(String),
    /// Goes into `int_params` (int64).
    Int(i64),
    /// Goes into `float_params` (double). NaN and infinities are written as protojson's
    /// `"NaN"`, `"Infinity"`, `"-Infinity"`.
    Float(f64),
    /// Goes into `bool_params`.
    Bool(bool),
}

macro_rules! param_from {
    ($($t:ty => $variant:ident($conv:expr)),* $(,)?) => {$(
        impl From<$t> for ParamValue {
            fn from(value: $t) -> ParamValue {
                ParamValue::$variant($conv(value))
            }
        }
    )*};
}

param_from! {
    &str => String(str::to_owned),
    String => String(std::convert::identity),
    &String => String(String::clone),
    i64 => Int(std::convert::identity),
    i32 => Int(i64::from),
    u32 => Int(i64::from),
    i16 => Int(i64::from),
    u16 => Int(i64::from),
    f64 => Float(std::convert::identity),
    f32 => Float(f64::from),
    bool => Bool(std::convert::identity),
}

/// The envelope's payload oneof: the kinds this SDK builds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Payload {
    Custom(CustomEvent),
    ScreenView {
        screen_name: String,
    },
    ButtonTap {
        button_id: String,
        screen_name: Option<String>,
    },
    User {
        kind: UserEventKind,
        user_id: String,
        method: Option<String>,
    },
}

/// `user_login`, `user_signup`, `user_logout`: the same two fields (`user_id` and `method`, or
/// `reason` for a logout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UserEventKind {
    Login,
    Signup,
    Logout,
}

/// Upstream's `CustomEvent`: a name and four typed parameter maps.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct CustomEvent {
    pub(crate) event_name: String,
    pub(crate) string_params: BTreeMap<String, String>,
    pub(crate) int_params: BTreeMap<String, i64>,
    pub(crate) float_params: BTreeMap<String, f64>,
    pub(crate) bool_params: BTreeMap<String, bool>,
}

impl CustomEvent {
    /// Sets `key`, removing it from the other maps so the last value given wins.
    fn set(&mut self, key: String, value: ParamValue) {
        self.string_params.remove(&key);
        self.int_params.remove(&key);
        self.float_params.remove(&key);
        self.bool_params.remove(&key);
        match value {
            ParamValue::String(v) => {
                self.string_params.insert(key, v);
            }
            ParamValue::Int(v) => {
                self.int_params.insert(key, v);
            }
            ParamValue::Float(v) => {
                self.float_params.insert(key, v);
            }
            ParamValue::Bool(v) => {
                self.bool_params.insert(key, v);
            }
        }
    }
}

impl Event {
    fn with(payload: Payload) -> Event {
        Event {
            payload,
            id: None,
            timestamp_ms: None,
            correlation_id: None,
            idempotency_key: None,
            misuse: None,
        }
    }

    /// A `custom_event` named `event_name` (required non-empty by upstream's schema).
    pub fn custom(event_name: impl Into<String>) -> Event {
        Event::with(Payload::Custom(CustomEvent {
            event_name: event_name.into(),
            ..CustomEvent::default()
        }))
    }

    /// A `screen_view` of `screen_name` (required non-empty).
    pub fn screen_view(screen_name: impl Into<String>) -> Event {
        Event::with(Payload::ScreenView {
            screen_name: screen_name.into(),
        })
    }

    /// A `button_tap` on `button_id` (required non-empty), optionally on a screen.
    pub fn button_tap(button_id: impl Into<String>, screen_name: Option<&str>) -> Event {
        Event::with(Payload::ButtonTap {
            button_id: button_id.into(),
            screen_name: screen_name.map(str::to_owned),
        })
    }

    /// A `user_login` of `user_id`, with the login `method` (`email`, `google`, ...).
    pub fn user_login(user_id: impl Into<String>, method: Option<&str>) -> Event {
        Event::user(UserEventKind::Login, user_id.into(), method)
    }

    /// A `user_signup` of `user_id`, with the signup `method`.
    pub fn user_signup(user_id: impl Into<String>, method: Option<&str>) -> Event {
        Event::user(UserEventKind::Signup, user_id.into(), method)
    }

    /// A `user_logout` of `user_id`, with the `reason` (`manual`, `session_expired`, ...).
    pub fn user_logout(user_id: impl Into<String>, reason: Option<&str>) -> Event {
        Event::user(UserEventKind::Logout, user_id.into(), reason)
    }

    fn user(kind: UserEventKind, user_id: String, method: Option<&str>) -> Event {
        Event::with(Payload::User {
            kind,
            user_id,
            method: method.map(str::to_owned),
        })
    }

    /// Adds a parameter to a custom event (a later value for the same key replaces it).
    /// Other payloads have no parameter maps: `track` then fails with
    /// [`TrackError::InvalidEvent`](super::TrackError::InvalidEvent).
    pub fn param(mut self, key: impl Into<String>, value: impl Into<ParamValue>) -> Event {
        match &mut self.payload {
            Payload::Custom(custom) => custom.set(key.into(), value.into()),
            other => self.misuse = Some(misuse("param", other)),
        }
        self
    }

    /// The user, as `string_params["user_id"]` of a custom event (upstream's Go SDK sends it
    /// as a top-level field, which the envelope does not have).
    pub fn user_id(self, user_id: impl Into<String>) -> Event {
        self.string_param_named("user_id", user_id.into())
    }

    /// The session, as `string_params["session_id"]` of a custom event.
    pub fn session_id(self, session_id: impl Into<String>) -> Event {
        self.string_param_named("session_id", session_id.into())
    }

    fn string_param_named(mut self, field: &'static str, value: String) -> Event {
        match &mut self.payload {
            Payload::Custom(custom) => custom.set(field.to_owned(), ParamValue::String(value)),
            other => self.misuse = Some(misuse(field, other)),
        }
        self
    }

    /// The idempotency key the server deduplicates on (default: a random UUIDv4 set by
    /// `track`). Set it to make a retried `track` of the same fact a duplicate.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Event {
        self.idempotency_key = Some(key.into());
        self
    }

    /// When the event happened, in milliseconds since the Unix epoch (default: when `track`
    /// was called).
    pub fn timestamp_ms(mut self, timestamp_ms: i64) -> Event {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// The envelope's `id` (default: none, the server assigns a UUIDv7).
    pub fn id(mut self, id: impl Into<String>) -> Event {
        self.id = Some(id.into());
        self
    }

    /// The envelope's `correlation_id`, for tracing a request across systems.
    pub fn correlation_id(mut self, correlation_id: impl Into<String>) -> Event {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// The payload's key in the envelope (`custom_event`, `screen_view`, ...).
    pub fn payload_key(&self) -> &'static str {
        self.payload.key()
    }

    /// The first problem that would make the server reject this event for its content, or a
    /// builder call that did not fit the payload: `(field, reason)`.
    pub(crate) fn problem(&self) -> Option<(&'static str, String)> {
        if let Some(m) = &self.misuse {
            return Some((m.field, m.reason.clone()));
        }
        if self.timestamp_ms.is_some_and(|t| t <= 0) {
            return Some(("timestamp_ms", "must be greater than 0".to_owned()));
        }
        let (field, value) = match &self.payload {
            Payload::Custom(c) => ("custom_event.event_name", &c.event_name),
            Payload::ScreenView { screen_name } => ("screen_view.screen_name", screen_name),
            Payload::ButtonTap { button_id, .. } => ("button_tap.button_id", button_id),
            Payload::User { .. } => return None,
        };
        value
            .is_empty()
            .then(|| (field, "must not be empty".to_owned()))
    }
}

fn misuse(field: &'static str, payload: &Payload) -> EventMisuse {
    EventMisuse {
        field,
        reason: format!(
            "only custom events carry parameters; this event is a {}",
            payload.key()
        ),
    }
}

impl Payload {
    pub(crate) fn key(&self) -> &'static str {
        match self {
            Payload::Custom(_) => "custom_event",
            Payload::ScreenView { .. } => "screen_view",
            Payload::ButtonTap { .. } => "button_tap",
            Payload::User { kind, .. } => match kind {
                UserEventKind::Login => "user_login",
                UserEventKind::Signup => "user_signup",
                UserEventKind::Logout => "user_logout",
            },
        }
    }
}

/// The envelope fields the client supplies for every event.
#[derive(Debug)]
pub(crate) struct EnvelopeContext {
    pub(crate) app_id: String,
    pub(crate) device_id: String,
    pub(crate) device_context: DeviceContext,
}

/// Upstream's `DeviceContext`, the fields a server-side SDK knows.
#[derive(Debug, serde::Serialize)]
pub(crate) struct DeviceContext {
    /// `linux/x86_64`: the OS and architecture the SDK runs on.
    pub(crate) os_version: String,
    /// `courier-ingest-rust/0.1.0`.
    pub(crate) sdk_version: String,
}

impl DeviceContext {
    pub(crate) fn of_this_host() -> DeviceContext {
        DeviceContext {
            os_version: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
            sdk_version: concat!("courier-ingest-rust/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// An event with everything `track` fills in, ready to encode.
pub(crate) struct Envelope<'a> {
    pub(crate) event: &'a Event,
    pub(crate) context: &'a EnvelopeContext,
    pub(crate) timestamp_ms: i64,
    pub(crate) idempotency_key: &'a str,
}

impl Serialize for Envelope<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.event;
        let mut map = s.serialize_map(None)?;
        if let Some(id) = &e.id {
            map.serialize_entry("id", id)?;
        }
        map.serialize_entry("app_id", &self.context.app_id)?;
        map.serialize_entry("device_id", &self.context.device_id)?;
        map.serialize_entry("timestamp_ms", &self.timestamp_ms)?;
        if let Some(c) = &e.correlation_id {
            map.serialize_entry("correlation_id", c)?;
        }
        map.serialize_entry("device_context", &self.context.device_context)?;
        map.serialize_entry("idempotency_key", self.idempotency_key)?;
        map.serialize_entry(e.payload.key(), &PayloadBody(&e.payload))?;
        map.end()
    }
}

/// The payload message's fields (the key is written by [`Envelope`]).
struct PayloadBody<'a>(&'a Payload);

impl Serialize for PayloadBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match self.0 {
            // Members in name order, as the server stores them: then it copies the payload
            // as it stands instead of sorting it (`server::lean_batch`).
            Payload::Custom(c) => {
                if !c.bool_params.is_empty() {
                    map.serialize_entry("bool_params", &c.bool_params)?;
                }
                map.serialize_entry("event_name", &c.event_name)?;
                if !c.float_params.is_empty() {
                    map.serialize_entry("float_params", &ProtoDoubles(&c.float_params))?;
                }
                if !c.int_params.is_empty() {
                    map.serialize_entry("int_params", &c.int_params)?;
                }
                if !c.string_params.is_empty() {
                    map.serialize_entry("string_params", &c.string_params)?;
                }
            }
            Payload::ScreenView { screen_name } => {
                map.serialize_entry("screen_name", screen_name)?;
            }
            Payload::ButtonTap {
                button_id,
                screen_name,
            } => {
                map.serialize_entry("button_id", button_id)?;
                if let Some(screen) = screen_name {
                    map.serialize_entry("screen_name", screen)?;
                }
            }
            Payload::User {
                kind,
                user_id,
                method,
            } => {
                if let Some(m) = method {
                    let name = match kind {
                        UserEventKind::Logout => "reason",
                        UserEventKind::Login | UserEventKind::Signup => "method",
                    };
                    map.serialize_entry(name, m)?;
                }
                map.serialize_entry("user_id", user_id)?;
            }
        }
        map.end()
    }
}

/// A `map<string, double>` in protojson: finite values as numbers, the others as the strings
/// protojson defines (serde_json would write `null`, which protojson rejects).
struct ProtoDoubles<'a>(&'a BTreeMap<String, f64>);

impl Serialize for ProtoDoubles<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            if v.is_finite() {
                map.serialize_entry(k, v)?;
            } else if v.is_nan() {
                map.serialize_entry(k, "NaN")?;
            } else if *v > 0.0 {
                map.serialize_entry(k, "Infinity")?;
            } else {
                map.serialize_entry(k, "-Infinity")?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> EnvelopeContext {
        EnvelopeContext {
            app_id: "app".into(),
            device_id: "host-1".into(),
            device_context: DeviceContext {
                os_version: "linux/x86_64".into(),
                sdk_version: "test".into(),
            },
        }
    }

    fn encode(event: &Event) -> serde_json::Value {
        let context = context();
        let envelope = Envelope {
            event,
            context: &context,
            timestamp_ms: 1_700_000_000_000,
            idempotency_key: "k1",
        };
        serde_json::to_value(&envelope).expect("encodes")
    }

    #[test]
    fn custom_event_puts_params_in_typed_maps_and_user_in_string_params() {
        let event = Event::custom("signup")
            .param("plan", "pro")
            .param("seats", 5)
            .param("ratio", 0.5)
            .param("trial", true)
            .user_id("u1")
            .session_id("s1");
        assert_eq!(
            encode(&event),
            json!({
                "app_id": "app",
                "device_id": "host-1",
                "timestamp_ms": 1_700_000_000_000_i64,
                "device_context": {"os_version": "linux/x86_64", "sdk_version": "test"},
                "idempotency_key": "k1",
                "custom_event": {
                    "event_name": "signup",
                    "string_params": {"plan": "pro", "user_id": "u1", "session_id": "s1"},
                    "int_params": {"seats": 5},
                    "float_params": {"ratio": 0.5},
                    "bool_params": {"trial": true}
                }
            })
        );
    }

    /// The payload's members are written in name order, the order the server stores them
    /// in, so that the server copies the payload as it stands instead of sorting it.
    #[test]
    fn payload_members_are_written_in_name_order() {
        let context = context();
        let text = |event: &Event| {
            let envelope = Envelope {
                event,
                context: &context,
                timestamp_ms: 1,
                idempotency_key: "k1",
            };
            String::from_utf8(serde_json::to_vec(&envelope).expect("encodes")).expect("UTF-8")
        };
        let custom = Event::custom("signup")
            .param("plan", "pro")
            .param("seats", 5)
            .param("ratio", 0.5)
            .param("trial", true);
        assert!(
            text(&custom).contains(
                r#""custom_event":{"bool_params":{"trial":true},"event_name":"signup","float_params":{"ratio":0.5},"int_params":{"seats":5},"string_params":{"plan":"pro"}}"#
            ),
            "{}",
            text(&custom)
        );
        for (event, payload) in [
            (
                Event::user_login("u1", Some("email")),
                r#""user_login":{"method":"email","user_id":"u1"}"#,
            ),
            (
                Event::user_logout("u1", Some("manual")),
                r#""user_logout":{"reason":"manual","user_id":"u1"}"#,
            ),
            (
                Event::button_tap("buy", Some("cart")),
                r#""button_tap":{"button_id":"buy","screen_name":"cart"}"#,
            ),
        ] {
            assert!(text(&event).contains(payload), "{}", text(&event));
        }
        assert!(
            text(&custom)
                .contains(r#""device_context":{"os_version":"linux/x86_64","sdk_version":"test"}"#)
        );
    }

    #[test]
    fn last_value_for_a_key_wins_across_maps() {
        let event = Event::custom("e").param("x", 1).param("x", "one");
        let custom = &encode(&event)["custom_event"];
        assert_eq!(custom["string_params"], json!({"x": "one"}));
        assert!(custom.get("int_params").is_none());
    }

    #[test]
    fn non_finite_floats_use_protojson_strings() {
        let event = Event::custom("e")
            .param("a", f64::NAN)
            .param("b", f64::INFINITY)
            .param("c", f64::NEG_INFINITY);
        assert_eq!(
            encode(&event)["custom_event"]["float_params"],
            json!({"a": "NaN", "b": "Infinity", "c": "-Infinity"})
        );
    }

    #[test]
    fn params_on_a_typed_payload_are_reported_not_dropped() {
        let event = Event::screen_view("home").param("x", 1);
        let (field, reason) = event.problem().expect("a problem");
        assert_eq!(field, "param");
        assert!(reason.contains("screen_view"), "{reason}");
        assert_eq!(
            Event::user_login("u", None)
                .user_id("v")
                .problem()
                .map(|p| p.0),
            Some("user_id")
        );
    }

    #[test]
    fn required_names_and_timestamp_are_checked() {
        assert_eq!(
            Event::custom("").problem().map(|p| p.0),
            Some("custom_event.event_name")
        );
        assert_eq!(
            Event::button_tap("", None).problem().map(|p| p.0),
            Some("button_tap.button_id")
        );
        assert_eq!(
            Event::custom("e").timestamp_ms(0).problem().map(|p| p.0),
            Some("timestamp_ms")
        );
        assert_eq!(Event::screen_view("home").problem(), None);
    }

    #[test]
    fn logout_reason_and_optional_fields() {
        let event = Event::user_logout("u1", Some("manual"))
            .id("e-1")
            .correlation_id("c-1");
        let value = encode(&event);
        assert_eq!(
            value["user_logout"],
            json!({"user_id": "u1", "reason": "manual"})
        );
        assert_eq!(value["id"], "e-1");
        assert_eq!(value["correlation_id"], "c-1");
    }
}
