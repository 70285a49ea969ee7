//! Misconfiguration fails fast: one clear line and a non-zero exit, where waiting would only
//! look like an outage (a registry path that answers 404, a URL without a scheme, a
//! `KAFKA_OPTIONS` override of a key exactly-once depends on).

use std::process::Command;
use std::time::{Duration, Instant};

use super::helpers;

/// Runs the processor with `env` over the stack's defaults; returns its last `error:` line,
/// failing the test if it does not exit non-zero within 20 s.
fn processor_error(env: &[(&str, &str)]) -> String {
    helpers::require_stack();
    let mut command = Command::new(env!("CARGO_BIN_EXE_biometric-bridge"));
    command
        .args(["process", "--metrics-addr", "127.0.0.1:0"])
        .env("KAFKA_BOOTSTRAP_SERVERS", helpers::bootstrap())
        .env("SCHEMA_REGISTRY_URL", helpers::registry_url())
        .env("DATABASE_URL", helpers::database_url())
        .env("RUST_LOG", "info")
        .envs(env.iter().copied());
    let (status, stderr) = helpers::run_until_exit(&mut command, Duration::from_secs(20));
    assert!(!status.success(), "{env:?} must exit non-zero:\n{stderr}");
    helpers::last_error_line(&stderr)
}

#[test]
fn misconfigurations_exit_at_once_with_one_clear_line() {
    let wrong_path = format!("{}/not-the-api", helpers::registry_url());
    let error = processor_error(&[("SCHEMA_REGISTRY_URL", &wrong_path)]);
    assert!(error.contains("misconfigured") && error.contains("HTTP 404"), "{error}");

    let error = processor_error(&[("SCHEMA_REGISTRY_URL", "127.0.0.1:8081/apis/ccompat/v7")]);
    assert!(error.contains("SCHEMA_REGISTRY_URL must be an http:// or https:// URL"), "{error}");

    let error = processor_error(&[("KAFKA_OPTIONS", "linger.ms=5;transactional.id=mine")]);
    assert!(error.contains("transactional.id cannot be set in KAFKA_OPTIONS"), "{error}");
}

/// PostgreSQL down at start: the ingress starts anyway, degraded exactly as during an outage
/// mid-run (Terra accepted, Apple Health 503 `token_store_unavailable`), and Apple Health
/// uploads work within seconds of PostgreSQL answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_starts_without_postgresql_and_uses_it_once_it_answers() {
    use super::ingress_harness::{Webhook, raw_topic};
    let topic = raw_topic(1).await;
    let port = helpers::closed_port();
    let database_url = format!("postgres://bridge:bridge@127.0.0.1:{port}/biometric_bridge");
    let ingress =
        super::ingress_support::spawn_ingress(&topic, super::ingress_support::test_secrets(), &["--database-url", &database_url]).await;

    let terra = Webhook::terra(&helpers::fixture("terra/sleep.json"), &helpers::unique("no-postgres"));
    assert_eq!(terra.send(&ingress).await.status(), 202, "Terra does not need PostgreSQL");
    let body = helpers::fixture("apple_healthkit/hae_metrics.json");
    let user = helpers::unique("athlete");
    let database = biometric_bridge::config::DatabaseArgs { database_url: helpers::database_url(), database_max_connections: 2 };
    let issued = biometric_bridge::ingress::tokens::issue(&database.migrated_pool().await.unwrap(), &user).await.unwrap();
    let apple = Webhook::apple_health(&body, issued.token.expose());
    let refused = apple.send(&ingress).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.json::<serde_json::Value>().await.unwrap()["error"], "token_store_unavailable");

    let _postgres = helpers::open_proxy(port, "127.0.0.1:5432".to_owned()).await;
    let opened = Instant::now();
    loop {
        let status = apple.send(&ingress).await.status();
        if status == 202 {
            break;
        }
        assert!(opened.elapsed() < Duration::from_secs(20), "Apple Health still {status} 20 s after PostgreSQL answered");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("Apple Health accepted {:?} after PostgreSQL answered", opened.elapsed());
    ingress.stop().await;
}

/// Kafka down at start: the processor serves `/metrics`, `/health` and `/ready` (503, naming
/// what it waits for) from the first second, logs `dependency=kafka` with the address, and is
/// ready within seconds of Kafka answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_waits_for_kafka_visibly_and_is_ready_soon_after_it_answers() {
    let topology = helpers::TestTopology::create(1).await;
    let port = helpers::closed_port();
    let bootstrap = format!("127.0.0.1:{port}");
    let processor = helpers::spawn_processor(&topology, "late-kafka", &[("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)]);
    let metrics = processor.metrics().await;
    assert!(metrics.contains("biometric_bridge_infra_retries_total"), "{metrics}");
    let address = processor.metrics_addr().await;
    let get = |path: &'static str| {
        let url = format!("http://{address}{path}");
        async move { reqwest::get(url).await.unwrap() }
    };
    assert_eq!(get("/health").await.status(), 200);
    let waiting = get("/ready").await;
    assert_eq!(waiting.status(), 503);
    assert_eq!(waiting.json::<serde_json::Value>().await.unwrap()["error"], "waiting_for_kafka");
    let waited = Instant::now();
    loop {
        let log = std::fs::read_to_string(&processor.log).unwrap();
        if log
            .lines()
            .any(|line| line.contains("Waiting for a dependency") && line.contains("dependency=\"kafka\"") && line.contains(&bootstrap))
        {
            break;
        }
        assert!(waited.elapsed() < Duration::from_secs(10), "the wait names Kafka and its address within seconds:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let _kafka = helpers::open_proxy(port, helpers::bootstrap()).await;
    let opened = Instant::now();
    while get("/ready").await.status() != 200 {
        assert!(opened.elapsed() < Duration::from_secs(30), "not ready 30 s after Kafka answered:\n{}", processor.log_tail());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("processor ready {:?} after Kafka answered", opened.elapsed());
}

/// A dependency after Kafka down at start (the registry, or Redis when the fetch stage has OAuth
/// vendors): `/ready` names the phase, the log names the dependency and its address, and the
/// processor is ready within seconds of it answering.
async fn waits_for(dependency: &str, phase: &str, upstream: &str, env: impl FnOnce(u16) -> Vec<(String, String)>) {
    let topology = helpers::TestTopology::create(1).await;
    let port = helpers::closed_port();
    let env = env(port);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let processor = helpers::spawn_processor(&topology, &format!("late-{dependency}"), &env);
    let address = processor.metrics_addr().await;
    let ready = || {
        let url = format!("http://{address}/ready");
        async move { reqwest::get(url).await.unwrap() }
    };
    let started = Instant::now();
    loop {
        let response = ready().await;
        let body: serde_json::Value = response.json().await.unwrap();
        if body["error"] == phase {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never {phase}: {body}\n{}", processor.log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let needle = format!("dependency=\"{dependency}\"");
    let address_text = format!("127.0.0.1:{port}");
    let waited = Instant::now();
    while !std::fs::read_to_string(&processor.log)
        .unwrap()
        .lines()
        .any(|l| l.contains("Waiting for a dependency") && l.contains(&needle) && l.contains(&address_text))
    {
        assert!(waited.elapsed() < Duration::from_secs(10), "the wait names {dependency} and its address:\n{}", processor.log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let _proxy = helpers::open_proxy(port, upstream.to_owned()).await;
    let opened = Instant::now();
    while ready().await.status() != 200 {
        assert!(opened.elapsed() < Duration::from_secs(40), "not ready 40 s after {dependency} answered:\n{}", processor.log_tail());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("processor ready {:?} after {dependency} answered", opened.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_waits_for_the_registry_and_is_ready_soon_after_it_answers() {
    let registry = helpers::registry_url();
    let upstream = registry.trim_start_matches("http://").split('/').next().unwrap().to_owned();
    let path = registry.trim_start_matches("http://").split_once('/').map_or(String::new(), |(_, p)| format!("/{p}"));
    waits_for("schema_registry", "waiting_for_schema_registry", &upstream, |port| {
        vec![("SCHEMA_REGISTRY_URL".to_owned(), format!("http://127.0.0.1:{port}{path}"))]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_waits_for_redis_and_is_ready_soon_after_it_answers() {
    let upstream = helpers::redis_url().trim_start_matches("redis://").trim_end_matches('/').to_owned();
    waits_for("redis", "waiting_for_redis", &upstream, |port| {
        vec![
            ("REDIS_URL".to_owned(), format!("redis://127.0.0.1:{port}")),
            ("TOKEN_ENCRYPTION_KEY".to_owned(), "11".repeat(32)),
            ("OURA_CLIENT_ID".to_owned(), "start-order-oura".to_owned()),
            ("OURA_CLIENT_SECRET".to_owned(), "start-order-oura-secret-DO-NOT-USE".to_owned()),
        ]
    })
    .await;
}
