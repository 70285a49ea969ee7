//! Terra data events (`sleep`, `daily`, `body`, `activity`) to canonical events: one event per
//! element of `data[]` (vendors.md §1.2–§1.3).
//!
//! Natural keys follow Terra's own upsert rules (§1.2): sleep and activity by
//! `metadata.summary_id`; daily and body are a cumulative superset per day, so by
//! `<terra user id>|<date>` — a re-send of the same day then gets the same event id and overwrites.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::TerraUser;
use crate::event::{BiometricEvent, EventKind, HrvWindow};
use crate::vendors::time::{date_part, terra_time_to_millis};
use crate::vendors::{NormalizeError, RawInput, base_event};

/// The envelope of a data event. `user` is required: without it the data belongs to no one.
#[derive(Deserialize)]
struct DataEvent<T> {
    user: TerraUser,
    data: Vec<T>,
}

/// The events of one data webhook of type `kind` (one of the four data types).
pub(super) fn normalize(kind: &str, input: &RawInput<'_>) -> Result<Vec<BiometricEvent>, NormalizeError> {
    match kind {
        "sleep" => map_each(input, sleep),
        "daily" => map_each(input, daily),
        "body" => map_each(input, body),
        "activity" => map_each(input, activity),
        other => Err(NormalizeError::UnsupportedType(format!("terra {other}"))),
    }
}

type Mapper<T> = fn(&RawInput<'_>, &TerraUser, T) -> Result<BiometricEvent, NormalizeError>;

fn map_each<T: DeserializeOwned>(input: &RawInput<'_>, map: Mapper<T>) -> Result<Vec<BiometricEvent>, NormalizeError> {
    let event: DataEvent<T> = serde_json::from_slice(input.body)?;
    event.data.into_iter().map(|record| map(input, &event.user, record)).collect()
}

/// `metadata` of every data type. Times are ISO 8601 with an offset (§1.6).
#[derive(Deserialize)]
struct Metadata {
    start_time: String,
    end_time: String,
    summary_id: Option<String>,
    /// Nullable in Terra's schema.
    is_nap: Option<bool>,
}

impl Metadata {
    /// The upsert key of sleep and activity records: `summary_id`, optional in Terra's schema.
    /// Without it the record's natural key is (Terra user, start, end) — stable across Terra's
    /// re-sends of the same session, which keep its times.
    fn record_key(&self, user: &TerraUser) -> String {
        match &self.summary_id {
            Some(summary_id) if !summary_id.is_empty() => summary_id.clone(),
            _ => format!("{}|{}|{}", user.user_id, self.start_time, self.end_time),
        }
    }
}

/// `HeartRateData` (in sleep, daily, activity; under `heart_data` in body). Only the summary is
/// used: the detailed samples are already averaged into it.
#[derive(Deserialize)]
struct HeartRateData {
    summary: Option<HeartRateSummary>,
}

/// HRV method is in the field name (§1.3); the unit is not stated, ms in practice (§9).
#[derive(Deserialize)]
struct HeartRateSummary {
    avg_hr_bpm: Option<f64>,
    min_hr_bpm: Option<f64>,
    max_hr_bpm: Option<f64>,
    resting_hr_bpm: Option<f64>,
    avg_hrv_rmssd: Option<f64>,
    avg_hrv_sdnn: Option<f64>,
}

#[derive(Deserialize)]
struct Scores {
    recovery: Option<f64>,
    sleep: Option<f64>,
}

#[derive(Deserialize)]
struct Calories {
    total_burned_calories: Option<f64>,
    net_activity_calories: Option<f64>,
}

/// A new event for one record: times from `metadata`, Terra's provider as the device, and the
/// user's `reference_id` (our id) when the payload carries it. A time without an offset (local
/// time, as Terra's schemas allow) is noted on the event: `measured_at` is then that local time
/// read as UTC (see `terra_time_to_millis`).
fn new_event(
    input: &RawInput<'_>,
    user: &TerraUser,
    kind: EventKind,
    natural_key: &str,
    metadata: &Metadata,
) -> Result<BiometricEvent, NormalizeError> {
    let (start, start_known) = terra_time_to_millis(&metadata.start_time)?;
    let (end, end_known) = terra_time_to_millis(&metadata.end_time)?;
    let mut event = base_event(input, kind, natural_key, &user.user_id, start);
    event.measured_until = Some(end);
    if !(start_known && end_known) {
        event.note("measured_at", metadata.start_time.clone(), NO_UTC_OFFSET, Some("local time read as UTC".to_owned()));
    }
    event.vendor_record_id = metadata.summary_id.clone();
    event.source_device = user.provider.clone();
    if let Some(reference_id) = user.reference_id() {
        event.user_id = reference_id.to_owned();
    }
    Ok(event)
}

/// The data-quality reason of a time Terra sent without its UTC offset.
pub const NO_UTC_OFFSET: &str = "no_utc_offset";

/// The day key of daily and body records: `<terra user id>|<date part of start_time>` (§1.6).
fn day_key(user: &TerraUser, metadata: &Metadata) -> Result<(String, String), NormalizeError> {
    let day = date_part(&metadata.start_time)?;
    Ok((format!("{}|{}", user.user_id, day), day))
}

/// Copies the heart-rate summary; RMSSD and SDNN go to their own fields, never mixed.
fn apply_heart_rate(event: &mut BiometricEvent, data: Option<HeartRateData>, window: HrvWindow) {
    let Some(summary) = data.and_then(|data| data.summary) else { return };
    event.heart_rate_avg_bpm = summary.avg_hr_bpm;
    event.heart_rate_min_bpm = summary.min_hr_bpm;
    event.heart_rate_max_bpm = summary.max_hr_bpm;
    event.resting_heart_rate_bpm = summary.resting_hr_bpm;
    event.hrv_rmssd_ms = summary.avg_hrv_rmssd;
    event.hrv_sdnn_ms = summary.avg_hrv_sdnn;
    if event.hrv_rmssd_ms.is_some() || event.hrv_sdnn_ms.is_some() {
        event.hrv_window = Some(window);
    }
}

#[derive(Deserialize)]
struct Sleep {
    metadata: Metadata,
    heart_rate_data: Option<HeartRateData>,
    sleep_durations_data: Option<SleepDurations>,
    readiness_data: Option<Readiness>,
    respiration_data: Option<Respiration>,
    temperature_data: Option<Temperature>,
    scores: Option<Scores>,
}

#[derive(Deserialize)]
struct SleepDurations {
    asleep: Option<Asleep>,
    awake: Option<Awake>,
    other: Option<OtherDurations>,
    sleep_efficiency: Option<f64>,
}

#[derive(Deserialize)]
struct Asleep {
    duration_asleep_state_seconds: Option<f64>,
    duration_deep_sleep_state_seconds: Option<f64>,
    duration_light_sleep_state_seconds: Option<f64>,
    #[serde(rename = "duration_REM_sleep_state_seconds")]
    duration_rem_sleep_state_seconds: Option<f64>,
}

#[derive(Deserialize)]
struct Awake {
    duration_awake_state_seconds: Option<f64>,
}

#[derive(Deserialize)]
struct OtherDurations {
    duration_in_bed_seconds: Option<f64>,
}

#[derive(Deserialize)]
struct Readiness {
    readiness: Option<f64>,
}

#[derive(Deserialize)]
struct Respiration {
    breaths_data: Option<Breaths>,
}

#[derive(Deserialize)]
struct Breaths {
    avg_breaths_per_min: Option<f64>,
}

#[derive(Deserialize)]
struct Temperature {
    delta: Option<f64>,
}

/// A sleep session. It belongs to its wake-up day (the date part of `end_time`); a nap's HRV is
/// a session mean, not the nightly value thresholds are tuned for.
fn sleep(input: &RawInput<'_>, user: &TerraUser, record: Sleep) -> Result<BiometricEvent, NormalizeError> {
    let metadata = &record.metadata;
    let mut event = new_event(input, user, EventKind::Sleep, &metadata.record_key(user), metadata)?;
    event.local_date = Some(date_part(&metadata.end_time)?);
    let window = if metadata.is_nap == Some(true) { HrvWindow::SessionMean } else { HrvWindow::NightlyMean };
    apply_heart_rate(&mut event, record.heart_rate_data, window);
    if let Some(durations) = record.sleep_durations_data {
        if let Some(asleep) = durations.asleep {
            event.sleep_total_seconds = event.integer("sleep_total_seconds", asleep.duration_asleep_state_seconds);
            event.sleep_deep_seconds = event.integer("sleep_deep_seconds", asleep.duration_deep_sleep_state_seconds);
            event.sleep_light_seconds = event.integer("sleep_light_seconds", asleep.duration_light_sleep_state_seconds);
            event.sleep_rem_seconds = event.integer("sleep_rem_seconds", asleep.duration_rem_sleep_state_seconds);
        }
        event.sleep_awake_seconds =
            event.integer("sleep_awake_seconds", durations.awake.and_then(|awake| awake.duration_awake_state_seconds));
        event.time_in_bed_seconds = event.integer("time_in_bed_seconds", durations.other.and_then(|other| other.duration_in_bed_seconds));
        event.sleep_efficiency_pct = durations.sleep_efficiency;
    }
    event.readiness_score = record.readiness_data.and_then(|readiness| readiness.readiness);
    event.respiratory_rate_bpm = record.respiration_data.and_then(|respiration| respiration.breaths_data?.avg_breaths_per_min);
    event.temperature_deviation_celsius = record.temperature_data.and_then(|temperature| temperature.delta);
    event.sleep_score = record.scores.and_then(|scores| scores.sleep);
    Ok(event)
}

#[derive(Deserialize)]
struct Daily {
    metadata: Metadata,
    distance_data: Option<DailyDistance>,
    calories_data: Option<Calories>,
    heart_rate_data: Option<HeartRateData>,
    scores: Option<Scores>,
}

#[derive(Deserialize)]
struct DailyDistance {
    steps: Option<f64>,
    distance_meters: Option<f64>,
}

fn daily(input: &RawInput<'_>, user: &TerraUser, record: Daily) -> Result<BiometricEvent, NormalizeError> {
    let (key, day) = day_key(user, &record.metadata)?;
    let mut event = new_event(input, user, EventKind::Daily, &key, &record.metadata)?;
    event.local_date = Some(day);
    apply_heart_rate(&mut event, record.heart_rate_data, HrvWindow::DailyMean);
    if let Some(distance) = record.distance_data {
        event.steps = event.integer("steps", distance.steps);
        event.distance_meters = distance.distance_meters;
    }
    if let Some(calories) = record.calories_data {
        event.total_calories_kcal = calories.total_burned_calories;
        event.active_calories_kcal = calories.net_activity_calories;
    }
    if let Some(scores) = record.scores {
        event.recovery_score = scores.recovery;
        event.sleep_score = scores.sleep;
    }
    Ok(event)
}

#[derive(Deserialize)]
struct Body {
    metadata: Metadata,
    heart_data: Option<HeartData>,
    oxygen_data: Option<Oxygen>,
}

#[derive(Deserialize)]
struct HeartData {
    heart_rate_data: Option<HeartRateData>,
}

#[derive(Deserialize)]
struct Oxygen {
    avg_saturation_percentage: Option<f64>,
}

/// Body records are where Apple (Terra's mobile SDK) puts its HRV, which is SDNN (§4.1).
fn body(input: &RawInput<'_>, user: &TerraUser, record: Body) -> Result<BiometricEvent, NormalizeError> {
    let (key, day) = day_key(user, &record.metadata)?;
    let mut event = new_event(input, user, EventKind::Body, &key, &record.metadata)?;
    event.local_date = Some(day);
    apply_heart_rate(&mut event, record.heart_data.and_then(|heart| heart.heart_rate_data), HrvWindow::DailyMean);
    event.spo2_pct = record.oxygen_data.and_then(|oxygen| oxygen.avg_saturation_percentage);
    Ok(event)
}

#[derive(Deserialize)]
struct Activity {
    metadata: Metadata,
    distance_data: Option<ActivityDistance>,
    calories_data: Option<Calories>,
    heart_rate_data: Option<HeartRateData>,
}

#[derive(Deserialize)]
struct ActivityDistance {
    summary: Option<DistanceSummary>,
}

#[derive(Deserialize)]
struct DistanceSummary {
    steps: Option<f64>,
    distance_meters: Option<f64>,
}

fn activity(input: &RawInput<'_>, user: &TerraUser, record: Activity) -> Result<BiometricEvent, NormalizeError> {
    let metadata = &record.metadata;
    let mut event = new_event(input, user, EventKind::Activity, &metadata.record_key(user), metadata)?;
    event.local_date = Some(date_part(&metadata.start_time)?);
    apply_heart_rate(&mut event, record.heart_rate_data, HrvWindow::SessionMean);
    if let Some(summary) = record.distance_data.and_then(|distance| distance.summary) {
        event.steps = event.integer("steps", summary.steps);
        event.distance_meters = summary.distance_meters;
    }
    if let Some(calories) = record.calories_data {
        event.total_calories_kcal = calories.total_burned_calories;
        event.active_calories_kcal = calories.net_activity_calories;
    }
    Ok(event)
}
