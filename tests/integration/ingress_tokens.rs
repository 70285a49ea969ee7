//! Apple Health bearer tokens: issued (library and CLI) tokens are accepted and key the record
//! by their user; unknown, missing and revoked tokens are 401. The cache TTL is set to 1 s with
//! `--token-cache-ttl-secs`, so a revocation is seen without waiting out the 30 s default.

use std::process::Command;
use std::time::Duration;

use biometric_bridge::config::DatabaseArgs;
use biometric_bridge::ingress::tokens;

use super::helpers;
use super::ingress_harness::{CANARY, Webhook, assert_accepted, assert_error, assert_topic_holds, start};

async fn pool() -> sqlx::PgPool {
    let database = DatabaseArgs { database_url: helpers::database_url(), database_max_connections: 2 };
    database.migrated_pool().await.expect("PostgreSQL")
}

/// Runs `biometric-bridge tokens <args>` and returns its stdout.
fn cli(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_biometric-bridge"))
        .arg("tokens")
        .args(args)
        .env("DATABASE_URL", helpers::database_url())
        .output()
        .expect("run the CLI");
    assert!(output.status.success(), "tokens {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issued_token_is_accepted_and_keys_the_record_by_its_user() {
    let (topic, ingress) = start(2, &[]).await;
    let user = helpers::unique("athlete");
    let issued = tokens::issue(&pool().await, &user).await.unwrap();
    let body = helpers::fixture("apple_healthkit/hae_metrics.json");

    let webhook = Webhook::apple_health(&body, issued.token.expose());
    assert_accepted(webhook.send(&ingress).await, 202, "accepted").await;

    let record = assert_topic_holds(&topic, &[&body]).await.remove(0);
    assert_eq!(record.key.as_deref(), Some(format!("apple-health:{user}").as_bytes()));
    assert_eq!(record.headers["vendor"], "apple-health");
    assert_eq!(record.headers["vendor-user-id"], user);
    assert!(record.headers["delivery-id"].starts_with("sha256:"));
    assert!(!record.headers.contains_key("authorization"), "the token is never stored");
    assert!(!record.headers.values().any(|value| value.contains(issued.token.expose())));
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_malformed_or_unknown_tokens_are_401() {
    let (topic, ingress) = start(1, &[]).await;
    let body = helpers::fixture("apple_healthkit/hae_metrics.json");

    let unknown = Webhook::apple_health(&body, &format!("bbt_{CANARY}"));
    assert_error(unknown.send(&ingress).await, 401, "unauthorized").await;
    let missing = unknown.clone().without_header("authorization");
    assert_error(missing.send(&ingress).await, 401, "unauthorized").await;
    let basic = unknown.clone().header("authorization", &format!("Basic {CANARY}"));
    assert_error(basic.send(&ingress).await, 401, "unauthorized").await;

    assert_topic_holds(&topic, &[]).await;
    ingress.stop().await;
}

/// The whole life of a token through the CLI: issue, list, use, revoke, refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_with_the_cli_is_refused_once_the_cache_expires() {
    let (topic, ingress) = start(1, &["--token-cache-ttl-secs", "1"]).await;
    let user = helpers::unique("revoked");
    let issued = cli(&["issue", "--user", &user]);
    let token = issued.lines().find_map(|line| line.strip_prefix("token:")).expect("token line").trim().to_owned();
    let token_id = issued.lines().find_map(|line| line.strip_prefix("token_id:")).expect("token_id line").trim().to_owned();
    let listed = cli(&["list", "--user", &user]);
    assert!(listed.contains(&token_id) && listed.contains("active") && !listed.contains(&token), "{listed}");

    let body = helpers::fixture("apple_healthkit/hae_metrics_low_hrv.json");
    let webhook = Webhook::apple_health(&body, &token);
    assert_accepted(webhook.send(&ingress).await, 202, "accepted").await;

    assert!(cli(&["revoke", "--user", &user]).contains("revoked 1 token(s)"));
    assert!(cli(&["list", "--user", &user]).contains("revoked"));
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_error(webhook.send(&ingress).await, 401, "unauthorized").await;

    assert_topic_holds(&topic, &[&body]).await;
    ingress.stop().await;
}
