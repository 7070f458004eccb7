//! The checker's streams operations over HTTP, one transport per node (through its proxy),
//! outcomes read as `http_outcome` says.

use std::time::Duration;

use async_trait::async_trait;
use courier::impls::http::HttpTransport;
use courier::traits::TransportError;
use courier::traits::transport::{Method, Request, RequestTransport, Response};
use courier_testkit::checker::Outcome;
use courier_testkit::checker::streams::{ReadResult, StreamOp, StreamRet, StreamsApi};

use super::http_outcome::{refused_or_unknown, transport_error, transports};

/// Per request; a frozen server makes requests wait this long and end as `info`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pages one read follows at most.
const MAX_PAGES: usize = 1_000;

pub(crate) struct HttpStreams {
    nodes: Vec<HttpTransport>,
    /// Keeps the names of this run apart from others on a shared server.
    prefix: String,
}

impl HttpStreams {
    pub(crate) fn new(addrs: &[std::net::SocketAddr], prefix: &str) -> HttpStreams {
        HttpStreams {
            nodes: transports(addrs, REQUEST_TIMEOUT),
            prefix: prefix.to_owned(),
        }
    }

    fn path(&self, stream: &str) -> String {
        format!("/v1/stream/{}-{stream}", self.prefix)
    }
}

fn record(id: &str) -> String {
    serde_json::json!({ "id": id }).to_string()
}

impl HttpStreams {
    async fn send(&self, node: usize, request: Request) -> Result<Response, TransportError> {
        self.nodes[node % self.nodes.len()].send(request).await
    }

    async fn read(&self, node: usize, stream: &str, from: Option<&str>) -> Outcome<StreamRet> {
        let mut offset = from.unwrap_or("-1").to_owned();
        let mut records = Vec::new();
        for page in 0..MAX_PAGES {
            let target = format!("{}?offset={offset}", self.path(stream));
            let response = match self.send(node, Request::new(Method::Get, target)).await {
                Ok(r) => r,
                Err(e) => return Outcome::Info(e.to_string()),
            };
            // 404: no such stream; 410: deleted (while forks of it still read its records).
            if matches!(response.status, 404 | 410) && page == 0 {
                return Outcome::Ok(StreamRet::Read(None));
            }
            if response.status != 200 {
                return refused_or_unknown(response.status, "");
            }
            let next = response.header("stream-next-offset").map(str::to_owned);
            let up_to_date = response.header("stream-up-to-date") == Some("true");
            let closed = response.header("stream-closed") == Some("true");
            let body = match response.body.collect(64 << 20).await {
                Ok(b) => b,
                Err(e) => return Outcome::Info(e.to_string()),
            };
            let messages: Vec<serde_json::Value> = match serde_json::from_slice(&body) {
                Ok(m) => m,
                Err(e) => return Outcome::Info(format!("read body is not a JSON array: {e}")),
            };
            for message in messages {
                match message["id"].as_str() {
                    Some(id) => records.push(id.to_owned()),
                    None => return Outcome::Info(format!("record without id: {message}")),
                }
            }
            let Some(next) = next else {
                return Outcome::Info("read without Stream-Next-Offset".into());
            };
            if up_to_date || closed {
                return Outcome::Ok(StreamRet::Read(Some(ReadResult {
                    records,
                    next_offset: next,
                    closed,
                })));
            }
            offset = next;
        }
        Outcome::Info(format!("no tail after {MAX_PAGES} pages"))
    }
}

#[async_trait]
impl StreamsApi for HttpStreams {
    fn nodes(&self) -> usize {
        self.nodes.len()
    }

    async fn call(&self, node: usize, op: &StreamOp) -> Outcome<StreamRet> {
        let request = match op {
            StreamOp::Read { stream, from } => {
                return self.read(node, stream, from.as_deref()).await;
            }
            StreamOp::Create {
                stream,
                config,
                init,
            } => {
                let mut request = Request::new(Method::Put, self.path(stream))
                    .header("content-type", "application/json")
                    .body(record(init));
                if *config == 1 {
                    request = request.header("stream-ttl", "86400");
                }
                request
            }
            StreamOp::Append {
                stream,
                record: id,
                producer,
            } => {
                let mut request = Request::new(Method::Post, self.path(stream))
                    .header("content-type", "application/json")
                    .body(record(id));
                if let Some(stamp) = producer {
                    request = request
                        .header("producer-id", &stamp.id)
                        .header("producer-epoch", stamp.epoch.to_string())
                        .header("producer-seq", stamp.seq.to_string());
                }
                request
            }
            StreamOp::Close { stream } => {
                Request::new(Method::Post, self.path(stream)).header("stream-closed", "true")
            }
            StreamOp::Delete { stream } => Request::new(Method::Delete, self.path(stream)),
            StreamOp::Fork { stream, source } => Request::new(Method::Put, self.path(stream))
                .header("stream-forked-from", self.path(source)),
        };
        let response = match self.send(node, request).await {
            Ok(r) => r,
            Err(e) => return transport_error(e),
        };
        if !(200..300).contains(&response.status) {
            return refused_or_unknown(response.status, "");
        }
        match op {
            StreamOp::Create { .. } => Outcome::Ok(StreamRet::Created {
                created: response.status == 201,
            }),
            StreamOp::Append { producer, .. } => match response.header("stream-next-offset") {
                Some(next) => Outcome::Ok(StreamRet::Appended {
                    next_offset: next.to_owned(),
                    duplicate: producer.is_some() && response.status == 204,
                }),
                None => Outcome::Info("append acknowledged without Stream-Next-Offset".into()),
            },
            _ => Outcome::Ok(StreamRet::Done),
        }
    }
}
