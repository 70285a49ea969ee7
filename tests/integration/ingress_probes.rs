//! `/health`, `/ready` and `/metrics` of a running ingress.

use std::time::Duration;

use super::helpers;
use super::ingress_harness::{Webhook, assert_accepted, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_metrics_answer() {
    let (_topic, ingress) = start(1, &[]).await;
    let get = |path: &str| ingress.client.get(ingress.url(path)).send();

    let health = get("/health").await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({ "status": "healthy", "service": "biometric-bridge" })
    );

    // Ready once librdkafka reports a broker connection (its statistics come every second).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let ready = loop {
        let response = get("/ready").await.unwrap();
        if response.status() == 200 || tokio::time::Instant::now() > deadline {
            break response;
        }
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "kafka_unavailable", "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["kafka_connected"], true);
    assert_eq!(ready["circuit"], "closed");

    // Traffic: one write, one duplicate, one refusal.
    let webhook = Webhook::terra(&helpers::fixture("terra/sleep.json"), &helpers::unique("metrics"));
    assert_accepted(webhook.send(&ingress).await, 202, "accepted").await;
    assert_accepted(webhook.send(&ingress).await, 200, "duplicate").await;
    assert_eq!(webhook.clone().with_body(b"{}").send(&ingress).await.status(), 401);

    let metrics = get("/metrics").await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = metrics.text().await.unwrap();
    for expected in [
        "biometric_bridge_webhook_requests_total{status=\"202\",vendor=\"terra\"}",
        "biometric_bridge_webhook_requests_total{status=\"200\",vendor=\"terra\"}",
        "biometric_bridge_webhook_requests_total{status=\"401\",vendor=\"terra\"}",
        "biometric_bridge_webhook_request_duration_seconds_bucket{vendor=\"terra\",le=\"0.1\"}",
        "biometric_bridge_kafka_produce_duration_seconds_count",
        "biometric_bridge_webhooks_in_flight",
        "biometric_bridge_circuit_state",
        "biometric_bridge_dedup_hits_total{vendor=\"terra\"}",
        "biometric_bridge_redis_errors_total",
        "biometric_bridge_errors_total{error_code=\"invalid_signature\",stage=\"ingress\"}",
    ] {
        assert!(text.contains(expected), "/metrics lacks {expected}:\n{text}");
    }
    ingress.stop().await;
}

/// With `INGRESS_METRICS_ADDR`, the metrics leave the internet-facing port; they carry the build
/// and the process's own series from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_their_own_address_are_not_on_the_webhook_port() {
    let (_topic, ingress) = start(1, &["--metrics-addr", "127.0.0.1:0"]).await;
    assert_ne!(ingress.metrics_addr, ingress.addr);

    let public = ingress.client.get(ingress.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    let body: serde_json::Value = public.json().await.unwrap();
    assert_eq!(body["error"], "not_found", "{body}");

    let scraped = ingress.client.get(format!("http://{}/metrics", ingress.metrics_addr)).send().await.unwrap();
    assert_eq!(scraped.status(), 200);
    let text = scraped.text().await.unwrap();
    let build = format!(
        "biometric_bridge_build_info{{component=\"ingress\",git_sha=\"{}\",version=\"{}\"}} 1",
        biometric_bridge::metrics::GIT_SHA,
        env!("CARGO_PKG_VERSION")
    );
    for expected in [
        build.as_str(),
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "biometric_bridge_circuit_state 0",
    ] {
        assert!(text.contains(expected), "/metrics lacks {expected}:\n{text}");
    }
    assert_ne!(biometric_bridge::metrics::GIT_SHA, "", "the build records its commit");
    let health = ingress.client.get(format!("http://{}/health", ingress.metrics_addr)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    ingress.stop().await;
}
