//! The Postgres schema, applied on connect (or by [`super::PgStreamStorage::migrate`]).
//! `courier_schema_version` records the version; an advisory lock keeps concurrent nodes from
//! migrating at once.

use sqlx::PgPool;

/// Statements per schema version; version N is reached by running `STEPS[N-1]`.
const STEPS: &[&[&str]] = &[
    &[
        "CREATE TABLE IF NOT EXISTS courier_streams (
        name TEXT PRIMARY KEY,
        content_type TEXT NOT NULL,
        expiry_kind BIGINT NOT NULL,
        expiry_ms BIGINT NOT NULL,
        requested TEXT NOT NULL,
        closed BIGINT NOT NULL DEFAULT 0,
        closed_by_id TEXT,
        closed_by_epoch BIGINT,
        closed_by_seq BIGINT,
        writer_seq TEXT,
        next_index BIGINT NOT NULL,
        last_access_ms BIGINT NOT NULL,
        parent TEXT,
        live_forks BIGINT NOT NULL DEFAULT 0,
        soft_deleted BIGINT NOT NULL DEFAULT 0
    )",
        "CREATE TABLE IF NOT EXISTS courier_records (
        stream TEXT NOT NULL,
        idx BIGINT NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (stream, idx)
    )",
        "CREATE TABLE IF NOT EXISTS courier_producers (
        stream TEXT NOT NULL,
        producer TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        last_seq BIGINT NOT NULL,
        PRIMARY KEY (stream, producer)
    )",
    ],
    // Keyed appends: each stream's dedup keys, with the tag that committed them and when.
    &[
        "CREATE TABLE IF NOT EXISTS courier_dedup_keys (
            stream TEXT NOT NULL,
            key TEXT NOT NULL,
            tag TEXT NOT NULL,
            committed_ms BIGINT NOT NULL,
            PRIMARY KEY (stream, key)
        )",
        "CREATE INDEX IF NOT EXISTS courier_dedup_keys_age ON courier_dedup_keys (stream, committed_ms)",
    ],
    // Keyed appends whose cost does not depend on the planner's statistics (keyed.rs,
    // `LOOKUP`): the key leads the primary key, and the expiry index is reachable only by
    // its "C"-collated comparison, so a lookup never scans a stream's keys through either.
    &[
        "ALTER TABLE courier_dedup_keys DROP CONSTRAINT courier_dedup_keys_pkey,
             ADD CONSTRAINT courier_dedup_keys_pkey PRIMARY KEY (key, stream)",
        "DROP INDEX IF EXISTS courier_dedup_keys_age",
        r#"CREATE INDEX IF NOT EXISTS courier_dedup_keys_expiry
             ON courier_dedup_keys (stream COLLATE "C", committed_ms)"#,
    ],
];

/// Brings the schema to the newest version.
pub(super) async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(7361296)")
        .execute(&mut *tx)
        .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS courier_schema_version (version BIGINT NOT NULL)")
        .execute(&mut *tx)
        .await?;
    let current: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM courier_schema_version")
            .fetch_one(&mut *tx)
            .await?;
    for (version, statements) in STEPS
        .iter()
        .enumerate()
        .skip(current.unwrap_or(0).max(0) as usize)
    {
        for statement in *statements {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO courier_schema_version (version) VALUES ($1)")
            .bind(version as i64 + 1)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}
