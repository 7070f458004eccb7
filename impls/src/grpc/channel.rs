//! [`GrpcChannel`]: what [`GrpcChannels`](super::GrpcChannels) hands out and generated tonic
//! clients call through: a [`DirectChannel`] for `http://` (and in-process) servers, tonic's
//! own `Channel` for `https://` ones (its TLS stack).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use courier_traits::error::BoxError;
use futures::future::BoxFuture;
use http_body::{Body, Frame};
use tonic::codegen::Service;
use tonic::codegen::http::{Request, Response};
use tonic::transport::Channel;

use super::direct::{DirectBody, DirectChannel};

/// A channel to one server, for generated clients (`XClient::new(channel)`). Cheap to clone;
/// clones share the connection.
///
/// Unary and server-streaming calls (all that Danube's protocol has) are complete. On
/// `http://` servers a **client- or bidi-streaming** call writes the rest of its request
/// stream only while its response is polled (no task per call): a caller that fills a
/// bounded request channel before it reads any reply waits forever. Read replies while
/// sending, or send from a task of its own.
#[derive(Clone, Debug)]
pub struct GrpcChannel {
    route: Route,
}

#[derive(Clone, Debug)]
enum Route {
    Direct(DirectChannel),
    Tonic(Channel),
}

impl GrpcChannel {
    pub(crate) fn direct(channel: DirectChannel) -> GrpcChannel {
        GrpcChannel {
            route: Route::Direct(channel),
        }
    }

    pub(crate) fn tonic(channel: Channel) -> GrpcChannel {
        GrpcChannel {
            route: Route::Tonic(channel),
        }
    }
}

impl Service<Request<tonic::body::Body>> for GrpcChannel {
    type Response = Response<GrpcBody>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<GrpcBody>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match &mut self.route {
            // Readiness is awaited inside the call (h2 has room for a stream or not).
            Route::Direct(_) => Poll::Ready(Ok(())),
            Route::Tonic(channel) => channel.poll_ready(cx).map_err(BoxError::from),
        }
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        match &mut self.route {
            Route::Direct(channel) => {
                let sending = channel.clone().send(request);
                Box::pin(async move {
                    let answer = sending.await?;
                    Ok(answer.map(|body| GrpcBody {
                        inner: BodyKind::Direct(body),
                    }))
                })
            }
            Route::Tonic(channel) => {
                let sending = channel.call(request);
                Box::pin(async move {
                    let answer = sending.await?;
                    Ok(answer.map(|body| GrpcBody {
                        inner: BodyKind::Tonic(body),
                    }))
                })
            }
        }
    }
}

/// The body of an answer on a [`GrpcChannel`].
#[derive(Debug)]
pub struct GrpcBody {
    inner: BodyKind,
}

#[derive(Debug)]
enum BodyKind {
    Direct(DirectBody),
    Tonic(tonic::body::Body),
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().inner {
            BodyKind::Direct(body) => Pin::new(body).poll_frame(cx),
            BodyKind::Tonic(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(BoxError::from))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            BodyKind::Direct(body) => body.is_end_stream(),
            BodyKind::Tonic(body) => body.is_end_stream(),
        }
    }
}
