//! Oura: notifications to pending fetches, API documents to canonical fields, the signature.

use axum::http::HeaderMap;

use super::{
    delivery_id, map_api_daily_activity, map_api_daily_readiness, map_api_daily_sleep, map_api_heartrate, map_api_record, map_api_sleep,
    normalize, vendor_user_id, verify_signature,
};
use crate::event::{EventKind, HrvWindow, Vendor};
use crate::vendors::signature::SignatureError;
use crate::vendors::test_support::{context, header_map, mac, one, raw_input, replaced, tampered, vector};
use crate::vendors::{Outcome, PendingFetch, RawInput, event_id};

const WEBHOOK_SLEEP_CREATE: &[u8] = include_bytes!("../../../tests/fixtures/oura/webhook_sleep_create.json");
const WEBHOOK_DAILY_SLEEP_CREATE: &[u8] = include_bytes!("../../../tests/fixtures/oura/webhook_daily_sleep_create.json");
const WEBHOOK_READINESS_CREATE: &[u8] = include_bytes!("../../../tests/fixtures/oura/webhook_daily_readiness_create.json");
const WEBHOOK_ACTIVITY_UPDATE: &[u8] = include_bytes!("../../../tests/fixtures/oura/webhook_daily_activity_update.json");
const WEBHOOK_SLEEP_DELETE: &[u8] = include_bytes!("../../../tests/fixtures/oura/webhook_sleep_delete.json");
const API_SLEEP: &[u8] = include_bytes!("../../../tests/fixtures/oura/api_sleep.json");
const API_SLEEP_LOW_HRV: &[u8] = include_bytes!("../../../tests/fixtures/oura/api_sleep_low_hrv.json");
const API_DAILY_SLEEP: &[u8] = include_bytes!("../../../tests/fixtures/oura/api_daily_sleep.json");
const API_DAILY_READINESS: &[u8] = include_bytes!("../../../tests/fixtures/oura/api_daily_readiness.json");
const API_DAILY_ACTIVITY: &[u8] = include_bytes!("../../../tests/fixtures/oura/api_daily_activity.json");
const API_HEARTRATE: &[u8] = include_bytes!("../../../tests/fixtures/oura/api_heartrate.json");
const SIGNATURES: &[u8] = include_bytes!("../../../tests/fixtures/oura/signatures.json");
const NOT_JSON: &[u8] = include_bytes!("../../../tests/fixtures/garbage/not_json.txt");

const USER: &str = "d2f6a1c4b7e9-5a3c0f8e2d1b4a6c9e7f3b1";
const RECEIVED_AT: i64 = 1_795_218_751_250;
/// Timestamp of the recorded signature vectors.
const SIGNED_AT: i64 = 1_795_218_751;

fn input(body: &[u8]) -> RawInput<'_> {
    RawInput { received_at_ms: RECEIVED_AT, source_topic: "pending.oura", source_offset: 77, ..raw_input(Vendor::Oura, body) }
}

fn pending(data_type: &str, object_id: &str, api_path: &str) -> Outcome {
    Outcome::PendingFetch(PendingFetch {
        vendor: Vendor::Oura,
        vendor_user_id: USER.to_owned(),
        data_type: data_type.to_owned(),
        object_id: object_id.to_owned(),
        api_path: api_path.to_owned(),
        expires_at_ms: None,
    })
}

#[test]
fn create_and_update_notifications_become_pending_fetches() {
    let cases = [
        (WEBHOOK_SLEEP_CREATE, "sleep", "2-5d8f3e1a9c0b7d2e4f6a8c1b3d5e7f9a0b"),
        (WEBHOOK_DAILY_SLEEP_CREATE, "daily_sleep", "8f9a5221-639e-4a85-81cb-4065ef23f979"),
        (WEBHOOK_READINESS_CREATE, "daily_readiness", "c1e7b3d9-2a4f-4e6b-8d0c-5f1a3e7b9d2c"),
        (WEBHOOK_ACTIVITY_UPDATE, "daily_activity", "4b2e8d1f-6c3a-4f9e-a7d5-0e2c4b6a8f13"),
    ];
    for (body, data_type, id) in cases {
        let path = format!("/v2/usercollection/{data_type}/{id}");
        assert_eq!(normalize(&input(body)), Ok(pending(data_type, id, &path)), "{data_type}");
    }
}

#[test]
fn vo2_max_uses_the_irregular_collection_path() {
    let body = replaced(WEBHOOK_SLEEP_CREATE, "\"data_type\": \"sleep\"", "\"data_type\": \"vo2_max\"");
    let id = "2-5d8f3e1a9c0b7d2e4f6a8c1b3d5e7f9a0b";
    assert_eq!(normalize(&input(&body)), Ok(pending("vo2_max", id, &format!("/v2/usercollection/vO2_max/{id}"))));
}

#[test]
fn ids_that_would_leave_the_collection_path_are_refused() {
    for bad in ["../../v2/webhook/subscription", "a/b", "x?y=1", ""] {
        let body = replaced(WEBHOOK_SLEEP_CREATE, "2-5d8f3e1a9c0b7d2e4f6a8c1b3d5e7f9a0b", bad);
        assert_eq!(normalize(&input(&body)).unwrap_err().class(), "invalid_value", "{bad:?}");
    }
}

#[test]
fn delete_is_a_deleted_event_retracting_the_sleep() {
    let Ok(Outcome::Events(events)) = normalize(&input(WEBHOOK_SLEEP_DELETE)) else { panic!("events expected") };
    assert_eq!(events.len(), 1);
    let event = &events[0];
    let id = "2-9e1d3c5b7a0f2e4d6c8b1a3f5e7d9c0b2a";
    assert_eq!(event.kind, EventKind::Deleted);
    assert_eq!(event.vendor_record_id.as_deref(), Some(id));
    assert_eq!(event.vendor_user_id, "d2f6a1c4b7e9-5a3c0f8e2d1b4a6c9e7f3b1");
    assert_eq!(event.measured_at, crate::vendors::time::rfc3339_to_millis("2026-11-20T15:03:47+00:00").unwrap());
    // The event the fetched sleep document produced, by the same rule as `map_api_sleep`.
    assert_eq!(event.retracts_event_id.as_deref(), Some(crate::vendors::event_id(Vendor::Oura, EventKind::Sleep, id).as_str()));
    assert_eq!(event.hrv_rmssd_ms, None);
    // A re-delivered deletion has the same id (dropped by de-duplication).
    let again = normalize(&input(WEBHOOK_SLEEP_DELETE));
    assert!(matches!(again, Ok(Outcome::Events(ref e)) if e[0].event_id == event.event_id));
}

#[test]
fn notification_errors() {
    let unknown = replaced(WEBHOOK_SLEEP_CREATE, "\"event_type\": \"create\"", "\"event_type\": \"merge\"");
    assert_eq!(normalize(&input(&unknown)).unwrap_err().class(), "unsupported_type");
    assert_eq!(normalize(&input(NOT_JSON)).unwrap_err().class(), "invalid_json");
    let no_user = replaced(WEBHOOK_SLEEP_CREATE, "\"user_id\"", "\"owner\"");
    assert_eq!(normalize(&input(&no_user)).unwrap_err().class(), "invalid_shape");
}

#[test]
fn ids_from_the_smallest_parse() {
    assert_eq!(vendor_user_id(WEBHOOK_SLEEP_CREATE).as_deref(), Some(USER));
    assert_eq!(vendor_user_id(NOT_JSON), None);
    assert_eq!(delivery_id(&HeaderMap::new(), WEBHOOK_SLEEP_CREATE), None, "Oura has no delivery id");
}

#[test]
fn api_sleep_maps_nightly_rmssd_and_sleep_fields() {
    let id = "2-5d8f3e1a9c0b7d2e4f6a8c1b3d5e7f9a0b";
    let event = one(map_api_sleep(API_SLEEP, &input(b"{}"), USER));
    assert_eq!(event.event_id, event_id(Vendor::Oura, EventKind::Sleep, id));
    assert_eq!(event.kind, EventKind::Sleep);
    assert_eq!(event.vendor, Vendor::Oura);
    assert_eq!(event.user_id, format!("oura:{USER}"));
    assert_eq!(event.vendor_user_id, USER);
    assert_eq!(event.vendor_record_id.as_deref(), Some(id));
    assert_eq!(event.source_device.as_deref(), Some("OURA"));
    assert_eq!(event.measured_at, 1_795_147_950_000); // 2026-11-19T23:12:30-05:00
    assert_eq!(event.measured_until, Some(1_795_175_340_000)); // 2026-11-20T06:49:00-05:00
    assert_eq!(event.local_date.as_deref(), Some("2026-11-20"));
    assert_eq!(event.received_at, RECEIVED_AT);
    assert_eq!(event.hrv_rmssd_ms, Some(52.0));
    assert_eq!(event.hrv_sdnn_ms, None);
    assert_eq!(event.hrv_window, Some(HrvWindow::NightlyMean));
    assert_eq!(event.heart_rate_avg_bpm, Some(52.125));
    assert_eq!(event.heart_rate_min_bpm, Some(47.0));
    assert_eq!(event.heart_rate_max_bpm, None);
    assert_eq!(event.respiratory_rate_bpm, Some(14.625));
    assert_eq!(event.sleep_total_seconds, Some(24_960));
    assert_eq!(event.sleep_deep_seconds, Some(4_860));
    assert_eq!(event.sleep_light_seconds, Some(13_800));
    assert_eq!(event.sleep_rem_seconds, Some(6_300));
    assert_eq!(event.sleep_awake_seconds, Some(2_430));
    assert_eq!(event.time_in_bed_seconds, Some(27_390));
    assert_eq!(event.sleep_efficiency_pct, Some(91.0));
    assert_eq!(event.readiness_score, Some(82.0));
    assert_eq!(event.temperature_deviation_celsius, Some(-0.08));
    assert_eq!(event.sleep_score, None, "the score is in daily_sleep");
    assert_eq!(event.lineage.source_topic, "pending.oura");
    assert_eq!(event.lineage.source_offset, 77);

    let low = one(map_api_sleep(API_SLEEP_LOW_HRV, &input(b"{}"), USER));
    assert_eq!((low.hrv_rmssd_ms, low.hrv_sdnn_ms), (Some(19.0), None));
    assert_eq!(low.event_id, event.event_id, "same document id, same event");
}

#[test]
fn api_sleep_variants() {
    let nap = replaced(API_SLEEP, "\"type\": \"long_sleep\"", "\"type\": \"late_nap\"");
    assert_eq!(one(map_api_sleep(&nap, &input(b"{}"), USER)).hrv_window, Some(HrvWindow::SessionMean));
    let deleted = replaced(API_SLEEP, "\"type\": \"long_sleep\"", "\"type\": \"deleted\"");
    assert_eq!(map_api_sleep(&deleted, &input(b"{}"), USER), Ok(vec![]));
    let no_hrv = replaced(API_SLEEP, "\"average_hrv\": 52,", "\"average_hrv\": null,");
    let event = one(map_api_sleep(&no_hrv, &input(b"{}"), USER));
    assert_eq!((event.hrv_rmssd_ms, event.hrv_window), (None, None));
    let bad_time = replaced(API_SLEEP, "\"bedtime_end\": \"2026-11-20T06:49:00-05:00\"", "\"bedtime_end\": \"06:49\"");
    assert_eq!(map_api_sleep(&bad_time, &input(b"{}"), USER).unwrap_err().class(), "invalid_value");
}

#[test]
fn api_daily_readiness_has_a_score_but_no_hrv() {
    let id = "c1e7b3d9-2a4f-4e6b-8d0c-5f1a3e7b9d2c";
    let event = one(map_api_daily_readiness(API_DAILY_READINESS, &input(b"{}"), USER));
    assert_eq!(event.event_id, event_id(Vendor::Oura, EventKind::Readiness, id));
    assert_eq!(event.kind, EventKind::Readiness);
    assert_eq!(event.vendor_record_id.as_deref(), Some(id));
    assert_eq!(event.measured_at, 1_795_150_800_000); // 2026-11-20T00:00:00-05:00
    assert_eq!(event.measured_until, None);
    assert_eq!(event.local_date.as_deref(), Some("2026-11-20"));
    assert_eq!(event.readiness_score, Some(82.0));
    assert_eq!(event.temperature_deviation_celsius, Some(-0.08));
    assert_eq!((event.hrv_rmssd_ms, event.hrv_sdnn_ms, event.hrv_window), (None, None, None));
    assert_eq!(event.source_device.as_deref(), Some("OURA"));
}

#[test]
fn api_daily_sleep_is_the_sleep_score() {
    let id = "8f9a5221-639e-4a85-81cb-4065ef23f979";
    let event = one(map_api_daily_sleep(API_DAILY_SLEEP, &input(b"{}"), USER));
    assert_eq!(event.event_id, event_id(Vendor::Oura, EventKind::Sleep, id));
    assert_eq!(event.kind, EventKind::Sleep);
    assert_eq!(event.measured_at, 1_795_150_800_000);
    assert_eq!(event.local_date.as_deref(), Some("2026-11-20"));
    assert_eq!(event.sleep_score, Some(85.0));
    assert_eq!(event.sleep_total_seconds, None);
    assert_eq!(event.hrv_rmssd_ms, None);
}

#[test]
fn api_daily_activity_maps_steps_and_calories_but_not_walking_equivalent_distance() {
    let id = "4b2e8d1f-6c3a-4f9e-a7d5-0e2c4b6a8f13";
    let event = one(map_api_daily_activity(API_DAILY_ACTIVITY, &input(b"{}"), USER));
    assert_eq!(event.event_id, event_id(Vendor::Oura, EventKind::Activity, id));
    assert_eq!(event.kind, EventKind::Activity);
    assert_eq!(event.measured_at, 1_795_165_200_000); // 2026-11-20T04:00:00-05:00
    assert_eq!(event.local_date.as_deref(), Some("2026-11-20"));
    assert_eq!(event.steps, Some(9_874));
    assert_eq!(event.active_calories_kcal, Some(548.0));
    assert_eq!(event.total_calories_kcal, Some(2_513.0));
    // `equivalent_walking_distance` (10 130 in the fixture) is "the equivalent walking distance
    // (in meters) of energy expenditure" (Oura OpenAPI DailyActivityModel): not a distance.
    assert_eq!(event.distance_meters, None);
}

#[test]
fn a_polled_heartrate_window_is_fetched_from_the_series_endpoint() {
    let from = chrono::DateTime::from_timestamp(1_795_651_200, 0).unwrap();
    let to = chrono::DateTime::from_timestamp(1_795_672_800, 0).unwrap();
    let id = super::heartrate_window_id(from, to);
    let body = format!(r#"{{"event_type":"update","data_type":"heartrate","object_id":"{id}","user_id":"{USER}"}}"#);
    match normalize(&input(body.as_bytes())) {
        Ok(Outcome::PendingFetch(fetch)) => {
            assert_eq!(
                fetch.api_path,
                "/v2/usercollection/heartrate?start_datetime=2026-11-26T00:00:00Z&end_datetime=2026-11-26T06:00:00Z"
            );
        }
        other => panic!("{other:?}"),
    }
    let bad = format!(r#"{{"event_type":"update","data_type":"heartrate","object_id":"hr-x","user_id":"{USER}"}}"#);
    assert_eq!(normalize(&input(bad.as_bytes())).unwrap_err().class(), "invalid_value");
}

#[test]
fn daily_document_without_timestamp_falls_back_to_its_day() {
    let body = replaced(API_DAILY_SLEEP, ",\n  \"timestamp\": \"2026-11-20T00:00:00.000-05:00\"", "");
    let event = one(map_api_daily_sleep(&body, &input(b"{}"), USER));
    assert_eq!(event.measured_at, 1_795_132_800_000); // 2026-11-20T00:00:00Z
}

#[test]
fn api_heartrate_is_one_event_per_sample_keyed_by_user_and_time() {
    let events = map_api_heartrate(API_HEARTRATE, &input(b"{}"), USER).unwrap();
    assert_eq!(events.len(), 5);
    let bpm: Vec<_> = events.iter().map(|event| event.heart_rate_avg_bpm.unwrap()).collect();
    assert_eq!(bpm, [49.0, 48.0, 63.0, 71.0, 138.0]);
    let first = &events[0];
    assert_eq!(first.kind, EventKind::HeartRate);
    assert_eq!(first.measured_at, 1_795_167_000_000); // 2026-11-20T09:30:00Z
    assert_eq!(first.event_id, event_id(Vendor::Oura, EventKind::HeartRate, &format!("{USER}|1795167000000")));
    assert_eq!(events[4].measured_at, 1_795_212_843_000);
    assert_eq!(first.local_date, None);
    assert_eq!(first.source_device.as_deref(), Some("OURA"));
    let another_user = map_api_heartrate(API_HEARTRATE, &input(b"{}"), "someone-else").unwrap();
    assert_ne!(another_user[0].event_id, first.event_id, "samples at the same instant of two users");
}

#[test]
fn map_api_record_dispatches_on_data_type() {
    let raw = input(b"{}");
    assert_eq!(map_api_record("sleep", API_SLEEP, &raw, USER), map_api_sleep(API_SLEEP, &raw, USER));
    assert_eq!(map_api_record("daily_readiness", API_DAILY_READINESS, &raw, USER).unwrap()[0].kind, EventKind::Readiness);
    assert_eq!(map_api_record("daily_sleep", API_DAILY_SLEEP, &raw, USER).unwrap()[0].sleep_score, Some(85.0));
    assert_eq!(map_api_record("daily_activity", API_DAILY_ACTIVITY, &raw, USER).unwrap()[0].steps, Some(9_874));
    assert_eq!(map_api_record("heartrate", API_HEARTRATE, &raw, USER).unwrap().len(), 5);
    assert_eq!(map_api_record("tag", b"{}", &raw, USER).unwrap_err().class(), "unsupported_type");
    assert_eq!(map_api_record("sleep", NOT_JSON, &raw, USER).unwrap_err().class(), "invalid_json");
    assert_eq!(map_api_record("sleep", br#"{"id":"x"}"#, &raw, USER).unwrap_err().class(), "invalid_shape");
}

// --- signature (vendors.md §2.3) ---

const SECRET: &[u8] = b"oura_test_client_secret_DO_NOT_USE";

fn signed(timestamp: i64, body: &[u8]) -> HeaderMap {
    let t = timestamp.to_string();
    let signature = hex::encode_upper(mac(SECRET, &[t.as_bytes(), body]));
    header_map(&[("x-oura-signature", &signature), ("x-oura-timestamp", &t)])
}

fn check(headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
    verify_signature(headers, body, &context(SECRET, SIGNED_AT))
}

#[test]
fn recorded_vectors_verify() {
    for (file, body) in
        [("webhook_sleep_create.json", WEBHOOK_SLEEP_CREATE), ("webhook_daily_readiness_create.json", WEBHOOK_READINESS_CREATE)]
    {
        let (secret, headers) = vector(SIGNATURES, file);
        assert_eq!(secret, SECRET);
        assert_eq!(verify_signature(&headers, body, &context(&secret, SIGNED_AT)), Ok(()), "{file}");
    }
}

#[test]
fn lower_case_hex_is_accepted() {
    let (_, headers) = vector(SIGNATURES, "webhook_sleep_create.json");
    let lower = headers["x-oura-signature"].to_str().unwrap().to_lowercase();
    let headers = header_map(&[("x-oura-signature", &lower), ("x-oura-timestamp", "1795218751")]);
    assert_eq!(check(&headers, WEBHOOK_SLEEP_CREATE), Ok(()));
}

#[test]
fn tampered_body_wrong_secret_or_timestamp_is_a_mismatch() {
    let (_, headers) = vector(SIGNATURES, "webhook_sleep_create.json");
    assert_eq!(check(&headers, &tampered(WEBHOOK_SLEEP_CREATE)), Err(SignatureError::Mismatch));
    let wrong_secret = context(b"not-the-secret", SIGNED_AT);
    assert_eq!(verify_signature(&headers, WEBHOOK_SLEEP_CREATE, &wrong_secret), Err(SignatureError::Mismatch));
    // The timestamp is signed: moving it (within the window) breaks the MAC.
    let mut moved = headers.clone();
    moved.insert("x-oura-timestamp", "1795218752".parse().unwrap());
    assert_eq!(check(&moved, WEBHOOK_SLEEP_CREATE), Err(SignatureError::Mismatch));
}

#[test]
fn timestamp_outside_five_minutes_is_stale() {
    assert_eq!(check(&signed(SIGNED_AT + 301, WEBHOOK_SLEEP_CREATE), WEBHOOK_SLEEP_CREATE), Err(SignatureError::Stale));
    assert_eq!(check(&signed(SIGNED_AT - 301, WEBHOOK_SLEEP_CREATE), WEBHOOK_SLEEP_CREATE), Err(SignatureError::Stale));
    assert_eq!(check(&signed(SIGNED_AT + 300, WEBHOOK_SLEEP_CREATE), WEBHOOK_SLEEP_CREATE), Ok(()));
}

#[test]
fn missing_or_garbage_headers() {
    let (_, headers) = vector(SIGNATURES, "webhook_sleep_create.json");
    for name in ["x-oura-signature", "x-oura-timestamp"] {
        let mut without = headers.clone();
        without.remove(name);
        assert_eq!(check(&without, WEBHOOK_SLEEP_CREATE), Err(SignatureError::Missing(name)));
    }
    let mut garbage = headers.clone();
    garbage.insert("x-oura-signature", "not hex at all".parse().unwrap());
    assert_eq!(check(&garbage, WEBHOOK_SLEEP_CREATE), Err(SignatureError::Malformed("x-oura-signature")));
    let mut garbage = headers;
    garbage.insert("x-oura-timestamp", "yesterday".parse().unwrap());
    assert_eq!(check(&garbage, WEBHOOK_SLEEP_CREATE), Err(SignatureError::Malformed("x-oura-timestamp")));
}
