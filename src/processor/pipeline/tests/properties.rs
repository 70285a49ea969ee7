//! Property tests of every vendor's path through the pipeline: arbitrary bytes, and every fixture
//! of every vendor with arbitrary changes to its values and shape, never panic, never emit NaN or
//! infinity, and never produce an identifier over the bound or an output over a record's size.
//!
//! The mutations are proptest values (a list of edits over the fixture's leaves), so a failing
//! case shrinks to the few edits that matter.

use proptest::prelude::*;

use super::*;
use crate::fetch::FetchOutcome;
use crate::vendors::{MAX_IDENTIFIER_BYTES, PendingFetch};

/// Webhook bodies of each vendor (the `vendor` header of the raw record).
const WEBHOOKS: &[(&str, &str)] = &[
    ("terra", "terra/sleep.json"),
    ("terra", "terra/daily.json"),
    ("terra", "terra/body_apple_sdnn.json"),
    ("terra", "terra/activity.json"),
    ("terra", "terra/auth_success.json"),
    ("terra", "terra/deauth.json"),
    ("terra", "terra/user_reauth.json"),
    ("terra", "terra/large_request_processing.json"),
    ("oura", "oura/webhook_sleep_create.json"),
    ("oura", "oura/webhook_sleep_delete.json"),
    ("whoop", "whoop/webhook_recovery_updated.json"),
    ("whoop", "whoop/webhook_recovery_deleted.json"),
    ("apple-health", "apple_healthkit/hae_metrics.json"),
    ("apple-health", "apple_healthkit/hae_sleep_unaggregated.json"),
];

/// Fetched API documents, by vendor and data type.
const API_RECORDS: &[(Vendor, &str, &str)] = &[
    (Vendor::Oura, "sleep", "oura/api_sleep.json"),
    (Vendor::Oura, "daily_sleep", "oura/api_daily_sleep.json"),
    (Vendor::Oura, "daily_readiness", "oura/api_daily_readiness.json"),
    (Vendor::Oura, "daily_activity", "oura/api_daily_activity.json"),
    (Vendor::Oura, "heartrate", "oura/api_heartrate.json"),
    (Vendor::Whoop, "recovery", "whoop/api_recovery.json"),
    (Vendor::Whoop, "sleep", "whoop/api_sleep.json"),
    (Vendor::Whoop, "cycle", "whoop/api_cycle.json"),
    (Vendor::Whoop, "workout", "whoop/api_workout.json"),
];

/// A replacement for one leaf of a fixture.
#[derive(Debug, Clone)]
enum Leaf {
    Number(f64),
    Text(String),
    Null,
    Removed,
    Nested(u8),
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-5.0),
        Just(1e9),
        Just(1e30),
        Just(1e306),
        Just(-1e306),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(9_007_199_254_740_993.0),
        any::<f64>().prop_filter("JSON numbers are finite", |v| v.is_finite()),
        -1e6..1e6f64,
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("\u{0}".to_owned()),
        Just("a|b%c".to_owned()),
        Just("x".repeat(MAX_IDENTIFIER_BYTES + 1)),
        Just("2026-02-30T25:61:00Z".to_owned()),
        Just("2026-11-20T06:49:00.000000-05:00".to_owned()),
        Just("2026-11-20 03:14:52 -0800".to_owned()),
        // Units: Apple's HRV in seconds becomes ms by multiplication.
        Just("s".to_owned()),
        Just("min".to_owned()),
        ".{0,40}",
    ]
}

fn leaf() -> impl Strategy<Value = Leaf> {
    prop_oneof![
        4 => number().prop_map(Leaf::Number),
        3 => text().prop_map(Leaf::Text),
        1 => Just(Leaf::Null),
        1 => Just(Leaf::Removed),
        1 => (1u8..200).prop_map(Leaf::Nested),
    ]
}

/// The paths of every leaf (and every object member) of `value`, in document order.
fn paths(value: &serde_json::Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                prefix.push(key.clone());
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        serde_json::Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                prefix.push(index.to_string());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn apply(value: &mut serde_json::Value, path: &[String], leaf: &Leaf) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut target = value;
    for step in parents {
        target = match target {
            serde_json::Value::Object(map) => match map.get_mut(step) {
                Some(child) => child,
                None => return,
            },
            serde_json::Value::Array(items) => match step.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(child) => child,
                None => return,
            },
            _ => return,
        };
    }
    let new = match leaf {
        Leaf::Number(n) => serde_json::Number::from_f64(*n).map_or(serde_json::Value::Null, serde_json::Value::Number),
        Leaf::Text(text) => text.clone().into(),
        Leaf::Null => serde_json::Value::Null,
        Leaf::Nested(depth) => (0..*depth).fold(serde_json::json!(1), |inner, _| serde_json::json!([inner])),
        Leaf::Removed => {
            match target {
                serde_json::Value::Object(map) => {
                    map.remove(last);
                }
                serde_json::Value::Array(items) => {
                    if let Some(index) = last.parse::<usize>().ok().filter(|i| *i < items.len()) {
                        items.remove(index);
                    }
                }
                _ => {}
            }
            return;
        }
    };
    match target {
        serde_json::Value::Object(map) => {
            map.insert(last.clone(), new);
        }
        serde_json::Value::Array(items) => {
            if let Some(slot) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *slot = new;
            }
        }
        _ => {}
    }
}

/// `fixture` with `edits` applied: (index into its paths, replacement).
fn mutated(fixture_path: &str, edits: &[(usize, Leaf)]) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(&fixture(fixture_path)).unwrap();
    let mut all = Vec::new();
    paths(&json, &mut Vec::new(), &mut all);
    for (index, leaf) in edits {
        if !all.is_empty() {
            apply(&mut json, &all[index % all.len()], leaf);
        }
    }
    serde_json::to_vec(&json).unwrap()
}

/// What every output of the pipeline must satisfy, whatever went in.
fn check_outputs(outputs: &[Output]) -> Result<(), TestCaseError> {
    for output in outputs {
        prop_assert!(output.payload.len() <= crate::kafka::MAX_RAW_RECORD_BYTES, "output of {} bytes", output.payload.len());
        if output.topic == "terra-biometric-events" || output.topic == "biometric-events" {
            prop_assert!(output.payload.len() < 64 * 1024, "an event of {} bytes", output.payload.len());
            let event = decode(output);
            let mut copy = event.clone();
            let pipeline = pipeline();
            let ranges = &pipeline.topology().plausibility;
            for metric in crate::event::metrics::METRICS {
                let value = match copy.metric_slot(metric.name) {
                    Some(crate::event::metrics::Slot::Real(value)) => *value,
                    Some(crate::event::metrics::Slot::Integer(value)) => value.map(|v| v as f64),
                    None => None,
                };
                if let Some(value) = value {
                    prop_assert!(value.is_finite(), "{} = {value}", metric.name);
                    prop_assert!(ranges.range(metric.name).unwrap().contains(value), "{} = {value} is implausible", metric.name);
                }
            }
            for trigger in &event.triggers {
                for value in [Some(trigger.value), Some(trigger.threshold), trigger.baseline_mean, trigger.baseline_sd, trigger.z_score]
                    .into_iter()
                    .flatten()
                {
                    prop_assert!(value.is_finite(), "trigger {trigger:?}");
                }
            }
            for id in [Some(&event.user_id), Some(&event.vendor_user_id), event.vendor_record_id.as_ref(), event.source_device.as_ref()]
                .into_iter()
                .flatten()
            {
                prop_assert!(id.len() <= MAX_IDENTIFIER_BYTES, "an identifier of {} bytes", id.len());
            }
        }
    }
    Ok(())
}

fn process(vendor: &str, body: &[u8]) -> Vec<Output> {
    let headers = ingress_headers(vendor, &[(headers::VENDOR_USER_ID, "prop-user")]);
    let mut identities = MapIdentities::default();
    let outputs = run("raw-webhooks", &headers, body, &mut identities, &mut MemoryStore::default(), &mut MemoryStore::default());
    outputs.expect("no outage in these tests").outputs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_of_any_vendor(vendor in prop::sample::select(vec!["terra", "oura", "whoop", "apple-health", "garmin"]), body in prop::collection::vec(any::<u8>(), 0..512)) {
        check_outputs(&process(vendor, &body))?;
    }

    #[test]
    fn mutated_webhooks(fixture_index in 0..WEBHOOKS.len(), edits in prop::collection::vec((any::<usize>(), leaf()), 1..6)) {
        let (vendor, path) = WEBHOOKS[fixture_index];
        check_outputs(&process(vendor, &mutated(path, &edits)))?;
    }

    #[test]
    fn apple_hrv_of_any_unit_and_value(unit in prop::sample::select(vec!["ms", "s", "min", ""]), qty in number()) {
        let body = serde_json::json!({"data": {"metrics": [
            {"name": "heart_rate_variability", "units": unit, "data": [{"qty": qty, "date": "2026-11-20 03:14:52 -0800"}]}
        ]}});
        check_outputs(&process("apple-health", &serde_json::to_vec(&body).unwrap()))?;
    }

    #[test]
    fn mutated_api_records(record_index in 0..API_RECORDS.len(), edits in prop::collection::vec((any::<usize>(), leaf()), 1..6)) {
        let (vendor, data_type, path) = API_RECORDS[record_index];
        let body = mutated(path, &edits);
        let notification = match vendor {
            Vendor::Oura => fixture("oura/webhook_sleep_create.json"),
            _ => fixture("whoop/webhook_recovery_updated.json"),
        };
        let headers = ingress_headers(vendor.slug(), &[]);
        let record = Record {
            topic: "pending-fetch",
            partition: 3,
            offset: 42,
            key: Some(b"oura:u"),
            payload: Some(&notification),
            headers: Some(headers.as_borrowed()),
            timestamp_ms: None,
            at_rest: None,
        };
        let request = PendingFetch {
            vendor,
            vendor_user_id: "u".into(),
            data_type: data_type.into(),
            object_id: "o".into(),
            api_path: "/x".into(),
            expires_at_ms: None,
        };
        let outcome = FetchOutcome::Fetched { data_type: data_type.into(), body, user_id: "user-1".into() };
        let stores = TaskStores { dedup: Some(&mut MemoryStore::default()), baseline: Some(&mut MemoryStore::default()), backfill: Some(&mut MemoryStore::default()) };
        let outputs = pipeline().fetched(&record, &request, 0, outcome, 0, &mut MapIdentities::default(), stores).unwrap();
        check_outputs(&outputs)?;
    }
}
