//! The Durable Streams client, written against [`RequestTransport`] (an HTTP implementation is
//! [`HttpTransport`]; tests can use an in-process one).
//!
//! [`RequestTransport`]: courier_traits::transport::RequestTransport
//! [`HttpTransport`]: courier_impls::http::HttpTransport
//! [`RetryPolicy`]: courier_traits::retry::RetryPolicy
//!
//! * [`StreamsClient`]: create, append, close, read, head, delete;
//! * [`StreamsClient::subscribe`]: catch-up then live (long-poll or SSE) as an async `Stream`,
//!   tracking the offset and resuming after a lost connection or a server restart under the
//!   client's [`RetryPolicy`], with no gap and no duplicate;
//! * [`Producer`]: batches concurrent appends into one request each; optionally an idempotent
//!   producer (id, epoch, seq) whose automatic retries never duplicate.
//!
//! ```no_run
//! # async fn demo() -> Result<(), courier_streams::client::ClientError> {
//! use courier_streams::client::{CreateOptions, LiveMode, StreamsClient};
//! use futures::StreamExt;
//!
//! let client = StreamsClient::http("http://127.0.0.1:4437")?;
//! client.create("orders", CreateOptions::content_type("application/json")).await?;
//! client.append("orders", "application/json", r#"{"id":1}"#).await?;
//! let mut live = client.subscribe("orders", None, LiveMode::LongPoll);
//! while let Some(chunk) = live.next().await {
//!     let chunk = chunk?;
//!     println!("{} bytes, next offset {}", chunk.data.len(), chunk.next_offset);
//! }
//! # Ok(()) }
//! ```

mod error;
mod producer;
mod streams_client;
mod subscribe;

pub use error::ClientError;
pub use producer::{AppendAck, Producer, ProducerBuilder};
pub use streams_client::{CreateOptions, Created, ReadResult, StreamMeta, StreamsClient};
pub use subscribe::{Chunk, LiveMode, Subscription};
