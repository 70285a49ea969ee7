//! Plausibility screening: no impossible value is ever judged, averaged or emitted.
//!
//! Signed payloads can still carry nonsense: an rMSSD of −5 or 0 ms (which the fixed limits would
//! call CRITICAL), 1e9 ms (which would sit in the person's baseline for 60 days), 1e30 steps, an
//! Apple HRV of 1e306 s (infinite once in ms). Every measurement of every event passes through
//! [`screen`] straight after normalization: a value outside the topology's range for its field, or
//! not finite, is removed and recorded as a data-quality note on the event. Thresholds, baselines
//! and de-duplication only ever see what is left.
//!
//! A record none of whose measurements survive is not data at all: [`unusable`] tells the
//! pipeline to dead-letter it (`implausible_value`) instead of emitting empty events.

use crate::event::BiometricEvent;
use crate::event::metrics::{METRICS, Slot};
use crate::event::number_text;
use crate::topology::Plausibility;

/// Removes every implausible or non-finite measurement from `event`, noting each one.
pub fn screen(event: &mut BiometricEvent, plausibility: &Plausibility) {
    for metric in METRICS {
        let value = match event.metric_slot(metric.name) {
            Some(Slot::Real(field)) => *field,
            Some(Slot::Integer(field)) => field.map(|value| value as f64),
            None => None,
        };
        let Some(value) = value else { continue };
        let (reason, expected) = if !value.is_finite() {
            ("not_finite", None)
        } else {
            match plausibility.range(metric.name).filter(|range| !range.contains(value)) {
                Some(range) => ("out_of_range", Some(format!("[{}, {}] {}", range.min, range.max, metric.unit))),
                None => continue,
            }
        };
        match event.metric_slot(metric.name) {
            Some(Slot::Real(field)) => *field = None,
            Some(Slot::Integer(field)) => *field = None,
            None => {}
        }
        crate::metrics::IMPLAUSIBLE_VALUES.with_label_values(&[metric.name, reason]).inc();
        event.note(metric.name, number_text(value), reason, expected);
    }
}

/// Whether a record's events hold nothing usable: there are events, and every one of them lost
/// all its measurements to screening (or to unrepresentable values). Events that never carried a
/// measurement (a deletion) are not unusable.
pub fn unusable(events: &[BiometricEvent]) -> bool {
    let lost_values = |event: &BiometricEvent| event.data_quality.iter().any(|note| REMOVED.contains(&note.reason.as_str()));
    !events.is_empty() && events.iter().all(|event| event.measurement_count() == 0 && lost_values(event))
}

/// The data-quality reasons that mean a value was removed (other notes, such as a time without its
/// UTC offset, describe a value that is still there).
const REMOVED: &[&str] = &["out_of_range", "not_finite", "not_an_integer"];

/// The notes of a record's events, for the dead letter's message.
pub fn describe_notes(events: &[BiometricEvent]) -> String {
    let notes: Vec<String> = events
        .iter()
        .flat_map(|event| &event.data_quality)
        .map(|note| match &note.expected {
            Some(expected) => format!("{} = {} ({}, expected {expected})", note.field, note.value, note.reason),
            None => format!("{} = {} ({})", note.field, note.value, note.reason),
        })
        .collect();
    format!("no plausible measurement: {}", notes.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Vendor};
    use crate::topology::{DEFAULT_TOPOLOGY, Topology};
    use crate::vendors::{base_event, test_support::raw_input};

    fn ranges() -> Plausibility {
        Topology::parse(DEFAULT_TOPOLOGY, "t").unwrap().plausibility
    }

    fn event() -> BiometricEvent {
        base_event(&raw_input(Vendor::Terra, b"{}"), EventKind::Sleep, "k", "u", 0)
    }

    #[test]
    fn impossible_values_are_removed_and_noted() {
        for rmssd in [-5.0, 0.0, 1e9, f64::INFINITY, f64::NAN] {
            let mut e = event();
            e.hrv_rmssd_ms = Some(rmssd);
            e.heart_rate_avg_bpm = Some(55.0);
            screen(&mut e, &ranges());
            assert_eq!(e.hrv_rmssd_ms, None, "{rmssd}");
            assert_eq!(e.heart_rate_avg_bpm, Some(55.0));
            assert_eq!(e.data_quality.len(), 1);
            assert_eq!(e.data_quality[0].field, "hrv_rmssd_ms");
            assert!(!unusable(std::slice::from_ref(&e)), "the heart rate is still usable");
        }
        let mut e = event();
        e.hrv_rmssd_ms = Some(1e9);
        screen(&mut e, &ranges());
        let note = &e.data_quality[0];
        assert_eq!((note.value.as_str(), note.reason.as_str()), ("1000000000", "out_of_range"));
        assert_eq!(note.expected.as_deref(), Some("[1, 300] ms"));
    }

    #[test]
    fn bounds_are_inclusive_and_integers_are_screened() {
        let mut e = event();
        e.hrv_rmssd_ms = Some(1.0);
        e.hrv_sdnn_ms = Some(300.0);
        e.steps = Some(200_001);
        e.sleep_total_seconds = Some(86_400);
        screen(&mut e, &ranges());
        assert_eq!((e.hrv_rmssd_ms, e.hrv_sdnn_ms, e.steps, e.sleep_total_seconds), (Some(1.0), Some(300.0), None, Some(86_400)));
    }

    #[test]
    fn a_record_with_nothing_plausible_is_unusable() {
        let mut e = event();
        e.hrv_rmssd_ms = Some(-5.0);
        screen(&mut e, &ranges());
        assert!(unusable(std::slice::from_ref(&e)));
        assert!(describe_notes(std::slice::from_ref(&e)).contains("hrv_rmssd_ms = -5 (out_of_range"));
        assert!(!unusable(&[event()]), "an event that never had a measurement (a deletion) is fine");
        assert!(!unusable(&[]));
    }
}
