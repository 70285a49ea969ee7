//! WHOOP: notifications to pending fetches, API records to canonical fields, the signature.

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{
    delivery_id, map_api_cycle, map_api_record, map_api_recovery, map_api_sleep, map_api_workout, normalize, recovery_api_path,
    vendor_user_id, verify_signature,
};
use crate::event::{EventKind, HrvWindow, Vendor};
use crate::vendors::signature::SignatureError;
use crate::vendors::test_support::{context, header_map, mac, one, raw_input, replaced, tampered, vector};
use crate::vendors::{Outcome, PendingFetch, RawInput, event_id};

const WEBHOOK_RECOVERY_UPDATED: &[u8] = include_bytes!("../../../tests/fixtures/whoop/webhook_recovery_updated.json");
const WEBHOOK_SLEEP_UPDATED: &[u8] = include_bytes!("../../../tests/fixtures/whoop/webhook_sleep_updated.json");
const WEBHOOK_WORKOUT_UPDATED: &[u8] = include_bytes!("../../../tests/fixtures/whoop/webhook_workout_updated.json");
const WEBHOOK_RECOVERY_DELETED: &[u8] = include_bytes!("../../../tests/fixtures/whoop/webhook_recovery_deleted.json");
const API_RECOVERY: &[u8] = include_bytes!("../../../tests/fixtures/whoop/api_recovery.json");
const API_RECOVERY_LOW_HRV: &[u8] = include_bytes!("../../../tests/fixtures/whoop/api_recovery_low_hrv.json");
const API_RECOVERY_PENDING: &[u8] = include_bytes!("../../../tests/fixtures/whoop/api_recovery_pending.json");
const API_SLEEP: &[u8] = include_bytes!("../../../tests/fixtures/whoop/api_sleep.json");
const API_CYCLE: &[u8] = include_bytes!("../../../tests/fixtures/whoop/api_cycle.json");
const API_WORKOUT: &[u8] = include_bytes!("../../../tests/fixtures/whoop/api_workout.json");
const SIGNATURES: &[u8] = include_bytes!("../../../tests/fixtures/whoop/signatures.json");
const NOT_JSON: &[u8] = include_bytes!("../../../tests/fixtures/garbage/not_json.txt");

const USER: &str = "10129457";
const SLEEP_ID: &str = "3b9e2f1c-7a4d-4c8e-b5f0-2d6a8c1e9f37";
const WORKOUT_ID: &str = "7d0f3b5e-1a9c-4e2d-8b6f-0c3e5a7d9b14";
const RECEIVED_AT: i64 = 1_795_218_812_500;
/// Timestamp of the recorded signature vectors, in seconds (the header carries milliseconds).
const SIGNED_AT: i64 = 1_795_218_812;

fn input(body: &[u8]) -> RawInput<'_> {
    RawInput {
        received_at_ms: RECEIVED_AT,
        delivery_id: Some("e369c784-5100-49e8-8098-75d35c47b31b"),
        source_topic: "pending.whoop",
        ..raw_input(Vendor::Whoop, body)
    }
}

fn pending(data_type: &str, object_id: &str, api_path: &str) -> Outcome {
    Outcome::PendingFetch(PendingFetch {
        vendor: Vendor::Whoop,
        vendor_user_id: USER.to_owned(),
        data_type: data_type.to_owned(),
        object_id: object_id.to_owned(),
        api_path: api_path.to_owned(),
        expires_at_ms: None,
    })
}

#[test]
fn updated_notifications_become_pending_fetches() {
    let sleep_path = format!("/v2/activity/sleep/{SLEEP_ID}");
    assert_eq!(normalize(&input(WEBHOOK_SLEEP_UPDATED)), Ok(pending("sleep", SLEEP_ID, &sleep_path)));
    let workout_path = format!("/v2/activity/workout/{WORKOUT_ID}");
    assert_eq!(normalize(&input(WEBHOOK_WORKOUT_UPDATED)), Ok(pending("workout", WORKOUT_ID, &workout_path)));
    // A recovery's id is its sleep's id: first fetch the sleep (then its cycle's recovery).
    assert_eq!(normalize(&input(WEBHOOK_RECOVERY_UPDATED)), Ok(pending("recovery", SLEEP_ID, &sleep_path)));
}

#[test]
fn recovery_path_comes_from_the_sleeps_cycle() {
    assert_eq!(recovery_api_path(API_SLEEP).as_deref(), Ok("/v2/cycle/1093845227/recovery"));
    assert_eq!(recovery_api_path(NOT_JSON).unwrap_err().class(), "invalid_json");
}

#[test]
fn deleted_is_a_deleted_event_and_unknown_types_are_unsupported() {
    let sleep_id = "e5c1a7d3-9b2f-4e6a-8c0d-4f7b1a3e5c92";
    let Ok(Outcome::Events(events)) = normalize(&input(WEBHOOK_RECOVERY_DELETED)) else { panic!("events expected") };
    assert_eq!(events[0].kind, EventKind::Deleted);
    assert_eq!(events[0].vendor_record_id.as_deref(), Some(sleep_id));
    assert_eq!(events[0].vendor_user_id, "10129457");
    // A recovery event is keyed by its sleep id (map_api_recovery): that is the one retracted.
    let recovery_event = crate::vendors::event_id(Vendor::Whoop, EventKind::Recovery, sleep_id);
    assert_eq!(events[0].retracts_event_id.as_deref(), Some(recovery_event.as_str()));
    let mut ids = vec![events[0].event_id.clone()];
    for (deleted, kind) in [("sleep.deleted", EventKind::Sleep), ("workout.deleted", EventKind::Workout)] {
        let body = replaced(WEBHOOK_SLEEP_UPDATED, "sleep.updated", deleted);
        let Ok(Outcome::Events(events)) = normalize(&input(&body)) else { panic!("{deleted}") };
        assert_eq!(events[0].retracts_event_id, Some(crate::vendors::event_id(Vendor::Whoop, kind, SLEEP_ID)), "{deleted}");
        ids.push(events[0].event_id.clone());
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "deleting a sleep and its recovery are two different retractions");
    let body = replaced(WEBHOOK_SLEEP_UPDATED, "sleep.updated", "body_measurement.updated");
    assert_eq!(normalize(&input(&body)).unwrap_err().class(), "unsupported_type");
}

#[test]
fn a_cycle_notification_fed_by_reconciliation_is_fetched_from_the_cycle_endpoint() {
    // WHOOP has no cycle webhook ("Are there webhooks for Day Strain, cycles…? Not at the
    // moment", WHOOP developer FAQ): reconciliation feeds `cycle.updated`, ids are integers.
    let body = br#"{"user_id":10129457,"id":"93845","type":"cycle.updated","trace_id":"reconcile-1"}"#;
    match normalize(&input(body)) {
        Ok(Outcome::PendingFetch(fetch)) => assert_eq!((fetch.data_type.as_str(), fetch.api_path.as_str()), ("cycle", "/v2/cycle/93845")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn notification_errors() {
    assert_eq!(normalize(&input(NOT_JSON)).unwrap_err().class(), "invalid_json");
    let v1_integer_id = replaced(WEBHOOK_SLEEP_UPDATED, &format!("\"{SLEEP_ID}\""), "12345");
    assert_eq!(normalize(&input(&v1_integer_id)).unwrap_err().class(), "invalid_shape");
    let traversal = replaced(WEBHOOK_SLEEP_UPDATED, SLEEP_ID, "../../user/access");
    assert_eq!(normalize(&input(&traversal)).unwrap_err().class(), "invalid_value");
}

#[test]
fn ids_from_the_smallest_parse() {
    assert_eq!(vendor_user_id(WEBHOOK_SLEEP_UPDATED).as_deref(), Some(USER));
    assert_eq!(vendor_user_id(NOT_JSON), None);
    let headers = HeaderMap::new();
    assert_eq!(delivery_id(&headers, WEBHOOK_SLEEP_UPDATED).as_deref(), Some("a81f0c2e-6b3d-4d7a-9e5c-1f8b2a4c6d03"));
    assert_eq!(delivery_id(&headers, NOT_JSON), None);
}

#[test]
fn api_recovery_maps_rmssd_and_scores() {
    let event = one(map_api_recovery(API_RECOVERY, &input(b"{}"), USER));
    assert_eq!(event.event_id, event_id(Vendor::Whoop, EventKind::Recovery, SLEEP_ID));
    assert_eq!(event.kind, EventKind::Recovery);
    assert_eq!(event.vendor, Vendor::Whoop);
    assert_eq!(event.user_id, format!("whoop:{USER}"));
    assert_eq!(event.vendor_user_id, USER);
    assert_eq!(event.vendor_record_id.as_deref(), Some(SLEEP_ID));
    assert_eq!(event.source_device.as_deref(), Some("WHOOP"));
    assert_eq!(event.measured_at, 1_795_175_894_774); // created_at 2026-11-20T11:58:14.774Z
    assert_eq!(event.measured_until, None);
    assert_eq!(event.local_date, None);
    assert_eq!(event.received_at, RECEIVED_AT);
    assert_eq!(event.hrv_rmssd_ms, Some(64.183174));
    assert_eq!(event.hrv_sdnn_ms, None);
    assert_eq!(event.hrv_window, Some(HrvWindow::NightlyMean));
    assert_eq!(event.recovery_score, Some(71.0));
    assert_eq!(event.resting_heart_rate_bpm, Some(51.0));
    assert_eq!(event.spo2_pct, Some(96.4375));
    assert_eq!(event.skin_temp_celsius, Some(33.82));
    assert_eq!(event.readiness_score, None);
    assert_eq!(event.lineage.delivery_id.as_deref(), Some("e369c784-5100-49e8-8098-75d35c47b31b"));

    let low = one(map_api_recovery(API_RECOVERY_LOW_HRV, &input(b"{}"), USER));
    assert_eq!((low.hrv_rmssd_ms, low.recovery_score), (Some(19.53), Some(19.0)));
    assert_eq!(low.event_id, event.event_id);
}

#[test]
fn api_recovery_quality_gates() {
    assert_eq!(map_api_recovery(API_RECOVERY_PENDING, &input(b"{}"), USER), Ok(vec![]));
    let unscorable = replaced(API_RECOVERY_PENDING, "PENDING_SCORE", "UNSCORABLE");
    assert_eq!(map_api_recovery(&unscorable, &input(b"{}"), USER), Ok(vec![]));
    let calibrating = replaced(API_RECOVERY, "\"user_calibrating\": false", "\"user_calibrating\": true");
    let event = one(map_api_recovery(&calibrating, &input(b"{}"), USER));
    assert_eq!((event.hrv_rmssd_ms, event.hrv_window), (None, None), "no HRV while calibrating");
    assert_eq!(event.recovery_score, Some(71.0), "the rest of the record still counts");
    let scored_without_score = replaced(API_RECOVERY_PENDING, "PENDING_SCORE", "SCORED");
    assert_eq!(map_api_recovery(&scored_without_score, &input(b"{}"), USER).unwrap_err().class(), "invalid_shape");
}

#[test]
fn api_sleep_maps_stages_to_seconds() {
    let event = one(map_api_sleep(API_SLEEP, &input(b"{}"), USER));
    assert_eq!(event.event_id, event_id(Vendor::Whoop, EventKind::Sleep, SLEEP_ID));
    assert_eq!(event.kind, EventKind::Sleep);
    assert_eq!(event.vendor_record_id.as_deref(), Some(SLEEP_ID));
    assert_eq!(event.measured_at, 1_795_147_862_390); // 2026-11-20T04:11:02.390Z
    assert_eq!(event.measured_until, Some(1_795_175_209_811)); // 2026-11-20T11:46:49.811Z
    assert_eq!(event.local_date.as_deref(), Some("2026-11-20"), "wake-up day at -05:00");
    // light 12_986_530 + slow wave 6_120_448 + REM 6_026_137 ms
    assert_eq!(event.sleep_total_seconds, Some(25_133));
    assert_eq!(event.sleep_deep_seconds, Some(6_120));
    assert_eq!(event.sleep_light_seconds, Some(12_987));
    assert_eq!(event.sleep_rem_seconds, Some(6_026));
    assert_eq!(event.sleep_awake_seconds, Some(2_214));
    assert_eq!(event.time_in_bed_seconds, Some(27_347));
    assert_eq!(event.respiratory_rate_bpm, Some(14.765625));
    assert_eq!(event.sleep_efficiency_pct, Some(91.90308));
    assert_eq!(event.sleep_score, Some(87.0));
    assert_eq!((event.hrv_rmssd_ms, event.hrv_window), (None, None));

    let nap = one(map_api_sleep(&replaced(API_SLEEP, "\"nap\": false", "\"nap\": true"), &input(b"{}"), USER));
    assert_eq!(nap.kind, EventKind::Sleep);
    let pending = replaced(API_SLEEP, "\"score_state\": \"SCORED\"", "\"score_state\": \"PENDING_SCORE\"");
    assert_eq!(map_api_sleep(&pending, &input(b"{}"), USER), Ok(vec![]));
}

#[test]
fn api_cycle_is_the_day_strain() {
    let event = one(map_api_cycle(API_CYCLE, &input(b"{}"), USER));
    assert_eq!(event.event_id, event_id(Vendor::Whoop, EventKind::Daily, "1093845227"));
    assert_eq!(event.kind, EventKind::Daily);
    assert_eq!(event.vendor_record_id.as_deref(), Some("1093845227"));
    assert_eq!(event.measured_at, 1_795_147_862_390);
    assert_eq!(event.measured_until, Some(1_795_237_339_114));
    assert_eq!(event.local_date.as_deref(), Some("2026-11-19"), "04:11Z is 23:11 local on the 19th");
    assert_eq!(event.strain, Some(12.4818));
    let kcal = event.total_calories_kcal.unwrap();
    assert!((kcal - 2_453.233_7).abs() < 1e-3, "10264.33 kJ / 4.184 = {kcal}");
    assert_eq!(event.active_calories_kcal, None);
    assert_eq!(event.heart_rate_avg_bpm, Some(67.0));
    assert_eq!(event.heart_rate_max_bpm, Some(171.0));

    let open = replaced(API_CYCLE, "\"end\": \"2026-11-21T05:02:19.114Z\"", "\"end\": null");
    assert_eq!(one(map_api_cycle(&open, &input(b"{}"), USER)).measured_until, None, "cycle in progress");
}

#[test]
fn api_workout_maps_effort() {
    let event = one(map_api_workout(API_WORKOUT, &input(b"{}"), USER));
    assert_eq!(event.event_id, event_id(Vendor::Whoop, EventKind::Workout, WORKOUT_ID));
    assert_eq!(event.kind, EventKind::Workout);
    assert_eq!(event.measured_at, 1_795_212_093_000);
    assert_eq!(event.measured_until, Some(1_795_215_250_000));
    assert_eq!(event.local_date.as_deref(), Some("2026-11-20"));
    assert_eq!(event.strain, Some(11.2094));
    let kcal = event.total_calories_kcal.unwrap();
    assert!((kcal - 601.0349).abs() < 1e-3, "2514.73 kJ / 4.184 = {kcal}");
    assert_eq!(event.heart_rate_avg_bpm, Some(149.0));
    assert_eq!(event.heart_rate_max_bpm, Some(178.0));
    assert_eq!(event.distance_meters, Some(8_712.4));
    assert_eq!(event.source_device.as_deref(), Some("WHOOP"));
}

#[test]
fn map_api_record_dispatches_on_data_type() {
    let raw = input(b"{}");
    assert_eq!(map_api_record("recovery", API_RECOVERY, &raw, USER), map_api_recovery(API_RECOVERY, &raw, USER));
    assert_eq!(map_api_record("sleep", API_SLEEP, &raw, USER).unwrap()[0].kind, EventKind::Sleep);
    assert_eq!(map_api_record("cycle", API_CYCLE, &raw, USER).unwrap()[0].kind, EventKind::Daily);
    assert_eq!(map_api_record("workout", API_WORKOUT, &raw, USER).unwrap()[0].kind, EventKind::Workout);
    assert_eq!(map_api_record("body_measurement", b"{}", &raw, USER).unwrap_err().class(), "unsupported_type");
    assert_eq!(map_api_record("sleep", NOT_JSON, &raw, USER).unwrap_err().class(), "invalid_json");
    let bad_offset = replaced(API_SLEEP, "\"-05:00\"", "\"EST\"");
    assert_eq!(map_api_record("sleep", &bad_offset, &raw, USER).unwrap_err().class(), "invalid_value");
}

// --- signature (vendors.md §3.3) ---

const SECRET: &[u8] = b"whoop_test_client_secret_DO_NOT_USE";

fn signed(timestamp_ms: i64, body: &[u8]) -> HeaderMap {
    let t = timestamp_ms.to_string();
    let signature = STANDARD.encode(mac(SECRET, &[t.as_bytes(), body]));
    header_map(&[("X-WHOOP-Signature", &signature), ("X-WHOOP-Signature-Timestamp", &t)])
}

fn check(headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
    verify_signature(headers, body, &context(SECRET, SIGNED_AT))
}

#[test]
fn recorded_vectors_verify() {
    for (file, body) in [("webhook_recovery_updated.json", WEBHOOK_RECOVERY_UPDATED), ("webhook_sleep_updated.json", WEBHOOK_SLEEP_UPDATED)]
    {
        let (secret, headers) = vector(SIGNATURES, file);
        assert_eq!(secret, SECRET);
        assert_eq!(verify_signature(&headers, body, &context(&secret, SIGNED_AT)), Ok(()), "{file}");
    }
}

#[test]
fn tampered_body_or_wrong_secret_is_a_mismatch() {
    let (_, headers) = vector(SIGNATURES, "webhook_sleep_updated.json");
    assert_eq!(check(&headers, &tampered(WEBHOOK_SLEEP_UPDATED)), Err(SignatureError::Mismatch));
    assert_eq!(check(&headers, WEBHOOK_RECOVERY_UPDATED), Err(SignatureError::Mismatch));
    let wrong_secret = context(b"not-the-secret", SIGNED_AT);
    assert_eq!(verify_signature(&headers, WEBHOOK_SLEEP_UPDATED, &wrong_secret), Err(SignatureError::Mismatch));
}

#[test]
fn timestamp_is_milliseconds_and_stale_after_five_minutes() {
    let body = WEBHOOK_SLEEP_UPDATED;
    let signed_ms = SIGNED_AT * 1000 + 345;
    assert_eq!(check(&signed(signed_ms + 301_000, body), body), Err(SignatureError::Stale));
    assert_eq!(check(&signed(signed_ms - 301_000, body), body), Err(SignatureError::Stale));
    assert_eq!(check(&signed(signed_ms + 299_000, body), body), Ok(()));
    // Read as seconds, a millisecond stamp would be ~56,000 years away.
    assert_eq!(check(&signed(SIGNED_AT, body), body), Err(SignatureError::Stale));
}

#[test]
fn missing_or_garbage_headers() {
    let (_, headers) = vector(SIGNATURES, "webhook_sleep_updated.json");
    for name in ["x-whoop-signature", "x-whoop-signature-timestamp"] {
        let mut without = headers.clone();
        without.remove(name);
        assert_eq!(check(&without, WEBHOOK_SLEEP_UPDATED), Err(SignatureError::Missing(name)));
    }
    let mut garbage = headers.clone();
    garbage.insert("x-whoop-signature", "%%% not base64 %%%".parse().unwrap());
    assert_eq!(check(&garbage, WEBHOOK_SLEEP_UPDATED), Err(SignatureError::Malformed("x-whoop-signature")));
    let mut garbage = headers;
    garbage.insert("x-whoop-signature-timestamp", "1.5e12".parse().unwrap());
    assert_eq!(check(&garbage, WEBHOOK_SLEEP_UPDATED), Err(SignatureError::Malformed("x-whoop-signature-timestamp")));
}
