//! The Python consumer NEUROS uses (`clients/python`, aiokafka + fastavro) reads what the bridge
//! writes: a mix of the demo's webhooks through the real ingress and processor, read back by the
//! Rust decoder and by the Python client, must agree event for event — kind, priority header,
//! user, values — and a DELETED event must come out as a deletion.

use std::process::Command;
use std::time::Duration;

use super::helpers::{self, TestTopology};
use super::ingress_harness::Webhook;
use super::ingress_support::{spawn_ingress, test_secrets};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_decodes_every_event_kind_the_demo_produces() {
    let topology = TestTopology::create(3).await;
    let ingress = spawn_ingress(&topology.topic("raw-webhooks"), test_secrets(), &[]).await;
    let _processor = helpers::spawn_processor(&topology, "py-0", &[]);

    for fixture in ["terra/sleep.json", "terra/sleep_low_hrv.json", "terra/daily.json", "terra/body_apple_sdnn.json", "terra/activity.json"]
    {
        let webhook = Webhook::terra(&helpers::fixture(fixture), &helpers::unique("py-delivery"));
        assert_eq!(webhook.send(&ingress).await.status(), 202, "{fixture}");
    }
    // A vendor-side deletion needs no fetch: it becomes a DELETED event at once.
    let deletion = Webhook::oura(&helpers::fixture("oura/webhook_sleep_delete.json"));
    assert_eq!(deletion.send(&ingress).await.status(), 202);

    let topics = [topology.topic("terra-biometric-events"), topology.topic("biometric-events")];
    // Everything the processor wrote: read until no more comes.
    let rust = helpers::read_events(&topics, usize::MAX, Duration::from_secs(25)).await;
    let kinds: std::collections::BTreeSet<String> = rust.iter().map(|r| r.headers["event-type"].clone()).collect();
    for kind in ["SLEEP", "DAILY", "BODY", "ACTIVITY", "DELETED"] {
        assert!(kinds.contains(kind), "no {kind} event among {kinds:?}");
    }

    let python = std::env::var("BRIDGE_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut command = Command::new(&python);
    command
        .args(["-m", "biometric_bridge_client", "--bootstrap", &helpers::bootstrap(), "--registry", &helpers::registry_url()])
        .args(["--group", &helpers::unique("neuros-test"), "--max-events", &rust.len().to_string(), "--idle-timeout", "20", "--commit"])
        .env("PYTHONPATH", concat!(env!("CARGO_MANIFEST_DIR"), "/clients/python"));
    for topic in &topics {
        command.args(["--topic", topic]);
    }
    let output = tokio::task::spawn_blocking(move || command.output().expect("run the Python client")).await.unwrap();
    assert!(output.status.success(), "the Python client failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), rust.len(), "the Python client read as many events as were written");

    // A correction re-uses its event's id (upsert by it), so the two sides are compared as
    // sorted lists of what each event says, not as maps by id.
    let mut from_python: Vec<String> = lines
        .iter()
        .map(|line| {
            let event = &line["event"];
            assert_eq!(line["event_type"], event["kind"], "the event-type header names the kind: {line}");
            assert_eq!(line["priority"], event["priority"], "the priority header, read without decoding, is the event's: {line}");
            let action = if event["kind"] == "DELETED" { "delete" } else { "store" };
            assert_eq!(line["action"], action, "{line}");
            format!(
                "{} {} {} key={} user={} schema={} rmssd={:?} sdnn={:?} triggers={}",
                event["event_id"].as_str().unwrap(),
                event["kind"].as_str().unwrap(),
                event["priority"].as_str().unwrap(),
                line["key"].as_str().unwrap_or("-"),
                event["user_id"].as_str().unwrap(),
                line["schema_id"],
                event["hrv_rmssd_ms"].as_f64(),
                event["hrv_sdnn_ms"].as_f64(),
                event["triggers"].as_array().map_or(0, Vec::len),
            )
        })
        .collect();
    let mut from_rust: Vec<String> = rust
        .iter()
        .map(|r| {
            assert_eq!(r.headers["priority"], r.event.priority.symbol());
            format!(
                "{} {} {} key={} user={} schema={} rmssd={:?} sdnn={:?} triggers={}",
                r.event.event_id,
                r.event.kind.symbol(),
                r.event.priority.symbol(),
                r.key.as_deref().unwrap_or("-"),
                r.event.user_id,
                r.schema_id,
                r.event.hrv_rmssd_ms,
                r.event.hrv_sdnn_ms,
                r.event.triggers.len(),
            )
        })
        .collect();
    from_python.sort();
    from_rust.sort();
    assert_eq!(from_python, from_rust, "the Python client and the Rust decoder read the same events");
    ingress.stop().await;
}
