//! The server as a child process of this binary (`ingest-bench serve`), so that its CPU time
//! is its own and the load generator's is not counted in it.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long the server may take to start, or to answer one question (a `verify` reads the
/// whole stream: a million records is seconds on the slowest storage).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// A running server; killed when dropped without [`ServerProcess::stop`].
pub(crate) struct ServerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Where it listens (`127.0.0.1:PORT`).
    pub(crate) addr: String,
    /// Its process id, for its CPU time.
    pub(crate) pid: u32,
}

impl ServerProcess {
    /// Starts the server on `spec` with `apps` (`APP=KEY`) and waits until it listens.
    pub(crate) async fn start(spec: &str, apps: &[String]) -> Result<ServerProcess, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg(spec)
            .args(apps)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the server process: {e}"))?;
        let pid = child.id().ok_or("server process exited at once")?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let mut server = ServerProcess {
            child,
            stdin,
            stdout,
            addr: String::new(),
            pid,
        };
        let first = server.read_line().await?;
        server.addr = first
            .strip_prefix("listening ")
            .ok_or_else(|| format!("server said {first:?} instead of listening"))?
            .to_owned();
        Ok(server)
    }

    async fn read_line(&mut self) -> Result<String, String> {
        match tokio::time::timeout(ANSWER_TIMEOUT, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => Err("server process exited".into()),
            Ok(Err(e)) => Err(format!("server stdout: {e}")),
            Err(_) => Err(format!("server silent for {ANSWER_TIMEOUT:?}")),
        }
    }

    /// Sends one command line and returns the answer line.
    pub(crate) async fn ask(&mut self, command: &str) -> Result<String, String> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .map_err(|e| format!("server stdin: {e}"))?;
        let answer = self.read_line().await?;
        match answer.strip_prefix("error ") {
            Some(error) => Err(format!("server: {error}")),
            None => Ok(answer),
        }
    }

    /// Its CPU time so far.
    pub(crate) fn cpu(&self) -> Result<Duration, String> {
        crate::proc_cpu::cpu_time(self.pid)
    }

    /// Asks it to quit and waits (bounded) for it to exit.
    pub(crate) async fn stop(mut self) -> Result<(), String> {
        let _ = self.stdin.write_all(b"quit\n").await;
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!("server exited with {status}")),
            Ok(Err(e)) => Err(format!("waiting for the server: {e}")),
            Err(_) => Err("server did not exit within 15 s (killed)".into()),
        }
    }
}
