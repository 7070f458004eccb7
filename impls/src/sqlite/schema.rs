//! The SQLite schema, applied on open. `PRAGMA user_version` records which version a file has.

use rusqlite::Connection;

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
pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    for (version, statements) in STEPS.iter().enumerate().skip(current.max(0) as usize) {
        // IMMEDIATE: two processes opening a new file at once take turns instead of both
        // reading version 0 and one failing to upgrade its read lock.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if current > version as i64 {
            continue;
        }
        for statement in *statements {
            tx.execute_batch(statement)?;
        }
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
