//! WHOOP API v2 records (fetched after a notification) to canonical events (vendors.md §3.2).
//!
//! Scores exist only once WHOOP has scored a record (`score_state == "SCORED"`); until then a
//! record yields no event, and the `*.updated` notification that follows scoring brings it back.
//! Times are UTC with a separate `timezone_offset`, which gives the local date.

use serde::Deserialize;

use crate::event::{BiometricEvent, EventKind, HrvWindow};
use crate::vendors::time::{local_date_at_offset, rfc3339_to_millis};
use crate::vendors::{NormalizeError, RawInput, base_event};

/// The device every WHOOP record comes from.
const SOURCE_DEVICE: &str = "WHOOP";

/// Kilojoules per kilocalorie (thermochemical calorie).
const KJ_PER_KCAL: f64 = 4.184;

/// The data types [`map_api_record`] maps; notifications of others are not fetched.
pub const MAPPED_DATA_TYPES: &[&str] = &["recovery", "sleep", "cycle", "workout"];

/// The kind of event a record of `data_type` is mapped to, keyed by the id WHOOP's notifications
/// carry (a recovery: its sleep's id).
pub fn event_kind(data_type: &str) -> Option<EventKind> {
    match data_type {
        "recovery" => Some(EventKind::Recovery),
        "sleep" => Some(EventKind::Sleep),
        "cycle" => Some(EventKind::Daily),
        "workout" => Some(EventKind::Workout),
        _ => None,
    }
}

/// The events of a fetched record of `data_type` (`recovery`, `sleep`, `cycle`, `workout`).
pub fn map_api_record(
    data_type: &str,
    json: &[u8],
    input: &RawInput<'_>,
    vendor_user_id: &str,
) -> Result<Vec<BiometricEvent>, NormalizeError> {
    match data_type {
        "recovery" => map_api_recovery(json, input, vendor_user_id),
        "sleep" => map_api_sleep(json, input, vendor_user_id),
        "cycle" => map_api_cycle(json, input, vendor_user_id),
        "workout" => map_api_workout(json, input, vendor_user_id),
        other => Err(NormalizeError::UnsupportedType(format!("whoop data_type {other}"))),
    }
}

/// Second step of a recovery fetch: from the sleep record a `recovery.updated` notification points
/// at, the path of its recovery, `/v2/cycle/{cycle_id}/recovery` (§3.1).
pub fn recovery_api_path(sleep_json: &[u8]) -> Result<String, NormalizeError> {
    #[derive(Deserialize)]
    struct CycleRef {
        cycle_id: i64,
    }
    let sleep: CycleRef = serde_json::from_slice(sleep_json)?;
    Ok(format!("/v2/cycle/{}/recovery", sleep.cycle_id))
}

/// The score of a scored record; `None` while pending or unscorable. A scored record without a
/// score is malformed.
fn scored<T>(state: &str, score: Option<T>) -> Result<Option<T>, NormalizeError> {
    match (state, score) {
        ("SCORED", Some(score)) => Ok(Some(score)),
        ("SCORED", None) => Err(NormalizeError::InvalidShape("whoop SCORED record without score".to_owned())),
        _ => Ok(None),
    }
}

/// The time span shared by sleep, cycle and workout records.
#[derive(Deserialize)]
struct Span {
    start: String,
    /// `null` for the cycle in progress.
    end: Option<String>,
    timezone_offset: Option<String>,
}

/// An event for WHOOP record `id` over `span`, attributed to the local date of `date_from`.
fn new_event(
    input: &RawInput<'_>,
    kind: EventKind,
    id: &str,
    vendor_user_id: &str,
    span: &Span,
    date_from: &str,
) -> Result<BiometricEvent, NormalizeError> {
    let mut event = base_event(input, kind, id, vendor_user_id, rfc3339_to_millis(&span.start)?);
    event.measured_until = span.end.as_deref().map(rfc3339_to_millis).transpose()?;
    event.vendor_record_id = Some(id.to_owned());
    event.source_device = Some(SOURCE_DEVICE.to_owned());
    event.local_date = span.timezone_offset.as_deref().map(|offset| local_date_at_offset(date_from, offset)).transpose()?;
    Ok(event)
}

#[derive(Deserialize)]
struct Recovery {
    sleep_id: String,
    created_at: String,
    score_state: String,
    score: Option<RecoveryScore>,
}

#[derive(Deserialize)]
struct RecoveryScore {
    user_calibrating: Option<bool>,
    recovery_score: Option<f64>,
    resting_heart_rate: Option<f64>,
    /// RMSSD in ms, measured during the sleep the recovery belongs to (§3.2, §9).
    hrv_rmssd_milli: Option<f64>,
    spo2_percentage: Option<f64>,
    skin_temp_celsius: Option<f64>,
}

/// A scored recovery as RECOVERY, keyed by its sleep id (the id WHOOP's notifications use). The
/// record has no period of its own, so `measured_at` is `created_at` (just after waking) and the
/// local date is unknown. While the user is calibrating, WHOOP's HRV is not yet trustworthy
/// (§3.2): the event is emitted without it.
pub fn map_api_recovery(json: &[u8], input: &RawInput<'_>, vendor_user_id: &str) -> Result<Vec<BiometricEvent>, NormalizeError> {
    let recovery: Recovery = serde_json::from_slice(json)?;
    let Some(score) = scored(&recovery.score_state, recovery.score)? else { return Ok(Vec::new()) };
    let measured_at = rfc3339_to_millis(&recovery.created_at)?;
    let mut event = base_event(input, EventKind::Recovery, &recovery.sleep_id, vendor_user_id, measured_at);
    event.vendor_record_id = Some(recovery.sleep_id);
    event.source_device = Some(SOURCE_DEVICE.to_owned());
    if score.user_calibrating != Some(true) {
        event.hrv_rmssd_ms = score.hrv_rmssd_milli;
        event.hrv_window = score.hrv_rmssd_milli.map(|_| HrvWindow::NightlyMean);
    }
    event.recovery_score = score.recovery_score;
    event.resting_heart_rate_bpm = score.resting_heart_rate;
    event.spo2_pct = score.spo2_percentage;
    event.skin_temp_celsius = score.skin_temp_celsius;
    Ok(vec![event])
}

#[derive(Deserialize)]
struct Sleep {
    id: String,
    #[serde(flatten)]
    span: Span,
    score_state: String,
    score: Option<SleepScore>,
}

#[derive(Deserialize)]
struct SleepScore {
    stage_summary: Option<StageSummary>,
    respiratory_rate: Option<f64>,
    sleep_performance_percentage: Option<f64>,
    sleep_efficiency_percentage: Option<f64>,
}

/// Stage durations in milliseconds. Integers in WHOOP's schema, read as numbers: an absurd value
/// is then a data-quality note on the event, not a record that cannot be read (or an overflow).
#[derive(Deserialize)]
struct StageSummary {
    total_in_bed_time_milli: Option<f64>,
    total_awake_time_milli: Option<f64>,
    total_light_sleep_time_milli: Option<f64>,
    total_slow_wave_sleep_time_milli: Option<f64>,
    total_rem_sleep_time_milli: Option<f64>,
}

fn millis_to_seconds(millis: Option<f64>) -> Option<f64> {
    millis.map(|millis| millis / 1000.0)
}

/// A scored sleep (naps included) as SLEEP. Time asleep is light + slow-wave + REM. Like the
/// other vendors' sleep, it belongs to its wake-up day: the local date of `end`.
pub fn map_api_sleep(json: &[u8], input: &RawInput<'_>, vendor_user_id: &str) -> Result<Vec<BiometricEvent>, NormalizeError> {
    let sleep: Sleep = serde_json::from_slice(json)?;
    let Some(score) = scored(&sleep.score_state, sleep.score)? else { return Ok(Vec::new()) };
    let wake_up = sleep.span.end.as_deref().unwrap_or(&sleep.span.start);
    let mut event = new_event(input, EventKind::Sleep, &sleep.id, vendor_user_id, &sleep.span, wake_up)?;
    if let Some(stages) = score.stage_summary {
        let asleep = [stages.total_light_sleep_time_milli, stages.total_slow_wave_sleep_time_milli, stages.total_rem_sleep_time_milli];
        event.sleep_total_seconds = event.integer("sleep_total_seconds", millis_to_seconds(asleep.into_iter().sum()));
        event.sleep_deep_seconds = event.integer("sleep_deep_seconds", millis_to_seconds(stages.total_slow_wave_sleep_time_milli));
        event.sleep_light_seconds = event.integer("sleep_light_seconds", millis_to_seconds(stages.total_light_sleep_time_milli));
        event.sleep_rem_seconds = event.integer("sleep_rem_seconds", millis_to_seconds(stages.total_rem_sleep_time_milli));
        event.sleep_awake_seconds = event.integer("sleep_awake_seconds", millis_to_seconds(stages.total_awake_time_milli));
        event.time_in_bed_seconds = event.integer("time_in_bed_seconds", millis_to_seconds(stages.total_in_bed_time_milli));
    }
    event.respiratory_rate_bpm = score.respiratory_rate;
    event.sleep_efficiency_pct = score.sleep_efficiency_percentage;
    event.sleep_score = score.sleep_performance_percentage;
    Ok(vec![event])
}

#[derive(Deserialize)]
struct Cycle {
    id: i64,
    #[serde(flatten)]
    span: Span,
    score_state: String,
    score: Option<EffortScore>,
}

#[derive(Deserialize)]
struct Workout {
    id: String,
    #[serde(flatten)]
    span: Span,
    score_state: String,
    score: Option<EffortScore>,
}

/// The score fields cycles and workouts share (`distance_meter` only on workouts).
#[derive(Deserialize)]
struct EffortScore {
    strain: Option<f64>,
    kilojoule: Option<f64>,
    average_heart_rate: Option<f64>,
    max_heart_rate: Option<f64>,
    distance_meter: Option<f64>,
}

fn apply_effort(event: &mut BiometricEvent, score: EffortScore) {
    event.strain = score.strain;
    event.total_calories_kcal = score.kilojoule.map(|kilojoule| kilojoule / KJ_PER_KCAL);
    event.heart_rate_avg_bpm = score.average_heart_rate;
    event.heart_rate_max_bpm = score.max_heart_rate;
    event.distance_meters = score.distance_meter;
}

/// A scored physiological cycle (WHOOP's "day", from one sleep onset to the next) as DAILY,
/// attributed to the local date of its start.
pub fn map_api_cycle(json: &[u8], input: &RawInput<'_>, vendor_user_id: &str) -> Result<Vec<BiometricEvent>, NormalizeError> {
    let cycle: Cycle = serde_json::from_slice(json)?;
    let Some(score) = scored(&cycle.score_state, cycle.score)? else { return Ok(Vec::new()) };
    let id = cycle.id.to_string();
    let mut event = new_event(input, EventKind::Daily, &id, vendor_user_id, &cycle.span, &cycle.span.start)?;
    apply_effort(&mut event, score);
    Ok(vec![event])
}

/// A scored workout as WORKOUT.
pub fn map_api_workout(json: &[u8], input: &RawInput<'_>, vendor_user_id: &str) -> Result<Vec<BiometricEvent>, NormalizeError> {
    let workout: Workout = serde_json::from_slice(json)?;
    let Some(score) = scored(&workout.score_state, workout.score)? else { return Ok(Vec::new()) };
    let mut event = new_event(input, EventKind::Workout, &workout.id, vendor_user_id, &workout.span, &workout.span.start)?;
    apply_effort(&mut event, score);
    Ok(vec![event])
}
