//! A `courier` service process for the checkers: started on a fixed loopback port, killed with
//! SIGKILL and started again on the same port (a fault), stopped cleanly with SIGTERM at the end.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use courier::impls::http::HttpTransport;
use courier::traits::transport::{Method, Request, RequestTransport};
use tokio::process::{Child, Command};

/// How long a (re)started process may take to answer `/health`.
const READY: Duration = Duration::from_secs(30);

/// One `courier` process.
pub(crate) struct Service {
    args: Vec<String>,
    env: Vec<(String, String)>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
    starts: usize,
}

pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

impl Service {
    /// Runs `courier <args> --addr 127.0.0.1:<free port>` with its output in `log`, and waits
    /// until `/health` answers 200.
    pub(crate) async fn start(args: &[&str], env: &[(&str, &str)], log: &Path) -> Service {
        let mut service = Service {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            port: free_port(),
            log: log.to_owned(),
            child: None,
            starts: 0,
        };
        service.spawn().await.expect("service starts");
        service
    }

    pub(crate) fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    async fn spawn(&mut self) -> Result<(), String> {
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("log {}: {e}", self.log.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_courier"))
            .args(&self.args)
            .args(["--addr", &self.addr().to_string()])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("courier does not start: {e}"))?;
        let http = HttpTransport::new(&format!("http://{}", self.addr()))
            .map_err(|e| e.to_string())?
            .with_timeout(Duration::from_secs(2));
        let deadline = tokio::time::Instant::now() + READY;
        loop {
            if let Ok(r) = http.send(Request::new(Method::Get, "/health")).await
                && r.status == 200
            {
                self.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "courier {:?} exited during start {}: {status}\n{}",
                    self.args,
                    self.starts,
                    self.log_tail()
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "courier {:?} not healthy after {READY:?}",
                    self.args
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, a short pause, then the same command on the same port.
    pub(crate) async fn kill_and_restart(&mut self, down: Duration) -> Result<(), String> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
        tokio::time::sleep(down).await;
        self.spawn().await
    }

    /// SIGTERM and wait for a clean exit (SIGKILL after 15 s); returns whether it exited cleanly.
    pub(crate) async fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => {
                let _ = child.kill().await;
                false
            }
        }
    }

    /// The last lines of the process's output, for failure messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}
