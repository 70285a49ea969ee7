//! Fixed HRV thresholds: the existing system's stress triggers.
//!
//! rMSSD below 25 ms is CRITICAL (`URGENT_INTERVENTION`, recommend `immediate_stress_protocol`);
//! below 40 ms is HIGH (`STRESS_INTERVENTION`, recommend `breathing_exercise`). The limits are
//! strict: exactly 25.0 ms is HIGH, exactly 40.0 ms is no trigger.
//!
//! SDNN (Apple Watch) is a different statistic — usually larger than rMSSD for the same heart,
//! and from short spot readings — so it is never compared with the rMSSD limits. It has its own
//! limits, off unless the topology turns them on.

use crate::event::{BiometricEvent, Priority, Severity, Trigger};
use crate::topology::ThresholdParams;

pub const URGENT_INTERVENTION: &str = "URGENT_INTERVENTION";
pub const STRESS_INTERVENTION: &str = "STRESS_INTERVENTION";
pub const SDNN_URGENT_INTERVENTION: &str = "SDNN_URGENT_INTERVENTION";
pub const SDNN_STRESS_INTERVENTION: &str = "SDNN_STRESS_INTERVENTION";
/// A wearable's irregular-rhythm notification (a possible atrial fibrillation): HIGH, for a
/// clinician's follow-up, never a CRITICAL alarm from a screening feature.
pub const IRREGULAR_RHYTHM: &str = "IRREGULAR_RHYTHM";

/// Whether a trigger type is one of the fixed HRV limits (the rules that judge everyone alike).
pub fn is_fixed_limit(trigger_type: &str) -> bool {
    [URGENT_INTERVENTION, STRESS_INTERVENTION, SDNN_URGENT_INTERVENTION, SDNN_STRESS_INTERVENTION].contains(&trigger_type)
}

/// The trigger a device-detected observation raises: an irregular-rhythm notification (Apple
/// Watch IRN, Fitbit IRN, via Terra's `health_observation`) is what a coach must see first.
pub fn observation_triggers(event: &BiometricEvent) -> Vec<Trigger> {
    let irregular_rhythm = event.kind == crate::event::EventKind::HealthObservation
        && event.observation_category.as_deref() == Some("device_event")
        && event
            .observation_type
            .as_deref()
            .is_some_and(|kind| kind.contains("irregular") && (kind.contains("rhythm") || kind.contains("heart")));
    if irregular_rhythm {
        // A presence, not a measurement: value and threshold are 1 (observed / observed at all).
        vec![trigger(IRREGULAR_RHYTHM, Severity::High, "observation_type", 1.0, 1.0, "medical_follow_up")]
    } else {
        Vec::new()
    }
}

fn trigger(trigger_type: &str, severity: Severity, metric: &str, value: f64, threshold: f64, recommendation: &str) -> Trigger {
    Trigger {
        trigger_type: trigger_type.to_owned(),
        severity,
        metric: metric.to_owned(),
        value,
        threshold,
        recommendation: Some(recommendation.to_owned()),
        baseline_mean: None,
        baseline_sd: None,
        z_score: None,
        contributions: Vec::new(),
    }
}

/// The threshold triggers an event's HRV values raise (at most one per HRV method).
pub fn threshold_triggers(event: &BiometricEvent, params: &ThresholdParams) -> Vec<Trigger> {
    let mut triggers = Vec::new();
    if let Some(rmssd) = event.hrv_rmssd_ms.filter(|v| v.is_finite()) {
        if rmssd < params.rmssd_critical_below_ms {
            triggers.push(trigger(
                URGENT_INTERVENTION,
                Severity::Critical,
                "hrv_rmssd_ms",
                rmssd,
                params.rmssd_critical_below_ms,
                "immediate_stress_protocol",
            ));
        } else if rmssd < params.rmssd_high_below_ms {
            triggers.push(trigger(
                STRESS_INTERVENTION,
                Severity::High,
                "hrv_rmssd_ms",
                rmssd,
                params.rmssd_high_below_ms,
                "breathing_exercise",
            ));
        }
    }
    if params.sdnn_enabled
        && let Some(sdnn) = event.hrv_sdnn_ms.filter(|v| v.is_finite())
    {
        if sdnn < params.sdnn_critical_below_ms {
            triggers.push(trigger(
                SDNN_URGENT_INTERVENTION,
                Severity::Critical,
                "hrv_sdnn_ms",
                sdnn,
                params.sdnn_critical_below_ms,
                "immediate_stress_protocol",
            ));
        } else if sdnn < params.sdnn_high_below_ms {
            triggers.push(trigger(
                SDNN_STRESS_INTERVENTION,
                Severity::High,
                "hrv_sdnn_ms",
                sdnn,
                params.sdnn_high_below_ms,
                "breathing_exercise",
            ));
        }
    }
    triggers
}

/// Adds triggers to an event, keeps them highest severity first, and sets its priority.
pub fn attach(event: &mut BiometricEvent, triggers: impl IntoIterator<Item = Trigger>) {
    event.triggers.extend(triggers);
    event.triggers.sort_by_key(|trigger| std::cmp::Reverse(trigger.severity));
    event.priority = Priority::from_triggers(&event.triggers);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Vendor};
    use crate::vendors::{RawInput, base_event};

    fn event(rmssd: Option<f64>, sdnn: Option<f64>) -> BiometricEvent {
        let input = RawInput {
            vendor: Vendor::Terra,
            body: b"{}",
            received_at_ms: 0,
            vendor_user_id: None,
            delivery_id: None,
            trace_id: None,
            source_topic: "raw-webhooks",
            source_partition: 0,
            source_offset: 0,
        };
        let mut event = base_event(&input, EventKind::Sleep, "k", "u", 0);
        event.hrv_rmssd_ms = rmssd;
        event.hrv_sdnn_ms = sdnn;
        event
    }

    fn judged(rmssd: Option<f64>, sdnn: Option<f64>, params: &ThresholdParams) -> BiometricEvent {
        let mut e = event(rmssd, sdnn);
        let triggers = threshold_triggers(&e, params);
        attach(&mut e, triggers);
        e
    }

    #[test]
    fn rmssd_boundaries_are_strict() {
        let params = ThresholdParams::default();
        let cases = [
            (24.99, Priority::Critical, Some(URGENT_INTERVENTION)),
            (25.0, Priority::High, Some(STRESS_INTERVENTION)),
            (39.99, Priority::High, Some(STRESS_INTERVENTION)),
            (40.0, Priority::Normal, None),
            (58.0, Priority::Normal, None),
        ];
        for (value, priority, trigger_type) in cases {
            let e = judged(Some(value), None, &params);
            assert_eq!(e.priority, priority, "rMSSD {value}");
            assert_eq!(e.triggers.first().map(|t| t.trigger_type.as_str()), trigger_type, "rMSSD {value}");
        }
    }

    #[test]
    fn critical_carries_the_protocol_and_threshold() {
        let e = judged(Some(19.2), None, &ThresholdParams::default());
        let t = &e.triggers[0];
        assert_eq!((t.severity, t.metric.as_str(), t.value, t.threshold), (Severity::Critical, "hrv_rmssd_ms", 19.2, 25.0));
        assert_eq!(t.recommendation.as_deref(), Some("immediate_stress_protocol"));
        let high = judged(Some(30.0), None, &ThresholdParams::default());
        assert_eq!(high.triggers[0].recommendation.as_deref(), Some("breathing_exercise"));
    }

    #[test]
    fn sdnn_is_never_judged_by_rmssd_limits() {
        let e = judged(None, Some(18.0), &ThresholdParams::default());
        assert!(e.triggers.is_empty());
        assert_eq!(e.priority, Priority::Normal);
    }

    #[test]
    fn sdnn_has_its_own_limits_when_enabled() {
        let params = ThresholdParams { sdnn_enabled: true, ..ThresholdParams::default() };
        let e = judged(None, Some(18.0), &params);
        assert_eq!(e.triggers[0].trigger_type, SDNN_STRESS_INTERVENTION);
        assert_eq!(e.priority, Priority::High);
        assert_eq!(judged(None, Some(14.0), &params).priority, Priority::Critical);
    }

    #[test]
    fn an_irregular_rhythm_notification_is_high() {
        let mut e = event(None, None);
        e.kind = crate::event::EventKind::HealthObservation;
        e.observation_category = Some("device_event".into());
        e.observation_type = Some("irregular_heart_rhythm_event".into());
        let raised = observation_triggers(&e);
        assert_eq!(raised.len(), 1);
        assert_eq!((raised[0].trigger_type.as_str(), raised[0].severity), (IRREGULAR_RHYTHM, Severity::High));
        e.observation_type = Some("headache".into());
        e.observation_category = Some("symptom".into());
        assert!(observation_triggers(&e).is_empty());
    }

    #[test]
    fn priority_is_the_highest_severity() {
        let mut e = event(Some(30.0), None);
        let triggers = threshold_triggers(&e, &ThresholdParams::default());
        attach(&mut e, triggers);
        let critical = Trigger { severity: Severity::Critical, ..e.triggers[0].clone() };
        attach(&mut e, [critical]);
        assert_eq!(e.priority, Priority::Critical);
        assert_eq!(e.triggers[0].severity, Severity::Critical, "sorted highest first");
    }
}
