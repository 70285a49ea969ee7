//! Bad data through the real processor: poison pills are dead-lettered once while records on the
//! same and other partitions keep flowing; impossible values never alarm; a correction replaces
//! its night in the baseline; PostgreSQL refusing a record's values is the record's fault.

use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::helpers::{self, TestTopology};

/// One raw record as the ingress writes it, to an explicit partition.
async fn produce(producer: &FutureProducer, topic: &str, partition: i32, vendor: &str, body: &[u8], extra: &[(&str, &str)]) {
    let received_at = chrono::Utc::now().timestamp_millis().to_string();
    let delivery = helpers::unique("delivery");
    let mut headers = OwnedHeaders::new()
        .insert(Header { key: "vendor", value: Some(vendor) })
        .insert(Header { key: "received-at", value: Some(received_at.as_str()) })
        .insert(Header { key: "delivery-id", value: Some(delivery.as_str()) });
    for (key, value) in extra {
        headers = headers.insert(Header { key, value: Some(*value) });
    }
    producer
        .send(FutureRecord::to(topic).partition(partition).key("test").payload(body).headers(headers), Duration::from_secs(10))
        .await
        .map_err(|(error, _)| error)
        .unwrap();
}

fn producer() -> FutureProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", helpers::bootstrap())
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "6291456")
        .create()
        .unwrap()
}

/// The Terra sleep fixture with `edit` applied.
fn terra_sleep(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(&helpers::fixture("terra/sleep.json")).unwrap();
    edit(&mut json);
    serde_json::to_vec(&json).unwrap()
}

/// A good night of a fresh user, recognisable by its summary id.
fn good_night(summary_id: &str) -> Vec<u8> {
    terra_sleep(|json| {
        json["data"][0]["metadata"]["summary_id"] = summary_id.into();
        json["user"]["reference_id"] = format!("user-{summary_id}").into();
    })
}

/// Events of `topic` as they are committed, recognised by their `event-id` header.
struct EventWatch {
    consumer: rdkafka::consumer::BaseConsumer,
    seen: std::collections::HashSet<String>,
}

impl EventWatch {
    fn new(topic: &str) -> EventWatch {
        use rdkafka::consumer::Consumer;
        let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", helpers::bootstrap())
            .set("group.id", helpers::unique("watch"))
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "20")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        EventWatch { consumer, seen: Default::default() }
    }

    /// Waits until the events of the Terra sleeps `summaries` were all committed.
    fn wait_for(&mut self, summaries: &[&str], timeout: Duration) -> bool {
        use rdkafka::message::{Headers, Message};
        let wanted: Vec<String> = summaries
            .iter()
            .map(|summary| {
                biometric_bridge::vendors::event_id(
                    biometric_bridge::event::Vendor::Terra,
                    biometric_bridge::event::EventKind::Sleep,
                    summary,
                )
            })
            .collect();
        let deadline = Instant::now() + timeout;
        while !wanted.iter().all(|id| self.seen.contains(id)) {
            if Instant::now() > deadline {
                return false;
            }
            let polled = tokio::task::block_in_place(|| self.consumer.poll(Duration::from_millis(50)));
            if let Some(Ok(message)) = polled
                && let Some(id) = message.headers().and_then(|h| h.iter().find(|h| h.key == "event-id")).and_then(|h| h.value)
            {
                self.seen.insert(String::from_utf8_lossy(id).into_owned());
            }
        }
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_pills_are_dead_lettered_once_and_nothing_stalls() {
    // A DLQ left at the broker's 1 MiB default beside the 6 MiB raw topic.
    let topology = TestTopology::create_with(2, |text| {
        text.replace(
            "[topics.\"raw-webhooks.dlq\"]\npartitions = 1\n",
            "[topics.\"raw-webhooks.dlq\"]\npartitions = 1\nmax_message_bytes = 1048576\n",
        )
    })
    .await;
    let (raw, events_topic, dlq) =
        (topology.topic("raw-webhooks"), topology.topic("terra-biometric-events"), topology.topic("raw-webhooks.dlq"));
    let processor = helpers::spawn_processor(&topology, "pills", &[]);
    let producer = producer();
    let mut watch = EventWatch::new(&events_topic);
    produce(&producer, &raw, 0, "terra", &good_night("warm-up"), &[]).await;
    assert!(watch.wait_for(&["warm-up"], Duration::from_secs(60)), "{}", processor.log_tail());

    let garbage: Vec<u8> = std::iter::repeat_n(b'#', 2 * 1024 * 1024).collect();
    // (name, expected error class, body, extra headers)
    type Pill = (&'static str, &'static str, Vec<u8>, Vec<(&'static str, &'static str)>);
    let pills: Vec<Pill> = vec![
        ("nul-user", "invalid_shape", terra_sleep(|json| {
            json["user"]["user_id"] = "bad\u{0}id".into();
            json["user"]["reference_id"] = serde_json::Value::Null;
        }), vec![]),
        ("huge-reference", "invalid_shape", terra_sleep(|json| json["user"]["reference_id"] = "x".repeat(2_500_000).into()), vec![]),
        ("garbage-2mb", "invalid_json", garbage, vec![]),
        ("apple-1e306-seconds", "implausible_value",
            br#"{"data":{"metrics":[{"name":"heart_rate_variability","units":"s","data":[{"qty":1e306,"date":"2026-11-20 03:14:52 -0800"}]}]}}"#.to_vec(),
            vec![("vendor-user-id", "apple-user")]),
    ];
    let mut latencies = Vec::new();
    for (name, _, body, extra) in &pills {
        let vendor = if name.starts_with("apple") { "apple-health" } else { "terra" };
        produce(&producer, &raw, 0, vendor, body, extra).await;
        let (same, other) = (format!("after-{name}-same"), format!("after-{name}-other"));
        let started = Instant::now();
        produce(&producer, &raw, 0, "terra", &good_night(&same), &[]).await;
        produce(&producer, &raw, 1, "terra", &good_night(&other), &[]).await;
        assert!(watch.wait_for(&[&same, &other], Duration::from_secs(30)), "stalled behind {name}:\n{}", processor.log_tail());
        latencies.push((name.to_string(), started.elapsed()));
    }
    eprintln!("records behind each pill came through after: {latencies:?}");
    for (name, latency) in &latencies {
        assert!(*latency < Duration::from_secs(2), "{name}: {latency:?}");
    }

    let letters = tokio::task::spawn_blocking(move || helpers::read_raw(&dlq, 10, Duration::from_secs(10))).await.unwrap();
    assert_eq!(letters.len(), pills.len(), "each pill dead-lettered exactly once");
    for (letter, (name, class, body, _)) in letters.iter().zip(&pills) {
        assert_eq!(letter.headers["error-class"], *class, "{name}");
        if body.len() > 1024 * 1024 {
            // Too large for the DLQ: written without its bytes, pointing at the raw record.
            assert_eq!(letter.headers["payload-omitted"], body.len().to_string(), "{name}");
            assert!(letter.payload.is_empty(), "{name}");
            assert_eq!(letter.headers["source-partition"], "0");
        } else {
            assert!(letter.payload == *body, "{name}: the original bytes");
        }
    }
    // Not a single abort, and no outage pause: the pills were the records' fault.
    let log = std::fs::read_to_string(&processor.log).unwrap();
    assert!(!log.contains("Aborting the transaction"), "{}", processor.log_tail());
    assert!(!log.contains("Dependency unavailable"), "{}", processor.log_tail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_hrv_never_raises_an_alarm() {
    let topology = TestTopology::create(1).await;
    let raw = topology.topic("raw-webhooks");
    let producer = producer();
    for (summary, rmssd) in [("minus-five", -5.0), ("zero", 0.0), ("a-billion", 1e9)] {
        let body = terra_sleep(|json| {
            json["data"][0]["metadata"]["summary_id"] = summary.into();
            json["data"][0]["heart_rate_data"]["summary"]["avg_hrv_rmssd"] = rmssd.into();
        });
        produce(&producer, &raw, 0, "terra", &body, &[]).await;
    }
    let processor = helpers::spawn_processor(&topology, "implausible", &[]);
    let events = helpers::read_events(&[topology.topic("terra-biometric-events")], 3, Duration::from_secs(60)).await;
    assert_eq!(events.len(), 3, "{}", processor.log_tail());
    for received in events {
        assert_eq!(received.headers["priority"], "NORMAL", "{:?}", received.event.vendor_record_id);
        assert!(received.event.triggers.is_empty());
        assert_eq!(received.event.hrv_rmssd_ms, None);
        assert_eq!(received.event.data_quality[0].field, "hrv_rmssd_ms");
        assert_eq!(received.event.data_quality[0].reason, "out_of_range");
    }
}

/// A night for `user` ending on `date` with rMSSD `rmssd`, record `summary_id`.
fn night(user: &str, summary_id: &str, date: &str, rmssd: f64) -> Vec<u8> {
    terra_sleep(|json| {
        json["user"]["reference_id"] = user.into();
        let data = &mut json["data"][0];
        data["metadata"]["summary_id"] = summary_id.into();
        data["metadata"]["start_time"] = format!("{date}T00:30:00.000000+00:00").into();
        data["metadata"]["end_time"] = format!("{date}T07:30:00.000000+00:00").into();
        data["heart_rate_data"]["summary"]["avg_hrv_rmssd"] = rmssd.into();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrected_night_replaces_its_value_in_the_baseline() {
    // One low night must be able to fire on its own: no two-day confirmation.
    let topology = TestTopology::create_with(1, |text| text.replace("confirm_days = 2", "confirm_days = 1")).await;
    let raw = topology.topic("raw-webhooks");
    let producer = producer();
    let user = helpers::unique("steady");
    // 30 steady nights, one low night, then the vendor's correction of that night.
    for day in 1..=30 {
        produce(&producer, &raw, 0, "terra", &night(&user, &format!("{user}-{day}"), &format!("2026-10-{day:02}"), 60.0), &[]).await;
    }
    produce(&producer, &raw, 0, "terra", &night(&user, &format!("{user}-31"), "2026-10-31", 30.0), &[]).await;
    produce(&producer, &raw, 0, "terra", &night(&user, &format!("{user}-31"), "2026-10-31", 58.0), &[]).await;
    let processor = helpers::spawn_processor(&topology, "corrections", &[]);
    let events = helpers::read_events(&[topology.topic("terra-biometric-events")], 32, Duration::from_secs(60)).await;
    assert_eq!(events.len(), 32, "{}", processor.log_tail());
    let low = &events[30].event;
    let corrected = &events[31].event;
    assert_eq!(low.event_id, corrected.event_id);
    assert_eq!(corrected.hrv_rmssd_ms, Some(58.0));
    let below = |event: &biometric_bridge::event::BiometricEvent| event.triggers.iter().any(|t| t.trigger_type == "HRV_BELOW_BASELINE");
    assert!(below(low), "the 30 ms night is below the band: {:?}", low.triggers);
    // Averaged with the old 30 ms the night would still be ~42 ms and below the band; replaced,
    // it is 58 ms and the week is back inside it.
    assert!(!below(corrected), "the corrected night replaced its value: {:?}", corrected.triggers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_refusing_a_value_is_the_record_s_fault_and_a_closed_port_is_an_outage() {
    helpers::require_stack();
    let database = biometric_bridge::config::DatabaseArgs { database_url: helpers::database_url(), database_max_connections: 1 };
    let mut map = biometric_bridge::identity::IdentityMap::new(database.migrated_pool().await.unwrap());
    let refused = map.lookup(biometric_bridge::event::Vendor::Terra, "bad\u{0}id").await.expect_err("PostgreSQL refuses a NUL");
    assert!(biometric_bridge::db::is_record_fault(&refused), "{refused}");

    let closed = biometric_bridge::config::DatabaseArgs {
        database_url: "postgres://bridge:bridge@127.0.0.1:1/none".into(),
        database_max_connections: 1,
    };
    let mut down = biometric_bridge::identity::IdentityMap::new(closed.pool().unwrap());
    let outage = down.lookup(biometric_bridge::event::Vendor::Terra, "someone").await.expect_err("nothing listens on port 1");
    assert!(!biometric_bridge::db::is_record_fault(&outage), "{outage}");
}
