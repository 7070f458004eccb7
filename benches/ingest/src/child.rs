//! The server in a process of its own, so that its CPU time is its own and the load
//! generator's is not counted in it: this binary's `serve` (the default), or the `courier
//! ingest` subcommand of a built `courier` binary (`SERVER_BIN`). Both run the same
//! `IngestServer`; the first also answers the bench's questions about its streams, which is
//! the only way to read a memory storage of another process.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use courier::impls::http::HttpTransport;
use courier::storage::StreamStorage;
use courier::traits::transport::{Method, Request, RequestTransport};
use courier_ingest::server::KeyDigest;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::serve::RATE_LIMIT;

/// How long the server may take to start, or to answer one question (a `verify` reads the
/// whole stream: a million records is seconds on the slowest storage).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// How the bench asks about the server's streams.
enum Control {
    /// The bench's own `serve`: questions on its stdin, answers on its stdout.
    Bench {
        stdin: ChildStdin,
        stdout: Lines<BufReader<ChildStdout>>,
    },
    /// `courier ingest`: the stream is read from the storage directly, unless it is the
    /// server's own memory. The directory holds its keys file.
    Courier {
        storage: Option<Arc<dyn StreamStorage>>,
        _dir: tempfile::TempDir,
    },
}

/// A running server; killed when dropped without [`ServerProcess::stop`].
pub(crate) struct ServerProcess {
    child: Child,
    control: Control,
    /// Where it listens (`127.0.0.1:PORT`).
    pub(crate) addr: String,
    /// Its process id, for its CPU time.
    pub(crate) pid: u32,
}

impl ServerProcess {
    /// Starts the server on `spec` with `apps` (`(app, key)`) and waits until it listens:
    /// `courier ingest` of `courier_bin` if given, else this binary's `serve`.
    pub(crate) async fn start(
        spec: &str,
        apps: &[(&str, &str)],
        courier_bin: Option<&str>,
    ) -> Result<ServerProcess, String> {
        match courier_bin {
            Some(bin) => Self::start_courier(bin, spec, apps).await,
            None => Self::start_bench(spec, apps).await,
        }
    }

    async fn start_bench(spec: &str, apps: &[(&str, &str)]) -> Result<ServerProcess, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg(spec)
            .args(apps.iter().map(|(app, key)| format!("{app}={key}")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the server process: {e}"))?;
        let pid = child.id().ok_or("server process exited at once")?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let first = read_line(&mut stdout).await?;
        let addr = first
            .strip_prefix("listening ")
            .ok_or_else(|| format!("server said {first:?} instead of listening"))?
            .to_owned();
        Ok(ServerProcess {
            child,
            control: Control::Bench { stdin, stdout },
            addr,
            pid,
        })
    }

    async fn start_courier(
        bin: &str,
        spec: &str,
        apps: &[(&str, &str)],
    ) -> Result<ServerProcess, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let keys_file = dir.path().join("keys.json");
        let entries: Vec<serde_json::Value> = apps
            .iter()
            .map(|(app, key)| {
                serde_json::json!({
                    "app_id": app,
                    "name": "bench",
                    "sha256": KeyDigest::of_key(key).to_hex(),
                })
            })
            .collect();
        std::fs::write(&keys_file, serde_json::Value::from(entries).to_string())
            .map_err(|e| format!("keys file: {e}"))?;
        // A free port now; the server binds it a moment later (loopback, nothing else races).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let rate = RATE_LIMIT.to_string();
        let child = Command::new(bin)
            .args(["ingest", "--storage", spec, "--addr", &addr])
            .arg("--keys-file")
            .arg(&keys_file)
            .args(["--rate-limit", &rate, "--rate-burst", &rate])
            .env("COURIER_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {bin} ingest: {e}"))?;
        let pid = child.id().ok_or("courier ingest exited at once")?;
        wait_healthy(&addr).await?;
        let storage = match spec {
            "memory" => None,
            _ => Some(crate::backends::open(spec).await?),
        };
        Ok(ServerProcess {
            child,
            control: Control::Courier { storage, _dir: dir },
            addr,
            pid,
        })
    }

    /// The stream of `app`: `records=N`, or with `expected` the check of `seq` 0..expected
    /// (see `stream_check`). `None` when it cannot be read (a `courier ingest` on memory).
    pub(crate) async fn check(
        &mut self,
        app: &str,
        expected: Option<u64>,
    ) -> Result<Option<String>, String> {
        match &mut self.control {
            Control::Bench { stdin, stdout } => {
                let command = match expected {
                    None => format!("count {app}\n"),
                    Some(n) => format!("verify {app} {n}\n"),
                };
                stdin
                    .write_all(command.as_bytes())
                    .await
                    .map_err(|e| format!("server stdin: {e}"))?;
                let answer = read_line(stdout).await?;
                match answer.strip_prefix("error ") {
                    Some(error) => Err(format!("server: {error}")),
                    None => Ok(Some(answer)),
                }
            }
            Control::Courier { storage: None, .. } => Ok(None),
            Control::Courier {
                storage: Some(storage),
                ..
            } => crate::stream_check::check(&**storage, app, expected)
                .await
                .map(Some),
        }
    }

    /// Its CPU time so far.
    pub(crate) fn cpu(&self) -> Result<Duration, String> {
        crate::proc_cpu::cpu_time(self.pid)
    }

    /// Asks it to stop (`quit`, or SIGTERM for `courier ingest`) and waits, bounded.
    pub(crate) async fn stop(mut self) -> Result<(), String> {
        match &mut self.control {
            Control::Bench { stdin, .. } => {
                let _ = stdin.write_all(b"quit\n").await;
            }
            Control::Courier { .. } => {
                let pid = libc::pid_t::try_from(self.pid).map_err(|e| e.to_string())?;
                // SAFETY: kill has no memory effects; the pid is our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("server exited with {status}")),
            Ok(Err(e)) => Err(format!("waiting for the server: {e}")),
            Err(_) => Err("server did not exit within 15 s (killed)".into()),
        }
    }
}

async fn read_line(lines: &mut Lines<BufReader<ChildStdout>>) -> Result<String, String> {
    match tokio::time::timeout(ANSWER_TIMEOUT, lines.next_line()).await {
        Ok(Ok(Some(line))) => Ok(line),
        Ok(Ok(None)) => Err("server process exited".into()),
        Ok(Err(e)) => Err(format!("server stdout: {e}")),
        Err(_) => Err(format!("server silent for {ANSWER_TIMEOUT:?}")),
    }
}

/// Polls `GET /health` until it answers 200, for at most 20 s.
async fn wait_healthy(addr: &str) -> Result<(), String> {
    let http = HttpTransport::new(&format!("http://{addr}"))
        .map_err(|e| format!("transport: {e}"))?
        .with_timeout(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(response) = http.send(Request::new(Method::Get, "/health")).await
            && response.status == 200
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("courier ingest on {addr} not healthy within 20 s"))
}
