//! The canonical [`BiometricEvent`]: the one shape every vendor is normalized into.
//!
//! Field names and enum symbols mirror `schemas/biometric_event.avsc` exactly, because the Avro
//! encoder serializes these structs straight against that schema (see `event::avro`). The schema
//! file carries the field-by-field documentation; the comments here say only what is Rust-specific.

use serde::{Deserialize, Serialize};

/// Which integration delivered the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Vendor {
    Terra,
    Oura,
    Whoop,
    AppleHealth,
}

impl Vendor {
    pub const ALL: [Vendor; 4] = [Vendor::Terra, Vendor::Oura, Vendor::Whoop, Vendor::AppleHealth];

    /// The lower-case slug used in URLs (`/webhooks/<slug>`), Kafka keys and headers.
    pub fn slug(self) -> &'static str {
        match self {
            Vendor::Terra => "terra",
            Vendor::Oura => "oura",
            Vendor::Whoop => "whoop",
            Vendor::AppleHealth => "apple-health",
        }
    }

    pub fn from_slug(slug: &str) -> Option<Vendor> {
        Vendor::ALL.into_iter().find(|vendor| vendor.slug() == slug)
    }

    /// The Avro enum symbol, also used as the `vendor` header of output events.
    pub fn symbol(self) -> &'static str {
        match self {
            Vendor::Terra => "TERRA",
            Vendor::Oura => "OURA",
            Vendor::Whoop => "WHOOP",
            Vendor::AppleHealth => "APPLE_HEALTH",
        }
    }
}

/// What the vendor record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    Hrv,
    HeartRate,
    RestingHeartRate,
    Sleep,
    Recovery,
    Readiness,
    Activity,
    Daily,
    Body,
    Workout,
    RespiratoryRate,
    Steps,
    /// A retraction: the vendor deleted the record `vendor_record_id` (see `retracts_event_id`).
    Deleted,
    /// A discrete observation: a symptom, a dose, a device event such as an irregular-rhythm
    /// notification (see `observation_type`, `observation_category`).
    HealthObservation,
    /// No record: the person was erased (`users erase`); consumers delete what they hold.
    UserErased,
}

impl EventKind {
    /// The Avro symbol, also sent as the `event-type` header.
    pub fn symbol(self) -> &'static str {
        match self {
            EventKind::Hrv => "HRV",
            EventKind::HeartRate => "HEART_RATE",
            EventKind::RestingHeartRate => "RESTING_HEART_RATE",
            EventKind::Sleep => "SLEEP",
            EventKind::Recovery => "RECOVERY",
            EventKind::Readiness => "READINESS",
            EventKind::Activity => "ACTIVITY",
            EventKind::Daily => "DAILY",
            EventKind::Body => "BODY",
            EventKind::Workout => "WORKOUT",
            EventKind::RespiratoryRate => "RESPIRATORY_RATE",
            EventKind::Steps => "STEPS",
            EventKind::Deleted => "DELETED",
            EventKind::HealthObservation => "HEALTH_OBSERVATION",
            EventKind::UserErased => "USER_ERASED",
        }
    }
}

/// Over what window an HRV value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HrvWindow {
    NightlyMean,
    DailyMean,
    SessionMean,
    Spot,
}

/// Severity of one trigger. Ordered: `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// Priority of an event: its highest trigger's severity, else `Normal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Priority {
    Normal,
    Low,
    Medium,
    High,
    Critical,
}

impl Priority {
    /// The priority an event gets from its triggers.
    pub fn from_triggers(triggers: &[Trigger]) -> Priority {
        triggers.iter().map(|trigger| trigger.severity).max().map_or(Priority::Normal, Priority::from)
    }

    /// The value of the `priority` Kafka header.
    pub fn symbol(self) -> &'static str {
        match self {
            Priority::Normal => "NORMAL",
            Priority::Low => "LOW",
            Priority::Medium => "MEDIUM",
            Priority::High => "HIGH",
            Priority::Critical => "CRITICAL",
        }
    }
}

impl From<Severity> for Priority {
    fn from(severity: Severity) -> Priority {
        match severity {
            Severity::Low => Priority::Low,
            Severity::Medium => Priority::Medium,
            Severity::High => Priority::High,
            Severity::Critical => Priority::Critical,
        }
    }
}

/// A condition detected in an event that a coach (or NEUROS) should act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub trigger_type: String,
    pub severity: Severity,
    pub metric: String,
    pub value: f64,
    pub threshold: f64,
    pub recommendation: Option<String>,
    pub baseline_mean: Option<f64>,
    pub baseline_sd: Option<f64>,
    pub z_score: Option<f64>,
    /// The signals behind a multi-signal trigger (`ILLNESS_RISK`), each with its z-score in the
    /// direction illness moves it; empty for single-signal triggers.
    #[serde(default)]
    pub contributions: Vec<Contribution>,
}

/// One signal's part in a multi-signal trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// The event field, e.g. `resting_heart_rate_bpm`.
    pub signal: String,
    /// (recent mean - baseline mean) / baseline SD, signed so that positive is the illness
    /// direction (HRV down, resting HR, respiratory rate and temperature up).
    pub z_score: f64,
}

/// Why a value the vendor sent is not in the event: it was out of its plausible range, not a
/// finite number, or not representable as the field's integer. The value is kept as text
/// (`"1e+30"`, `"inf"`) because it may be exactly what cannot be stored in the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityNote {
    /// The event field the value was meant for (`hrv_rmssd_ms`, `steps`, ...).
    pub field: String,
    pub value: String,
    /// `out_of_range`, `not_finite` or `not_an_integer`.
    pub reason: String,
    /// The plausible range, as `[min, max]` with its unit, when the reason is a range.
    pub expected: Option<String>,
}

/// Where an event came from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Lineage {
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub delivery_id: Option<String>,
}

/// One normalized observation. Field order follows the Avro schema. Metrics are plain optional
/// fields (not a nested struct) because serde's `flatten` cannot round-trip Avro enums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BiometricEvent {
    pub event_id: String,
    pub user_id: String,
    pub vendor: Vendor,
    pub vendor_user_id: String,
    pub source_device: Option<String>,
    pub kind: EventKind,
    pub vendor_record_id: Option<String>,
    /// UTC milliseconds since the epoch.
    pub measured_at: i64,
    pub measured_until: Option<i64>,
    pub local_date: Option<String>,
    pub received_at: i64,
    // --- metrics: `None` when the vendor record did not carry the value ---
    pub hrv_rmssd_ms: Option<f64>,
    pub hrv_sdnn_ms: Option<f64>,
    pub hrv_window: Option<HrvWindow>,
    pub heart_rate_avg_bpm: Option<f64>,
    pub heart_rate_min_bpm: Option<f64>,
    pub heart_rate_max_bpm: Option<f64>,
    pub resting_heart_rate_bpm: Option<f64>,
    pub recovery_score: Option<f64>,
    pub readiness_score: Option<f64>,
    pub sleep_score: Option<f64>,
    pub sleep_total_seconds: Option<i64>,
    pub sleep_deep_seconds: Option<i64>,
    pub sleep_light_seconds: Option<i64>,
    pub sleep_rem_seconds: Option<i64>,
    pub sleep_awake_seconds: Option<i64>,
    pub time_in_bed_seconds: Option<i64>,
    pub sleep_efficiency_pct: Option<f64>,
    pub respiratory_rate_bpm: Option<f64>,
    pub spo2_pct: Option<f64>,
    pub skin_temp_celsius: Option<f64>,
    pub temperature_deviation_celsius: Option<f64>,
    pub steps: Option<i64>,
    pub distance_meters: Option<f64>,
    pub active_calories_kcal: Option<f64>,
    pub total_calories_kcal: Option<f64>,
    pub strain: Option<f64>,
    // --- observations (HEALTH_OBSERVATION) ---
    pub observation_type: Option<String>,
    pub observation_category: Option<String>,
    // --- derived by the processor ---
    pub triggers: Vec<Trigger>,
    pub priority: Priority,
    pub lineage: Lineage,
    pub trace_id: Option<String>,
    /// For DELETED events: the id of the event the deleted record had produced, when known.
    pub retracts_event_id: Option<String>,
    /// Values the vendor sent that were removed from this event, and why.
    pub data_quality: Vec<QualityNote>,
}

impl BiometricEvent {
    /// An event with its identity, kind and times, and nothing else: no metric, no trigger,
    /// priority `Normal`, empty lineage. Vendors' mappers and the erase start from it.
    pub fn empty(
        event_id: String,
        user_id: String,
        vendor: Vendor,
        vendor_user_id: String,
        kind: EventKind,
        measured_at: i64,
        received_at: i64,
    ) -> BiometricEvent {
        BiometricEvent {
            event_id,
            user_id,
            vendor,
            vendor_user_id,
            source_device: None,
            kind,
            vendor_record_id: None,
            measured_at,
            measured_until: None,
            local_date: None,
            received_at,
            hrv_rmssd_ms: None,
            hrv_sdnn_ms: None,
            hrv_window: None,
            heart_rate_avg_bpm: None,
            heart_rate_min_bpm: None,
            heart_rate_max_bpm: None,
            resting_heart_rate_bpm: None,
            recovery_score: None,
            readiness_score: None,
            sleep_score: None,
            sleep_total_seconds: None,
            sleep_deep_seconds: None,
            sleep_light_seconds: None,
            sleep_rem_seconds: None,
            sleep_awake_seconds: None,
            time_in_bed_seconds: None,
            sleep_efficiency_pct: None,
            respiratory_rate_bpm: None,
            spo2_pct: None,
            skin_temp_celsius: None,
            temperature_deviation_celsius: None,
            steps: None,
            distance_meters: None,
            active_calories_kcal: None,
            total_calories_kcal: None,
            strain: None,
            observation_type: None,
            observation_category: None,
            triggers: Vec::new(),
            priority: Priority::Normal,
            lineage: Lineage::default(),
            trace_id: None,
            retracts_event_id: None,
            data_quality: Vec::new(),
        }
    }

    /// The `USER_ERASED` event `users erase` writes to an output topic: no record, no metric, no
    /// vendor user id; `vendor` is one this topic is routed from (the field is required), and
    /// the event id is fresh, so each erase is told.
    pub fn user_erased(user_id: &str, vendor: Vendor, at_ms: i64) -> BiometricEvent {
        let id = uuid::Uuid::new_v4().to_string();
        BiometricEvent::empty(id, user_id.to_owned(), vendor, String::new(), EventKind::UserErased, at_ms, at_ms)
    }
}

/// A number as a note shows it: plainly while short, in exponent form when huge (`1e30`).
pub fn number_text(value: f64) -> String {
    if value.is_finite() && value.abs() >= 1e15 { format!("{value:e}") } else { value.to_string() }
}

/// Largest magnitude an `f64` holds exactly as an integer (2^53): beyond it a count or duration
/// is no longer a count (and `as i64` would saturate silently at 2^63).
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

impl BiometricEvent {
    /// `value` rounded to a whole number for integer field `field`, or `None` with a
    /// data-quality note when it cannot be one (not finite, or beyond 2^53): never a saturated or
    /// wrapped value. Vendors send counts and durations as JSON numbers, i.e. floats.
    pub fn integer(&mut self, field: &str, value: Option<f64>) -> Option<i64> {
        let value = value?;
        let reason = if !value.is_finite() {
            "not_finite"
        } else if value.abs() > MAX_EXACT_INTEGER {
            "not_an_integer"
        } else {
            return Some(value.round() as i64);
        };
        self.note(field, number_text(value), reason, None);
        None
    }

    /// Records that a value for `field` was left out of the event.
    pub fn note(&mut self, field: &str, value: String, reason: &str, expected: Option<String>) {
        self.data_quality.push(QualityNote { field: field.to_owned(), value, reason: reason.to_owned(), expected });
    }
}

#[cfg(test)]
mod tests {
    use crate::vendors::{base_event, test_support::raw_input};

    use super::*;

    #[test]
    fn integers_round_and_never_saturate() {
        let mut event = base_event(&raw_input(Vendor::Terra, b"{}"), EventKind::Sleep, "k", "u", 0);
        assert_eq!(event.integer("sleep_total_seconds", Some(7.12 * 3600.0)), Some(25_632));
        assert_eq!(event.integer("sleep_total_seconds", Some(12_986_530.0 / 1000.0)), Some(12_987));
        assert_eq!(event.integer("steps", None), None);
        assert!(event.data_quality.is_empty());
        assert_eq!(event.integer("steps", Some(1e30)), None);
        assert_eq!(event.integer("steps", Some(f64::INFINITY)), None);
        let reasons: Vec<(&str, &str, &str)> =
            event.data_quality.iter().map(|n| (n.field.as_str(), n.value.as_str(), n.reason.as_str())).collect();
        assert_eq!(reasons, [("steps", "1e30", "not_an_integer"), ("steps", "inf", "not_finite")]);
    }
}
