//! One [`BiometricEvent`] -> one row of `biometric_events` (migration
//! `20261126000003_biometric_events.sql`). Pure: no I/O, so every column is unit-tested here.
//!
//! The table has columns for what is queried (user, time, priority, the two HRV statistics) and
//! two JSONB documents for the rest: `triggers` (the event's triggers as the schema names them)
//! and `metrics` (every metric the vendor record carried, by its field name, nulls left out — a
//! metric absent from the document means "not measured", never zero). The event's `lineage`
//! fills `source_topic/partition/offset`, so a row leads back to its raw webhook.
//!
//! `data_quality` (migration `20261202000007_event_data_quality.sql`) keeps the values the
//! processor removed as implausible. `vendor_record_id` and `retracts_event_id` have columns (migration
//! `20261126000005_event_retractions.sql`: the view `current_biometric_events` leaves out
//! deletions and what they retract). Not stored: `lineage.delivery_id`, in the raw record the
//! lineage points to.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};

use crate::event::BiometricEvent;

/// The metric fields of [`BiometricEvent`], by name, in schema order: what goes into `metrics`.
/// `rows_cover_every_event_field` fails when a new event field is neither here nor a column.
pub const METRIC_FIELDS: [&str; 28] = [
    "hrv_rmssd_ms",
    "hrv_sdnn_ms",
    "hrv_window",
    "heart_rate_avg_bpm",
    "heart_rate_min_bpm",
    "heart_rate_max_bpm",
    "resting_heart_rate_bpm",
    "recovery_score",
    "readiness_score",
    "sleep_score",
    "sleep_total_seconds",
    "sleep_deep_seconds",
    "sleep_light_seconds",
    "sleep_rem_seconds",
    "sleep_awake_seconds",
    "time_in_bed_seconds",
    "sleep_efficiency_pct",
    "respiratory_rate_bpm",
    "spo2_pct",
    "skin_temp_celsius",
    "temperature_deviation_celsius",
    "steps",
    "distance_meters",
    "active_calories_kcal",
    "total_calories_kcal",
    "strain",
    "observation_type",
    "observation_category",
];

/// The columns written, in the order [`EventRow`] binds them (`written_at` is set by the database).
pub const COLUMNS: [&str; 22] = [
    "event_id",
    "user_id",
    "vendor",
    "vendor_user_id",
    "source_device",
    "kind",
    "measured_at",
    "measured_until",
    "local_date",
    "received_at",
    "hrv_rmssd_ms",
    "hrv_sdnn_ms",
    "priority",
    "triggers",
    "metrics",
    "trace_id",
    "source_topic",
    "source_partition",
    "source_offset",
    "vendor_record_id",
    "retracts_event_id",
    "data_quality",
];

/// One row of `biometric_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub event_id: uuid::Uuid,
    pub user_id: String,
    /// The Avro symbol (`TERRA`, `APPLE_HEALTH`, ...), as on the `vendor` header of events.
    pub vendor: &'static str,
    pub vendor_user_id: String,
    pub source_device: Option<String>,
    /// The Avro symbol (`SLEEP`, `HRV`, ...), as on the `event-type` header.
    pub kind: &'static str,
    pub measured_at: DateTime<Utc>,
    pub measured_until: Option<DateTime<Utc>>,
    pub local_date: Option<NaiveDate>,
    pub received_at: DateTime<Utc>,
    pub hrv_rmssd_ms: Option<f64>,
    pub hrv_sdnn_ms: Option<f64>,
    pub priority: &'static str,
    pub triggers: Value,
    pub metrics: Value,
    pub trace_id: Option<String>,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub vendor_record_id: Option<String>,
    /// For DELETED events: the event the deleted vendor record had produced.
    pub retracts_event_id: Option<uuid::Uuid>,
    /// The event's data-quality notes (values removed as implausible), as the schema names them.
    pub data_quality: Value,
}

/// An event that decoded but cannot be a row: a broken producer contract, never an outage.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowError {
    #[error("event_id {0:?} is not a UUID")]
    EventId(String),
    #[error("{field} = {value} ms is not a representable instant")]
    Instant { field: &'static str, value: i64 },
    #[error("local_date {0:?} is not YYYY-MM-DD")]
    LocalDate(String),
}

impl EventRow {
    pub fn from_event(event: &BiometricEvent) -> Result<EventRow, RowError> {
        let instant =
            |field: &'static str, value: i64| DateTime::<Utc>::from_timestamp_millis(value).ok_or(RowError::Instant { field, value });
        let local_date = event
            .local_date
            .as_deref()
            .map(|date| NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| RowError::LocalDate(date.to_owned())))
            .transpose()?;
        Ok(EventRow {
            event_id: uuid::Uuid::parse_str(&event.event_id).map_err(|_| RowError::EventId(event.event_id.clone()))?,
            user_id: event.user_id.clone(),
            vendor: event.vendor.symbol(),
            vendor_user_id: event.vendor_user_id.clone(),
            source_device: event.source_device.clone(),
            kind: event.kind.symbol(),
            measured_at: instant("measured_at", event.measured_at)?,
            measured_until: event.measured_until.map(|until| instant("measured_until", until)).transpose()?,
            local_date,
            received_at: instant("received_at", event.received_at)?,
            hrv_rmssd_ms: event.hrv_rmssd_ms,
            hrv_sdnn_ms: event.hrv_sdnn_ms,
            priority: event.priority.symbol(),
            triggers: serde_json::to_value(&event.triggers).expect("triggers serialize to JSON"),
            metrics: metrics_document(event),
            trace_id: event.trace_id.clone(),
            source_topic: event.lineage.source_topic.clone(),
            source_partition: event.lineage.source_partition,
            source_offset: event.lineage.source_offset,
            vendor_record_id: event.vendor_record_id.clone(),
            retracts_event_id: event
                .retracts_event_id
                .as_deref()
                .map(|id| uuid::Uuid::parse_str(id).map_err(|_| RowError::EventId(id.to_owned())))
                .transpose()?,
            data_quality: serde_json::to_value(&event.data_quality).expect("notes serialize to JSON"),
        })
    }
}

/// Every non-null metric of `event`, keyed by field name. Going through serde keeps the names and
/// the enum symbols (`hrv_window`) exactly as the schema spells them. A non-finite double has no
/// JSON form (serde_json writes it as null), so it is left out like a missing one.
pub fn metrics_document(event: &BiometricEvent) -> Value {
    let Value::Object(mut fields) = serde_json::to_value(event).expect("events serialize to JSON") else {
        unreachable!("a struct serializes to a JSON object");
    };
    let metrics: Map<String, Value> = METRIC_FIELDS
        .iter()
        .filter_map(|name| fields.remove(*name).filter(|value| !value.is_null()).map(|value| ((*name).to_owned(), value)))
        .collect();
    Value::Object(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, HrvWindow, Priority, Severity, Trigger, Vendor};
    use crate::vendors::{RawInput, base_event};

    fn event() -> BiometricEvent {
        let input = RawInput {
            vendor: Vendor::AppleHealth,
            body: b"{}",
            received_at_ms: 1_764_142_260_123,
            vendor_user_id: None,
            delivery_id: Some("d-1"),
            trace_id: Some("0af7651916cd43dd8448eb211c80319c"),
            source_topic: "raw-webhooks",
            source_partition: 3,
            source_offset: 1234,
        };
        let mut event = base_event(&input, EventKind::Sleep, "rec-1", "apple-user-1", 1_764_115_200_000);
        event.event_id = "6f1c2d3e-4a5b-5c6d-8e7f-0123456789ab".into();
        event.user_id = "athlete-1".into();
        event.source_device = Some("Apple Watch".into());
        event.vendor_record_id = Some("rec-1".into());
        event.measured_until = Some(1_764_142_200_000);
        event.local_date = Some("2026-11-26".into());
        event.hrv_rmssd_ms = Some(22.5);
        event.hrv_window = Some(HrvWindow::NightlyMean);
        event.heart_rate_avg_bpm = Some(52.0);
        event.sleep_score = Some(81.0);
        event.sleep_total_seconds = Some(25_200);
        event.sleep_efficiency_pct = Some(f64::NAN);
        event.steps = Some(0);
        event.triggers = vec![Trigger {
            trigger_type: "URGENT_INTERVENTION".into(),
            severity: Severity::Critical,
            metric: "hrv_rmssd_ms".into(),
            value: 22.5,
            threshold: 25.0,
            recommendation: Some("immediate_stress_protocol".into()),
            baseline_mean: None,
            baseline_sd: None,
            z_score: None,
            contributions: Vec::new(),
        }];
        event.priority = Priority::Critical;
        event
    }

    #[test]
    fn every_column_is_mapped() {
        let row = EventRow::from_event(&event()).unwrap();
        assert_eq!(row.event_id.to_string(), "6f1c2d3e-4a5b-5c6d-8e7f-0123456789ab");
        assert_eq!((row.user_id.as_str(), row.vendor, row.vendor_user_id.as_str()), ("athlete-1", "APPLE_HEALTH", "apple-user-1"));
        assert_eq!(row.source_device.as_deref(), Some("Apple Watch"));
        assert_eq!(row.kind, "SLEEP");
        assert_eq!(row.measured_at.to_rfc3339(), "2025-11-26T00:00:00+00:00");
        assert_eq!(row.measured_until.unwrap().timestamp_millis(), 1_764_142_200_000);
        assert_eq!(row.local_date, NaiveDate::from_ymd_opt(2026, 11, 26));
        assert_eq!(row.received_at.timestamp_millis(), 1_764_142_260_123, "milliseconds are kept");
        assert_eq!((row.hrv_rmssd_ms, row.hrv_sdnn_ms), (Some(22.5), None));
        assert_eq!(row.priority, "CRITICAL");
        assert_eq!(row.trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!((row.source_topic.as_str(), row.source_partition, row.source_offset), ("raw-webhooks", 3, 1234));
        assert_eq!(
            row.triggers,
            serde_json::json!([{
                "trigger_type": "URGENT_INTERVENTION", "severity": "CRITICAL", "metric": "hrv_rmssd_ms",
                "value": 22.5, "threshold": 25.0, "recommendation": "immediate_stress_protocol",
                "baseline_mean": null, "baseline_sd": null, "z_score": null, "contributions": []
            }])
        );
    }

    #[test]
    fn metrics_hold_every_non_null_metric_by_field_name() {
        let row = EventRow::from_event(&event()).unwrap();
        assert_eq!(
            row.metrics,
            serde_json::json!({
                "hrv_rmssd_ms": 22.5, "hrv_window": "NIGHTLY_MEAN", "heart_rate_avg_bpm": 52.0,
                "sleep_score": 81.0, "sleep_total_seconds": 25200, "steps": 0
            }),
            "nulls and the NaN efficiency are left out; a zero is kept"
        );
    }

    #[test]
    fn no_triggers_and_no_metrics_are_empty_documents() {
        let mut bare = event();
        bare.triggers.clear();
        for name in METRIC_FIELDS {
            let Value::Object(mut fields) = serde_json::to_value(&bare).unwrap() else { unreachable!() };
            fields.insert(name.to_owned(), Value::Null);
            bare = serde_json::from_value(Value::Object(fields)).unwrap();
        }
        let row = EventRow::from_event(&bare).unwrap();
        assert_eq!((row.triggers, row.metrics), (serde_json::json!([]), serde_json::json!({})));
    }

    #[test]
    fn rows_cover_every_event_field() {
        // `lineage` feeds the source_* columns.
        const OTHER: [&str; 1] = ["lineage"];
        let Value::Object(fields) = serde_json::to_value(event()).unwrap() else { unreachable!() };
        for field in fields.keys() {
            let known = METRIC_FIELDS.contains(&field.as_str()) || COLUMNS.contains(&field.as_str()) || OTHER.contains(&field.as_str());
            assert!(known, "event field `{field}` is neither a column nor a metric: decide where it goes");
        }
    }

    #[test]
    fn broken_contracts_are_row_errors() {
        let mut bad = event();
        bad.event_id = "not-a-uuid".into();
        assert_eq!(EventRow::from_event(&bad), Err(RowError::EventId("not-a-uuid".into())));
        let mut bad = event();
        bad.local_date = Some("26/11/2026".into());
        assert_eq!(EventRow::from_event(&bad), Err(RowError::LocalDate("26/11/2026".into())));
        let mut bad = event();
        bad.measured_at = i64::MAX;
        assert!(matches!(EventRow::from_event(&bad), Err(RowError::Instant { field: "measured_at", .. })));
    }
}
