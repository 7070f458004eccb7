//! The SDK over its default transport (`HttpTransport`, built from the endpoint) against a
//! minimal HTTP/1.1 responder on loopback: the path, the headers and a gzip body as they cross
//! a real socket. The responder stands in for `courier ingest`, which does not exist yet.

#![cfg(feature = "http")]

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use courier_ingest::sdk::{Compression, Event, IngestClient};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn serve(stream: TcpStream, seen: Arc<Mutex<Vec<Received>>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        let received = Received {
            request_line: request_line.trim_end().to_owned(),
            headers,
            body,
        };
        let answer = r#"{"acceptedCount":3,"rejectedCount":0,"results":[]}"#;
        seen.lock().expect("lock").push(received);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        reader.get_mut().write_all(response.as_bytes()).await?;
    }
}

#[tokio::test]
async fn delivers_over_http_to_the_batch_path_with_key_and_gzip() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server_seen = Arc::clone(&seen);
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, Arc::clone(&server_seen)));
        }
    });
    let key = "0123456789abcdef".repeat(4);
    let client = IngestClient::builder(format!("http://{addr}"), key.as_str(), "app-1")
        .compression(Compression::Gzip)
        .device_id("host-a")
        .build()
        .expect("client");
    for n in 0..3 {
        client
            .track(Event::custom("http").param("n", n))
            .expect("tracked");
    }
    tokio::time::timeout(Duration::from_secs(10), client.flush())
        .await
        .expect("flush within 10 s")
        .expect("flushed");
    let report = client.close().await;
    server.abort();
    assert_eq!((report.delivered, report.failed), (3, 0));

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.request_line, "POST /v1/events/batch HTTP/1.1");
    assert_eq!(request.header("x-api-key"), Some(key.as_str()));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("content-encoding"), Some("gzip"));
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&request.body[..])
        .read_to_end(&mut json)
        .expect("gzip body");
    let body: serde_json::Value = serde_json::from_slice(&json).expect("json");
    let events = body["events"].as_array().expect("events");
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["device_id"], "host-a");
    assert_eq!(events[2]["custom_event"]["int_params"]["n"], 2);
}
