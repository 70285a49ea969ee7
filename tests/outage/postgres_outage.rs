//! The processor while PostgreSQL is stopped: identity lookups cannot be answered, which is not
//! the records' fault — they must neither be dead-lettered nor skipped. The processor pauses,
//! retries with backoff, and when PostgreSQL is back every record comes out exactly once.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::helpers::{self, TestTopology};
use crate::stack::{Outage, serial};

/// A Terra sleep for a user the identity cache has never seen (so the processor must ask
/// PostgreSQL for its link).
fn sleep_for_new_user(index: usize) -> (String, Vec<u8>) {
    let user = helpers::unique("pg-outage-user");
    let body = serde_json::json!({
        "type": "sleep",
        "user": {"user_id": user, "provider": "GARMIN", "reference_id": format!("athlete-{index}")},
        "data": [{
            "metadata": {"start_time": "2026-11-19T23:00:00+00:00", "end_time": "2026-11-20T06:00:00+00:00", "summary_id": helpers::unique("summary")},
            "heart_rate_data": {"summary": {"avg_hrv_rmssd": 45.0}}
        }]
    });
    (format!("terra:{user}"), serde_json::to_vec(&body).unwrap())
}

async fn produce(topic: &str, count: usize) {
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", helpers::bootstrap()).create().unwrap();
    for index in 0..count {
        let (key, body) = sleep_for_new_user(index);
        let received_at = chrono::Utc::now().timestamp_millis().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "vendor", value: Some("terra") })
            .insert(Header { key: "received-at", value: Some(received_at.as_str()) });
        producer
            .send(FutureRecord::to(topic).key(&key).payload(&body).headers(headers), Duration::from_secs(10))
            .await
            .map_err(|(error, _)| error)
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_pauses_the_processor_and_loses_nothing() {
    let _serial = serial().await;
    let topology = TestTopology::create(2).await;
    let raw = topology.topic("raw-webhooks");
    let events = topology.topic("terra-biometric-events");
    let dlq = topology.topic("raw-webhooks.dlq");
    let processor = helpers::spawn_processor(&topology, "pg-outage", &[]);

    produce(&raw, 1).await;
    assert_eq!(helpers::read_events(std::slice::from_ref(&events), 1, Duration::from_secs(60)).await.len(), 1, "{}", processor.log_tail());

    let outage = Outage::begin("postgres");
    produce(&raw, 5).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during = helpers::read_events(std::slice::from_ref(&events), 6, Duration::from_secs(3)).await;
    assert_eq!(during.len(), 1, "nothing new is emitted while identities cannot be resolved");
    assert!(helpers::read_raw(&dlq, 1, Duration::from_secs(2)).is_empty(), "an outage is not a poison pill");
    assert!(std::fs::read_to_string(&processor.log).unwrap().contains("pausing consumption"), "{}", processor.log_tail());
    outage.end();

    let after = helpers::read_events(std::slice::from_ref(&events), 6, Duration::from_secs(90)).await;
    assert_eq!(after.len(), 6, "every record once PostgreSQL is back\n{}", processor.log_tail());
    let mut ids: Vec<&str> = after.iter().map(|r| r.event.event_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "no duplicates");
    assert!(helpers::read_raw(&dlq, 1, Duration::from_secs(2)).is_empty());
}
