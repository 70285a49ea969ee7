//! The walking skeleton: a signed Terra webhook through the ingress, the raw topic and the
//! exactly-once processor, read back decoded from `terra-biometric-events`.

use std::time::Duration;

use biometric_bridge::event::{EventKind, HrvWindow, Priority, Vendor};

use super::helpers::{self, TestTopology};
use super::ingress_support::{spawn_ingress, test_secrets};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_terra_sleep_comes_out_as_a_decoded_event() {
    let topology = TestTopology::create(3).await;
    let raw_topic = topology.topic("raw-webhooks");
    let ingress = spawn_ingress(&raw_topic, test_secrets(), &[]).await;
    let processor = helpers::spawn_processor(&topology, "e2e", &[]);

    let body = helpers::fixture("terra/sleep_low_hrv.json");
    let delivery_id = helpers::unique("delivery-e2e");
    let signature = helpers::terra_signature(helpers::TERRA_SECRET, helpers::now_secs(), &body);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = ingress
        .client
        .post(ingress.url("/webhooks/terra"))
        .header("content-type", "application/json")
        .header("terra-signature", signature)
        .header("x-terra-trace-id", &delivery_id)
        .header("traceparent", traceparent)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{:?}", response.text().await);

    // The raw record is the body byte for byte, with the ingress headers.
    let raw = helpers::read_raw(&raw_topic, 1, Duration::from_secs(20));
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0].payload, body);
    assert_eq!(raw[0].headers["vendor"], "terra");
    assert_eq!(raw[0].headers["delivery-id"], delivery_id);
    assert_eq!(raw[0].headers["trace-id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(raw[0].key.as_deref(), Some(&b"terra:5c0e8c1e-3f5a-4b7e-9d6b-2f1f6c3a9e11"[..]));

    let events = helpers::read_events(&[topology.topic("terra-biometric-events")], 1, Duration::from_secs(60)).await;
    assert_eq!(events.len(), 1, "processor log:\n{}", processor.log_tail());
    let received = &events[0];
    let event = &received.event;
    assert_eq!(event.vendor, Vendor::Terra);
    assert_eq!(event.kind, EventKind::Sleep);
    assert_eq!(event.user_id, "athlete-0042", "Terra reference_id is our user id");
    assert_eq!(event.source_device.as_deref(), Some("OURA"));
    assert_eq!(event.hrv_rmssd_ms, Some(19.2));
    assert_eq!(event.hrv_sdnn_ms, None);
    assert_eq!(event.hrv_window, Some(HrvWindow::NightlyMean));
    assert_eq!(event.priority, Priority::Critical);
    assert_eq!(event.triggers[0].trigger_type, "URGENT_INTERVENTION");
    assert_eq!(event.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(event.lineage.source_topic, raw_topic);
    assert_eq!(event.lineage.delivery_id.as_deref(), Some(delivery_id.as_str()));
    assert_eq!(received.key.as_deref(), Some("athlete-0042"));
    assert_eq!(received.headers["priority"], "CRITICAL");
    assert_eq!(received.headers["event-type"], "SLEEP");
    assert_eq!(received.headers["vendor"], "terra");
    assert_eq!(received.headers["user-id"], "athlete-0042");
    assert_eq!(received.headers["trace-id"], "4bf92f3577b34da6a3ce929d0e0e4736");

    // An independent Avro implementation (Python fastavro, schema fetched from the registry by
    // the id in the value) reads the same bytes the same way.
    let raw_event = helpers::read_raw(&topology.topic("terra-biometric-events"), 1, Duration::from_secs(20));
    let decoded = helpers::decode_with_fastavro(&raw_event[0].payload);
    let record = &decoded["record"];
    assert_eq!(decoded["schema_id"].as_u64(), Some(u64::from(received.schema_id)));
    assert_eq!(record["event_id"], event.event_id.as_str());
    assert_eq!(record["user_id"], "athlete-0042");
    assert_eq!(record["vendor"], "TERRA");
    assert_eq!(record["kind"], "SLEEP");
    assert_eq!(record["hrv_rmssd_ms"], 19.2);
    assert_eq!(record["measured_at"].as_i64(), Some(event.measured_at));
    assert_eq!(record["priority"], "CRITICAL");
    assert_eq!(record["triggers"][0]["severity"], "CRITICAL");
    assert_eq!(record["lineage"]["source_topic"], raw_topic.as_str());

    ingress.stop().await;
}
