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
    // Records move to a rowid table with a unique (stream, idx) index. In the `WITHOUT ROWID`
    // table a row keeps at most ~1000 bytes in its leaf on 4 KiB pages, so every record of
    // 1 KiB or more also took an overflow page of its own, written to the WAL and copied again
    // by the checkpoint (1 000 records of 1 KiB: 1 145 pages against 350). Rowid rows keep up
    // to ~4 KiB in the leaf, and new rows fill the table's last page in order.
    &[
        "CREATE TABLE courier_records_by_rowid (
            stream TEXT NOT NULL,
            idx INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (stream, idx)
        )",
        "INSERT INTO courier_records_by_rowid (stream, idx, data)
            SELECT stream, idx, data FROM courier_records ORDER BY stream, idx",
        "DROP TABLE courier_records",
        "ALTER TABLE courier_records_by_rowid RENAME TO courier_records",
    ],
];

/// Brings the database to the newest schema version, in one transaction per step.
pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    migrate_through(conn, STEPS)
}

/// Brings the database to version `steps.len()` (a test makes an older file with fewer steps).
fn migrate_through(conn: &mut Connection, steps: &[&[&str]]) -> rusqlite::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    for (version, statements) in steps.iter().enumerate().skip(current.max(0) as usize) {
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

/// Makes `conn` a file of schema version `version` (a test of a later layout starts from the
/// file an older release wrote).
#[cfg(test)]
pub(super) fn migrate_to_version(conn: &mut Connection, version: usize) -> rusqlite::Result<()> {
    migrate_through(conn, &STEPS[..version])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `table` is a `WITHOUT ROWID` table.
    fn without_rowid(conn: &Connection, table: &str) -> bool {
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |row| row.get(0),
            )
            .expect("table exists");
        sql.to_uppercase().contains("WITHOUT ROWID")
    }

    #[test]
    fn records_of_a_version_2_file_move_to_the_rowid_table() {
        let mut conn = Connection::open_in_memory().expect("open");
        // The file as version 2 made it: records in the `WITHOUT ROWID` table.
        migrate_through(&mut conn, &STEPS[..2]).expect("old schema");
        assert!(without_rowid(&conn, "courier_records"));
        let big = vec![7u8; 1500];
        for (stream, idx) in [("a", 0i64), ("a", 1), ("b", 0)] {
            conn.execute(
                "INSERT INTO courier_records (stream, idx, data) VALUES (?1, ?2, ?3)",
                (stream, idx, &big[..1000 + idx as usize]),
            )
            .expect("insert");
        }
        migrate(&mut conn).expect("migrate");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("version");
        assert_eq!(version, STEPS.len() as i64);
        assert!(!without_rowid(&conn, "courier_records"));
        let rows: Vec<(String, i64, i64)> = conn
            .prepare("SELECT stream, idx, length(data) FROM courier_records ORDER BY stream, idx")
            .and_then(|mut select| {
                select
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                    .collect()
            })
            .expect("select");
        let expected = [("a", 0, 1000), ("a", 1, 1001), ("b", 0, 1000)]
            .map(|(stream, idx, len)| (stream.to_owned(), idx, len));
        assert_eq!(rows, expected);
        // (stream, idx) is still unique.
        let duplicate = conn.execute(
            "INSERT INTO courier_records (stream, idx, data) VALUES ('a', 1, x'00')",
            [],
        );
        assert!(duplicate.is_err());
        // Migrating again changes nothing.
        migrate(&mut conn).expect("migrate twice");
        let count: i64 = conn
            .query_row("SELECT count(*) FROM courier_records", [], |row| row.get(0))
            .expect("count");
        assert_eq!(count, 3);
    }
}
