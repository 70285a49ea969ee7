//! An event's verdict: every trigger the rules raise, and the `priority` header the policy draws
//! from them. One function, called by the pipeline for each event and by `evaluate` for each
//! synthetic night, so the figures in SIGNAL.md are the streaming path's own.
//!
//! The triggers are the same under every policy: the fixed rMSSD limits stay in `triggers` (they
//! are the existing system's rule, and the only judgement possible for a new person). What the
//! policy changes is which of them may raise the header (see [`PriorityPolicy`]).

use super::baseline::{self, BaselineState};
use super::store::KeyValueStore;
use super::triggers;
use crate::event::{BiometricEvent, Priority, Trigger};
use crate::topology::{BaselineParams, PriorityPolicy, ThresholdParams};

/// Judges `event`: sets its triggers (highest severity first) and its priority. `baseline` is the
/// baseline store and rule when the topology has one (the store is updated with the event).
pub fn judge(
    event: &mut BiometricEvent,
    thresholds: &ThresholdParams,
    baseline: Option<(&mut dyn KeyValueStore<BaselineState>, &BaselineParams)>,
) {
    let mut raised = triggers::threshold_triggers(event, thresholds);
    raised.extend(triggers::observation_triggers(event));
    let mut policy = PriorityPolicy::Fixed;
    let mut established = false;
    if let Some((store, params)) = baseline {
        let assessment = baseline::update_and_judge(store, event, params);
        raised.extend(assessment.triggers);
        if let Some(illness) = &params.illness {
            raised.extend(super::illness::update_and_judge(store, event, params, illness));
        }
        policy = params.priority_policy;
        established = assessment.established;
    }
    triggers::attach(event, raised);
    event.priority = priority(&event.triggers, policy, established);
}

/// The header a policy draws from an event's triggers. Under `personal`, once the person has a
/// baseline, a fixed-limit trigger on its own no longer raises it.
pub fn priority(raised: &[Trigger], policy: PriorityPolicy, established: bool) -> Priority {
    match policy {
        PriorityPolicy::Fixed => Priority::from_triggers(raised),
        PriorityPolicy::Personal if !established => Priority::from_triggers(raised),
        PriorityPolicy::Personal => raised
            .iter()
            .filter(|trigger| !triggers::is_fixed_limit(&trigger.trigger_type))
            .map(|trigger| Priority::from(trigger.severity))
            .max()
            .unwrap_or(Priority::Normal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Severity, Vendor};
    use crate::processor::store::MemoryStore;
    use crate::vendors::{RawInput, base_event};

    fn night(day: i64, rmssd: f64) -> BiometricEvent {
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
        let mut event = base_event(&input, EventKind::Sleep, &format!("night-{day}"), "senior", day * 86_400_000);
        event.hrv_rmssd_ms = Some(rmssd);
        event
    }

    fn run(policy: PriorityPolicy, nights: impl Iterator<Item = (i64, f64)>) -> Vec<BiometricEvent> {
        let params = BaselineParams { priority_policy: policy, ..BaselineParams::default() };
        let mut store = MemoryStore::<BaselineState>::default();
        nights
            .map(|(day, rmssd)| {
                let mut event = night(day, rmssd);
                judge(&mut event, &ThresholdParams::default(), Some((&mut store, &params)));
                event
            })
            .collect()
    }

    /// A person whose HRV is naturally around 28 ms: the fixed limits fire every night.
    fn low_but_steady() -> impl Iterator<Item = (i64, f64)> {
        (0..60).map(|day| (day, if day % 2 == 0 { 26.0 } else { 30.0 }))
    }

    #[test]
    fn personal_policy_lets_fixed_limits_raise_the_header_only_until_a_baseline_exists() {
        let events = run(PriorityPolicy::Personal, low_but_steady());
        assert!(events.iter().all(|e| e.triggers.iter().any(|t| t.trigger_type == triggers::STRESS_INTERVENTION)), "triggers unchanged");
        let high: Vec<usize> = (0..events.len()).filter(|i| events[*i].priority == Priority::High).collect();
        let established = (BaselineParams::default().min_history_days + BaselineParams::default().min_recent_readings) as usize;
        assert_eq!(high, (0..established - 1).collect::<Vec<_>>(), "HIGH only before the baseline");
    }

    #[test]
    fn fixed_policy_keeps_todays_header() {
        let events = run(PriorityPolicy::Fixed, low_but_steady());
        assert!(events.iter().all(|e| e.priority == Priority::High));
    }

    #[test]
    fn a_personal_trigger_still_raises_the_header_and_observations_always_do() {
        let drop = low_but_steady().chain((60..67).map(|day| (day, 15.0)));
        let last = run(PriorityPolicy::Personal, drop).pop().unwrap();
        assert!(last.triggers.iter().any(|t| t.trigger_type == baseline::HRV_BELOW_BASELINE));
        assert_eq!(last.priority, Priority::Medium, "from the personal trigger (MEDIUM since v2), not the CRITICAL fixed one");
        assert_eq!(last.triggers[0].severity, Severity::Critical, "the fixed trigger is still there, first");
        let observation = Trigger { trigger_type: triggers::IRREGULAR_RHYTHM.into(), severity: Severity::High, ..last.triggers[0].clone() };
        assert_eq!(priority(&[observation], PriorityPolicy::Personal, true), Priority::High);
    }
}
