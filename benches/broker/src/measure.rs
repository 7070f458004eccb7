//! What every case measures: send stamps carried in the payload, latency percentiles and the
//! CPU time a server process has used.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The size of every benchmark message.
pub const MESSAGE_BYTES: usize = 1024;

/// One clock for producers and consumers (they share this process), so a payload's stamp and
/// its receipt compare directly.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A 1 KiB payload whose first 8 bytes are the send time.
pub fn stamped_payload() -> Vec<u8> {
    let mut payload = vec![b'x'; MESSAGE_BYTES];
    let now = epoch().elapsed().as_nanos() as u64;
    payload[..8].copy_from_slice(&now.to_le_bytes());
    payload
}

/// How long ago `payload` was stamped; `None` for a payload too short to carry a stamp.
pub fn age_of(payload: &[u8]) -> Option<Duration> {
    let stamp = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let now = epoch().elapsed().as_nanos() as u64;
    Some(Duration::from_nanos(now.saturating_sub(stamp)))
}

/// The `q` quantile (0..=1) of `samples`, sorting them; zero when there are none.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

/// User plus system CPU time process `pid` has used, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // The command name (field 2) may hold spaces; the fields after it are counted from ')'.
    let after_name = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 2..))
        .ok_or_else(|| format!("unexpected /proc/{pid}/stat: {stat}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15, i.e. 12 and 13 after the state (field 3).
    let ticks = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("no field {} in /proc/{pid}/stat", i + 3))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(total as f64 / USER_HZ))
}

/// User plus system CPU time this process (the load generator: producers, consumer and
/// their client library) has used, from `/proc/PID/stat` of its own pid.
pub fn own_cpu_time() -> Result<Duration, String> {
    cpu_time(std::process::id())
}

/// The unit of /proc times: USER_HZ, 100 on every Linux ABI (no libc needed to ask).
const USER_HZ: f64 = 100.0;

/// What one case produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Messages whose send the system acknowledged.
    pub sent: u64,
    /// Messages the consumer received (first deliveries).
    pub received: u64,
    /// Wall time of the produce phase.
    pub produce_time: Duration,
    /// Send -> receive latencies of the received messages.
    pub latencies: Vec<Duration>,
    /// Server CPU time over the whole case (produce and drain).
    pub server_cpu: Duration,
    /// This process's CPU time over the same span: what the client side costs (our client
    /// for Courier, async-nats for JetStream; the bench's own loop is the same for both).
    pub client_cpu: Duration,
}
