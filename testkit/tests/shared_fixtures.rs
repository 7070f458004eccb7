//! The run's shared servers: one per kind for every test of the run (other processes of the
//! run included), a fresh database per Postgres fixture, not stoppable by a test, and private
//! servers inside `with_private_servers`.

use courier_testkit::fixtures::{
    Etcd, FixtureError, Mode, Postgres, Redis, unique_prefix, with_private_servers,
};

#[tokio::test]
async fn shared_fixtures_of_one_kind_are_one_server_that_no_test_stops() {
    let (mut a, b) = (
        Redis::shared().await.expect("shared redis"),
        Redis::shared().await.expect("shared redis again"),
    );
    assert_eq!(a.url(), b.url(), "one shared Redis");
    assert!(
        matches!(a.stop().await, Err(FixtureError::Unsupported(_))),
        "a test must not stop the shared server"
    );
    let key = format!("{}:shared", unique_prefix());
    a.command(&["SET", &key, "1"]).await.expect("SET");
    assert_eq!(
        b.command(&["GET", &key]).await.expect("GET").as_deref(),
        Some("1")
    );

    let (mut c, d) = (
        Etcd::shared().await.expect("shared etcd"),
        Etcd::shared().await.expect("shared etcd again"),
    );
    assert_eq!(c.endpoints(), d.endpoints(), "one shared etcd");
    assert!(matches!(
        c.freeze().await,
        Err(FixtureError::Unsupported(_))
    ));
}

#[tokio::test]
async fn inside_with_private_servers_shared_starts_a_private_server() {
    let shared = Redis::shared().await.expect("shared redis");
    if shared.mode() == Mode::Env {
        return; // an env-provided server is the only one there is
    }
    let mut private = with_private_servers(Redis::shared())
        .await
        .expect("private redis");
    assert_ne!(private.url(), shared.url());
    private.restart().await.expect("a private server restarts");
}

#[tokio::test]
async fn each_shared_postgres_fixture_has_a_database_of_its_own() {
    let (a, b) = (
        Postgres::shared().await.expect("shared postgres"),
        Postgres::shared().await.expect("shared postgres again"),
    );
    if a.mode() == Mode::Env {
        return; // the env URL names one database
    }
    let server = |url: &str| url.rsplit_once('/').map(|(server, _)| server.to_owned());
    assert_eq!(server(&a.url()), server(&b.url()), "one shared server");
    assert_ne!(a.url(), b.url(), "a database per fixture");
    a.query("CREATE TABLE only_in_a (x int)")
        .await
        .expect("create");
    let seen = b
        .query("SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'")
        .await
        .expect("query");
    assert_eq!(seen, [[Some("0".to_owned())]]);
}

/// What the helper below prints its shared Redis URL after.
const URL_LINE: &str = "shared redis url: ";

/// Another process of the same run (here: this binary again, given this run's key) gets the
/// same server, rather than starting one of its own.
#[tokio::test]
async fn another_process_of_the_run_finds_the_same_server() {
    let redis = Redis::shared().await.expect("shared redis");
    // The run key the testkit derives: nextest's run id, or this process under `cargo test`.
    let run = std::env::var("NEXTEST_RUN_ID").unwrap_or(format!("pid{}", std::process::id()));
    let exe = std::env::current_exe().expect("test binary");
    let child = tokio::process::Command::new(exe)
        .args([
            "--exact",
            "print_the_shared_redis_url",
            "--ignored",
            "--nocapture",
        ])
        .env("NEXTEST_RUN_ID", run)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), child)
        .await
        .expect("the second process ends")
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "second process failed: {stdout}");
    let url = stdout
        .lines()
        .find_map(|line| line.strip_prefix(URL_LINE))
        .unwrap_or_else(|| panic!("no URL printed: {stdout}"));
    assert_eq!(url, redis.url());
}

/// Run by the test above in a second process.
#[tokio::test]
#[ignore = "helper of another_process_of_the_run_finds_the_same_server, run in its own process"]
async fn print_the_shared_redis_url() {
    let redis = Redis::shared().await.expect("shared redis");
    println!("{URL_LINE}{}", redis.url());
}
