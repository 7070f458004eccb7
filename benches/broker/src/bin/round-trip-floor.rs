//! The floor under any one-in-flight producer on this machine: how many request/answer round
//! trips per second two processes manage over loopback TCP, with nothing done per message.
//!
//! A 1 KiB request and a 20-byte answer (a Danube send and its answer are about that size),
//! one in flight, for `DUR` seconds (default 4) per row, over:
//! - `std`: blocking sockets, a thread per side (no runtime at all);
//! - `tokio`: tokio's multi-thread runtime on both sides, as the broker and its clients run;
//! - `tokio-ct`: tokio's current-thread runtime on both sides;
//! - `h2`: one HTTP/2 stream carrying both directions (the shape of a gRPC streaming send,
//!   without protobuf), multi-thread runtime.
//!
//! ```text
//! target/release/round-trip-floor            # every row, twice, alternating
//! ROUNDS=1 MODES="std h2" target/release/round-trip-floor
//! ```
//!
//! The server half is this binary run again as a child (`round-trip-floor serve MODE PORT`),
//! so client and server are two processes, as a producer and a broker are.
//!
//! `round-trip-floor serve http PORT` is a server only: a bare HTTP/1.1 loop that reads each
//! request (head and `content-length` body) and answers `204` with five short headers, doing
//! nothing else. Driven by `wrk`, it is the floor under a Durable Streams append (issue 19):
//! `wrk -t1 -c1 -s benches/streams/post.lua http://127.0.0.1:PORT/s`.

use std::io::{Read, Write};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REQUEST: usize = 1024;
const ANSWER: usize = 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve") {
        let (mode, port) = (args[2].as_str(), args[3].parse::<u16>().expect("port"));
        return serve(mode, port);
    }
    let duration = Duration::from_secs_f64(
        std::env::var("DUR")
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or(4.0),
    );
    let rounds: u32 = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let modes = std::env::var("MODES").unwrap_or_else(|_| "std tokio tokio-ct h2".into());
    println!("| round | transport | round trips/s |");
    println!("|---:|---|---:|");
    for round in 1..=rounds {
        for mode in modes.split_whitespace() {
            let rate = measure(mode, duration);
            println!("| {round} | {mode} | {rate:.0} |");
        }
    }
}

/// Starts the server child on a free port, runs the client against it, stops the child.
fn measure(mode: &str, duration: Duration) -> f64 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut server = ChildGuard(
        Command::new(std::env::current_exe().expect("own path"))
            .args(["serve", mode, &port.to_string()])
            .spawn()
            .expect("start the server half"),
    );
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the {mode} server did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let trips = match mode {
        "std" => std_client(&addr, duration),
        "tokio" => multi_thread().block_on(tokio_client(&addr, duration)),
        "tokio-ct" => current_thread().block_on(tokio_client(&addr, duration)),
        "h2" => multi_thread().block_on(h2_client(&addr, duration)),
        other => panic!("unknown mode {other:?}: std, tokio, tokio-ct or h2"),
    };
    let _ = server.0.kill();
    trips as f64 / duration.as_secs_f64()
}

/// Kills the server half however the client ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn serve(mode: &str, port: u16) {
    let addr = format!("127.0.0.1:{port}");
    match mode {
        "std" => std_server(&addr),
        "tokio" => multi_thread().block_on(tokio_server(&addr)),
        "tokio-ct" => current_thread().block_on(tokio_server(&addr)),
        "h2" => multi_thread().block_on(h2_server(&addr)),
        "http" => multi_thread().block_on(http_server(&addr)),
        other => panic!("unknown mode {other:?}"),
    }
}

fn std_server(addr: &str) {
    let listener = std::net::TcpListener::bind(addr).expect("bind");
    for tcp in listener.incoming() {
        let Ok(mut tcp) = tcp else { continue };
        let _ = tcp.set_nodelay(true);
        std::thread::spawn(move || {
            let mut request = [0u8; REQUEST];
            while tcp.read_exact(&mut request).is_ok() && tcp.write_all(&[1; ANSWER]).is_ok() {}
        });
    }
}

fn std_client(addr: &str, duration: Duration) -> u64 {
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (request, mut answer) = ([7u8; REQUEST], [0u8; ANSWER]);
    let (start, mut trips) = (Instant::now(), 0);
    while start.elapsed() < duration {
        tcp.write_all(&request).expect("send");
        tcp.read_exact(&mut answer).expect("answer");
        trips += 1;
    }
    trips
}

async fn tokio_server(addr: &str) {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    while let Ok((mut tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let mut request = [0u8; REQUEST];
            while tcp.read_exact(&mut request).await.is_ok()
                && tcp.write_all(&[1; ANSWER]).await.is_ok()
            {}
        });
    }
}

async fn tokio_client(addr: &str, duration: Duration) -> u64 {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (request, mut answer) = ([7u8; REQUEST], [0u8; ANSWER]);
    let (start, mut trips) = (Instant::now(), 0);
    while start.elapsed() < duration {
        tcp.write_all(&request).await.expect("send");
        tcp.read_exact(&mut answer).await.expect("answer");
        trips += 1;
    }
    trips
}

/// Each stream's request body is a run of 1 KiB messages; each whole one gets a 20-byte answer
/// on the response body.
async fn h2_server(addr: &str) {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    while let Ok((tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut connection) = h2::server::handshake(tcp).await else {
                return;
            };
            while let Some(Ok((request, mut respond))) = connection.accept().await {
                tokio::spawn(async move {
                    let mut body = request.into_body();
                    let Ok(mut answers) = respond.send_response(http::Response::new(()), false)
                    else {
                        return;
                    };
                    let mut unanswered = 0;
                    while let Some(Ok(chunk)) = body.data().await {
                        let _ = body.flow_control().release_capacity(chunk.len());
                        unanswered += chunk.len();
                        while unanswered >= REQUEST {
                            unanswered -= REQUEST;
                            if answers
                                .send_data(Bytes::from_static(&[1; ANSWER]), false)
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                });
            }
        });
    }
}

async fn h2_client(addr: &str, duration: Duration) -> u64 {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    let driver = tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::post("http://floor/round-trip")
        .body(())
        .expect("request");
    let (response, mut requests) = client.send_request(request, false).expect("stream");
    let mut answers = response.await.expect("response").into_body();
    let message = Bytes::from(vec![7u8; REQUEST]);
    let (start, mut trips, mut received) = (Instant::now(), 0, 0);
    while start.elapsed() < duration {
        requests.send_data(message.clone(), false).expect("send");
        while received < ANSWER {
            let chunk = answers.data().await.expect("an answer").expect("answer");
            let _ = answers.flow_control().release_capacity(chunk.len());
            received += chunk.len();
        }
        received -= ANSWER;
        trips += 1;
    }
    driver.abort();
    trips
}

/// Answers every HTTP/1.1 request with the same `204`; reads heads up to 8 KiB and bodies
/// announced by `content-length`.
async fn http_server(addr: &str) {
    const ANSWER: &[u8] =
        b"HTTP/1.1 204 No Content\r\nstream-next-offset: 0000000000000001_0000000000000100\r\n\
        etag: \"floor\"\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\n\
        date: Thu, 03 Dec 2026 00:00:00 GMT\r\n\r\n";
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    while let Ok((mut tcp, _)) = listener.accept().await {
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let mut buffer = Vec::with_capacity(8192);
            loop {
                let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                    if buffer.len() >= 8192 || !read_more(&mut tcp, &mut buffer).await {
                        return;
                    }
                    continue;
                };
                let whole = head_end + 4 + content_length(&buffer[..head_end]);
                while buffer.len() < whole {
                    if !read_more(&mut tcp, &mut buffer).await {
                        return;
                    }
                }
                buffer.drain(..whole);
                if tcp.write_all(ANSWER).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn read_more(tcp: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match tcp.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}
