//! The exactly-once proof: 10 000 raw records, the processor SIGKILLed at random moments and
//! restarted again and again, and then every input must have produced exactly one output — no
//! loss, no duplicate — as seen by a read_committed consumer.
//!
//! The de-duplication store is taken out of the topology for this test: with it, a duplicate
//! produced by a broken transaction could be hidden by the store. Without it, only the
//! transactions (outputs + offsets committed atomically) stand between a crash and a duplicate.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use biometric_bridge::event::{EventKind, Vendor};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::helpers::{self, TestTopology};

const RECORDS: usize = 10_000;
const POISON_EVERY: usize = 500;
const USERS: usize = 50;
const KILLS: usize = 6;

/// A compact Terra sleep webhook with its own summary id (so its own event id).
pub fn sleep_payload(index: usize) -> (String, Vec<u8>) {
    let summary_id = format!("crash-summary-{index:05}");
    let user = format!("crash-user-{}", index % USERS);
    let rmssd = 15.0 + (index % 60) as f64;
    let body = serde_json::json!({
        "type": "sleep",
        "version": "2022-03-16",
        "user": {"user_id": user, "provider": "GARMIN", "reference_id": format!("athlete-{}", index % USERS)},
        "data": [{
            "metadata": {
                "start_time": "2026-11-19T23:00:00.000000-05:00",
                "end_time": "2026-11-20T06:30:00.000000-05:00",
                "summary_id": summary_id,
                "timestamp_localization": 1
            },
            "heart_rate_data": {"summary": {"avg_hrv_rmssd": rmssd, "avg_hr_bpm": 52.0}}
        }]
    });
    (summary_id, serde_json::to_vec(&body).unwrap())
}

pub fn ingress_headers(index: usize) -> OwnedHeaders {
    let received_at = chrono::Utc::now().timestamp_millis().to_string();
    OwnedHeaders::new()
        .insert(Header { key: "vendor", value: Some("terra") })
        .insert(Header { key: "received-at", value: Some(received_at.as_str()) })
        .insert(Header { key: "delivery-id", value: Some(format!("crash-delivery-{index}").as_str()) })
        .insert(Header { key: "trace-id", value: Some(format!("{index:032x}").as_str()) })
}

/// Output event ids by count, read to the end with read_committed.
pub fn count_event_ids(topic: &str, minimum: usize, timeout: Duration) -> HashMap<String, usize> {
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", helpers::bootstrap())
        .set("group.id", helpers::unique("crash-verify"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    rdkafka::consumer::Consumer::subscribe(&consumer, &[topic]).unwrap();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + timeout;
    let mut total = 0usize;
    let mut idle_since = Instant::now();
    // Read until we have at least `minimum` and nothing new came for 5 s (to catch extras).
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let id = message
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "event-id").and_then(|h| h.value))
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .expect("every event has an event-id header");
                *counts.entry(id).or_default() += 1;
                total += 1;
                idle_since = Instant::now();
            }
            _ if total >= minimum && idle_since.elapsed() > Duration::from_secs(5) => break,
            _ => {}
        }
    }
    counts
}

fn count_records(topic: &str, timeout: Duration, minimum: usize) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        seen = helpers::read_raw(topic, usize::MAX, Duration::from_secs(4))
            .into_iter()
            .map(|r| {
                (
                    r.headers.get("source-offset").cloned().unwrap_or_default(),
                    r.headers.get("source-partition").cloned().unwrap_or_default(),
                )
            })
            .collect();
        if seen.len() >= minimum {
            break;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    crash_run(&["crash"], 1).await;
}

/// The same with two stream threads: two transactional producers in one process, each
/// committing its own tasks' offsets, killed together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_two_stream_threads_loses_and_duplicates_nothing() {
    crash_run(&["crash-threads"], 2).await;
}

/// Two instances of two threads each, one of them killed at each round (in turn): its tasks
/// move to the survivor's threads and back, while the other keeps committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_among_two_instances_of_two_threads_loses_and_duplicates_nothing() {
    crash_run(&["crash-a", "crash-b"], 2).await;
}

/// Preloads the records, runs `instances` (each with `threads` stream threads), SIGKILLs one of
/// them `KILLS` times at random moments (restarted at once with its id), and checks every input
/// came out exactly once.
async fn crash_run(instances: &[&str], threads: usize) {
    let topology = TestTopology::create_with(4, helpers::without_dedup_store).await;
    assert!(topology.topology.dedup.is_none(), "the crash test runs without the dedup store");
    let raw = topology.topic("raw-webhooks");

    // Preload: 10 000 distinct webhooks, every 500th a poison pill.
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", helpers::bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let mut expected: Vec<String> = Vec::new();
    let mut poison = 0usize;
    let mut deliveries = Vec::with_capacity(RECORDS);
    for index in 0..RECORDS {
        let key = format!("terra:crash-user-{}", index % USERS);
        let payload = if index % POISON_EVERY == POISON_EVERY - 1 {
            poison += 1;
            b"{\"type\": \"sleep\", \"data\": [ truncated".to_vec()
        } else {
            let (summary_id, body) = sleep_payload(index);
            expected.push(biometric_bridge::vendors::event_id(Vendor::Terra, EventKind::Sleep, &summary_id));
            body
        };
        let record = FutureRecord::to(&raw).key(&key).payload(&payload).headers(ingress_headers(index));
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap().unwrap();
    }

    // Kill a processor at random moments, restart it with the same instance id each time. A
    // short session lets a killed instance's tasks move to the survivor (with several
    // instances) before it comes back.
    let threads = threads.to_string();
    let env = [("PROCESSOR_THREADS", threads.as_str()), ("SESSION_TIMEOUT_MS", "6000")];
    let mut processors: Vec<_> = instances.iter().map(|id| helpers::spawn_processor(&topology, id, &env)).collect();
    let mut kills = 0;
    while kills < KILLS {
        let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 12; // 0..3 s
        tokio::time::sleep(Duration::from_millis(1_500 + jitter)).await;
        let victim = kills % processors.len();
        processors[victim].child.kill().unwrap(); // SIGKILL
        processors[victim].child.wait().unwrap();
        kills += 1;
        processors[victim] = helpers::spawn_processor(&topology, instances[victim], &env);
    }
    let tails = || processors.iter().map(|p| p.log_tail()).collect::<Vec<_>>().join("\n----\n");

    let counts = count_event_ids(&topology.topic("terra-biometric-events"), expected.len(), Duration::from_secs(240));
    let missing: Vec<&String> = expected.iter().filter(|id| !counts.contains_key(*id)).collect();
    let duplicated: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let unexpected = counts.keys().filter(|id| !expected.contains(id)).count();
    assert!(
        missing.is_empty() && duplicated.is_empty() && unexpected == 0,
        "{} instance(s) x {threads} thread(s), after {kills} SIGKILLs: {} missing, {} duplicated, {unexpected} unexpected of {} (processor log tails:\n{})",
        instances.len(),
        missing.len(),
        duplicated.len(),
        expected.len(),
        tails()
    );

    // Poison pills went to the DLQ once each, and processing went on past them.
    let dead = count_records(&topology.topic("raw-webhooks.dlq"), Duration::from_secs(30), poison);
    let mut unique = dead.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((dead.len(), unique.len()), (poison, poison), "each poison pill dead-lettered exactly once");
    drop(processors);
}
