//! The pipeline on fixtures, without Kafka: routing, headers, triggers, dead letters, pending
//! fetches, identity, de-duplication.

use std::collections::HashMap;

use rdkafka::message::{Headers, OwnedHeaders};

use super::*;
use crate::event::avro::EventCodec;
use crate::processor::store::MemoryStore;

mod bad_data;
mod properties;

const TOPOLOGY: &str = include_str!("../../../topologies/biometric.toml");

fn pipeline() -> Pipeline {
    let topology = Topology::parse(TOPOLOGY, "biometric.toml").unwrap();
    let ids: HashMap<String, u32> = topology.event_sinks.iter().map(|t| (t.clone(), 7)).collect();
    Pipeline::new(topology, &ids)
}

#[derive(Default)]
struct MapIdentities {
    links: HashMap<(Vendor, String), String>,
    applied: Vec<IdentityChange>,
    down: bool,
}

impl Identities for MapIdentities {
    fn resolve(&mut self, vendor: Vendor, vendor_user_id: &str) -> Result<Option<String>, crate::processor::LookupError> {
        if self.down {
            return Err(InfraError { dependency: "postgresql", message: "down".into() }.into());
        }
        Ok(self.links.get(&(vendor, vendor_user_id.to_owned())).cloned())
    }
    fn apply(&mut self, change: &IdentityChange) -> Result<(), crate::processor::LookupError> {
        if self.down {
            return Err(InfraError { dependency: "postgresql", message: "down".into() }.into());
        }
        self.applied.push(change.clone());
        Ok(())
    }
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn ingress_headers(vendor: &str, extra: &[(&str, &str)]) -> OwnedHeaders {
    let mut h = OwnedHeaders::new();
    h = headers::with(h, headers::VENDOR, vendor);
    h = headers::with(h, headers::RECEIVED_AT, "1795660000000");
    h = headers::with(h, headers::DELIVERY_ID, "delivery-1");
    h = headers::with(h, headers::TRACE_ID, "4bf92f3577b34da6a3ce929d0e0e4736");
    for (k, v) in extra {
        h = headers::with(h, k, v);
    }
    h
}

struct Run {
    outputs: Vec<Output>,
}

fn run(
    topic: &str,
    headers: &OwnedHeaders,
    body: &[u8],
    identities: &mut MapIdentities,
    dedup: &mut MemoryStore<Seen>,
    baseline: &mut MemoryStore<BaselineState>,
) -> Result<Run, InfraError> {
    let record = Record {
        topic,
        partition: 3,
        offset: 42,
        key: Some(b"terra:abc"),
        payload: Some(body),
        headers: Some(headers.as_borrowed()),
        timestamp_ms: Some(1_795_660_000_000),
        at_rest: None,
    };
    let stores = TaskStores { dedup: Some(dedup), baseline: Some(baseline), backfill: None };
    pipeline().process(&record, identities, stores).map(|outputs| Run { outputs })
}

fn simple(topic: &str, vendor: &str, body: &[u8]) -> Vec<Output> {
    run(topic, &ingress_headers(vendor, &[]), body, &mut MapIdentities::default(), &mut MemoryStore::default(), &mut MemoryStore::default())
        .unwrap()
        .outputs
}

fn header(output: &Output, name: &str) -> Option<String> {
    output.headers.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
}

fn decode(output: &Output) -> BiometricEvent {
    EventCodec::new(7).decode(&output.payload).unwrap()
}

#[test]
fn terra_low_hrv_sleep_is_critical_on_the_terra_topic() {
    let outputs = simple("raw-webhooks", "terra", &fixture("terra/sleep_low_hrv.json"));
    assert_eq!(outputs.len(), 1);
    let out = &outputs[0];
    assert_eq!(out.topic, "terra-biometric-events");
    assert_eq!(out.key.as_deref(), Some(&b"athlete-0042"[..]));
    assert_eq!(header(out, "priority").as_deref(), Some("CRITICAL"));
    assert_eq!(header(out, "event-type").as_deref(), Some("SLEEP"));
    assert_eq!(header(out, "vendor").as_deref(), Some("terra"));
    assert_eq!(header(out, "user-id").as_deref(), Some("athlete-0042"));
    assert_eq!(header(out, "trace-id").as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    let event = decode(out);
    assert_eq!(event.priority, crate::event::Priority::Critical);
    assert_eq!(event.received_at, 1_795_660_000_000);
    assert_eq!(event.lineage.source_offset, 42);
    assert_eq!(event.lineage.source_partition, 3);
    assert_eq!(event.lineage.delivery_id.as_deref(), Some("delivery-1"));
    assert_eq!(out.received_at_ms, Some(1_795_660_000_000));
}

#[test]
fn rmssd_boundaries_through_the_whole_pipeline() {
    for (file, priority) in [
        ("terra/sleep_rmssd_24_99.json", "CRITICAL"),
        ("terra/sleep_rmssd_25_00.json", "HIGH"),
        ("terra/sleep_rmssd_39_99.json", "HIGH"),
        ("terra/sleep_rmssd_40_00.json", "NORMAL"),
    ] {
        let outputs = simple("raw-webhooks", "terra", &fixture(file));
        assert_eq!(header(&outputs[0], "priority").as_deref(), Some(priority), "{file}");
    }
}

#[test]
fn apple_sdnn_of_18_ms_is_not_critical_by_default() {
    let outputs = simple("raw-webhooks", "terra", &fixture("terra/body_apple_sdnn_low_hrv.json"));
    let event = decode(&outputs[0]);
    assert_eq!(event.hrv_sdnn_ms, Some(18.4));
    assert_eq!(event.hrv_rmssd_ms, None);
    assert_eq!(event.priority, crate::event::Priority::Normal);
}

#[test]
fn apple_health_goes_to_biometric_events_under_the_token_user() {
    let headers = ingress_headers("apple-health", &[(headers::VENDOR_USER_ID, "user-77")]);
    let outputs = run(
        "raw-webhooks",
        &headers,
        &fixture("apple_healthkit/hae_metrics_low_hrv.json"),
        &mut MapIdentities::default(),
        &mut MemoryStore::default(),
        &mut MemoryStore::default(),
    )
    .unwrap()
    .outputs;
    assert!(!outputs.is_empty());
    for out in &outputs {
        assert_eq!(out.topic, "biometric-events");
        let event = decode(out);
        assert_eq!(event.user_id, "user-77");
        assert_eq!(event.hrv_rmssd_ms, None, "Apple HRV is SDNN");
    }
}

#[test]
fn garbage_and_truncated_json_go_to_the_dlq_with_their_bytes_and_reason() {
    for (file, class) in [("garbage/not_json.txt", "invalid_json"), ("garbage/truncated_terra_sleep.json", "invalid_json")] {
        let body = fixture(file);
        let outputs = simple("raw-webhooks", "terra", &body);
        assert_eq!(outputs.len(), 1, "{file}");
        let out = &outputs[0];
        assert_eq!(out.topic, "raw-webhooks.dlq");
        assert_eq!(out.payload, body, "original bytes kept");
        assert_eq!(out.key.as_deref(), Some(&b"terra:abc"[..]), "original key kept");
        assert_eq!(header(out, "error-class").as_deref(), Some(class), "{file}");
        assert!(header(out, "error-message").is_some_and(|m| !m.is_empty()));
        assert_eq!(header(out, "source-topic").as_deref(), Some("raw-webhooks"));
        assert_eq!(header(out, "source-partition").as_deref(), Some("3"));
        assert_eq!(header(out, "source-offset").as_deref(), Some("42"));
        assert_eq!(header(out, "vendor").as_deref(), Some("terra"), "original headers kept");
        assert_eq!(header(out, "trace-id").as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }
}

#[test]
fn a_record_without_a_known_vendor_is_a_dead_letter() {
    let outputs = simple("raw-webhooks", "fitbit", b"{}");
    assert_eq!(header(&outputs[0], "error-class").as_deref(), Some("unknown_vendor"));
}

#[test]
fn oura_and_whoop_notifications_go_unchanged_to_pending_fetch() {
    for (vendor, file, path) in [
        ("oura", "oura/webhook_sleep_create.json", "/v2/usercollection/sleep/"),
        ("whoop", "whoop/webhook_recovery_updated.json", "/v2/activity/sleep/"),
    ] {
        let body = fixture(file);
        let outputs = simple("raw-webhooks", vendor, &body);
        assert_eq!(outputs.len(), 1);
        let out = &outputs[0];
        assert_eq!(out.topic, "pending-fetch");
        assert_eq!(out.payload, body);
        assert_eq!(header(out, "vendor").as_deref(), Some(vendor));
        assert!(header(out, "fetch-path").unwrap().starts_with(path), "{:?}", header(out, "fetch-path"));
    }
}

#[test]
fn terra_auth_updates_identity_and_emits_nothing() {
    let mut identities = MapIdentities::default();
    let outputs = run(
        "raw-webhooks",
        &ingress_headers("terra", &[]),
        &fixture("terra/auth_success.json"),
        &mut identities,
        &mut MemoryStore::default(),
        &mut MemoryStore::default(),
    )
    .unwrap()
    .outputs;
    assert!(outputs.is_empty());
    assert!(matches!(&identities.applied[..], [IdentityChange::Link { user_id, .. }] if user_id == "athlete-0042"));
}

#[test]
fn notices_are_skipped_not_dead_lettered() {
    assert!(simple("raw-webhooks", "terra", &fixture("terra/large_request_processing.json")).is_empty());
}

#[test]
fn a_mapped_identity_wins_over_the_payload() {
    let mut identities = MapIdentities::default();
    identities.links.insert((Vendor::Terra, "5c0e8c1e-3f5a-4b7e-9d6b-2f1f6c3a9e11".into()), "user-from-db".into());
    let outputs = run(
        "raw-webhooks",
        &ingress_headers("terra", &[]),
        &fixture("terra/sleep.json"),
        &mut identities,
        &mut MemoryStore::default(),
        &mut MemoryStore::default(),
    )
    .unwrap()
    .outputs;
    assert_eq!(decode(&outputs[0]).user_id, "user-from-db");
}

#[test]
fn a_postgres_outage_is_reported_before_any_state_changes() {
    let mut identities = MapIdentities { down: true, ..Default::default() };
    let mut dedup = MemoryStore::default();
    let mut baseline = MemoryStore::default();
    let result =
        run("raw-webhooks", &ingress_headers("terra", &[]), &fixture("terra/sleep.json"), &mut identities, &mut dedup, &mut baseline);
    assert!(result.is_err());
    assert!(dedup.is_empty() && baseline.is_empty(), "nothing recorded for a record that will be retried");
}

#[test]
fn the_same_record_twice_produces_one_event() {
    let mut identities = MapIdentities::default();
    let mut dedup = MemoryStore::default();
    let mut baseline = MemoryStore::default();
    let body = fixture("terra/sleep.json");
    let first = run("raw-webhooks", &ingress_headers("terra", &[]), &body, &mut identities, &mut dedup, &mut baseline).unwrap().outputs;
    let second = run("raw-webhooks", &ingress_headers("terra", &[]), &body, &mut identities, &mut dedup, &mut baseline).unwrap().outputs;
    assert_eq!((first.len(), second.len()), (1, 0));
}

#[test]
fn terra_direct_records_are_rekeyed_into_the_repartition_topic() {
    let body = fixture("terra/sleep.json");
    let record = Record {
        topic: "terra-direct",
        partition: 1,
        offset: 9,
        key: None,
        payload: Some(&body),
        headers: None,
        timestamp_ms: Some(1_795_660_000_000),
        at_rest: None,
    };
    let outputs =
        pipeline().process(&record, &mut MapIdentities::default(), TaskStores { dedup: None, baseline: None, backfill: None }).unwrap();
    assert_eq!(outputs.len(), 1);
    let out = &outputs[0];
    assert_eq!(out.topic, "biometric-bridge-terra-direct-repartition");
    assert_eq!(out.key.as_deref(), Some(&b"terra:5c0e8c1e-3f5a-4b7e-9d6b-2f1f6c3a9e11"[..]));
    assert_eq!(out.payload, body);
    assert_eq!(header(out, "vendor").as_deref(), Some("terra"));
    assert_eq!(header(out, "received-at").as_deref(), Some("1795660000000"));
    assert_eq!(header(out, "delivery-id").as_deref(), Some("terra-direct/1/9"));
    // Terra's destination writes in the clear; the copy is ours, sealed for its user.
    let user = "5c0e8c1e-3f5a-4b7e-9d6b-2f1f6c3a9e11".to_owned();
    assert_eq!(out.seal_for, Some(SealFor { vendor: Vendor::Terra, vendor_user_id: user }));

    // ...and the repartitioned record normalizes to the Terra topic.
    let rekeyed = simple("biometric-bridge-terra-direct-repartition", "terra", &body);
    assert_eq!(rekeyed[0].topic, "terra-biometric-events");
}

/// A sealed record (opened by the runtime): its events come from the opened body and the user
/// the seal carried, and wherever its bytes are copied on, they are the sealed ones.
#[test]
fn a_sealed_record_is_read_opened_and_copied_on_sealed() {
    let pipeline = pipeline();
    let run_sealed = |vendor: &str, body: &[u8], user: Option<&str>| {
        let headers = ingress_headers(vendor, &[]);
        let stored = b"\0bbs2 stands in for the sealed bytes".as_slice();
        let record = Record {
            topic: "raw-webhooks",
            partition: 0,
            offset: 7,
            key: Some(b"x:k_0123"),
            payload: Some(body),
            headers: Some(headers.as_borrowed()),
            timestamp_ms: Some(1_795_660_000_000),
            at_rest: Some(AtRest { stored, vendor_user_id: user }),
        };
        let stores = TaskStores { dedup: Some(&mut MemoryStore::default()), baseline: Some(&mut MemoryStore::default()), backfill: None };
        let outputs = pipeline.process(&record, &mut MapIdentities::default(), stores).unwrap();
        (outputs, stored)
    };

    let (outputs, _) = run_sealed("apple-health", &fixture("apple_healthkit/hae_metrics_low_hrv.json"), Some("user-77"));
    assert!(!outputs.is_empty() && outputs.iter().all(|out| decode(out).user_id == "user-77"), "the user from inside the seal");

    let (outputs, stored) = run_sealed("oura", &fixture("oura/webhook_sleep_create.json"), Some("oura-user"));
    assert_eq!((outputs[0].topic.as_str(), outputs[0].payload.as_slice()), ("pending-fetch", stored), "the pending fetch stays sealed");

    let (outputs, stored) = run_sealed("terra", &fixture("garbage/truncated_terra_sleep.json"), None);
    assert_eq!((outputs[0].topic.as_str(), outputs[0].payload.as_slice()), ("raw-webhooks.dlq", stored), "so does the dead letter");

    // The parser's message quotes the payload: not in a sealed record's headers.
    let (outputs, _) = run_sealed("terra", br#"{"type":"sleep","user":{"user_id":"u-1"},"data":"secret-value"}"#, Some("u-1"));
    let message = header(&outputs[0], headers::ERROR_MESSAGE).unwrap();
    assert!(message.contains("invalid type: string \"…\"") && !message.contains("secret-value"), "{message}");
}
