//! Whether the Redis server keeps what it acknowledges. [`RedisStreamStorage`] promises durable
//! appends and [`RedisBus`] (Streams delivery) persistent messages, but Redis writes to disk
//! only as its configuration says: `appendonly yes` with `appendfsync always` fsyncs every
//! write to the append-only file before answering; anything less can lose acknowledged
//! writes. The backends read the settings at connect and warn when they fall short.
//!
//! [`RedisStreamStorage`]: super::RedisStreamStorage
//! [`RedisBus`]: super::RedisBus

use redis::{self, aio::ConnectionLike};

/// How durably a Redis server keeps acknowledged writes, read from its persistence settings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisDurability {
    /// `appendonly yes` and `appendfsync always`: every write is fsync'd to the append-only
    /// file before the server answers it.
    EveryWrite,
    /// A weaker setting: which one (`name value`), and what acknowledged writes can lose.
    Weaker {
        /// The setting and its value, e.g. `appendfsync everysec`.
        setting: String,
        /// What it means for acknowledged writes.
        risk: &'static str,
    },
    /// The settings could not be read (managed services often refuse `CONFIG`).
    Unknown {
        /// The server's answer to `CONFIG GET`.
        reason: String,
    },
}

/// Reads `appendonly` and `appendfsync` with `CONFIG GET` and says what they give.
pub async fn server_durability(conn: &mut (impl ConnectionLike + Send)) -> RedisDurability {
    let appendonly = match config_get(conn, "appendonly").await {
        Ok(value) => value,
        Err(reason) => return RedisDurability::Unknown { reason },
    };
    if !appendonly.eq_ignore_ascii_case("yes") {
        return RedisDurability::Weaker {
            setting: format!("appendonly {appendonly}"),
            risk: "no append-only file: writes acknowledged since the last RDB snapshot (all \
                   of them when snapshots are off) are lost when Redis restarts or crashes",
        };
    }
    let appendfsync = match config_get(conn, "appendfsync").await {
        Ok(value) => value,
        Err(reason) => return RedisDurability::Unknown { reason },
    };
    let risk = match appendfsync.to_ascii_lowercase().as_str() {
        "always" => return RedisDurability::EveryWrite,
        "everysec" => {
            "the append-only file is fsync'd about once a second: a crash (above all of the \
             machine: power loss, kernel panic) can lose the last second or two of acknowledged \
             writes"
        }
        "no" => {
            "the operating system decides when the append-only file reaches the disk (about \
             every 30 s on Linux): a crash of the machine can lose that much of acknowledged \
             writes"
        }
        _ => "an appendfsync value this check does not know: acknowledged writes may be lost",
    };
    RedisDurability::Weaker {
        setting: format!("appendfsync {appendfsync}"),
        risk,
    }
}

/// One configuration value, or the server's refusal as text.
async fn config_get(conn: &mut (impl ConnectionLike + Send), name: &str) -> Result<String, String> {
    // RESP2 answers `[name, value]`, RESP3 a map: both read as pairs.
    let pairs: Vec<(String, String)> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(conn)
        .await
        .map_err(|e| format!("CONFIG GET {name}: {e}"))?;
    pairs
        .into_iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
        .ok_or_else(|| format!("CONFIG GET {name}: the server does not report it"))
}

/// Logs a warning when the server does not give the durability `backend` promises, or when
/// that cannot be verified.
pub(super) async fn warn_unless_durable(
    conn: &mut (impl ConnectionLike + Send),
    backend: &'static str,
) {
    match server_durability(conn).await {
        RedisDurability::EveryWrite => {}
        RedisDurability::Weaker { setting, risk } => tracing::warn!(
            backend,
            setting = %setting,
            "redis is configured with `{setting}` — {risk}; {backend} promises that acknowledged \
             writes survive, which needs `appendonly yes` and `appendfsync always`"
        ),
        RedisDurability::Unknown { reason } => tracing::warn!(
            backend,
            %reason,
            "cannot read redis's persistence settings ({reason}), so the durability {backend} \
             promises cannot be verified: it needs `appendonly yes` and `appendfsync always`"
        ),
    }
}
