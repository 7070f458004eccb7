//! [`GrpcTransport`]: gRPC calls through the byte-level [`RequestTransport`] trait, for SDKs
//! that encode their own messages and must also run over an in-memory transport.

use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes};
use courier_traits::transport::{
    Headers, Method, Request, RequestTransport, Response, ResponseBody, TransportError,
};
use futures::StreamExt;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::{Code, Status};

use super::{Call, GrpcChannels, GrpcError, http_status, normalise_url};

/// A [`RequestTransport`] that makes gRPC calls to one server.
///
/// A request is `POST` to a method path (`/danube.Discovery/TopicLookup`) with one encoded
/// protobuf message as its body; headers become metadata (ASCII values only), and its
/// `timeout` (else the transport's default) is the call's deadline. The response:
///
/// - the server answered with messages: status 200, its initial metadata as headers, and a
///   [`ResponseBody::Stream`] with one chunk per message (a unary call has one); a non-OK
///   status the server ends with arrives as the stream's error item;
/// - the server refused at once with a status: the HTTP status gRPC gateways use for its code
///   ([`http_status`]), headers `grpc-status` and `grpc-message` (and the status's metadata)
///   and an empty body. Classify by `grpc-status` ([`GrpcError::code`]'s table), not the HTTP
///   status;
/// - `Err` when no answer came: connect failure, deadline, broken connection.
#[derive(Clone, Debug)]
pub struct GrpcTransport {
    channels: GrpcChannels,
    url: String,
    default_deadline: Option<Duration>,
}

impl GrpcTransport {
    /// Calls to the server at `url`, over a channel from `channels`.
    pub fn new(channels: GrpcChannels, url: &str) -> Result<GrpcTransport, GrpcError> {
        Ok(GrpcTransport {
            channels,
            url: normalise_url(url)?,
            default_deadline: None,
        })
    }

    /// The deadline of requests that set no `timeout` (none by default: server streams may
    /// be long-lived).
    pub fn default_deadline(mut self, deadline: Option<Duration>) -> GrpcTransport {
        self.default_deadline = deadline;
        self
    }

    /// Adds `headers` to a request's metadata.
    fn add_metadata(metadata: &mut MetadataMap, headers: &Headers) -> Result<(), TransportError> {
        for (name, value) in headers {
            let key = AsciiMetadataKey::from_bytes(name.as_bytes()).map_err(|_| {
                TransportError::Protocol(format!(
                    "header {name:?} is not a gRPC ASCII metadata name (binary `-bin` ones are not supported)"
                ))
            })?;
            let value = AsciiMetadataValue::try_from(value.as_str()).map_err(|_| {
                TransportError::Protocol(format!("header {name:?} has a non-ASCII value"))
            })?;
            metadata.append(key, value);
        }
        Ok(())
    }
}

#[async_trait]
impl RequestTransport for GrpcTransport {
    async fn send(&self, request: Request) -> Result<Response, TransportError> {
        if request.method != Method::Post {
            return Err(TransportError::Protocol(format!(
                "gRPC calls are POST, not {}",
                request.method
            )));
        }
        let path = PathAndQuery::try_from(request.target.as_str()).map_err(|e| {
            TransportError::Protocol(format!("method path {:?}: {e}", request.target))
        })?;
        let call =
            Call::new(self.url.clone()).deadline_opt(request.timeout.or(self.default_deadline));
        let mut grpc_request = call.request(request.body);
        GrpcTransport::add_metadata(grpc_request.metadata_mut(), &request.headers)?;
        let mut grpc = tonic::client::Grpc::new(self.channels.channel(&self.url)?);
        let started = call.server_streaming(async {
            grpc.ready().await.map_err(Status::from_error)?;
            grpc.server_streaming(grpc_request, path, BytesCodec).await
        });
        match started.await {
            Ok(messages) => Ok(Response {
                status: 200,
                headers: headers_of(messages.metadata().clone()),
                body: ResponseBody::Stream(
                    messages.map(|m| m.map_err(TransportError::from)).boxed(),
                ),
            }),
            Err(GrpcError::Status {
                code,
                message,
                retry_after,
            }) => Ok(refusal(code, &message, retry_after)),
            Err(other) => Err(other.into()),
        }
    }
}

fn headers_of(metadata: MetadataMap) -> Headers {
    metadata
        .into_headers()
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

/// The response for a status the server answered with instead of messages.
fn refusal(code: Code, message: &str, retry_after: Option<Duration>) -> Response {
    let mut headers: Headers = vec![
        ("grpc-status".to_owned(), (code as i32).to_string()),
        ("grpc-message".to_owned(), message.to_owned()),
    ];
    if let Some(after) = retry_after {
        headers.push((
            "grpc-retry-pushback-ms".to_owned(),
            after.as_millis().to_string(),
        ));
    }
    Response {
        status: http_status(code),
        headers,
        body: ResponseBody::Full(Bytes::new()),
    }
}

/// Messages as opaque bytes: the caller encodes and decodes them.
#[derive(Clone, Copy, Debug, Default)]
struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> Self::Encoder {
        BytesCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesCodec
    }
}

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
