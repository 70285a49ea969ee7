//! Apple HealthKit data exported by the Health Auto Export app (HAE, vendors.md §4): JSON
//! `data.metrics[]`, each metric a name, a unit and its points. One event per point we map.
//!
//! There is no vendor signature and the body names no user: the ingress authenticates the bearer
//! token and passes its user as [`RawInput::vendor_user_id`]. HAE points carry no id, and the same
//! point arrives again with every overlapping export window (§4.2), so the natural key is
//! `<user>|<metric name>|<date string>`: the user is part of it because, unlike vendor record ids,
//! a date is not unique across users.
//!
//! # Facts this module relies on, and their sources
//!
//! Tags are those of vendors.md §12; `docs/vendor-contracts.md` lists where vendors.md was wrong.
//! - Body `{"data":{"metrics":[{"name","units","data":[…]}]}}`, dates `yyyy-MM-dd HH:mm:ss Z` [A3].
//! - No signature: the user configures a bearer header [A4][A5].
//! - `heart_rate_variability` is HealthKit's SDNN in ms, spot readings [A1][A3].
//! - Aggregated sleep comes in two shapes: the one HAE's JSON documentation describes (wiki
//!   revision October 2024: `asleep`, `inBed`, `sleepSource`, `inBedSource`) and the stage-by-stage
//!   one (`totalSleep`, `core`, `deep`, `rem`) of earlier exports; both are read [A3].
//! - `blood_oxygen_saturation` is documented in `%`, but HealthKit stores a fraction and some
//!   exports pass it through (`0.97`): a value ≤ 1 is read as a fraction [A3][A1].
//! - Overlapping export windows re-send the same points, which carry no id [A4][A5].

#[cfg(test)]
mod tests;

use axum::http::HeaderMap;
use serde::Deserialize;

use super::time::{date_part, hae_to_millis};
use super::{NormalizeError, Outcome, RawInput, base_event};
use crate::event::{BiometricEvent, EventKind, HrvWindow};

/// No vendor signature: nothing to copy for audit (the bearer token must never be copied).
pub const SIGNATURE_HEADERS: &[&str] = &[];

/// The device when a point does not name its source.
const DEFAULT_SOURCE: &str = "APPLE_HEALTH";

/// HAE sends no delivery id; the ingress falls back to the body hash.
pub fn delivery_id(_headers: &HeaderMap, _body: &[u8]) -> Option<String> {
    None
}

/// Always `None`: the body names no user (kept for symmetry with the other vendors).
pub fn vendor_user_id(_body: &[u8]) -> Option<String> {
    None
}

#[derive(Deserialize)]
struct Export {
    data: ExportData,
}

/// Only the selected arrays are present (§4.2): an export of workouts alone has no `metrics`.
#[derive(Deserialize)]
struct ExportData {
    #[serde(default)]
    metrics: Vec<Metric>,
}

/// Points stay raw until the metric is known to be one we map: the shapes of the others are none
/// of our business and must not fail the export.
#[derive(Deserialize)]
struct Metric {
    name: String,
    units: Option<String>,
    #[serde(default)]
    data: Vec<serde_json::Value>,
}

/// A quantity point (`qty`) or a heart-rate point (`Min`/`Avg`/`Max`, capitalised).
#[derive(Deserialize)]
struct Point {
    date: String,
    qty: Option<f64>,
    source: Option<String>,
    #[serde(rename = "Min")]
    min: Option<f64>,
    #[serde(rename = "Avg")]
    avg: Option<f64>,
    #[serde(rename = "Max")]
    max: Option<f64>,
}

/// A `sleep_analysis` point. The aggregated form (one per night: `date` is the wake-up day,
/// durations in the metric's unit) has `sleepStart`; the unaggregated segments
/// (`startDate`/`endDate`/`value`) do not and are skipped.
///
/// Two versions of the aggregated form exist. The one HAE's JSON documentation describes (wiki,
/// revision October 2024) has `asleep`, `inBed`, `sleepSource` and `inBedSource`; exports from
/// versions with sleep stages add `totalSleep`, `core`, `deep`, `rem` and `awake` (and `asleep`
/// becomes the unstaged remainder, often 0). Both are read: time asleep is `totalSleep` when
/// there is one, else `asleep`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SleepPoint {
    date: Option<String>,
    sleep_start: Option<String>,
    sleep_end: Option<String>,
    total_sleep: Option<f64>,
    asleep: Option<f64>,
    core: Option<f64>,
    deep: Option<f64>,
    rem: Option<f64>,
    awake: Option<f64>,
    in_bed: Option<f64>,
    source: Option<String>,
    sleep_source: Option<String>,
}

/// How one metric maps, decided once per metric from its name and unit.
#[derive(Clone, Copy)]
enum Mapping {
    /// One event per point.
    Point(PointMetric),
    /// One event per aggregated night; durations are in the metric's unit.
    Sleep { seconds_per_unit: f64 },
}

/// The metrics whose points are single readings.
#[derive(Clone, Copy)]
enum PointMetric {
    /// HealthKit's HRV is SDNN (§4.1): never RMSSD. Spot readings of about a minute.
    HrvSdnn {
        ms_per_unit: f64,
    },
    RestingHeartRate,
    HeartRate,
    Steps,
    RespiratoryRate,
    BloodOxygen,
}

impl PointMetric {
    fn kind(self) -> EventKind {
        match self {
            PointMetric::HrvSdnn { .. } => EventKind::Hrv,
            PointMetric::RestingHeartRate => EventKind::RestingHeartRate,
            PointMetric::HeartRate => EventKind::HeartRate,
            PointMetric::Steps => EventKind::Steps,
            PointMetric::RespiratoryRate => EventKind::RespiratoryRate,
            PointMetric::BloodOxygen => EventKind::Body,
        }
    }
}

/// The mapping of a metric, `None` for metrics we do not map.
fn mapping(metric: &Metric) -> Result<Option<Mapping>, NormalizeError> {
    let units = metric.units.as_deref();
    let unit_error = || NormalizeError::InvalidValue(format!("{} in unit {units:?}", metric.name));
    let point = match metric.name.as_str() {
        // A common client library defaults HRV to seconds (§4.1): honour the unit, never guess.
        "heart_rate_variability" => match units {
            Some("ms") => PointMetric::HrvSdnn { ms_per_unit: 1.0 },
            Some("s") => PointMetric::HrvSdnn { ms_per_unit: 1000.0 },
            _ => return Err(unit_error()),
        },
        "resting_heart_rate" => PointMetric::RestingHeartRate,
        "heart_rate" => PointMetric::HeartRate,
        "step_count" => PointMetric::Steps,
        "respiratory_rate" => PointMetric::RespiratoryRate,
        "blood_oxygen_saturation" => PointMetric::BloodOxygen,
        "sleep_analysis" => {
            return match units {
                Some("hr") => Ok(Some(Mapping::Sleep { seconds_per_unit: 3600.0 })),
                Some("min") => Ok(Some(Mapping::Sleep { seconds_per_unit: 60.0 })),
                _ => Err(unit_error()),
            };
        }
        _ => return Ok(None),
    };
    Ok(Some(Mapping::Point(point)))
}

/// Normalizes one HAE export for the user the ingress authenticated.
pub fn normalize(input: &RawInput<'_>) -> Result<Outcome, NormalizeError> {
    let user =
        input.vendor_user_id.ok_or_else(|| NormalizeError::InvalidShape("apple health record without the token's user".to_owned()))?;
    let export: Export = serde_json::from_slice(input.body)?;
    let mut events = Vec::new();
    for metric in &export.data.metrics {
        let Some(mapping) = mapping(metric)? else { continue };
        for value in &metric.data {
            let event = match mapping {
                Mapping::Point(point_metric) => Some(map_point(input, user, &metric.name, point_metric, Point::deserialize(value)?)?),
                Mapping::Sleep { seconds_per_unit } => {
                    map_sleep(input, user, &metric.name, seconds_per_unit, SleepPoint::deserialize(value)?)?
                }
            };
            events.extend(event);
        }
    }
    Ok(Outcome::Events(events))
}

/// An event for a point of `metric` at HAE date `date` (`yyyy-MM-dd HH:mm:ss Z`, or a bare date for
/// aggregated sleep), measured from `measured_at`.
fn new_event(
    input: &RawInput<'_>,
    user: &str,
    metric: &str,
    kind: EventKind,
    date: &str,
    measured_at: i64,
    source: Option<String>,
) -> Result<BiometricEvent, NormalizeError> {
    let key = format!("{user}|{metric}|{date}");
    let mut event = base_event(input, kind, &key, user, measured_at);
    event.local_date = Some(date_part(date)?);
    event.source_device = Some(source.unwrap_or_else(|| DEFAULT_SOURCE.to_owned()));
    Ok(event)
}

fn map_point(
    input: &RawInput<'_>,
    user: &str,
    metric: &str,
    point_metric: PointMetric,
    point: Point,
) -> Result<BiometricEvent, NormalizeError> {
    let qty = point.qty.ok_or_else(|| NormalizeError::InvalidShape(format!("{metric} point without qty")));
    let measured_at = hae_to_millis(&point.date)?;
    let mut event = new_event(input, user, metric, point_metric.kind(), &point.date, measured_at, point.source)?;
    match point_metric {
        PointMetric::HrvSdnn { ms_per_unit } => {
            event.hrv_sdnn_ms = Some(qty? * ms_per_unit);
            event.hrv_window = Some(HrvWindow::Spot);
        }
        PointMetric::RestingHeartRate => event.resting_heart_rate_bpm = Some(qty?),
        // Per-minute aggregates; a plain `qty` is a single reading.
        PointMetric::HeartRate => {
            event.heart_rate_min_bpm = point.min;
            event.heart_rate_avg_bpm = point.avg.or(point.qty);
            event.heart_rate_max_bpm = point.max;
        }
        PointMetric::Steps => event.steps = event.integer("steps", Some(qty?)),
        PointMetric::RespiratoryRate => event.respiratory_rate_bpm = Some(qty?),
        // HealthKit's percent unit is a fraction (0.97); HAE writes `%` for both that and 97.
        PointMetric::BloodOxygen => event.spo2_pct = Some(qty.map(|value| if value <= 1.0 { value * 100.0 } else { value })?),
    }
    Ok(event)
}

/// An aggregated night as SLEEP (`core` is HealthKit's light sleep); segments give `None`.
fn map_sleep(
    input: &RawInput<'_>,
    user: &str,
    metric: &str,
    seconds_per_unit: f64,
    point: SleepPoint,
) -> Result<Option<BiometricEvent>, NormalizeError> {
    let (Some(date), Some(start)) = (point.date.as_deref(), point.sleep_start.as_deref()) else {
        return Ok(None);
    };
    let source = point.source.clone().or_else(|| point.sleep_source.clone());
    let mut event = new_event(input, user, metric, EventKind::Sleep, date, hae_to_millis(start)?, source)?;
    event.measured_until = point.sleep_end.as_deref().map(hae_to_millis).transpose()?;
    let seconds = |units: Option<f64>| units.map(|units| units * seconds_per_unit);
    event.sleep_total_seconds = event.integer("sleep_total_seconds", seconds(point.total_sleep.or(point.asleep)));
    event.sleep_deep_seconds = event.integer("sleep_deep_seconds", seconds(point.deep));
    event.sleep_light_seconds = event.integer("sleep_light_seconds", seconds(point.core));
    event.sleep_rem_seconds = event.integer("sleep_rem_seconds", seconds(point.rem));
    event.sleep_awake_seconds = event.integer("sleep_awake_seconds", seconds(point.awake));
    event.time_in_bed_seconds = event.integer("time_in_bed_seconds", seconds(point.in_bed));
    Ok(Some(event))
}
