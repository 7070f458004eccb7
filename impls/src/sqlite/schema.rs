//! The SQLite schema, applied on open. `PRAGMA user_version` records which version a file has.

use sqlx::SqlitePool;

/// Statements per schema version; version N is reached by running `STEPS[N-1]`.
const STEPS: &[&[&str]] = &[
    &[
        "CREATE TABLE IF NOT EXISTS courier_streams (
        name TEXT PRIMARY KEY,
        content_type TEXT NOT NULL,
        expiry_kind INTEGER NOT NULL,
        expiry_ms INTEGER NOT NULL,
        requested TEXT NOT NULL,
        closed INTEGER NOT NULL DEFAULT 0,
        closed_by_id TEXT,
        closed_by_epoch INTEGER,
        closed_by_seq INTEGER,
        writer_seq TEXT,
        next_index INTEGER NOT NULL,
        last_access_ms INTEGER NOT NULL,
        parent TEXT,
        live_forks INTEGER NOT NULL DEFAULT 0,
        soft_deleted INTEGER NOT NULL DEFAULT 0
    )",
        "CREATE TABLE IF NOT EXISTS courier_records (
        stream TEXT NOT NULL,
        idx INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (stream, idx)
    ) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS courier_producers (
        stream TEXT NOT NULL,
        producer TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        PRIMARY KEY (stream, producer)
    ) WITHOUT ROWID",
    ],
    // Keyed appends: each stream's dedup keys, with the tag that committed them and when.
    &[
        "CREATE TABLE IF NOT EXISTS courier_dedup_keys (
            stream TEXT NOT NULL,
            key TEXT NOT NULL,
            tag TEXT NOT NULL,
            committed_ms INTEGER NOT NULL,
            PRIMARY KEY (stream, key)
        ) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS courier_dedup_keys_age ON courier_dedup_keys (stream, committed_ms)",
    ],
];

/// Brings the database to the newest schema version, in one transaction per step.
pub(super) async fn migrate(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let current: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(pool)
        .await?;
    for (version, statements) in STEPS.iter().enumerate().skip(current.max(0) as usize) {
        let mut tx = pool.begin().await?;
        for statement in *statements {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        // PRAGMA takes no bind parameters; the version is our own integer.
        let set_version = format!("PRAGMA user_version = {}", version + 1);
        sqlx::query(sqlx::AssertSqlSafe(set_version))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(())
}
