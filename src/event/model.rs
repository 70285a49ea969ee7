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
    // --- derived by the processor ---
    pub triggers: Vec<Trigger>,
    pub priority: Priority,
    pub lineage: Lineage,
    pub trace_id: Option<String>,
    /// For DELETED events: the id of the event the deleted record had produced, when known.
    pub retracts_event_id: Option<String>,
}
