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

/// A short deadline for a request to a frozen server, which answers nothing.
const FROZEN_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

#[tokio::test]
async fn a_frozen_redis_answers_nothing_until_thawed_and_keeps_its_connections() {
    let mut redis = Redis::start().await.expect("redis starts");
    if !restartable(redis.mode()) {
        return;
    }
    redis.freeze().await.expect("freeze");
    let frozen = tokio::time::timeout(FROZEN_WAIT, redis.command(&["PING"])).await;
    assert!(frozen.is_err(), "a frozen server answered: {frozen:?}");
    // A request sent while frozen is answered after the thaw: the socket stayed open.
    let key = format!("{}:while-frozen", unique_prefix());
    let (sent, is_sent) = tokio::sync::oneshot::channel();
    let set = tokio::spawn({
        let url = redis.url();
        async move { set_over_raw_socket(&url, &key, sent).await }
    });
    tokio::time::timeout(std::time::Duration::from_secs(10), is_sent)
        .await
        .expect("the SET is sent to the frozen server")
        .expect("sender kept");
    assert!(!set.is_finished(), "a frozen server answered a SET");
    redis.thaw().await.expect("thaw");
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), set)
        .await
        .expect("answered after the thaw")
        .expect("task");
    assert_eq!(answer, "+OK");
}

/// Sends `SET key 1` on a fresh connection, says so on `sent`, and returns the first reply line.
async fn set_over_raw_socket(
    url: &str,
    key: &str,
    sent: tokio::sync::oneshot::Sender<()>,
) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let addr = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let command = format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$1\r\n1\r\n", key.len());
    socket.write_all(command.as_bytes()).await.expect("send");
    let _ = sent.send(());
    let mut line = String::new();
    BufReader::new(socket)
        .read_line(&mut line)
        .await
        .expect("reply");
    line.trim_end().to_owned()
}

#[tokio::test]
async fn a_frozen_postgres_stops_its_workers_too_and_thaws() {
    let mut pg = Postgres::start().await.expect("postgres starts");
    if pg.mode() != Mode::Native {
        // The process tree is only ours to inspect in native mode.
        return;
    }
    let pid = pg.pid().expect("a running native server has a pid");
    pg.freeze().await.expect("freeze");
    // `freeze` returns once the signals landed; exited workers (zombies) cannot stop.
    let states = process_tree_states(pid);
    assert!(
        states.len() > 1,
        "postgres runs background workers: {states:?}"
    );
    assert!(
        states
            .iter()
            .all(|(_, state)| matches!(state, 'T' | 'Z' | 'X')),
        "every process of the server is stopped: {states:?}"
    );
    let frozen = tokio::time::timeout(FROZEN_WAIT, pg.query("SELECT 1")).await;
    assert!(frozen.is_err(), "a frozen server answered: {frozen:?}");
    pg.thaw().await.expect("thaw");
    assert!(
        process_tree_states(pid)
            .iter()
            .all(|(_, state)| *state != 'T'),
        "thawed"
    );
    let rows = pg.query("SELECT 1").await.expect("answers after the thaw");
    assert_eq!(rows, vec![vec![Some("1".to_owned())]]);
}

#[tokio::test]
async fn a_frozen_etcd_answers_nothing_and_is_stopped_cleanly_while_frozen() {
    let mut etcd = Etcd::start().await.expect("etcd starts");
    if !restartable(etcd.mode()) {
        return;
    }
    let key = format!("/{}/k", unique_prefix());
    etcd.put(&key, "before").await.expect("put");
    etcd.freeze().await.expect("freeze");
    let frozen = tokio::time::timeout(FROZEN_WAIT, etcd.get(&key)).await;
    assert!(frozen.is_err(), "a frozen server answered: {frozen:?}");
    // Stopping a frozen server must not hang on a signal it cannot act on.
    tokio::time::timeout(std::time::Duration::from_secs(8), etcd.stop())
        .await
        .expect("a frozen server stops in time")
        .expect("stop");
    etcd.start_again().await.expect("start again");
    assert_eq!(
        etcd.get(&key).await.expect("get").as_deref(),
        Some("before")
    );
}

/// `(pid, state)` of `root` and every process below it, from `/proc`.
fn process_tree_states(root: u32) -> Vec<(u32, char)> {
    let stats: Vec<(u32, u32, char)> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid = fields.next()?.parse().ok()?;
            Some((pid, ppid, state))
        })
        .collect();
    let mut tree: Vec<(u32, char)> = stats
        .iter()
        .filter(|(pid, _, _)| *pid == root)
        .map(|(pid, _, state)| (*pid, *state))
        .collect();
    let mut next = 0;
    while next < tree.len() {
        let parent = tree[next].0;
        tree.extend(
            stats
                .iter()
                .filter(|(_, ppid, _)| *ppid == parent)
                .map(|(pid, _, state)| (*pid, *state)),
        );
        next += 1;
    }
    tree
}
