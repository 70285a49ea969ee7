//! A second instance started with the same instance id (a restarted pod while the old one is
//! still alive — a zombie) fences the first: the old producer can no longer commit, the old
//! process exits non-zero for its supervisor, and every input still comes out exactly once.

use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::helpers::{self, TestTopology};

async fn produce(topic: &str, from: usize, count: usize) {
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", helpers::bootstrap()).create().unwrap();
    for index in from..from + count {
        let body = serde_json::to_vec(&serde_json::json!({
            "type": "sleep",
            "user": {"user_id": format!("fence-user-{}", index % 7), "provider": "OURA", "reference_id": format!("athlete-{}", index % 7)},
            "data": [{
                "metadata": {"start_time": "2026-11-19T23:00:00+00:00", "end_time": "2026-11-20T06:00:00+00:00", "summary_id": format!("fence-{index}")},
                "heart_rate_data": {"summary": {"avg_hrv_rmssd": 50.0}}
            }]
        }))
        .unwrap();
        let key = format!("terra:fence-user-{}", index % 7);
        let headers = OwnedHeaders::new().insert(Header { key: "vendor", value: Some("terra") });
        producer
            .send(FutureRecord::to(topic).key(&key).payload(&body).headers(headers), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_is_fenced_and_exits_non_zero_while_nothing_is_lost_or_doubled() {
    zombie_run("same-id", &[]).await;
}

/// With two stream threads each thread's producer has its own transactional id: the new
/// instance's threads fence the old one's, and the zombie still exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_with_two_stream_threads_is_fenced_and_nothing_is_lost_or_doubled() {
    zombie_run("same-id-threads", &[("PROCESSOR_THREADS", "2")]).await;
}

async fn zombie_run(instance: &str, env: &[(&str, &str)]) {
    let topology = TestTopology::create(2).await;
    let raw = topology.topic("raw-webhooks");
    let out = topology.topic("terra-biometric-events");

    produce(&raw, 0, 200).await;
    let mut old = helpers::spawn_processor(&topology, instance, env);
    assert_eq!(helpers::read_events(std::slice::from_ref(&out), 200, Duration::from_secs(60)).await.len(), 200, "{}", old.log_tail());

    let new = helpers::spawn_processor(&topology, instance, env);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = old.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the fenced instance is still running:\n{}", old.log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!status.success(), "a fenced instance exits non-zero");
    let log = std::fs::read_to_string(&old.log).unwrap();
    assert!(log.to_lowercase().contains("fenced"), "the reason is logged:\n{}", old.log_tail());

    produce(&raw, 200, 200).await;
    let events = helpers::read_events(std::slice::from_ref(&out), 400, Duration::from_secs(60)).await;
    let mut ids: Vec<&str> = events.iter().map(|r| r.event.event_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((events.len(), ids.len()), (400, 400), "{}", new.log_tail());
}
