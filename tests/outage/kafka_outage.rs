//! Kafka down: webhooks are refused with 503 + Retry-After within the produce timeout (then
//! fast, once the circuit opens), `/ready` says 503; Kafka back: webhooks are accepted again, and
//! every webhook that was ever answered 2xx is in the topic exactly once, byte for byte.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::helpers;
use crate::ingress_harness::{Webhook, records, start};
use crate::ingress_support::TestIngress;
use crate::stack::{self, Outage};

const PRODUCE_TIMEOUT: Duration = Duration::from_millis(1_500);
/// Allowed on top of the produce timeout for everything else a request does (local Redis,
/// signature, scheduling on a busy 2-core machine).
const SLACK: Duration = Duration::from_millis(400);

/// The webhooks sent, by whether they were acknowledged.
#[derive(Default)]
struct Sent {
    run: String,
    seq: usize,
    acknowledged: Vec<Vec<u8>>,
    refused: Vec<Vec<u8>>,
}

impl Sent {
    /// Sends the next numbered webhook; returns its status, or the error code for a 503.
    async fn next(&mut self, ingress: &TestIngress) -> (u16, Option<String>, Duration) {
        self.seq += 1;
        let body = format!("{{\"type\":\"healthcheck\",\"run\":\"{}\",\"seq\":{}}}", self.run, self.seq);
        let webhook = Webhook::terra(body.as_bytes(), &format!("{}-{}", self.run, self.seq));
        let started = Instant::now();
        let response = webhook.send(ingress).await;
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        if response.status().is_success() {
            self.acknowledged.push(webhook.body);
            return (status, None, elapsed);
        }
        let headers = response.headers().clone();
        let code = response.json::<serde_json::Value>().await.unwrap()["error"].as_str().map(str::to_owned);
        assert_eq!(status, 503, "only 503 while Kafka is away ({code:?})");
        let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry_after >= 1, "Retry-After {retry_after}");
        self.refused.push(webhook.body);
        (status, code, elapsed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_outage_answers_503_in_time_and_loses_no_acknowledged_webhook() {
    let _serial = stack::serial().await;
    let timeout_ms = PRODUCE_TIMEOUT.as_millis().to_string();
    let (topic, ingress) = start(2, &["--produce-timeout-ms", &timeout_ms, "--circuit-recovery-secs", "2"]).await;
    stack::wait_ready(&ingress, 200, Duration::from_secs(15)).await;
    let mut sent = Sent { run: helpers::unique("kafka-outage"), ..Sent::default() };

    for _ in 0..5 {
        assert_eq!(sent.next(&ingress).await.0, 202);
    }

    let outage = Outage::begin("kafka");
    let not_ready = stack::wait_ready(&ingress, 503, Duration::from_secs(15)).await;
    assert_eq!(not_ready["error"], "kafka_unavailable", "{not_ready}");

    let mut codes = HashMap::<String, usize>::new();
    for _ in 0..10 {
        let (status, code, elapsed) = sent.next(&ingress).await;
        assert_eq!(status, 503);
        assert!(elapsed <= PRODUCE_TIMEOUT + SLACK, "answered after {elapsed:?}, produce timeout {PRODUCE_TIMEOUT:?}");
        *codes.entry(code.unwrap_or_default()).or_default() += 1;
    }
    assert!(codes.get("kafka_unavailable").is_some_and(|&n| n >= 5), "5 failures open the circuit: {codes:?}");
    assert!(codes.contains_key("circuit_open"), "then it fails fast: {codes:?}");
    let still = stack::wait_ready(&ingress, 503, Duration::ZERO).await;
    assert_eq!(still["status"], "not_ready", "{still}");

    outage.end();

    // Keep sending until the ingress has recovered: five 2xx in a row.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut in_a_row = 0;
    while in_a_row < 5 {
        assert!(Instant::now() < deadline, "no recovery within 90 s of Kafka being back");
        let (status, _, _) = sent.next(&ingress).await;
        in_a_row = if status == 202 { in_a_row + 1 } else { 0 };
        if status != 202 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let ready = stack::wait_ready(&ingress, 200, Duration::from_secs(15)).await;
    assert_eq!(ready["circuit"], "closed");

    // Every acknowledged webhook is there once, byte for byte. A refused one may be there too
    // (written after its 503); nothing else may.
    let found = records(&topic, sent.acknowledged.len() + sent.refused.len(), Duration::from_secs(20)).await;
    let mut count = HashMap::<&[u8], usize>::new();
    for record in &found {
        assert!(
            sent.acknowledged.contains(&record.payload) || sent.refused.contains(&record.payload),
            "a record that was never sent: {}",
            String::from_utf8_lossy(&record.payload)
        );
        *count.entry(record.payload.as_slice()).or_default() += 1;
    }
    for body in &sent.acknowledged {
        assert_eq!(count.get(body.as_slice()), Some(&1), "acknowledged exactly once: {}", String::from_utf8_lossy(body));
    }
    ingress.stop().await;
}
