//! Apple Health (Health Auto Export): points to canonical fields, SDNN handling, skipping rules.

use super::{normalize, vendor_user_id};
use crate::event::{BiometricEvent, EventKind, HrvWindow, Vendor};
use crate::vendors::test_support::{raw_input, replaced};
use crate::vendors::{NormalizeError, Outcome, RawInput, event_id};

const METRICS: &[u8] = include_bytes!("../../../tests/fixtures/apple_healthkit/hae_metrics.json");
const METRICS_LOW_HRV: &[u8] = include_bytes!("../../../tests/fixtures/apple_healthkit/hae_metrics_low_hrv.json");
const SLEEP_SEGMENTS: &[u8] = include_bytes!("../../../tests/fixtures/apple_healthkit/hae_sleep_unaggregated.json");
const NOT_JSON: &[u8] = include_bytes!("../../../tests/fixtures/garbage/not_json.txt");

/// The user of the bearer token, as the ingress passes it.
const USER: &str = "athlete-0203";
const RECEIVED_AT: i64 = 1_795_219_519_000;

fn input(body: &[u8]) -> RawInput<'_> {
    RawInput {
        received_at_ms: RECEIVED_AT,
        vendor_user_id: Some(USER),
        source_topic: "raw.apple-health",
        source_offset: 9,
        ..raw_input(Vendor::AppleHealth, body)
    }
}

fn events(body: &[u8]) -> Vec<BiometricEvent> {
    match normalize(&input(body)) {
        Ok(Outcome::Events(events)) => events,
        other => panic!("expected events, got {other:?}"),
    }
}

fn of_kind(events: &[BiometricEvent], kind: EventKind) -> Vec<&BiometricEvent> {
    events.iter().filter(|event| event.kind == kind).collect()
}

fn error(body: &[u8]) -> NormalizeError {
    normalize(&input(body)).expect_err("expected an error")
}

fn key(metric: &str, date: &str) -> String {
    format!("{USER}|{metric}|{date}")
}

#[test]
fn one_event_per_mapped_point() {
    let all = events(METRICS);
    let kinds: Vec<_> = all.iter().map(|event| event.kind).collect();
    use EventKind::*;
    assert_eq!(kinds, [Hrv, Hrv, Hrv, RestingHeartRate, HeartRate, HeartRate, Steps, Steps, RespiratoryRate, Sleep]);
    for event in &all {
        assert_eq!(event.vendor, Vendor::AppleHealth);
        assert_eq!(event.vendor_user_id, USER);
        assert_eq!(event.user_id, format!("apple-health:{USER}"));
        assert_eq!(event.source_device.as_deref(), Some("APPLE_HEALTH"));
        assert_eq!(event.received_at, RECEIVED_AT);
        assert_eq!(event.lineage.source_offset, 9);
    }
}

#[test]
fn hrv_is_sdnn_spot_readings_never_rmssd() {
    let all = events(METRICS);
    let hrv = of_kind(&all, EventKind::Hrv);
    let sdnn: Vec<_> = hrv.iter().map(|event| event.hrv_sdnn_ms.unwrap()).collect();
    assert_eq!(sdnn, [47.21, 38.66, 52.03]);
    assert!(all.iter().all(|event| event.hrv_rmssd_ms.is_none()), "Apple HRV is never RMSSD");
    let first = hrv[0];
    assert_eq!(first.event_id, event_id(Vendor::AppleHealth, EventKind::Hrv, &key("heart_rate_variability", "2026-11-20 03:14:52 -0800")));
    assert_eq!(first.hrv_window, Some(HrvWindow::Spot));
    assert_eq!(first.measured_at, 1_795_173_292_000); // 2026-11-20 03:14:52 -0800
    assert_eq!(first.measured_until, None);
    assert_eq!(first.local_date.as_deref(), Some("2026-11-20"));
    assert_eq!(first.vendor_record_id, None);
    assert_eq!(hrv[1].measured_at, 1_795_195_867_000);

    let low = events(METRICS_LOW_HRV);
    let low_sdnn: Vec<_> = of_kind(&low, EventKind::Hrv).iter().map(|event| event.hrv_sdnn_ms.unwrap()).collect();
    assert_eq!(low_sdnn, [17.84, 19.65, 52.03]);
    assert!(low.iter().all(|event| event.hrv_rmssd_ms.is_none()));
    assert_eq!(of_kind(&low, EventKind::Hrv)[0].event_id, first.event_id, "same metric and date, same event");
}

#[test]
fn hrv_in_seconds_is_converted_and_other_units_refused() {
    let seconds = replaced(METRICS, "\"units\": \"ms\"", "\"units\": \"s\"");
    let seconds = replaced(&seconds, "\"qty\": 47.21,", "\"qty\": 0.04721,");
    let first = events(&seconds).into_iter().find(|event| event.kind == EventKind::Hrv).unwrap();
    assert!((first.hrv_sdnn_ms.unwrap() - 47.21).abs() < 1e-9);
    let unknown = replaced(METRICS, "\"units\": \"ms\"", "\"units\": \"count/min\"");
    assert_eq!(error(&unknown).class(), "invalid_value");
    let missing = replaced(METRICS, "\"units\": \"ms\",", "");
    assert_eq!(error(&missing).class(), "invalid_value");
}

#[test]
fn heart_rate_resting_steps_and_respiration() {
    let all = events(METRICS);
    let resting = of_kind(&all, EventKind::RestingHeartRate)[0];
    assert_eq!(resting.resting_heart_rate_bpm, Some(55.0));
    assert_eq!(resting.measured_at, 1_795_161_600_000); // 2026-11-20 00:00:00 -0800
    assert_eq!(
        resting.event_id,
        event_id(Vendor::AppleHealth, EventKind::RestingHeartRate, &key("resting_heart_rate", "2026-11-20 00:00:00 -0800"))
    );

    let heart_rate = of_kind(&all, EventKind::HeartRate);
    let first = heart_rate[0];
    assert_eq!((first.heart_rate_min_bpm, first.heart_rate_avg_bpm, first.heart_rate_max_bpm), (Some(58.0), Some(63.4), Some(74.0)));
    assert_eq!(first.measured_at, 1_795_186_800_000); // 2026-11-20 07:00:00 -0800
    assert_eq!(heart_rate[1].heart_rate_avg_bpm, Some(66.0));
    assert_ne!(heart_rate[0].event_id, heart_rate[1].event_id);
    assert_eq!(first.hrv_sdnn_ms, None);

    let steps: Vec<_> = of_kind(&all, EventKind::Steps).iter().map(|event| event.steps.unwrap()).collect();
    assert_eq!(steps, [1_204, 2_311]);
    assert_eq!(of_kind(&all, EventKind::Steps)[0].measured_at, 1_795_190_400_000);

    let respiration = of_kind(&all, EventKind::RespiratoryRate)[0];
    assert_eq!(respiration.respiratory_rate_bpm, Some(14.5));
    assert_eq!(respiration.measured_at, 1_795_171_200_000);
}

#[test]
fn aggregated_sleep_converts_hours_to_seconds() {
    let all = events(METRICS);
    let sleep = of_kind(&all, EventKind::Sleep)[0];
    assert_eq!(sleep.event_id, event_id(Vendor::AppleHealth, EventKind::Sleep, &key("sleep_analysis", "2026-11-20")));
    assert_eq!(sleep.measured_at, 1_795_159_260_000); // sleepStart 2026-11-19 23:21:00 -0800
    assert_eq!(sleep.measured_until, Some(1_795_186_020_000)); // sleepEnd 2026-11-20 06:47:00 -0800
    assert_eq!(sleep.local_date.as_deref(), Some("2026-11-20"));
    assert_eq!(sleep.sleep_total_seconds, Some(25_632)); // 7.12 h
    assert_eq!(sleep.sleep_light_seconds, Some(13_860)); // core 3.85 h
    assert_eq!(sleep.sleep_deep_seconds, Some(4_608)); // 1.28 h
    assert_eq!(sleep.sleep_rem_seconds, Some(7_164)); // 1.99 h
    assert_eq!(sleep.time_in_bed_seconds, Some(26_748)); // 7.43 h
    assert_eq!(sleep.sleep_awake_seconds, None);
    assert_eq!((sleep.hrv_sdnn_ms, sleep.hrv_rmssd_ms, sleep.hrv_window), (None, None, None));
}

#[test]
fn blood_oxygen_is_a_body_event() {
    let body = replaced(
        METRICS,
        "\"name\": \"respiratory_rate\",\n        \"units\": \"count/min\"",
        "\"name\": \"blood_oxygen_saturation\",\n        \"units\": \"%\"",
    );
    let all = events(&body);
    let spo2 = of_kind(&all, EventKind::Body)[0];
    assert_eq!(spo2.spo2_pct, Some(14.5));
    assert_eq!(spo2.respiratory_rate_bpm, None);
}

#[test]
fn point_source_names_the_device() {
    let body = replaced(METRICS, "\"qty\": 47.21,", "\"qty\": 47.21,\n            \"source\": \"Alex's Apple Watch\",");
    let first = events(&body).into_iter().next().unwrap();
    assert_eq!(first.source_device.as_deref(), Some("Alex's Apple Watch"));
}

#[test]
fn unaggregated_sleep_and_unmapped_metrics_are_skipped() {
    assert_eq!(events(SLEEP_SEGMENTS), vec![]);
    let unmapped = br#"{"data":{"metrics":[{"name":"blood_pressure","units":"mmHg",
        "data":[{"date":"2026-11-20 07:00:00 -0800","systolic":{"odd":"shape"}}]}]}}"#;
    assert_eq!(events(unmapped), vec![]);
    assert_eq!(events(br#"{"data":{"workouts":[]}}"#), vec![], "an export without metrics");
}

#[test]
fn the_token_user_is_required() {
    let mut raw = input(METRICS);
    raw.vendor_user_id = None;
    assert_eq!(normalize(&raw).unwrap_err().class(), "invalid_shape");
    assert_eq!(vendor_user_id(METRICS), None, "the body names no user");
}

#[test]
fn the_same_point_of_two_users_gets_two_ids() {
    let mine = events(METRICS);
    let mut raw = input(METRICS);
    raw.vendor_user_id = Some("someone-else");
    let Ok(Outcome::Events(theirs)) = normalize(&raw) else { panic!() };
    assert_ne!(mine[0].event_id, theirs[0].event_id);
    assert_eq!(events(METRICS)[0].event_id, mine[0].event_id, "stable for the same user");
}

#[test]
fn errors() {
    assert_eq!(error(NOT_JSON).class(), "invalid_json");
    assert_eq!(error(br#"{"metrics":[]}"#).class(), "invalid_shape", "no data envelope");
    let bad_date = replaced(METRICS, "2026-11-20 03:14:52 -0800", "2026-11-20T03:14:52Z");
    assert_eq!(error(&bad_date).class(), "invalid_value");
    let no_qty = replaced(METRICS, "\"qty\": 55,", "");
    assert_eq!(error(&no_qty).class(), "invalid_shape");
}

/// The aggregated sleep of HAE's documented JSON format (wiki revision October 2024: `asleep`,
/// `sleepSource`, `inBedSource`, no stages), derived from `hae_metrics.json`'s night.
const SLEEP_AGGREGATED_2024: &[u8] = include_bytes!("../../../tests/fixtures/apple_healthkit/hae_sleep_aggregated_2024.json");

#[test]
fn both_versions_of_aggregated_sleep_are_read() {
    let documented = events(SLEEP_AGGREGATED_2024);
    let night = of_kind(&documented, EventKind::Sleep)[0];
    assert_eq!(night.sleep_total_seconds, Some(25_020), "asleep 6.95 h");
    assert_eq!(night.time_in_bed_seconds, Some(26_748));
    assert_eq!(night.sleep_deep_seconds, None, "no stages in this version");
    assert_eq!(night.source_device.as_deref(), Some("Apple Watch"), "sleepSource");
    let staged = events(METRICS);
    let night = of_kind(&staged, EventKind::Sleep)[0];
    assert_eq!(night.sleep_total_seconds, Some(25_632), "totalSleep 7.12 h wins over asleep 0");
    assert_eq!(night.sleep_deep_seconds, Some(4_608));
}

#[test]
fn blood_oxygen_as_a_fraction_or_a_percentage_is_a_percentage() {
    let readings = events(SLEEP_AGGREGATED_2024);
    let spo2: Vec<Option<f64>> = of_kind(&readings, EventKind::Body).iter().map(|event| event.spo2_pct).collect();
    assert_eq!(spo2, [Some(97.0), Some(96.0)]);
}
