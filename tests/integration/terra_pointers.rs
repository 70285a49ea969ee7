//! Terra as it really delivers, through the real processor: pointers on its Kafka destination
//! and in large webhooks are downloaded (from the `terra_sim` stand-in for S3), kept durably in
//! the raw topic and turned into exactly one set of events; an expired URL is dead-lettered and
//! recovered through Terra's API; a crash mid-download loses and duplicates nothing; 10 MB
//! chunks pass; an incomplete large request is reported; healthchecks are counted.

use std::collections::HashMap;
use std::time::Duration;

use biometric_bridge::at_rest::{self, DataKeys, Kek, Reading};
use biometric_bridge::secret::Secret;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::helpers::{self, ProcessorGuard, TestTopology};
use super::ingress_harness::{Webhook, assert_accepted};
use super::ingress_support::{spawn_ingress, test_secrets};
use super::terra_sim::{self, TerraSim};

/// The processor's environment for downloads from the simulator (plain HTTP on 127.0.0.1).
const DOWNLOAD_ENV: [(&str, &str); 2] = [("TERRA_PAYLOAD_HOSTS", "127.0.0.1"), ("INSECURE_TERRA_PAYLOAD_HTTP", "true")];

fn producer() -> FutureProducer {
    rdkafka::ClientConfig::new().set("bootstrap.servers", helpers::bootstrap()).set("message.max.bytes", "20000000").create().unwrap()
}

/// A producer connected as Terra's destination connects: SASL PLAIN over TLS, as the stack's
/// `terra` user (`scripts/stack`'s SASL_SSL listener).
fn terra_producer() -> FutureProducer {
    let stack = helpers::stack_var;
    let password = std::fs::read_to_string(stack("STACK_KAFKA_TERRA_PASSWORD_FILE")).unwrap();
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", stack("STACK_KAFKA_SASL_BOOTSTRAP_SERVERS"))
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", "PLAIN")
        .set("sasl.username", "terra")
        .set("sasl.password", password.trim())
        .set("ssl.ca.location", stack("STACK_KAFKA_CA_LOCATION"))
        .create()
        .unwrap()
}

/// Publishes `body` to `topic` as Terra's Kafka destination does: no key, no headers.
async fn publish(producer: &FutureProducer, topic: &str, body: &[u8]) {
    producer.send(FutureRecord::<(), [u8]>::to(topic).payload(body), Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
}

/// A Terra sleep webhook of `user` for record `summary_id` (rMSSD 58 ms).
fn sleep(user: &str, summary_id: &str) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(&helpers::fixture("terra/sleep.json")).unwrap();
    json["user"]["user_id"] = format!("terra-{user}").into();
    json["user"]["reference_id"] = user.into();
    json["data"][0]["metadata"]["summary_id"] = summary_id.into();
    serde_json::to_vec(&json).unwrap()
}

fn event_id(summary_id: &str) -> String {
    biometric_bridge::vendors::event_id(biometric_bridge::event::Vendor::Terra, biometric_bridge::event::EventKind::Sleep, summary_id)
}

fn processor(topology: &TestTopology, instance: &str) -> ProcessorGuard {
    helpers::spawn_processor(topology, instance, &DOWNLOAD_ENV)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pointer_on_terra_direct_becomes_an_event_and_a_durable_raw_record() {
    let sim = TerraSim::start();
    let topology = TestTopology::create(2).await;
    let body = sleep("pointer-user", "pointer-night-1");
    let url = sim.store_payload(body.clone(), Duration::from_secs(600));
    let producer = terra_producer();
    publish(&producer, &topology.topic("terra-direct"), &TerraSim::pointer(&url, 600)).await;
    publish(&producer, &topology.topic("terra-direct"), br#"{"type":"healthcheck","status":"success"}"#).await;
    // A record with its data (and its user) on the destination too.
    let direct = sleep("direct-user", "direct-night-1");
    publish(&producer, &topology.topic("terra-direct"), &direct).await;
    // With the stack's key-encryption key: what the processor writes about a person is sealed.
    let key = helpers::stack_data_key();
    let env = [DOWNLOAD_ENV[0], DOWNLOAD_ENV[1], ("DATA_ENCRYPTION_KEY", key.as_str())];
    let processor = helpers::spawn_processor(&topology, "direct", &env);

    let mut events = helpers::read_events(&[topology.topic("terra-biometric-events")], 2, Duration::from_secs(60)).await;
    assert_eq!(events.len(), 2, "{}", processor.log_tail());
    events.sort_by(|a, b| a.event.user_id.cmp(&b.event.user_id));
    assert_eq!(events[0].event.event_id, event_id("direct-night-1"));
    assert_eq!(events[1].event.event_id, event_id("pointer-night-1"));
    assert_eq!(events[1].event.user_id, "pointer-user");
    assert_eq!(events[1].event.hrv_rmssd_ms, Some(58.0));

    let pool = sqlx::PgPool::connect(&helpers::database_url()).await.unwrap();
    let keys = DataKeys::new(pool, Kek::from_secrets(&Secret::new(key.clone()), None).unwrap(), Duration::ZERO);
    let keys = &keys;
    let open = |payload: Vec<u8>| async move { at_rest::read(Some(keys), &payload).await.unwrap() };

    // The repartition copies: the record naming its user is sealed under the user's data key
    // (keyed by the key id, as the ingress keys its records); the pointer names no one.
    let repartition = format!("bb-{}-terra-direct-repartition", topology.id);
    let copies = tokio::task::spawn_blocking(move || helpers::read_raw(&repartition, 3, Duration::from_secs(5))).await.unwrap();
    assert_eq!(copies.len(), 3, "pointer, healthcheck, record");
    let sealed: Vec<_> = copies.iter().filter(|copy| at_rest::envelope::parse(&copy.payload).is_some()).collect();
    assert_eq!(sealed.len(), 1, "only the record naming its user");
    assert!(String::from_utf8_lossy(sealed[0].key.as_deref().unwrap()).starts_with("terra:k_"));
    assert!(!String::from_utf8_lossy(&sealed[0].payload).contains("direct-user"));
    match open(sealed[0].payload.clone()).await {
        Reading::Opened(opened) => {
            assert!(opened.body == direct, "byte for byte");
            assert_eq!(opened.vendor_user_id.as_deref(), Some("terra-direct-user"));
        }
        _ => panic!("the repartition copy does not open"),
    }

    // The payload itself is in the raw topic, sealed under its user's key, with where it came from.
    let raw = topology.topic("raw-webhooks");
    let records = tokio::task::spawn_blocking(move || helpers::read_raw(&raw, 2, Duration::from_secs(5))).await.unwrap();
    assert_eq!(records.len(), 1, "exactly the downloaded payload");
    let record = &records[0];
    let key_id = at_rest::envelope::parse(&record.payload).expect("sealed").key_id;
    assert_eq!(record.key.as_deref(), Some(format!("terra:k_{}", key_id.simple()).as_bytes()));
    assert!(!String::from_utf8_lossy(&record.payload).contains("pointer-user"), "nothing in the clear");
    match open(record.payload.clone()).await {
        Reading::Opened(opened) => {
            assert!(opened.body == body, "byte for byte");
            assert_eq!(opened.vendor_user_id.as_deref(), Some("terra-pointer-user"));
        }
        _ => panic!("the downloaded payload does not open"),
    }
    assert!(record.headers["terra-pointer-origin"].starts_with(&format!("{}/", topology.topic("terra-direct"))));
    assert!(record.headers.contains_key("terra-payload-reference"));
    assert!(record.headers["downloaded-at"].parse::<i64>().unwrap() > 0);
    assert_eq!(record.headers["vendor"], "terra");

    let metrics = processor.metrics().await;
    assert!(metrics.contains("biometric_bridge_terra_healthchecks_total 1"), "{metrics}");
    assert!(metrics.contains("biometric_bridge_terra_pointers_total{outcome=\"downloaded\"} 1"), "{metrics}");
    assert_eq!(sim.storage_hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_webhook_sent_as_a_pointer_is_downloaded_and_processed() {
    let sim = TerraSim::start();
    let topology = TestTopology::create(2).await;
    let ingress = spawn_ingress(&topology.topic("raw-webhooks"), test_secrets(), &[]).await;
    let body = sleep("webhook-pointer-user", "webhook-pointer-night");
    let url = sim.store_payload(body, Duration::from_secs(300));
    let pointer =
        serde_json::to_vec(&serde_json::json!({"type": "s3_payload", "status": "success", "url": url, "expires_in": 300})).unwrap();
    assert_accepted(Webhook::terra(&pointer, &helpers::unique("pointer")).send(&ingress).await, 202, "accepted").await;
    let processor = processor(&topology, "webhook-pointer");
    let events = helpers::read_events(&[topology.topic("terra-biometric-events")], 1, Duration::from_secs(60)).await;
    assert_eq!(events.len(), 1, "{}", processor.log_tail());
    assert_eq!(events[0].event.event_id, event_id("webhook-pointer-night"));
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_pointer_is_dead_lettered_and_reconcile_recovers_it_once() {
    let sim = TerraSim::start();
    let topology = TestTopology::create(2).await;
    let ingress = spawn_ingress(&topology.topic("raw-webhooks"), test_secrets(), &[]).await;
    let user = helpers::unique("expired");
    let body = sleep(&user, &format!("{user}-night"));
    // The processor was down for longer than the URL lived.
    let url = sim.store_payload(body.clone(), Duration::from_millis(200));
    tokio::time::sleep(Duration::from_millis(400)).await;
    publish(&producer(), &topology.topic("terra-direct"), &TerraSim::pointer(&url, 600)).await;
    let processor = processor(&topology, "expired");

    let dlq = topology.topic("raw-webhooks.dlq");
    let letters = tokio::task::spawn_blocking(move || helpers::read_raw(&dlq, 1, Duration::from_secs(60))).await.unwrap();
    assert_eq!(letters.len(), 1, "{}", processor.log_tail());
    assert_eq!(letters[0].headers["error-class"], "terra_payload_expired");
    assert!(letters[0].headers.contains_key("terra-payload-reference"));

    // Terra holds the data; its API re-sends the window to our webhook.
    let database = biometric_bridge::config::DatabaseArgs { database_url: helpers::database_url(), database_max_connections: 1 };
    let mut identities = biometric_bridge::identity::IdentityMap::new(database.migrated_pool().await.unwrap());
    let link = biometric_bridge::vendors::IdentityChange::Link {
        vendor: biometric_bridge::event::Vendor::Terra,
        vendor_user_id: format!("terra-{user}"),
        user_id: user.clone(),
        provider: Some("OURA".into()),
    };
    identities.apply(&link).await.unwrap();
    sim.add_history(&format!("terra-{user}"), "sleep", body);
    sim.set_destination(&ingress.url("/webhooks/terra"), helpers::TERRA_SECRET);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_biometric-bridge"))
        .args(["reconcile", "--vendor", "terra", "--since", "2d", "--user", &format!("terra-{user}")])
        .env("DATABASE_URL", helpers::database_url())
        .env("KAFKA_BOOTSTRAP_SERVERS", helpers::bootstrap())
        .env("TERRA_API_BASE", sim.base())
        .env("TERRA_DEV_ID", terra_sim::DEV_ID)
        .env("TERRA_API_KEY", terra_sim::API_KEY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("terra: 1 users, 4 windows re-requested, 0 failed"), "{stdout}");
    assert!(sim.api_requests().iter().any(|q| q.starts_with("sleep?") && q.contains("to_webhook=true")), "{:?}", sim.api_requests());

    let events = helpers::read_events(&[topology.topic("terra-biometric-events")], 2, Duration::from_secs(30)).await;
    assert_eq!(events.len(), 1, "exactly one event: {}", processor.log_tail());
    assert_eq!(events[0].event.event_id, event_id(&format!("{user}-night")));
    ingress.stop().await;
}

/// Event ids by count in `topic`, read until `expected` arrived and the topic was quiet a while.
async fn count_events(topic: &str, expected: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for received in helpers::read_events(&[topic.to_owned()], expected + 1, Duration::from_secs(90)).await {
        *counts.entry(received.event.event_id).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_download_loses_and_duplicates_nothing() {
    let sim = TerraSim::start();
    sim.set_storage_delay(Duration::from_millis(150));
    // Without the dedup store, only the transactions stand between a crash and a duplicate.
    let topology = TestTopology::create_with(2, helpers::without_dedup_store).await;
    let producer = producer();
    const POINTERS: usize = 120;
    for index in 0..POINTERS {
        let url = sim.store_payload(sleep(&format!("crash-{}", index % 7), &format!("crash-night-{index}")), Duration::from_secs(600));
        publish(&producer, &topology.topic("terra-direct"), &TerraSim::pointer(&url, 600)).await;
    }
    for kill in 0..3 {
        let mut processor = processor(&topology, "crashy");
        tokio::time::sleep(Duration::from_millis(2_500 + 700 * kill)).await;
        processor.child.kill().unwrap();
        processor.child.wait().unwrap();
    }
    let processor = processor(&topology, "crashy");
    let counts = count_events(&topology.topic("terra-biometric-events"), POINTERS).await;
    assert_eq!(counts.len(), POINTERS, "every payload's event: {}", processor.log_tail());
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "duplicates: {doubled:?}");
    let raw = topology.topic("raw-webhooks");
    let written = tokio::task::spawn_blocking(move || helpers::read_raw(&raw, POINTERS + 1, Duration::from_secs(10))).await.unwrap();
    assert_eq!(written.len(), POINTERS, "each payload written to the raw topic exactly once");
    assert!(sim.storage_hits() >= POINTERS, "downloads were interrupted and done again: {}", sim.storage_hits());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_megabyte_chunk_goes_through() {
    let sim = TerraSim::start();
    let topology = TestTopology::create(1).await;
    let mut json: serde_json::Value = serde_json::from_slice(&sleep("big-user", "big-night")).unwrap();
    // A long night's detailed samples, as Terra's 10 MB chunks carry them.
    let samples: Vec<serde_json::Value> = (0..175_000)
        .map(|i| serde_json::json!({"bpm": 50 + i % 20, "timestamp": format!("2026-11-20T{:02}:{:02}:{:02}.000000-05:00", i / 3600 % 24, i / 60 % 60, i % 60)}))
        .collect();
    json["data"][0]["heart_rate_data"]["detailed"]["hr_samples"] = samples.into();
    let body = serde_json::to_vec(&json).unwrap();
    assert!(body.len() > 10_000_000, "{} bytes", body.len());
    let url = sim.store_payload(body, Duration::from_secs(600));
    publish(&producer(), &topology.topic("terra-direct"), &TerraSim::pointer(&url, 600)).await;
    let processor = processor(&topology, "big");
    let events = helpers::read_events(&[topology.topic("terra-biometric-events")], 1, Duration::from_secs(90)).await;
    assert_eq!(events.len(), 1, "{}", processor.log_tail());
    assert_eq!(events[0].event.event_id, event_id("big-night"));
}

async fn produce_raw(topic: &str, body: &[u8], extra: &[(&str, &str)]) {
    let received_at = chrono::Utc::now().timestamp_millis().to_string();
    let mut headers = OwnedHeaders::new()
        .insert(Header { key: "vendor", value: Some("terra") })
        .insert(Header { key: "received-at", value: Some(received_at.as_str()) });
    for (key, value) in extra {
        headers = headers.insert(Header { key, value: Some(*value) });
    }
    producer()
        .send(FutureRecord::to(topic).key("terra:backfill").payload(body).headers(headers), Duration::from_secs(10))
        .await
        .map_err(|(error, _)| error)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_historical_request_with_a_missing_chunk_is_reported() {
    let topology = TestTopology::create_with(1, |text| text.replace("timeout_secs = 21600", "timeout_secs = 3")).await;
    let raw = topology.topic("raw-webhooks");
    let user = serde_json::json!({"user_id": "terra-backfiller", "provider": "GARMIN", "reference_id": "backfiller"});
    for (reference, expected, chunks) in [("complete-ref", 2, 2), ("missing-ref", 3, 2)] {
        let processing =
            serde_json::json!({"type": "large_request_processing", "status": "processing", "reference": reference, "user": user});
        produce_raw(&raw, &serde_json::to_vec(&processing).unwrap(), &[]).await;
        let sending =
            serde_json::json!({"type": "large_request_sending", "reference": reference, "expected_payloads": expected, "user": user});
        produce_raw(&raw, &serde_json::to_vec(&sending).unwrap(), &[]).await;
        for chunk in 1..=chunks {
            let body = sleep("backfiller", &format!("{reference}-night-{chunk}"));
            let delivery = format!("{reference}-trace:chunk:{chunk}");
            produce_raw(&raw, &body, &[("terra-reference", reference), ("delivery-id", &delivery)]).await;
        }
    }
    let processor = helpers::spawn_processor(&topology, "backfill", &[]);
    let events = helpers::read_events(&[topology.topic("terra-biometric-events")], 4, Duration::from_secs(60)).await;
    assert_eq!(events.len(), 4, "the chunks' nights are events like any other: {}", processor.log_tail());

    let dlq = topology.topic("raw-webhooks.dlq");
    let letters = tokio::task::spawn_blocking(move || helpers::read_raw(&dlq, 2, Duration::from_secs(30))).await.unwrap();
    assert_eq!(letters.len(), 1, "only the incomplete request: {}", processor.log_tail());
    assert_eq!(letters[0].headers["error-class"], "terra_backfill_incomplete");
    assert_eq!(letters[0].headers["terra-reference"], "missing-ref");
    assert!(letters[0].headers["error-message"].contains("2 of 3 chunks"), "{:?}", letters[0].headers);
    let metrics = processor.metrics().await;
    assert!(metrics.contains("biometric_bridge_terra_backfills_total{outcome=\"completed\"} 1"), "{metrics}");
    assert!(metrics.contains("biometric_bridge_terra_backfills_total{outcome=\"incomplete\"} 1"), "{metrics}");
}
