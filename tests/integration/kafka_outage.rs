//! Readiness follows Kafka, not the traffic: an ingress that started while Kafka was
//! unreachable, and whose circuit opened on the failed writes, takes webhooks again within
//! seconds of Kafka answering, long before the circuit's 60 s recovery period and with no
//! webhook needed to find out.

use std::time::{Duration, Instant};

use super::helpers;
use super::ingress_harness::{Webhook, raw_topic};
use super::ingress_support::{spawn_ingress, test_secrets};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_closes_when_kafka_takes_writes_again_without_waiting_for_a_webhook() {
    let topic = raw_topic(1).await;
    let port = helpers::closed_port();
    let bootstrap = format!("127.0.0.1:{port}");
    let flags = ["--kafka-bootstrap-servers", &bootstrap, "--produce-timeout-ms", "1000", "--circuit-failure-threshold", "2"];
    let ingress = spawn_ingress(&topic, test_secrets(), &flags).await;
    let ready = || async { ingress.client.get(ingress.url("/ready")).send().await.unwrap().json::<serde_json::Value>().await.unwrap() };

    // Kafka unreachable: writes fail (503), the circuit opens, /ready says why.
    for n in 0..2 {
        let webhook = Webhook::terra(&helpers::fixture("terra/sleep.json"), &helpers::unique(&format!("outage-{n}")));
        assert_eq!(webhook.send(&ingress).await.status(), 503);
    }
    let body = ready().await;
    assert_eq!(body["status"], "not_ready", "{body}");
    let refused = Webhook::terra(&helpers::fixture("terra/sleep.json"), &helpers::unique("refused")).send(&ingress).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.json::<serde_json::Value>().await.unwrap()["error"], "circuit_open");

    // Kafka answers: ready within seconds, with no webhook sent meanwhile.
    let _proxy = helpers::open_proxy(port, helpers::bootstrap()).await;
    let opened = Instant::now();
    loop {
        let body = ready().await;
        if body["status"] == "ready" {
            break;
        }
        assert!(opened.elapsed() < Duration::from_secs(15), "still not ready 15 s after Kafka came back: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready_after = opened.elapsed();
    assert!(ready_after < Duration::from_secs(15), "the circuit's recovery period is 60 s; ready after {ready_after:?}");
    let webhook = Webhook::terra(&helpers::fixture("terra/sleep.json"), &helpers::unique("after"));
    assert_eq!(webhook.send(&ingress).await.status(), 202);
    eprintln!("ready {ready_after:?} after Kafka became reachable");
    ingress.stop().await;
}
