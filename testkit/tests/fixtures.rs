//! Smoke tests: each fixture really starts its server, the server answers real requests, and
//! a restart keeps address and data. Run in whatever mode `COURIER_TESTKIT_MODE` selects;
//! `scripts/test` runs this binary in testcontainers mode and again in native mode.

use courier_testkit::fixtures::{Etcd, Mode, Postgres, Redis, unique_prefix};

fn restartable(mode: Mode) -> bool {
    // A server given by environment variable is not ours to stop.
    mode != Mode::Env
}

#[tokio::test]
async fn redis_fixture_answers_and_keeps_data_across_restart() {
    let mut redis = Redis::start().await.expect("redis starts");
    eprintln!("redis fixture: mode {}, url {}", redis.mode(), redis.url());
    assert!(redis.url().starts_with("redis://"), "{}", redis.url());
    if !restartable(redis.mode()) {
        return;
    }
    let key = format!("{}:greeting", unique_prefix());
    assert_eq!(
        redis
            .command(&["SET", &key, "hello"])
            .await
            .expect("SET")
            .as_deref(),
        Some("OK")
    );
    let url = redis.url();
    redis.restart().await.expect("restart");
    assert_eq!(redis.url(), url, "same address after restart");
    let value = redis
        .command(&["GET", &key])
        .await
        .expect("GET after restart");
    assert_eq!(
        value.as_deref(),
        Some("hello"),
        "acknowledged write survives restart (appendfsync always)"
    );

    redis.stop().await.expect("stop");
    assert!(
        redis.command(&["PING"]).await.is_err(),
        "a stopped server does not answer"
    );
    redis.start_again().await.expect("start again");
    assert_eq!(
        redis.command(&["PING"]).await.expect("PING").as_deref(),
        Some("PONG")
    );
}

#[tokio::test]
async fn postgres_fixture_answers_and_keeps_data_across_restart() {
    let mut pg = Postgres::start().await.expect("postgres starts");
    eprintln!("postgres fixture: mode {}, url {}", pg.mode(), pg.url());
    assert!(pg.url().starts_with("postgres://"), "{}", pg.url());
    if !restartable(pg.mode()) {
        return;
    }
    let table = unique_prefix();
    pg.query(&format!(
        "CREATE TABLE {table} (v text); INSERT INTO {table} VALUES ('kept')"
    ))
    .await
    .expect("create");
    let url = pg.url();
    pg.restart().await.expect("restart");
    assert_eq!(pg.url(), url, "same address after restart");
    let rows = pg
        .query(&format!("SELECT v FROM {table}"))
        .await
        .expect("select after restart");
    assert_eq!(rows, vec![vec![Some("kept".to_owned())]]);
    let err = pg
        .query("SELECT * FROM no_such_table")
        .await
        .expect_err("errors are reported");
    assert!(err.to_string().contains("no_such_table"), "{err}");
}

#[tokio::test]
async fn etcd_fixture_answers_and_keeps_data_across_restart() {
    let mut etcd = Etcd::start().await.expect("etcd starts");
    eprintln!(
        "etcd fixture: mode {}, endpoints {:?}",
        etcd.mode(),
        etcd.endpoints()
    );
    assert!(etcd.endpoints().iter().all(|e| e.starts_with("http://")));
    if !restartable(etcd.mode()) {
        return;
    }
    let key = format!("/{}/k", unique_prefix());
    etcd.put(&key, "durable").await.expect("put");
    let endpoints = etcd.endpoints();
    etcd.restart().await.expect("restart");
    assert_eq!(etcd.endpoints(), endpoints, "same address after restart");
    assert_eq!(
        etcd.get(&key).await.expect("get after restart").as_deref(),
        Some("durable")
    );
    assert_eq!(etcd.get("/absent").await.expect("get absent"), None);
}

#[tokio::test]
async fn two_fixtures_of_one_kind_are_independent() {
    let a = Redis::start().await.expect("first");
    let b = Redis::start().await.expect("second");
    if a.mode() == Mode::Env {
        return;
    }
    assert_ne!(a.url(), b.url());
    a.command(&["SET", "only-in-a", "1"]).await.expect("SET");
    assert_eq!(b.command(&["GET", "only-in-a"]).await.expect("GET"), None);
}
