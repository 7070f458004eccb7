//! The schema registry (spec §4): `danube_schema.SchemaRegistry`, its state shared by every
//! node through the stream `broker/schemas`, real compatibility checks, and the checks a
//! topic bound to a subject applies to its producers and messages.
//!
//! - Subjects have one global dense schema id (1, 2, … in order of first registration) shared
//!   by their versions 1, 2, … (never reused, also after a deletion).
//! - Types `bytes`, `string`, `number`, `avro`, `json_schema`, `protobuf`; modes `none`,
//!   `backward` (default), `forward`, `full`; both case-insensitive ([`types`]).
//! - A definition must compile (JSON Schema) or parse (Avro); its fingerprint is the SHA-256
//!   hex of its canonical form, and registering a live fingerprint again returns its version
//!   (`is_new_version = false`). Definitions come back exactly as registered
//!   ([`definition`]).
//! - Compatibility: [`compat`] (Avro resolution, a recursive JSON Schema walk; Protobuf
//!   stored unchecked, so only mode `none` takes a new version of it).
//! - State: [`store::SchemaRegistry`] folds `broker/schemas` ([`events`]); every change is
//!   fenced by the storage's writer sequence, so racing registrations make one version.
//! - Topics ([`topics`]): the first producer with a schema reference binds its topic to the
//!   subject; the `enforce` policy refuses messages whose `schema_id`/`schema_version` are not
//!   a live version of it, and, with payload validation, payloads the schema rejects; `warn`
//!   logs and counts them.
//!
//! Topic bindings are registry events (in `broker/schemas`), not catalog events: a topic can
//! be configured by an admin before it exists.

mod avro_bounds;
pub mod compat;
pub mod definition;
mod error;
pub mod events;
pub mod service;
pub mod state;
pub mod store;
pub mod topics;
pub mod types;

pub use error::RegistryError;
pub use events::SCHEMAS_STREAM;
pub use service::RegistryService;
pub use store::{Registered, Registration, SchemaRegistry};
pub use topics::TopicSchemas;
pub use types::{CompatibilityMode, SchemaType, ValidationPolicy};

#[cfg(test)]
mod tests;
