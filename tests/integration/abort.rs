//! Fault injection with librdkafka's mock cluster (the real-broker tests cannot make the broker
//! fail on demand): an *abortable* transaction error mid-stream must make the processor abort,
//! rewind to the committed offsets, rebuild its stores and carry on — every input still exactly
//! once. The schema registry and PostgreSQL are the real ones; only Kafka is mocked.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use super::helpers::{self, TestTopology};

fn produce(bootstrap: &str, topic: &str, from: usize, count: usize) {
    let producer: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    for index in from..from + count {
        let body = serde_json::to_vec(&serde_json::json!({
            "type": "sleep",
            "user": {"user_id": format!("mock-user-{}", index % 5), "provider": "OURA", "reference_id": format!("athlete-{}", index % 5)},
            "data": [{
                "metadata": {"start_time": "2026-11-19T23:00:00+00:00", "end_time": "2026-11-20T06:00:00+00:00", "summary_id": format!("mock-{index}")},
                "heart_rate_data": {"summary": {"avg_hrv_rmssd": 50.0}}
            }]
        }))
        .unwrap();
        let key = format!("terra:mock-user-{}", index % 5);
        let headers = OwnedHeaders::new().insert(Header { key: "vendor", value: Some("terra") });
        producer.send(BaseRecord::to(topic).key(&key).payload(&body).headers(headers)).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Event ids (by count) visible to a read_committed reader of the mock cluster.
fn committed_event_ids(bootstrap: &str, topic: &str, minimum: usize, timeout: Duration) -> HashMap<String, usize> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", helpers::unique("mock-reader"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let (mut ids, mut total, mut idle) = (HashMap::new(), 0usize, Instant::now());
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !(total >= minimum && idle.elapsed() > Duration::from_secs(3)) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let id = message.headers().and_then(|h| h.iter().find(|h| h.key == "event-id").and_then(|h| h.value)).unwrap();
            *ids.entry(String::from_utf8_lossy(id).into_owned()).or_insert(0) += 1;
            total += 1;
            idle = Instant::now();
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abortable_transaction_error_aborts_rewinds_and_loses_nothing() {
    let topology = TestTopology::create(2).await;
    let mock = MockCluster::new(1).unwrap();
    for topic in &topology.topology.topics {
        mock.create_topic(&topic.name, topic.partitions, 1).unwrap();
    }
    let bootstrap = mock.bootstrap_servers();
    let raw = topology.topic("raw-webhooks");
    let out = topology.topic("terra-biometric-events");

    let processor = helpers::spawn_processor(&topology, "mock", &[("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str())]);
    produce(&bootstrap, &raw, 0, 200);
    let first = tokio::task::block_in_place(|| committed_event_ids(&bootstrap, &out, 200, Duration::from_secs(60)));
    assert_eq!(first.len(), 200, "before the fault\n{}", processor.log_tail());

    // The next transaction cannot register its partitions: an abortable error.
    mock.request_errors(RDKafkaApiKey::AddPartitionsToTxn, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED]);
    produce(&bootstrap, &raw, 200, 200);

    let ids = tokio::task::block_in_place(|| committed_event_ids(&bootstrap, &out, 400, Duration::from_secs(90)));
    let log = std::fs::read_to_string(&processor.log).unwrap();
    assert!(log.contains("Aborting the transaction"), "the fault was hit:\n{}", processor.log_tail());
    assert!(log.contains("Rewound to the committed offsets"), "{}", processor.log_tail());
    let duplicated = ids.values().filter(|n| **n > 1).count();
    assert_eq!((ids.len(), duplicated), (400, 0), "every input exactly once after the abort\n{}", processor.log_tail());
}
