//! Terra: fixtures to canonical fields, identity outcomes, error classes and the signature scheme.

use axum::http::HeaderMap;

use super::{delivery_id, normalize, vendor_user_id, verify_signature};
use crate::event::{BiometricEvent, EventKind, HrvWindow, Priority, Vendor};
use crate::vendors::signature::SignatureError;
use crate::vendors::test_support::{context, header_map, mac, raw_input, replaced, tampered, vector};
use crate::vendors::{IdentityChange, NormalizeError, Outcome, RawInput, event_id};

const SLEEP: &[u8] = include_bytes!("../../../tests/fixtures/terra/sleep.json");
const SLEEP_LOW_HRV: &[u8] = include_bytes!("../../../tests/fixtures/terra/sleep_low_hrv.json");
const DAILY: &[u8] = include_bytes!("../../../tests/fixtures/terra/daily.json");
const BODY: &[u8] = include_bytes!("../../../tests/fixtures/terra/body_apple_sdnn.json");
const BODY_LOW_HRV: &[u8] = include_bytes!("../../../tests/fixtures/terra/body_apple_sdnn_low_hrv.json");
const ACTIVITY: &[u8] = include_bytes!("../../../tests/fixtures/terra/activity.json");
const AUTH_SUCCESS: &[u8] = include_bytes!("../../../tests/fixtures/terra/auth_success.json");
const DEAUTH: &[u8] = include_bytes!("../../../tests/fixtures/terra/deauth.json");
const USER_REAUTH: &[u8] = include_bytes!("../../../tests/fixtures/terra/user_reauth.json");
const ATHLETE: &[u8] = include_bytes!("../../../tests/fixtures/terra/athlete.json");
const LARGE_REQUEST: &[u8] = include_bytes!("../../../tests/fixtures/terra/large_request_processing.json");
const SIGNATURES: &[u8] = include_bytes!("../../../tests/fixtures/terra/signatures.json");
const NOT_JSON: &[u8] = include_bytes!("../../../tests/fixtures/garbage/not_json.txt");
const TRUNCATED: &[u8] = include_bytes!("../../../tests/fixtures/garbage/truncated_terra_sleep.json");

const RECEIVED_AT: i64 = 1_795_218_931_500;
const SLEEP_SUMMARY_ID: &str = "2-7f3a9c1d2e4b5a6c8d9e0f1a2b3c4d5e6f";
const OURA_CONNECTION: &str = "5c0e8c1e-3f5a-4b7e-9d6b-2f1f6c3a9e11";
const GARMIN_CONNECTION: &str = "9b2d4f70-1c8e-4e55-a0f2-7d3c5e6b8a21";
/// Timestamp of the recorded signature vectors.
const SIGNED_AT: i64 = 1_795_218_931;

fn input(body: &[u8]) -> RawInput<'_> {
    RawInput {
        received_at_ms: RECEIVED_AT,
        delivery_id: Some("7e5c3a1f-9b8d-4c2e-a0f1-6d4b2c8e0a93"),
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        source_topic: "raw.terra",
        source_partition: 3,
        source_offset: 1_042,
        ..raw_input(Vendor::Terra, body)
    }
}

fn events(body: &[u8]) -> Vec<BiometricEvent> {
    match normalize(&input(body)) {
        Ok(Outcome::Events(events)) => events,
        other => panic!("expected events, got {other:?}"),
    }
}

fn only_event(body: &[u8]) -> BiometricEvent {
    let mut all = events(body);
    assert_eq!(all.len(), 1, "one event per data element");
    all.remove(0)
}

fn error(body: &[u8]) -> NormalizeError {
    normalize(&input(body)).expect_err("expected an error")
}

#[test]
fn sleep_maps_every_field_it_carries() {
    let event = only_event(SLEEP);
    assert_eq!(event.event_id, event_id(Vendor::Terra, EventKind::Sleep, SLEEP_SUMMARY_ID));
    assert_eq!(event.user_id, "athlete-0042");
    assert_eq!(event.vendor, Vendor::Terra);
    assert_eq!(event.vendor_user_id, OURA_CONNECTION);
    assert_eq!(event.source_device.as_deref(), Some("OURA"));
    assert_eq!(event.kind, EventKind::Sleep);
    assert_eq!(event.vendor_record_id.as_deref(), Some(SLEEP_SUMMARY_ID));
    assert_eq!(event.measured_at, 1_795_147_710_000); // 2026-11-19T23:08:30-05:00
    assert_eq!(event.measured_until, Some(1_795_175_340_000)); // 2026-11-20T06:49:00-05:00
    assert_eq!(event.local_date.as_deref(), Some("2026-11-20"), "a night belongs to its wake-up day");
    assert_eq!(event.received_at, RECEIVED_AT);
    assert_eq!(event.hrv_rmssd_ms, Some(58.0));
    assert_eq!(event.hrv_sdnn_ms, None);
    assert_eq!(event.hrv_window, Some(HrvWindow::NightlyMean));
    assert_eq!(event.heart_rate_avg_bpm, Some(53.6));
    assert_eq!(event.heart_rate_min_bpm, Some(47.0));
    assert_eq!(event.heart_rate_max_bpm, Some(68.0));
    assert_eq!(event.resting_heart_rate_bpm, Some(47.0));
    assert_eq!(event.sleep_total_seconds, Some(24_960));
    assert_eq!(event.sleep_deep_seconds, Some(4_860));
    assert_eq!(event.sleep_light_seconds, Some(13_800));
    assert_eq!(event.sleep_rem_seconds, Some(6_300));
    assert_eq!(event.sleep_awake_seconds, Some(2_430));
    assert_eq!(event.time_in_bed_seconds, Some(27_390));
    assert_eq!(event.sleep_efficiency_pct, Some(91.1));
    assert_eq!(event.readiness_score, Some(82.0));
    assert_eq!(event.respiratory_rate_bpm, Some(14.6));
    assert_eq!(event.temperature_deviation_celsius, Some(-0.08));
    assert_eq!(event.sleep_score, Some(85.0));
    // Not carried by a sleep record: left empty, never zero-filled.
    assert_eq!(event.recovery_score, None);
    assert_eq!(event.steps, None);
    assert_eq!(event.distance_meters, None);
    assert_eq!(event.total_calories_kcal, None);
    assert_eq!(event.spo2_pct, None);
    assert_eq!(event.skin_temp_celsius, None);
    assert_eq!(event.strain, None);
    // Lineage and trace come from the raw record; triggers are the processor's job.
    assert_eq!(event.lineage.source_topic, "raw.terra");
    assert_eq!(event.lineage.source_partition, 3);
    assert_eq!(event.lineage.source_offset, 1_042);
    assert_eq!(event.lineage.delivery_id.as_deref(), Some("7e5c3a1f-9b8d-4c2e-a0f1-6d4b2c8e0a93"));
    assert_eq!(event.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert!(event.triggers.is_empty());
    assert_eq!(event.priority, Priority::Normal);
}

#[test]
fn low_hrv_sleep_is_the_same_record_with_a_lower_rmssd() {
    let low = only_event(SLEEP_LOW_HRV);
    assert_eq!(low.hrv_rmssd_ms, Some(19.2));
    assert_eq!(low.hrv_sdnn_ms, None);
    assert_eq!(low.event_id, only_event(SLEEP).event_id, "same summary_id, same event");
}

#[test]
fn threshold_boundary_fixtures_keep_their_exact_rmssd() {
    let cases: [(&[u8], f64); 4] = [
        (include_bytes!("../../../tests/fixtures/terra/sleep_rmssd_24_99.json"), 24.99),
        (include_bytes!("../../../tests/fixtures/terra/sleep_rmssd_25_00.json"), 25.0),
        (include_bytes!("../../../tests/fixtures/terra/sleep_rmssd_39_99.json"), 39.99),
        (include_bytes!("../../../tests/fixtures/terra/sleep_rmssd_40_00.json"), 40.0),
    ];
    for (body, rmssd) in cases {
        let event = only_event(body);
        assert_eq!(event.hrv_rmssd_ms, Some(rmssd));
        assert_eq!(event.hrv_window, Some(HrvWindow::NightlyMean));
    }
}

#[test]
fn nap_hrv_is_a_session_mean() {
    let event = only_event(&replaced(SLEEP, "\"is_nap\": false", "\"is_nap\": true"));
    assert_eq!(event.hrv_rmssd_ms, Some(58.0));
    assert_eq!(event.hrv_window, Some(HrvWindow::SessionMean));
    let unknown = only_event(&replaced(SLEEP, "\"is_nap\": false", "\"is_nap\": null"));
    assert_eq!(unknown.hrv_window, Some(HrvWindow::NightlyMean), "null is Terra's \"not stated\"");
}

#[test]
fn daily_maps_activity_totals_and_keys_on_user_and_day() {
    let event = only_event(DAILY);
    let key = format!("{GARMIN_CONNECTION}|2026-11-20");
    assert_eq!(event.event_id, event_id(Vendor::Terra, EventKind::Daily, &key));
    assert_eq!(event.kind, EventKind::Daily);
    assert_eq!(event.user_id, "athlete-0117");
    assert_eq!(event.vendor_user_id, GARMIN_CONNECTION);
    assert_eq!(event.source_device.as_deref(), Some("GARMIN"));
    assert_eq!(event.vendor_record_id, None, "daily records have no summary_id");
    assert_eq!(event.measured_at, 1_795_150_800_000); // 2026-11-20T00:00:00-05:00
    assert_eq!(event.measured_until, Some(1_795_237_200_000));
    assert_eq!(event.local_date.as_deref(), Some("2026-11-20"));
    assert_eq!(event.steps, Some(11_894));
    assert_eq!(event.distance_meters, Some(9_412.7));
    assert_eq!(event.total_calories_kcal, Some(2_450.8));
    assert_eq!(event.active_calories_kcal, Some(612.4));
    assert_eq!(event.heart_rate_avg_bpm, Some(68.2));
    assert_eq!(event.heart_rate_min_bpm, Some(48.0));
    assert_eq!(event.heart_rate_max_bpm, Some(162.0));
    assert_eq!(event.resting_heart_rate_bpm, Some(49.0));
    // All three scores and both HRV values are null in the fixture.
    assert_eq!((event.recovery_score, event.sleep_score), (None, None));
    assert_eq!((event.hrv_rmssd_ms, event.hrv_sdnn_ms, event.hrv_window), (None, None, None));
}

#[test]
fn daily_scores_and_hrv_when_present() {
    let body = replaced(DAILY, "\"recovery\": null", "\"recovery\": 64");
    let body = replaced(&body, "\"avg_hrv_rmssd\": null", "\"avg_hrv_rmssd\": 41.5");
    let event = only_event(&body);
    assert_eq!(event.recovery_score, Some(64.0));
    assert_eq!(event.hrv_rmssd_ms, Some(41.5));
    assert_eq!(event.hrv_window, Some(HrvWindow::DailyMean));
}

#[test]
fn body_from_apple_carries_sdnn_not_rmssd() {
    let event = only_event(BODY);
    let key = "e41a7c02-8b6d-4f1e-9c3a-55d0b2f7a918|2026-11-20";
    assert_eq!(event.event_id, event_id(Vendor::Terra, EventKind::Body, key));
    assert_eq!(event.kind, EventKind::Body);
    assert_eq!(event.user_id, "athlete-0203");
    assert_eq!(event.source_device.as_deref(), Some("APPLE"));
    assert_eq!(event.measured_at, 1_795_161_600_000); // 2026-11-20T00:00:00-08:00
    assert_eq!(event.measured_until, Some(1_795_248_000_000));
    assert_eq!(event.local_date.as_deref(), Some("2026-11-20"));
    assert_eq!(event.hrv_sdnn_ms, Some(43.7));
    assert_eq!(event.hrv_rmssd_ms, None);
    assert_eq!(event.hrv_window, Some(HrvWindow::DailyMean));
    assert_eq!(event.heart_rate_avg_bpm, Some(71.5));
    assert_eq!(event.heart_rate_min_bpm, Some(52.0));
    assert_eq!(event.heart_rate_max_bpm, Some(138.0));
    assert_eq!(event.resting_heart_rate_bpm, Some(55.0));
    assert_eq!(event.spo2_pct, Some(96.5));
    assert_eq!(event.steps, None);

    let low = only_event(BODY_LOW_HRV);
    assert_eq!((low.hrv_sdnn_ms, low.hrv_rmssd_ms), (Some(18.4), None));
    assert_eq!(low.event_id, event.event_id, "same user and day, same event");
}

#[test]
fn activity_maps_session_totals() {
    let event = only_event(ACTIVITY);
    let summary_id = "b7e1c3a9-4d2f-4a8e-9c61-3f0d2e7a5b14";
    assert_eq!(event.event_id, event_id(Vendor::Terra, EventKind::Activity, summary_id));
    assert_eq!(event.kind, EventKind::Activity);
    assert_eq!(event.vendor_record_id.as_deref(), Some(summary_id));
    assert_eq!(event.user_id, "athlete-0117");
    assert_eq!(event.source_device.as_deref(), Some("GARMIN"));
    assert_eq!(event.measured_at, 1_795_176_251_000); // 2026-11-20T07:04:11-05:00
    assert_eq!(event.measured_until, Some(1_795_179_168_000));
    assert_eq!(event.local_date.as_deref(), Some("2026-11-20"));
    assert_eq!(event.steps, Some(7_902));
    assert_eq!(event.distance_meters, Some(8_250.4));
    assert_eq!(event.total_calories_kcal, Some(512.5));
    assert_eq!(event.active_calories_kcal, Some(431.2));
    assert_eq!(event.heart_rate_avg_bpm, Some(148.2));
    assert_eq!(event.heart_rate_min_bpm, Some(96.0));
    assert_eq!(event.heart_rate_max_bpm, Some(181.0));
    assert_eq!((event.hrv_rmssd_ms, event.hrv_sdnn_ms, event.hrv_window), (None, None, None));

    let with_hrv = only_event(&replaced(ACTIVITY, "\"avg_hrv_rmssd\": null", "\"avg_hrv_rmssd\": 22.5"));
    assert_eq!(with_hrv.hrv_rmssd_ms, Some(22.5));
    assert_eq!(with_hrv.hrv_window, Some(HrvWindow::SessionMean));
}

#[test]
fn event_id_depends_on_the_record_not_on_the_delivery() {
    let first = only_event(SLEEP);
    let redelivered = {
        let mut raw = input(SLEEP);
        raw.received_at_ms += 3_600_000;
        raw.source_offset += 7;
        raw.delivery_id = Some("another-delivery");
        match normalize(&raw) {
            Ok(Outcome::Events(mut events)) => events.remove(0),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(redelivered.event_id, first.event_id);
    let other_record = only_event(&replaced(SLEEP, SLEEP_SUMMARY_ID, "2-0000000000000000000000000000000000"));
    assert_ne!(other_record.event_id, first.event_id);
}

#[test]
fn user_without_reference_id_keeps_a_vendor_scoped_id() {
    let event = only_event(&replaced(SLEEP, "\"reference_id\": \"athlete-0042\"", "\"reference_id\": null"));
    assert_eq!(event.user_id, format!("terra:{OURA_CONNECTION}"));
}

#[test]
fn one_event_per_data_element_and_empty_data_is_no_events() {
    let text = std::str::from_utf8(DAILY).unwrap();
    let element = &text[text.find("    {\n      \"metadata\"").unwrap()..text.rfind("\n  ]").unwrap()];
    let second_day = element
        .replace("2026-11-20T", "2026-11-21T")
        .replace("2026-11-21T00:00:00.000000-05:00\",\n        \"upload", "2026-11-22T00:00:00.000000-05:00\",\n        \"upload");
    let two = replaced(DAILY, element, &format!("{element},\n{second_day}"));
    let days: Vec<_> = events(&two).into_iter().map(|event| event.local_date.unwrap()).collect();
    assert_eq!(days, ["2026-11-20", "2026-11-21"]);

    let empty = br#"{"type":"sleep","user":{"user_id":"u-1","provider":"OURA"},"data":[]}"#;
    assert_eq!(normalize(&input(empty)), Ok(Outcome::Events(vec![])));
}

#[test]
fn auth_success_links_the_connection_to_our_user() {
    let expected = IdentityChange::Link {
        vendor: Vendor::Terra,
        vendor_user_id: OURA_CONNECTION.to_owned(),
        user_id: "athlete-0042".to_owned(),
        provider: Some("OURA".to_owned()),
    };
    assert_eq!(normalize(&input(AUTH_SUCCESS)), Ok(Outcome::Identity(expected)));
}

#[test]
fn auth_without_reference_id_is_a_shape_error() {
    let body = replaced(AUTH_SUCCESS, "\"reference_id\": \"athlete-0042\",\n  \"user\"", "\"user\"");
    let body = replaced(&body, "\"reference_id\": \"athlete-0042\",", "");
    assert_eq!(error(&body).class(), "invalid_shape");
}

#[test]
fn failed_or_cancelled_auth_is_a_notice() {
    let failed = replaced(AUTH_SUCCESS, "\"status\": \"success\"", "\"status\": \"error\"");
    assert!(matches!(normalize(&input(&failed)), Ok(Outcome::Notice { kind, .. }) if kind == "auth"));
    let cancelled = br#"{"type":"auth_cancelled","reason":"user_cancelled","reference_id":"athlete-0042"}"#;
    assert!(matches!(normalize(&input(cancelled)), Ok(Outcome::Notice { kind, .. }) if kind == "auth_cancelled"));
}

#[test]
fn deauth_and_access_revoked_unlink() {
    let expected = Outcome::Identity(IdentityChange::Unlink { vendor: Vendor::Terra, vendor_user_id: OURA_CONNECTION.to_owned() });
    assert_eq!(normalize(&input(DEAUTH)), Ok(expected.clone()));
    let revoked = replaced(DEAUTH, "\"type\": \"deauth\"", "\"type\": \"access_revoked\"");
    assert_eq!(normalize(&input(&revoked)), Ok(expected));
}

#[test]
fn user_reauth_rekeys_old_to_new() {
    let expected = IdentityChange::Rekey {
        vendor: Vendor::Terra,
        old_vendor_user_id: GARMIN_CONNECTION.to_owned(),
        new_vendor_user_id: "2f7c9a31-6d4e-4b8a-9e1f-0c5d7b3a2e84".to_owned(),
        user_id: "athlete-0117".to_owned(),
        provider: Some("GARMIN".to_owned()),
    };
    assert_eq!(normalize(&input(USER_REAUTH)), Ok(Outcome::Identity(expected)));
}

#[test]
fn recognised_types_without_data_are_notices() {
    for (body, kind) in [(LARGE_REQUEST, "large_request_processing"), (ATHLETE, "athlete")] {
        match normalize(&input(body)) {
            Ok(Outcome::Notice { kind: found, detail }) => {
                assert_eq!(found, kind);
                assert!(!detail.is_empty());
            }
            other => panic!("{kind}: {other:?}"),
        }
    }
    for kind in ["healthcheck", "connection_error", "rate_limit_hit", "nutrition", "menstruation"] {
        let body = format!(r#"{{"type":"{kind}","status":"success"}}"#);
        assert!(matches!(normalize(&input(body.as_bytes())), Ok(Outcome::Notice { .. })), "{kind}");
    }
}

#[test]
fn unknown_and_informational_types_are_acknowledged_notices() {
    for (body, kind) in [
        (&br#"{"type":"lab_report.completed","user":{"user_id":"u-1"}}"#[..], "lab_report.completed"),
        (br#"{"type":"hormone","user":{"user_id":"u-1"},"data":[]}"#, "hormone"),
        (br#"{"type":"planned_workout","user":{"user_id":"u-1"},"data":[]}"#, "planned_workout"),
        (br#"{"type":"something_new","user":{"user_id":"u-1"}}"#, "unknown"),
    ] {
        match normalize(&input(body)) {
            Ok(Outcome::Notice { kind: found, .. }) => assert_eq!(found, kind),
            other => panic!("{kind}: {other:?}"),
        }
    }
}

#[test]
fn garbage_and_truncated_bodies_are_invalid_json() {
    assert_eq!(error(NOT_JSON).class(), "invalid_json");
    assert_eq!(error(TRUNCATED).class(), "invalid_json");
    assert_eq!(error(b"").class(), "invalid_json");
}

#[test]
fn wrong_shapes_are_shape_errors() {
    let data_not_array = br#"{"type":"sleep","user":{"user_id":"u-1"},"data":{"metadata":{}}}"#;
    assert_eq!(error(data_not_array).class(), "invalid_shape");
    let no_user = br#"{"type":"sleep","data":[]}"#;
    assert_eq!(error(no_user).class(), "invalid_shape");
    assert_eq!(error(br#"{"data":[]}"#).class(), "invalid_shape", "no type");
    assert_eq!(error(b"[1,2]").class(), "invalid_shape");
}

#[test]
fn a_sleep_without_summary_id_is_keyed_by_user_and_times() {
    // `summary_id` is optional in Terra's SleepMetadata (source: Terra OpenAPI SleepMetadata.yaml).
    let no_summary_id = replaced(SLEEP, "\"summary_id\": \"2-7f3a9c1d2e4b5a6c8d9e0f1a2b3c4d5e6f\",", "");
    let event = only_event(&no_summary_id);
    let key = format!("{OURA_CONNECTION}|2026-11-19T23:08:30.000000-05:00|2026-11-20T06:49:00.000000-05:00");
    assert_eq!(event.event_id, event_id(Vendor::Terra, EventKind::Sleep, &key));
    assert_eq!(event.vendor_record_id, None);
    assert_eq!(only_event(&no_summary_id).event_id, event.event_id, "stable across re-sends");
}

#[test]
fn times_without_an_offset_are_local_times_not_errors() {
    // "TimeZone info will be provided whenever possible. If absent, the time corresponds to the
    // user's local time" (Terra OpenAPI SleepMetadata / DailyMetadata / ActivityMetadata).
    let local = replaced(SLEEP, "2026-11-20T06:49:00.000000-05:00", "2026-11-20T06:49:00.000000");
    let local = String::from_utf8(local).unwrap().replace("2026-11-19T23:08:30.000000-05:00", "2026-11-19T23:08:30.000000");
    let event = only_event(local.as_bytes());
    assert_eq!(event.local_date.as_deref(), Some("2026-11-20"), "the date of the local time");
    assert_eq!(event.measured_at, 1_795_129_710_000, "23:08:30 read as UTC");
    let note = &event.data_quality[0];
    assert_eq!((note.field.as_str(), note.reason.as_str()), ("measured_at", "no_utc_offset"));
    assert_eq!(event.hrv_rmssd_ms, Some(58.0), "the values are all there");
}

#[test]
fn an_irregular_rhythm_notification_is_a_health_observation() {
    let body = br#"{"type":"health_observation","version":"2022-03-16",
        "user":{"user_id":"u-9","provider":"APPLE","reference_id":"athlete-9"},
        "data":[{"metadata":{"start_time":"2026-11-20T03:10:00.000000-05:00","end_time":"2026-11-20T03:40:00.000000-05:00","summary_id":"7C3A5D9E"},
                 "observation_data":{"category":7,"observation_type":"irregular_heart_rhythm_event"}}]}"#;
    let event = only_event(body);
    assert_eq!(event.kind, EventKind::HealthObservation);
    assert_eq!(event.observation_type.as_deref(), Some("irregular_heart_rhythm_event"));
    assert_eq!(event.observation_category.as_deref(), Some("device_event"));
    assert_eq!(event.user_id, "athlete-9");
    assert_eq!(event.event_id, event_id(Vendor::Terra, EventKind::HealthObservation, "7C3A5D9E"));
    let retracted = String::from_utf8(body.to_vec()).unwrap().replace(r#""category":7,"#, r#""category":7,"status":"ENTERED_IN_ERROR","#);
    let deletion = only_event(retracted.as_bytes());
    assert_eq!(deletion.kind, EventKind::Deleted);
    assert_eq!(deletion.retracts_event_id, Some(event.event_id));
}

#[test]
fn unparseable_timestamp_is_an_invalid_value() {
    let body = replaced(SLEEP, "2026-11-20T06:49:00.000000-05:00", "this morning");
    assert_eq!(error(&body).class(), "invalid_value");
}

#[test]
fn vendor_user_id_from_the_smallest_parse() {
    assert_eq!(vendor_user_id(SLEEP).as_deref(), Some(OURA_CONNECTION));
    assert_eq!(vendor_user_id(AUTH_SUCCESS).as_deref(), Some(OURA_CONNECTION));
    assert_eq!(vendor_user_id(USER_REAUTH).as_deref(), Some("2f7c9a31-6d4e-4b8a-9e1f-0c5d7b3a2e84"));
    assert_eq!(vendor_user_id(br#"{"type":"auth_cancelled","reference_id":"a"}"#), None);
    assert_eq!(vendor_user_id(NOT_JSON), None);
}

#[test]
fn delivery_id_is_the_trace_id_header() {
    let headers = header_map(&[("X-Terra-Trace-Id", "7e5c3a1f-9b8d-4c2e-a0f1-6d4b2c8e0a93")]);
    assert_eq!(delivery_id(&headers, SLEEP).as_deref(), Some("7e5c3a1f-9b8d-4c2e-a0f1-6d4b2c8e0a93"));
    assert_eq!(delivery_id(&HeaderMap::new(), SLEEP), None);
}

// --- signature (vendors.md §1.4) ---

const SECRET: &[u8] = b"terra_test_signing_secret_DO_NOT_USE";

fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    hex::encode(mac(secret, &[t.as_bytes(), b".", body]))
}

fn signed(value: &str) -> HeaderMap {
    header_map(&[("terra-signature", value)])
}

fn check(headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
    verify_signature(headers, body, &context(SECRET, SIGNED_AT))
}

#[test]
fn recorded_vectors_verify() {
    for file in ["sleep.json", "daily.json"] {
        let (secret, headers) = vector(SIGNATURES, file);
        assert_eq!(secret, SECRET);
        let body = if file == "sleep.json" { SLEEP } else { DAILY };
        assert_eq!(verify_signature(&headers, body, &context(&secret, SIGNED_AT)), Ok(()), "{file}");
    }
}

#[test]
fn current_header_name_and_upper_case_hex_are_accepted() {
    let (_, headers) = vector(SIGNATURES, "sleep.json");
    let value = headers["terra-signature"].to_str().unwrap();
    assert_eq!(check(&header_map(&[("X-Terra-Signature", value)]), SLEEP), Ok(()));
    let (t, mac) = value.split_once(",v1=").unwrap();
    assert_eq!(check(&signed(&format!("{t},v1={}", mac.to_uppercase())), SLEEP), Ok(()));
}

#[test]
fn tampered_body_or_wrong_secret_is_a_mismatch() {
    let (_, headers) = vector(SIGNATURES, "sleep.json");
    assert_eq!(check(&headers, &tampered(SLEEP)), Err(SignatureError::Mismatch));
    assert_eq!(check(&headers, DAILY), Err(SignatureError::Mismatch), "signature of another body");
    let wrong_secret = context(b"not-the-secret", SIGNED_AT);
    assert_eq!(verify_signature(&headers, SLEEP, &wrong_secret), Err(SignatureError::Mismatch));
}

#[test]
fn timestamp_outside_five_minutes_is_stale() {
    for skew in [301, -301] {
        let t = SIGNED_AT + skew;
        let headers = signed(&format!("t={t},v1={}", sign(SECRET, t, SLEEP)));
        assert_eq!(check(&headers, SLEEP), Err(SignatureError::Stale), "skew {skew}");
    }
    let t = SIGNED_AT - 300;
    assert_eq!(check(&signed(&format!("t={t},v1={}", sign(SECRET, t, SLEEP))), SLEEP), Ok(()));
}

#[test]
fn missing_or_garbage_header() {
    assert_eq!(check(&HeaderMap::new(), SLEEP), Err(SignatureError::Missing("terra-signature")));
    for garbage in ["garbage", "t=abc,v1=00", "v1=zz-not-hex,t=1795218931", "t=1795218931", ""] {
        assert_eq!(check(&signed(garbage), SLEEP), Err(SignatureError::Malformed("terra-signature")), "{garbage:?}");
    }
    // The error names the header, never echoes the value.
    let message = check(&signed("t=1,v1=secret-looking-value"), SLEEP).unwrap_err().to_string();
    assert!(!message.contains("secret-looking-value"));
}

#[test]
fn only_v1_counts() {
    let valid = sign(SECRET, SIGNED_AT, SLEEP);
    let v0_only = signed(&format!("t={SIGNED_AT},v0={valid}"));
    assert!(check(&v0_only, SLEEP).is_err(), "a valid v0 MAC without v1 must not pass");
    let bad_v0_good_v1 = signed(&format!("t={SIGNED_AT},v0=nonsense,v1={valid}"));
    assert_eq!(check(&bad_v0_good_v1, SLEEP), Ok(()));
    let good_v0_bad_v1 = signed(&format!("t={SIGNED_AT},v0={valid},v1={}", "00".repeat(32)));
    assert_eq!(check(&good_v0_bad_v1, SLEEP), Err(SignatureError::Mismatch));
}

#[test]
fn any_of_several_v1_may_match() {
    let valid = sign(SECRET, SIGNED_AT, SLEEP);
    let rotated = sign(b"old-secret", SIGNED_AT, SLEEP);
    assert_eq!(check(&signed(&format!("t={SIGNED_AT},v1={rotated},v1={valid}")), SLEEP), Ok(()));
    assert_eq!(check(&signed(&format!("t={SIGNED_AT},v1={rotated}")), SLEEP), Err(SignatureError::Mismatch));
}
