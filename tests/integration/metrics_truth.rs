//! The processor's `/metrics` against the broker's own figures: lag per partition is the log end
//! past the group's committed offset (what `kafka-consumer-groups --describe` says), from the
//! first seconds of a fresh group; a restore is one observation, not one per partition; and the
//! series alerts depend on exist, at zero, before anything happened.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::helpers::{self, ProcessorGuard, TestTopology};

const PARTITIONS: i32 = 4;
const PER_PARTITION: usize = 10;

/// `name{labels} value` lines of one metric, as label text → value.
fn series(metrics: &str, name: &str) -> BTreeMap<String, f64> {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter_map(|line| {
            let (labels, value) = line[name.len()..].rsplit_once(' ')?;
            Some((labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The lag gauge of each raw-webhooks partition, when all are exported.
fn raw_lag(metrics: &str, raw: &str) -> Option<Vec<i64>> {
    let lag = series(metrics, "biometric_bridge_consumer_lag_records");
    (0..PARTITIONS).map(|p| lag.get(&format!("{{partition=\"{p}\",topic=\"{raw}\"}}")).map(|v| *v as i64)).collect()
}

/// The broker's view: per partition, the end offset minus the group's committed offset (or
/// minus the log start when nothing is committed).
fn broker_lag(group: &str, raw: &str) -> Vec<i64> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", helpers::bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(raw, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    (0..PARTITIONS)
        .map(|p| {
            let (low, high) = consumer.fetch_watermarks(raw, p, Duration::from_secs(10)).unwrap();
            let from = match committed.find_partition(raw, p).unwrap().offset() {
                Offset::Offset(offset) => offset,
                _ => low,
            };
            high - from
        })
        .collect()
}

async fn wait_for<T>(what: &str, processor: &ProcessorGuard, within: Duration, mut check: impl FnMut(&str) -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        let metrics = processor.metrics().await;
        if let Some(found) = check(&metrics) {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} within {within:?}; last /metrics:\n{metrics}\nlog:\n{}", processor.log_tail());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn terra_sleep(index: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": "sleep",
        "user": {"user_id": format!("lag-user-{index}"), "provider": "GARMIN", "reference_id": format!("lag-athlete-{index}")},
        "data": [{
            "metadata": {"start_time": "2026-11-19T23:00:00.000000-05:00", "end_time": "2026-11-20T06:30:00.000000-05:00",
                         "summary_id": format!("lag-summary-{index}")},
            "heart_rate_data": {"summary": {"avg_hrv_rmssd": 55.0}}
        }]
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_restores_and_alerting_series_tell_the_truth() {
    let topology = TestTopology::create(PARTITIONS).await;
    let raw = topology.topic("raw-webhooks");
    let group = topology.topology.application_id.clone();
    // A long transaction: the backlog stays consumed-but-uncommitted for a while, so the gauge
    // can be caught with a known, non-zero lag and then seen to fall to zero at the commit.
    let processor = helpers::spawn_processor(&topology, "lag-0", &[("COMMIT_INTERVAL_MS", "15000"), ("COMMIT_MAX_RECORDS", "100000")]);

    // A fresh group with nothing committed and nothing to read: every partition reports 0.
    let lags = wait_for("lag on every partition of a fresh group", &processor, Duration::from_secs(60), |m| raw_lag(m, &raw)).await;
    assert_eq!(lags, vec![0; PARTITIONS as usize]);

    // Before anything went wrong, what alerts watch is there, at zero.
    let metrics = processor.metrics().await;
    for (name, labels) in [
        ("biometric_bridge_producer_fenced_total", ""),
        ("biometric_bridge_transactions_aborted_total", "{reason=\"abortable_error\"}"),
        ("biometric_bridge_infra_retries_total", "{dependency=\"postgresql\"}"),
        ("biometric_bridge_dlq_records_total", "{error_class=\"invalid_json\"}"),
        ("biometric_bridge_triggers_total", "{severity=\"CRITICAL\",trigger_type=\"URGENT_INTERVENTION\"}"),
    ] {
        assert_eq!(series(&metrics, name).get(labels), Some(&0.0), "{name}{labels} at zero from the start:\n{metrics}");
    }
    assert_eq!(series(&metrics, "biometric_bridge_build_info").values().sum::<f64>(), 1.0, "{metrics}");
    assert!(series(&metrics, "process_resident_memory_bytes").values().all(|v| *v > 0.0), "{metrics}");

    // Every store was restored once for the whole assignment, not once per partition.
    let restores = series(&metrics, "biometric_bridge_store_restore_duration_seconds_count");
    assert!(!restores.is_empty(), "{metrics}");
    for (store, count) in &restores {
        assert_eq!(*count, 1.0, "store {store}: one restore of {PARTITIONS} partitions is one observation");
    }

    // A known backlog: 10 records on each partition.
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", helpers::bootstrap()).create().unwrap();
    let received_at = chrono::Utc::now().timestamp_millis().to_string();
    for index in 0..PARTITIONS as usize * PER_PARTITION {
        let body = terra_sleep(index);
        let headers = OwnedHeaders::new()
            .insert(Header { key: "vendor", value: Some("terra") })
            .insert(Header { key: "received-at", value: Some(received_at.as_str()) });
        let record = FutureRecord::to(&raw).partition((index % PARTITIONS as usize) as i32).key("lag-user").payload(&body).headers(headers);
        producer.send(record, Duration::from_secs(10)).await.unwrap();
    }

    // Consumed, not yet committed: the gauge says 10 per partition, as the broker does.
    let expected = vec![PER_PARTITION as i64; PARTITIONS as usize];
    assert_eq!(broker_lag(&group, &raw), expected, "the transaction has not committed yet");
    let lags = wait_for("lag of the backlog", &processor, Duration::from_secs(12), |m| raw_lag(m, &raw).filter(|l| *l == expected)).await;
    assert_eq!(lags, broker_lag(&group, &raw));

    // After the commit the broker says 0, and so does the gauge (librdkafka's own figure, which
    // the gauge used to be, stays at 10: it never sees transactional commits).
    let deadline = Instant::now() + Duration::from_secs(30);
    while broker_lag(&group, &raw) != vec![0; PARTITIONS as usize] {
        assert!(Instant::now() < deadline, "the processor never committed:\n{}", processor.log_tail());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let zero = vec![0; PARTITIONS as usize];
    wait_for("lag back to zero after the commit", &processor, Duration::from_secs(15), |m| raw_lag(m, &raw).filter(|l| *l == zero)).await;
    let metrics = processor.metrics().await;
    assert!(series(&metrics, "biometric_bridge_transactions_committed_total").get("").is_some_and(|n| *n >= 1.0), "{metrics}");
}
