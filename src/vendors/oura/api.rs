//! Oura API v2 documents (fetched after a notification) to canonical events (vendors.md §2.2).
//!
//! Each mapper takes the response body of `GET /v2/usercollection/{data_type}/{id}` (the
//! heart-rate series: a page of the list endpoint) and the Oura user it was fetched for. The
//! natural key is the document `id`, so a re-fetch after an `update` overwrites the same event.

use serde::Deserialize;

use crate::event::{BiometricEvent, EventKind, HrvWindow};
use crate::vendors::time::{date_part, date_to_millis, rfc3339_to_millis};
use crate::vendors::{NormalizeError, RawInput, base_event};

/// The device every Oura record comes from.
const SOURCE_DEVICE: &str = "OURA";

/// The data types [`map_api_record`] maps; notifications of others are not fetched.
pub const MAPPED_DATA_TYPES: &[&str] = &["sleep", "daily_sleep", "daily_readiness", "daily_activity", "heartrate"];

/// The kind of event a document of `data_type` is mapped to, keyed by the document's `id` (so a
/// deletion or a listing can name that event). `heartrate` samples are keyed otherwise: `None`.
pub fn event_kind(data_type: &str) -> Option<EventKind> {
    match data_type {
        "sleep" | "daily_sleep" => Some(EventKind::Sleep),
        "daily_readiness" => Some(EventKind::Readiness),
        "daily_activity" => Some(EventKind::Activity),
        _ => None,
    }
}

/// The events of a fetched document of `data_type` (the notification's `data_type`).
pub fn map_api_record(
    data_type: &str,
    json: &[u8],
    input: &RawInput<'_>,
    vendor_user_id: &str,
) -> Result<Vec<BiometricEvent>, NormalizeError> {
    match data_type {
        "sleep" => map_api_sleep(json, input, vendor_user_id),
        "daily_sleep" => map_api_daily_sleep(json, input, vendor_user_id),
        "daily_readiness" => map_api_daily_readiness(json, input, vendor_user_id),
        "daily_activity" => map_api_daily_activity(json, input, vendor_user_id),
        "heartrate" => map_api_heartrate(json, input, vendor_user_id),
        other => Err(NormalizeError::UnsupportedType(format!("oura data_type {other}"))),
    }
}

/// An event for Oura document `id` attributed to Oura's `day` (the wake-up day for sleep).
fn new_event(
    input: &RawInput<'_>,
    kind: EventKind,
    id: &str,
    vendor_user_id: &str,
    measured_at: i64,
    day: &str,
) -> Result<BiometricEvent, NormalizeError> {
    let mut event = base_event(input, kind, id, vendor_user_id, measured_at);
    event.vendor_record_id = Some(id.to_owned());
    event.source_device = Some(SOURCE_DEVICE.to_owned());
    event.local_date = Some(date_part(day)?);
    Ok(event)
}

/// The fields shared by the daily documents: their instant is `timestamp` (local midnight with
/// offset), else midnight UTC of `day`.
#[derive(Deserialize)]
struct Daily<T> {
    id: String,
    day: String,
    timestamp: Option<String>,
    #[serde(flatten)]
    fields: T,
}

impl<T> Daily<T> {
    fn event(&self, input: &RawInput<'_>, kind: EventKind, vendor_user_id: &str) -> Result<BiometricEvent, NormalizeError> {
        let measured_at = match &self.timestamp {
            Some(timestamp) => rfc3339_to_millis(timestamp)?,
            None => date_to_millis(&self.day)?,
        };
        new_event(input, kind, &self.id, vendor_user_id, measured_at, &self.day)
    }
}

/// `SleepModel`: one sleep period.
#[derive(Deserialize)]
struct Sleep {
    id: String,
    day: String,
    bedtime_start: String,
    bedtime_end: String,
    #[serde(rename = "type")]
    sleep_type: Option<String>,
    /// RMSSD in ms, the mean of the 5-minute samples of the period (§2.2, §9).
    average_hrv: Option<f64>,
    average_heart_rate: Option<f64>,
    lowest_heart_rate: Option<f64>,
    /// Breaths per minute. The OpenAPI's text says "breaths/second", but the values it returns
    /// (14.625 in the recorded fixture, 12–20 for adults at rest) are per-minute values: a
    /// per-second reading would be 0.2–0.3. Read as per minute; a value that really were per
    /// second falls below the plausible 4/min and is removed, never misreported.
    average_breath: Option<f64>,
    total_sleep_duration: Option<f64>,
    deep_sleep_duration: Option<f64>,
    light_sleep_duration: Option<f64>,
    rem_sleep_duration: Option<f64>,
    awake_time: Option<f64>,
    time_in_bed: Option<f64>,
    efficiency: Option<f64>,
    readiness: Option<SleepReadiness>,
}

#[derive(Deserialize)]
struct SleepReadiness {
    score: Option<f64>,
    temperature_deviation: Option<f64>,
}

/// A sleep period as SLEEP. `type == "deleted"` is a tombstone: no event. Only the main sleep
/// (`long_sleep`) gives a nightly HRV; naps and short periods are session means, so they are not
/// judged against nightly thresholds.
pub fn map_api_sleep(json: &[u8], input: &RawInput<'_>, vendor_user_id: &str) -> Result<Vec<BiometricEvent>, NormalizeError> {
    let sleep: Sleep = serde_json::from_slice(json)?;
    if sleep.sleep_type.as_deref() == Some("deleted") {
        return Ok(Vec::new());
    }
    let measured_at = rfc3339_to_millis(&sleep.bedtime_start)?;
    let mut event = new_event(input, EventKind::Sleep, &sleep.id, vendor_user_id, measured_at, &sleep.day)?;
    event.measured_until = Some(rfc3339_to_millis(&sleep.bedtime_end)?);
    event.hrv_rmssd_ms = sleep.average_hrv;
    if event.hrv_rmssd_ms.is_some() {
        let nightly = sleep.sleep_type.as_deref() == Some("long_sleep");
        event.hrv_window = Some(if nightly { HrvWindow::NightlyMean } else { HrvWindow::SessionMean });
    }
    event.heart_rate_avg_bpm = sleep.average_heart_rate;
    event.heart_rate_min_bpm = sleep.lowest_heart_rate;
    event.respiratory_rate_bpm = sleep.average_breath;
    event.sleep_total_seconds = event.integer("sleep_total_seconds", sleep.total_sleep_duration);
    event.sleep_deep_seconds = event.integer("sleep_deep_seconds", sleep.deep_sleep_duration);
    event.sleep_light_seconds = event.integer("sleep_light_seconds", sleep.light_sleep_duration);
    event.sleep_rem_seconds = event.integer("sleep_rem_seconds", sleep.rem_sleep_duration);
    event.sleep_awake_seconds = event.integer("sleep_awake_seconds", sleep.awake_time);
    event.time_in_bed_seconds = event.integer("time_in_bed_seconds", sleep.time_in_bed);
    event.sleep_efficiency_pct = sleep.efficiency;
    if let Some(readiness) = sleep.readiness {
        event.readiness_score = readiness.score;
        event.temperature_deviation_celsius = readiness.temperature_deviation;
    }
    Ok(vec![event])
}

#[derive(Deserialize)]
struct Score {
    score: Option<f64>,
}

#[derive(Deserialize)]
struct ReadinessFields {
    score: Option<f64>,
    temperature_deviation: Option<f64>,
}

/// `daily_readiness` as READINESS. It holds no raw HRV, only the `hrv_balance` contributor score,
/// so no HRV field is set (§2.2).
pub fn map_api_daily_readiness(json: &[u8], input: &RawInput<'_>, vendor_user_id: &str) -> Result<Vec<BiometricEvent>, NormalizeError> {
    let readiness: Daily<ReadinessFields> = serde_json::from_slice(json)?;
    let mut event = readiness.event(input, EventKind::Readiness, vendor_user_id)?;
    event.readiness_score = readiness.fields.score;
    event.temperature_deviation_celsius = readiness.fields.temperature_deviation;
    Ok(vec![event])
}

/// `daily_sleep` (the day's sleep score) as SLEEP. Its id differs from the sleep periods', so it
/// is its own event.
pub fn map_api_daily_sleep(json: &[u8], input: &RawInput<'_>, vendor_user_id: &str) -> Result<Vec<BiometricEvent>, NormalizeError> {
    let daily: Daily<Score> = serde_json::from_slice(json)?;
    let mut event = daily.event(input, EventKind::Sleep, vendor_user_id)?;
    event.sleep_score = daily.fields.score;
    Ok(vec![event])
}

/// `equivalent_walking_distance` is deliberately not read: the OpenAPI defines it as the
/// "equivalent walking distance (in meters) of energy expenditure", an energy figure, not the
/// distance travelled that `distance_meters` means.
#[derive(Deserialize)]
struct ActivityFields {
    steps: Option<f64>,
    active_calories: Option<f64>,
    total_calories: Option<f64>,
}

/// `daily_activity` as ACTIVITY.
pub fn map_api_daily_activity(json: &[u8], input: &RawInput<'_>, vendor_user_id: &str) -> Result<Vec<BiometricEvent>, NormalizeError> {
    let activity: Daily<ActivityFields> = serde_json::from_slice(json)?;
    let mut event = activity.event(input, EventKind::Activity, vendor_user_id)?;
    let fields = &activity.fields;
    event.steps = event.integer("steps", fields.steps);
    event.active_calories_kcal = fields.active_calories;
    event.total_calories_kcal = fields.total_calories;
    Ok(vec![event])
}

#[derive(Deserialize)]
struct HeartRatePage {
    data: Vec<HeartRateSample>,
}

#[derive(Deserialize)]
struct HeartRateSample {
    bpm: f64,
    timestamp: String,
}

/// A page of the `heartrate` series: one HEART_RATE event per sample. Samples have no id, and a
/// timestamp is unique only per user, so the natural key is `<oura user id>|<timestamp ms>`.
/// Timestamps are UTC (`+00:00`) with no local day, so `local_date` stays empty.
pub fn map_api_heartrate(json: &[u8], input: &RawInput<'_>, vendor_user_id: &str) -> Result<Vec<BiometricEvent>, NormalizeError> {
    let page: HeartRatePage = serde_json::from_slice(json)?;
    page.data
        .into_iter()
        .map(|sample| {
            let measured_at = rfc3339_to_millis(&sample.timestamp)?;
            let key = format!("{vendor_user_id}|{measured_at}");
            let mut event = base_event(input, EventKind::HeartRate, &key, vendor_user_id, measured_at);
            event.source_device = Some(SOURCE_DEVICE.to_owned());
            event.heart_rate_avg_bpm = Some(sample.bpm);
            Ok(event)
        })
        .collect()
}
