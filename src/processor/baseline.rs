//! Personal HRV baselines: is this person's recent HRV low *for them*?
//!
//! Method (Plews et al. 2012, 2013; Buchheit 2014; as used by HRV4Training and Elite HRV):
//! HRV is analysed as ln(value) because it is right-skewed. Per day we keep the mean of that day's
//! ln readings. The **recent** value is the mean of the daily means over the last `recent_days`
//! days (7) ending at the reading's day; the **baseline** is the mean and sample SD of the daily
//! means over the `baseline_days` days (60) *before* the recent window, so a sustained drop does
//! not pull its own reference down. The normal band is baseline mean ± `band_sd` × SD (0.5 SD:
//! the "smallest worthwhile change"). When the recent mean falls below the band, the event gets
//! `HRV_BELOW_BASELINE` (HIGH) with the baseline mean, SD and z-score.
//!
//! It judges only with enough data: at least `min_recent_readings` days with readings in the
//! recent window and `min_history_days` days with readings in the baseline window. State stays
//! small — one (sum, count) per day for at most `baseline_days + recent_days` days per
//! (user, metric, source) — and a late or out-of-order reading updates its own day.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::store::KeyValueStore;
use crate::event::{BiometricEvent, Severity, Trigger};
use crate::topology::BaselineParams;

pub const HRV_BELOW_BASELINE: &str = "HRV_BELOW_BASELINE";

/// Lower bound on the baseline SD (ln units), so a perfectly flat history does not turn every
/// tiny dip into a trigger.
const MIN_SD: f64 = 0.01;

/// Daily aggregates of ln(HRV) for one (user, metric, source).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BaselineState {
    /// Day number (days since 1970-01-01) -> (sum of ln values, count).
    pub days: BTreeMap<i32, (f64, u32)>,
}

/// The outcome of judging one day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    pub recent_mean: f64,
    pub baseline_mean: f64,
    pub baseline_sd: f64,
    pub lower_band: f64,
    pub z_score: f64,
}

impl BaselineState {
    /// Adds one reading (ms) on `day` and forgets days too old to matter for the newest day.
    pub fn add(&mut self, day: i32, value_ms: f64, params: &BaselineParams) {
        let entry = self.days.entry(day).or_insert((0.0, 0));
        entry.0 += value_ms.ln();
        entry.1 += 1;
        let newest = *self.days.keys().next_back().expect("just inserted");
        let keep_from = newest - (params.baseline_days + params.recent_days) as i32 + 1;
        self.days = self.days.split_off(&keep_from);
    }

    fn daily_means(&self, from: i32, to_inclusive: i32) -> Vec<f64> {
        self.days.range(from..=to_inclusive).map(|(_, (sum, count))| sum / f64::from(*count)).collect()
    }

    /// Judges the recent window ending at `day`; `None` while there is not enough data.
    pub fn judge(&self, day: i32, params: &BaselineParams) -> Option<Judgement> {
        let recent_from = day - params.recent_days as i32 + 1;
        let recent = self.daily_means(recent_from, day);
        let baseline = self.daily_means(recent_from - params.baseline_days as i32, recent_from - 1);
        if recent.len() < params.min_recent_readings as usize || baseline.len() < params.min_history_days.max(2) as usize {
            return None;
        }
        let recent_mean = mean(&recent);
        let baseline_mean = mean(&baseline);
        let baseline_sd = sample_sd(&baseline, baseline_mean).max(MIN_SD);
        let lower_band = baseline_mean - params.band_sd * baseline_sd;
        Some(Judgement { recent_mean, baseline_mean, baseline_sd, lower_band, z_score: (recent_mean - baseline_mean) / baseline_sd })
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn sample_sd(values: &[f64], mean: f64) -> f64 {
    let n = values.len() as f64;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

/// The HRV values of an event that baselines track, with the metric name of each.
fn hrv_values(event: &BiometricEvent) -> impl Iterator<Item = (&'static str, f64)> {
    [("hrv_rmssd_ms", event.hrv_rmssd_ms), ("hrv_sdnn_ms", event.hrv_sdnn_ms)]
        .into_iter()
        .filter_map(|(metric, value)| value.filter(|v| v.is_finite() && *v > 0.0).map(|v| (metric, v)))
}

/// Store key: one baseline per user, metric and source (vendor, device and HRV window: a nightly
/// mean and a spot reading are not the same series).
pub fn key(event: &BiometricEvent, metric: &str) -> String {
    let window = event.hrv_window.map_or("UNKNOWN", |w| match w {
        crate::event::HrvWindow::NightlyMean => "NIGHTLY_MEAN",
        crate::event::HrvWindow::DailyMean => "DAILY_MEAN",
        crate::event::HrvWindow::SessionMean => "SESSION_MEAN",
        crate::event::HrvWindow::Spot => "SPOT",
    });
    format!("{}|{}|{}|{}|{}", event.user_id, metric, event.vendor.symbol(), event.source_device.as_deref().unwrap_or("-"), window)
}

/// The day a reading belongs to: the vendor's local date when given, else the UTC date.
pub fn day_of(event: &BiometricEvent) -> i32 {
    let from_local = event.local_date.as_deref().and_then(|date| chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok());
    let date = from_local
        .unwrap_or_else(|| chrono::DateTime::from_timestamp_millis(event.measured_at).map_or(chrono::NaiveDate::MIN, |t| t.date_naive()));
    (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

/// Adds the event's HRV readings to its baselines and returns the triggers they raise.
pub fn update_and_judge(store: &mut dyn KeyValueStore<BaselineState>, event: &BiometricEvent, params: &BaselineParams) -> Vec<Trigger> {
    let day = day_of(event);
    let mut triggers = Vec::new();
    for (metric, value) in hrv_values(event) {
        let key = key(event, metric);
        let mut state = store.get(&key).cloned().unwrap_or_default();
        state.add(day, value, params);
        if let Some(judgement) = state.judge(day, params)
            && judgement.recent_mean < judgement.lower_band
        {
            triggers.push(Trigger {
                trigger_type: HRV_BELOW_BASELINE.to_owned(),
                severity: Severity::High,
                metric: format!("ln_{metric}_{}d_mean", params.recent_days),
                value: judgement.recent_mean,
                threshold: judgement.lower_band,
                recommendation: Some("recovery_focus".to_owned()),
                baseline_mean: Some(judgement.baseline_mean),
                baseline_sd: Some(judgement.baseline_sd),
                z_score: Some(judgement.z_score),
            });
        }
        store.put(key, state);
    }
    triggers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> BaselineParams {
        BaselineParams::default()
    }

    #[test]
    fn needs_history_before_judging() {
        let mut state = BaselineState::default();
        for day in 0..20 {
            state.add(day, 50.0, &params());
        }
        assert!(state.judge(19, &params()).is_none(), "13 baseline days < 14");
        state.add(20, 50.0, &params());
        assert!(state.judge(20, &params()).is_some(), "14 baseline days and 7 recent");
        let mut sparse = BaselineState::default();
        for day in (0..14).chain([19, 20]) {
            sparse.add(day, 50.0, &params());
        }
        assert!(sparse.judge(20, &params()).is_none(), "2 recent readings < 3");
    }

    #[test]
    fn a_drop_below_half_an_sd_is_below_the_band() {
        let mut state = BaselineState::default();
        // 60 baseline days alternating 45/55 ms (ln SD ~0.1), then 7 days at 35 ms.
        for day in 0..60 {
            state.add(day, if day % 2 == 0 { 45.0 } else { 55.0 }, &params());
        }
        for day in 60..67 {
            state.add(day, 35.0, &params());
        }
        let judgement = state.judge(66, &params()).unwrap();
        assert!(judgement.recent_mean < judgement.lower_band, "{judgement:?}");
        assert!(judgement.z_score < -2.0, "{judgement:?}");
    }

    #[test]
    fn late_readings_update_their_own_day_and_old_days_are_forgotten() {
        let mut state = BaselineState::default();
        state.add(100, 50.0, &params());
        state.add(90, 40.0, &params());
        assert_eq!(state.days.get(&90), Some(&(40f64.ln(), 1)));
        state.add(100, 60.0, &params());
        assert_eq!(state.days.get(&100).unwrap().1, 2);
        state.add(200, 50.0, &params());
        assert!(state.days.keys().all(|d| *d > 200 - 67), "{:?}", state.days.keys().collect::<Vec<_>>());
    }
}
