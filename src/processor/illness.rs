//! `ILLNESS_RISK`: several signals leaving the person's normal range together, in the directions
//! an infection moves them — resting HR up, HRV down, respiratory rate up, skin temperature up.
//!
//! Why several signals: one signal alone is noisy (a hard workout or a drink lowers HRV and
//! raises resting HR for a night), while illness moves all of them. Alavi et al. 2022 (resting
//! HR alerts, 80 % of COVID-19 cases caught, a median of 3 days before symptoms), Mason et al.
//! 2022 (TemPredict: temperature) and Natarajan et al. 2020 (respiratory rate) describe the
//! directions; adding temperature to heart-rate signals improved the AUC.
//!
//! Method: each signal has its own personal baseline (the HRV baseline's series for ln rMSSD,
//! and one series per other signal, kept like it: per user, source and device, each record
//! counted once, corrections replacing). The recent mean over `recent_days` (3: illness shows in
//! days, not weeks) is compared with the 60-day baseline before it as a z-score, signed so that
//! positive is the illness direction. The trigger fires when at least `min_signals` signals are
//! at `signal_z` or beyond; it carries every present signal's signed z-score, and its value is
//! their mean.

use super::baseline::{BaselineState, contribution_id, day_of, key};
use super::store::KeyValueStore;
use crate::event::{BiometricEvent, Contribution, EventKind, Severity, Trigger};
use crate::topology::{BaselineParams, IllnessParams};

pub const ILLNESS_RISK: &str = "ILLNESS_RISK";

/// Each signal, and the sign of its change in illness. HRV's series is the baseline module's.
const SIGNALS: [(&str, f64); 4] =
    [("hrv_rmssd_ms", -1.0), ("resting_heart_rate_bpm", 1.0), ("respiratory_rate_bpm", 1.0), ("temperature_deviation_celsius", 1.0)];

fn value(event: &BiometricEvent, signal: &str) -> Option<f64> {
    let value = match signal {
        "resting_heart_rate_bpm" => event.resting_heart_rate_bpm,
        "respiratory_rate_bpm" => event.respiratory_rate_bpm,
        "temperature_deviation_celsius" => event.temperature_deviation_celsius,
        _ => None,
    };
    value.filter(|v| v.is_finite())
}

/// The short window the signals are judged on, against the HRV baseline's 60 days.
fn window(illness: &IllnessParams, baseline: &BaselineParams) -> BaselineParams {
    BaselineParams {
        recent_days: illness.recent_days,
        min_recent_readings: illness.recent_days,
        min_history_days: illness.min_history_days,
        confirm_days: 1,
        widen_short_history: false,
        ..*baseline
    }
}

/// Adds the event's non-HRV signals to their series (the HRV baseline has added its own) and
/// judges all of them together. Call after `baseline::update_and_judge`.
pub fn update_and_judge(
    store: &mut dyn KeyValueStore<BaselineState>,
    event: &BiometricEvent,
    baseline: &BaselineParams,
    illness: &IllnessParams,
) -> Option<Trigger> {
    if event.kind == EventKind::Deleted {
        return None; // the baseline module withdrew the record from every series of the user
    }
    let (day, id) = (day_of(event), contribution_id(&event.event_id));
    let judged_on = window(illness, baseline);
    let mut contributions = Vec::new();
    for (signal, direction) in SIGNALS {
        let key = key(event, signal);
        // Each series is changed in place (no copy of it): this runs for every record.
        let state: Option<&BaselineState> = if signal == "hrv_rmssd_ms" {
            if event.hrv_rmssd_ms.is_none() {
                continue;
            }
            store.get(&key) // the baseline module keeps this series
        } else {
            match value(event, signal) {
                Some(value) => {
                    let state = store.get_or_default(key);
                    state.add_value(day, id, value, baseline);
                    Some(state)
                }
                None => {
                    super::baseline::take_out(store, &key, id);
                    None
                }
            }
        };
        if let Some(judgement) = state.and_then(|state| state.judge(day, &judged_on)) {
            contributions.push(Contribution { signal: signal.to_owned(), z_score: direction * judgement.z_score });
        }
    }
    let deviating = contributions.iter().filter(|c| c.z_score >= illness.signal_z).count();
    if deviating < illness.min_signals as usize {
        return None;
    }
    let score = contributions.iter().map(|c| c.z_score).sum::<f64>() / contributions.len() as f64;
    Some(Trigger {
        trigger_type: ILLNESS_RISK.to_owned(),
        severity: Severity::High,
        metric: format!("illness_signals_{}d", illness.recent_days),
        value: score,
        threshold: illness.signal_z,
        recommendation: Some("illness_check".to_owned()),
        baseline_mean: None,
        baseline_sd: None,
        z_score: Some(score),
        contributions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Vendor;
    use crate::processor::baseline;
    use crate::processor::store::MemoryStore;
    use crate::vendors::{RawInput, base_event};

    fn night(day: i64, hrv: f64, rhr: f64, resp: f64, temp: f64) -> BiometricEvent {
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
        let mut event = base_event(&input, EventKind::Sleep, &format!("n{day}"), "u", day * 86_400_000);
        (event.hrv_rmssd_ms, event.resting_heart_rate_bpm, event.respiratory_rate_bpm, event.temperature_deviation_celsius) =
            (Some(hrv), Some(rhr), Some(resp), Some(temp));
        event
    }

    fn judge(store: &mut MemoryStore<BaselineState>, event: &BiometricEvent) -> Option<Trigger> {
        let params = BaselineParams::default();
        baseline::update_and_judge(store, event, &params);
        update_and_judge(store, event, &params, &IllnessParams::default())
    }

    /// 40 steady nights (a weekly wobble in every signal), then `days` of `change`.
    fn run(change: impl Fn(i64) -> (f64, f64, f64, f64)) -> Vec<Option<Trigger>> {
        let mut store = MemoryStore::default();
        (0..46)
            .map(|day| {
                let wobble = [0.0, 1.0, -1.0, 0.5, -0.5, 1.0, -1.0][day as usize % 7];
                let (dh, dr, dp, dt) = if day >= 40 { change(day) } else { (0.0, 0.0, 0.0, 0.0) };
                let event = night(
                    day,
                    (50f64.ln() + 0.1 * wobble + dh).exp(),
                    55.0 + 2.0 * wobble + dr,
                    14.0 + 0.4 * wobble + dp,
                    0.2 * wobble + dt,
                );
                judge(&mut store, &event)
            })
            .collect()
    }

    #[test]
    fn signals_moving_together_fire_with_their_z_scores() {
        let verdicts = run(|_| (-0.2, 6.0, 1.2, 0.6));
        assert!(verdicts[..40].iter().all(Option::is_none), "quiet while steady");
        let fired = verdicts[41..].iter().flatten().next().expect("fires within two days");
        assert_eq!(fired.trigger_type, ILLNESS_RISK);
        assert_eq!(fired.contributions.len(), 4);
        assert!(fired.contributions.iter().all(|c| c.z_score > 1.0), "{:?}", fired.contributions);
    }

    #[test]
    fn one_signal_alone_or_the_wrong_direction_does_not() {
        assert!(run(|_| (0.0, 8.0, 0.0, 0.0)).iter().all(Option::is_none), "resting HR alone");
        assert!(run(|_| (0.3, -6.0, -1.2, -0.6)).iter().all(Option::is_none), "everything better than usual");
    }
}
