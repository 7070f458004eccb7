//! `courier broker` as a process with `--auth-mode jwt`: `hash-key` prints what the keys file
//! stores, the broker refuses to serve auth over plaintext unless allowed, and the Rust
//! client with the API key round-trips while a client without it is refused.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use courier_broker::auth::key_digest;
use courier_broker::client::BrokerClient;
use futures::StreamExt;
use tokio::process::{Child, Command};

#[path = "broker/node.rs"]
#[allow(
    dead_code,
    reason = "this binary waits for its broker without a Discovery answer"
)]
mod node;
use node::{free_port, url};

const KEY: &str = "ck_cli_auth_8c3e0f";

fn courier() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_courier"));
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

#[tokio::test]
async fn hash_key_prints_the_sha256_from_an_argument_or_stdin() {
    let out = courier()
        .args(["broker", "hash-key", KEY])
        .output()
        .await
        .expect("runs");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), key_digest(KEY));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_courier"))
        .args(["broker", "hash-key"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{KEY}\n").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("exits");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), key_digest(KEY));
}

fn keys_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("keys.yaml");
    std::fs::write(
        &path,
        format!(
            "- sha256: {}\n  principal: cli-test\n  roles: [produce, consume]\n",
            key_digest(KEY)
        ),
    )
    .expect("keys file");
    path
}

/// Starts the broker and waits (at most 30 s) until its port accepts connections.
async fn start(port: u16, args: &[&str], log: &std::path::Path) -> Child {
    let out = std::fs::File::create(log).expect("log");
    let err = out.try_clone().expect("log");
    let mut child = courier()
        .args([
            "broker",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--storage",
            "memory",
        ])
        .args(args)
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("starts");
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "courier broker exited: {status}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("courier broker not listening after 30 s");
}

#[tokio::test]
async fn auth_over_plaintext_needs_allow_plaintext() {
    let dir = tempfile::tempdir().expect("dir");
    let keys = keys_file(dir.path());
    let port = free_port();
    let out = courier()
        .args([
            "broker",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--storage",
            "memory",
        ])
        .args(["--auth-mode", "jwt", "--keys-file"])
        .arg(&keys)
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success(), "served credentials in the clear");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("allow_plaintext"), "{stderr}");
}

#[tokio::test]
async fn the_client_with_the_key_round_trips_and_without_it_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let keys = keys_file(dir.path());
    let port = free_port();
    let keys = keys.to_str().expect("utf-8 path");
    let mut broker = start(
        port,
        &[
            "--auth-mode",
            "jwt",
            "--keys-file",
            keys,
            "--allow-plaintext",
            "true",
        ],
        &dir.path().join("broker.log"),
    )
    .await;
    let anonymous = BrokerClient::builder()
        .service_url(url(port))
        .build()
        .await
        .expect("client");
    let refused = anonymous
        .producer("/default/cli-auth")
        .name("p0")
        .create()
        .await
        .expect_err("no credentials");
    assert_eq!(
        refused.code(),
        Some(tonic::Code::Unauthenticated),
        "{refused}"
    );

    let client = BrokerClient::builder()
        .service_url(url(port))
        .api_key(KEY)
        .build()
        .await
        .expect("client");
    let producer = client
        .producer("/default/cli-auth")
        .name("p1")
        .reliable()
        .create()
        .await
        .expect("producer");
    let mut consumer = client
        .consumer("/default/cli-auth")
        .name("c1")
        .subscription("s")
        .subscribe()
        .await
        .expect("consumer");
    producer.send("with a key").await.expect("sent");
    let message = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("in time")
        .expect("a message")
        .expect("no error");
    assert_eq!(&message.payload()[..], b"with a key");
    message.ack().await.expect("ack");
    consumer.close().await;
    producer.close().await;
    broker.kill().await.expect("stopped");
}

/// `courier broker token` mints for a key of the keys file what Authenticate would answer;
/// a client sending it as a pre-made token is served, one minted with another secret is not,
/// and a key missing from the file mints nothing.
#[tokio::test]
async fn a_minted_token_is_accepted_by_brokers_sharing_its_secret() {
    let dir = tempfile::tempdir().expect("dir");
    let keys = keys_file(dir.path());
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s".repeat(40) + "\n").expect("secret");
    let other_secret = dir.path().join("other-secret");
    std::fs::write(&other_secret, "o".repeat(40)).expect("secret");
    let mint = async |key: &str, secret: &std::path::Path| {
        courier()
            .args(["broker", "token", "--keys-file"])
            .arg(&keys)
            .arg("--jwt-secret-file")
            .arg(secret)
            .arg(key)
            .output()
            .await
            .expect("runs")
    };
    let out = mint(KEY, &secret).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let forged = mint(KEY, &other_secret).await;
    let forged = String::from_utf8_lossy(&forged.stdout).trim().to_owned();
    let unknown = mint("ck_not_in_the_file", &secret).await;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("not in keys file"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    let port = free_port();
    let mut broker = start(
        port,
        &[
            "--auth-mode",
            "jwt",
            "--keys-file",
            keys.to_str().expect("utf-8 path"),
            "--jwt-secret-file",
            secret.to_str().expect("utf-8 path"),
            "--allow-plaintext",
            "true",
        ],
        &dir.path().join("broker.log"),
    )
    .await;
    let with = async |token: &str| {
        BrokerClient::builder()
            .service_url(url(port))
            .token(token)
            .build()
            .await
            .expect("client")
    };
    let refused = with(&forged)
        .await
        .producer("/default/cli-token")
        .name("p0")
        .create()
        .await
        .expect_err("a token signed with another secret");
    assert_eq!(
        refused.code(),
        Some(tonic::Code::Unauthenticated),
        "{refused}"
    );
    let producer = with(&token)
        .await
        .producer("/default/cli-token")
        .name("p1")
        .reliable()
        .create()
        .await
        .expect("producer with the minted token");
    producer.send("with a token").await.expect("sent");
    producer.close().await;
    broker.kill().await.expect("stopped");
}
