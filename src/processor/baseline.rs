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
//! small — the contributions of at most `baseline_days + recent_days` days per
//! (user, metric, source) — and a late or out-of-order reading updates its own day.
//!
//! **A day's value is the mean of its records, each counted once.** Contributions are kept per
//! record (a 64-bit id derived from the event id), so a corrected record (same event id, new
//! value: Terra re-sends, Oura `update`) *replaces* its contribution instead of being averaged
//! with the old one, a version that lost its value (now implausible, or absent) withdraws it, and
//! a DELETED event removes the deleted record's contribution. The baseline's later verdicts then
//! follow the corrected data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::store::{KeyValueStore, key_part};
use crate::event::{BiometricEvent, EventKind, Trigger};
use crate::topology::BaselineParams;

pub const HRV_BELOW_BASELINE: &str = "HRV_BELOW_BASELINE";

/// Lower bound on the baseline SD (ln units), so a perfectly flat history does not turn every
/// tiny dip into a trigger.
const MIN_SD: f64 = 0.01;

/// The HRV metrics baselines track.
const METRICS: [&str; 2] = ["hrv_rmssd_ms", "hrv_sdnn_ms"];

/// Daily contributions (ln HRV, or the value as it is) for one (user, metric, source).
///
/// Held as one vector of `(day, record id, value)` sorted by day: one allocation per series
/// instead of a tree node per few days and a vector per day. The instance holding 100 000 users'
/// 30-day baselines went from 399 to 231 MB with it (`scripts/bench-processor`).
/// Written to the changelog in the shape it always had: `{"days":{"<day>":[[id, value], …]}}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(from = "Stored")]
pub struct BaselineState {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    /// Days since 1970-01-01.
    day: i32,
    record: u64,
    value: f64,
}

/// The stored shape: day number -> that day's records.
#[derive(Deserialize)]
struct Stored {
    days: BTreeMap<i32, StoredDay>,
}

/// What a stored day may look like: the contributions, or (state written before contributions
/// were kept per record) a `[sum of ln, count]` pair, read as one contribution of the day's mean.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredDay {
    Contributions(Vec<(u64, f64)>),
    Aggregate(f64, u32),
}

impl From<Stored> for BaselineState {
    fn from(stored: Stored) -> BaselineState {
        let mut entries = Vec::new();
        for (day, contributions) in stored.days {
            match contributions {
                StoredDay::Contributions(list) => {
                    entries.extend(list.into_iter().map(|(record, value)| Entry { day, record, value }));
                }
                StoredDay::Aggregate(sum, count) => entries.push(Entry { day, record: 0, value: sum / f64::from(count.max(1)) }),
            }
        }
        BaselineState { entries } // sorted: the map's days are
    }
}

impl Serialize for BaselineState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut state = serializer.serialize_struct("BaselineState", 1)?;
        state.serialize_field("days", &DaysView(&self.entries))?;
        state.end()
    }
}

/// The entries as the stored map of days, written without building it.
struct DaysView<'a>(&'a [Entry]);

impl Serialize for DaysView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for day in self.0.chunk_by(|a, b| a.day == b.day) {
            map.serialize_entry(&day[0].day, &ContributionsView(day))?;
        }
        map.end()
    }
}

struct ContributionsView<'a>(&'a [Entry]);

impl Serialize for ContributionsView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|entry| (entry.record, entry.value)))
    }
}

fn mean_of(day: &[Entry]) -> f64 {
    day.iter().map(|entry| entry.value).sum::<f64>() / day.len() as f64
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
    /// Sets record `id`'s reading (ms) on `day`, replacing any earlier contribution of that record
    /// (on any day), and forgets days too old to matter for the newest day.
    pub fn add(&mut self, day: i32, id: u64, value_ms: f64, params: &BaselineParams) {
        self.add_value(day, id, value_ms.ln(), params);
    }

    /// As [`BaselineState::add`], for a signal kept as it is (resting HR, respiratory rate,
    /// temperature deviation are near-normal; only HRV is analysed as ln).
    pub fn add_value(&mut self, day: i32, id: u64, value: f64, params: &BaselineParams) {
        self.remove(id);
        // After the day's earlier records, as they arrived.
        let at = self.entries.partition_point(|entry| entry.day <= day);
        self.entries.insert(at, Entry { day, record: id, value });
        let newest = self.entries.last().expect("just inserted").day;
        let keep_from = newest - (params.baseline_days + params.recent_days) as i32 + 1;
        let too_old = self.entries.partition_point(|entry| entry.day < keep_from);
        self.entries.drain(..too_old);
    }

    /// Whether record `id` has a contribution.
    pub fn contains(&self, id: u64) -> bool {
        self.entries.iter().any(|entry| entry.record == id)
    }

    /// Takes record `id`'s contribution out; whether it had one.
    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.record != id);
        self.entries.len() != before
    }

    /// Whether no day has a contribution.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The contributions of `day`: (record id, value) each, in arrival order.
    pub fn contributions_on(&self, day: i32) -> impl Iterator<Item = (u64, f64)> + '_ {
        self.on(day).iter().map(|entry| (entry.record, entry.value))
    }

    fn on(&self, day: i32) -> &[Entry] {
        let from = self.entries.partition_point(|entry| entry.day < day);
        let to = self.entries.partition_point(|entry| entry.day <= day);
        &self.entries[from..to]
    }

    /// The day's value: the mean ln of its records.
    pub fn day_value(&self, day: i32) -> Option<f64> {
        let records = self.on(day);
        (!records.is_empty()).then(|| mean_of(records))
    }

    fn daily_means(&self, from: i32, to_inclusive: i32) -> Vec<f64> {
        let start = self.entries.partition_point(|entry| entry.day < from);
        let end = self.entries.partition_point(|entry| entry.day <= to_inclusive);
        self.entries[start..end].chunk_by(|a, b| a.day == b.day).map(mean_of).collect()
    }

    /// Days with at least one contribution.
    fn day_count(&self) -> usize {
        self.entries.chunk_by(|a, b| a.day == b.day).count()
    }

    /// Whether the series holds enough history for a person to "have a baseline": as many days
    /// as a first judgement needs. It stays true through a short gap in readings, so a person with
    /// months of history is not judged by the fixed limits again after a week without the watch.
    pub fn established(&self, params: &BaselineParams) -> bool {
        self.day_count() >= (params.min_history_days.max(2) + params.min_recent_readings) as usize
    }

    /// Whether the recent mean ending at `day` and at each of the `confirm_days - 1` days before it
    /// lay below the band, judged on the data now present; the judgement of `day` when it did.
    pub fn below_band(&self, day: i32, params: &BaselineParams) -> Option<Judgement> {
        let judgement = self.judge(day, params).filter(|j| j.recent_mean < j.lower_band)?;
        let confirmed =
            (1..params.confirm_days as i32).all(|back| self.judge(day - back, params).is_some_and(|j| j.recent_mean < j.lower_band));
        confirmed.then_some(judgement)
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
        let band = if params.widen_short_history { widened_band(params, recent.len(), baseline.len()) } else { params.band_sd };
        let lower_band = baseline_mean - band * baseline_sd;
        Some(Judgement { recent_mean, baseline_mean, baseline_sd, lower_band, z_score: (recent_mean - baseline_mean) / baseline_sd })
    }
}

/// The band (in baseline SDs) for a judgement on `recent` recent days and `history` baseline days.
///
/// `band_sd` is the band for a full window: `recent_days` recent and `baseline_days` baseline
/// days. With fewer, the difference between the two means is noisier (its variance is
/// σ²·(1/recent + 1/history)) and σ itself is an estimate from `history` days (a Student t, not a
/// normal quantile). The band is widened so a judgement on a short history is as sure as one on
/// a full one: the same quantile, taken from t with `history − 1` degrees of freedom
/// (Cornish–Fisher expansion), times the standard error of the difference. This is what lets a
/// personal judgement start after a week or two without a burst of false alarms.
fn widened_band(params: &BaselineParams, recent: usize, history: usize) -> f64 {
    let standard_error = |r: f64, h: f64| (1.0 / r + 1.0 / h).sqrt();
    let full = standard_error(f64::from(params.recent_days), f64::from(params.baseline_days));
    let z = params.band_sd / full;
    let nu = (history.max(2) - 1) as f64;
    let t = z + (z.powi(3) + z) / (4.0 * nu) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * nu * nu);
    t * standard_error(recent as f64, history as f64)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn sample_sd(values: &[f64], mean: f64) -> f64 {
    let n = values.len() as f64;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

/// The value of HRV metric `metric` of an event, if it carries a usable one. Plausibility
/// screening has already removed implausible values; this only refuses what `ln` cannot take.
fn hrv_value(event: &BiometricEvent, metric: &str) -> Option<f64> {
    let value = match metric {
        "hrv_rmssd_ms" => event.hrv_rmssd_ms,
        _ => event.hrv_sdnn_ms,
    };
    value.filter(|v| v.is_finite() && *v > 0.0)
}

/// The prefix every baseline key of `user_id` starts with.
pub fn user_prefix(user_id: &str) -> String {
    format!("{}|", key_part(user_id))
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
    let device = key_part(event.source_device.as_deref().unwrap_or("-"));
    format!("{}{metric}|{}|{device}|{window}", user_prefix(&event.user_id), event.vendor.symbol())
}

/// The 64-bit id of a record's contribution: from its event id (a UUID, whose bits are already a
/// hash), stable across processes and releases.
pub fn contribution_id(event_id: &str) -> u64 {
    match uuid::Uuid::parse_str(event_id) {
        Ok(uuid) => {
            let (high, low) = uuid.as_u64_pair();
            high ^ low
        }
        Err(_) => {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(event_id.as_bytes());
            u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
        }
    }
}

/// The day a reading belongs to: the vendor's local date when given, else the UTC date.
pub fn day_of(event: &BiometricEvent) -> i32 {
    let from_local = event.local_date.as_deref().and_then(|date| chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok());
    let date = from_local
        .unwrap_or_else(|| chrono::DateTime::from_timestamp_millis(event.measured_at).map_or(chrono::NaiveDate::MIN, |t| t.date_naive()));
    (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

/// What the baselines made of one event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    pub triggers: Vec<Trigger>,
    /// Whether any of the event's HRV series has an established baseline (see
    /// [`BaselineState::established`]): the priority policy's "has a baseline".
    pub established: bool,
}

/// Applies the event to its baselines and returns the triggers they raise: its HRV readings
/// replace the record's earlier contributions (a correction), a reading the record no longer has
/// withdraws its contribution, and a DELETED event withdraws the deleted record's from every
/// series of the user.
pub fn update_and_judge(store: &mut dyn KeyValueStore<BaselineState>, event: &BiometricEvent, params: &BaselineParams) -> Assessment {
    if event.kind == EventKind::Deleted {
        if let Some(retracted) = &event.retracts_event_id {
            withdraw(store, &event.user_id, contribution_id(retracted));
        }
        return Assessment::default();
    }
    let day = day_of(event);
    let id = contribution_id(&event.event_id);
    let mut assessment = Assessment::default();
    for metric in METRICS {
        let key = key(event, metric);
        let Some(value) = hrv_value(event, metric) else {
            take_out(store, &key, id);
            continue;
        };
        let state = store.get_or_default(key);
        state.add(day, id, value, params);
        assessment.established |= state.established(params);
        if let Some(judgement) = state.below_band(day, params) {
            assessment.triggers.push(Trigger {
                trigger_type: HRV_BELOW_BASELINE.to_owned(),
                severity: params.severity,
                metric: format!("ln_{metric}_{}d_mean", params.recent_days),
                value: judgement.recent_mean,
                threshold: judgement.lower_band,
                recommendation: Some("recovery_focus".to_owned()),
                baseline_mean: Some(judgement.baseline_mean),
                baseline_sd: Some(judgement.baseline_sd),
                z_score: Some(judgement.z_score),
                contributions: Vec::new(),
            });
        }
    }
    assessment
}

/// Removes record `id`'s contribution from every baseline of `user_id`. A scan of the store:
/// deletions are rare, and the deleted record's device and window are no longer known.
fn withdraw(store: &mut dyn KeyValueStore<BaselineState>, user_id: &str, id: u64) {
    for key in store.keys_with_prefix(&user_prefix(user_id)) {
        if take_out(store, &key, id) == Some(true) {
            store.delete(&key);
        }
    }
}

/// Takes record `id`'s contribution out of the series at `key`, in place; the series is marked
/// changed (a changelog record) only when it had one. Whether the series is left empty, if it had.
pub fn take_out(store: &mut dyn KeyValueStore<BaselineState>, key: &str, id: u64) -> Option<bool> {
    if !store.get(key).is_some_and(|state| state.contains(id)) {
        return None;
    }
    let state = store.get_mut(key)?;
    state.remove(id);
    Some(state.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first release's rule: the tests below are about the mechanics, with its round numbers.
    fn params() -> BaselineParams {
        BaselineParams::V1
    }

    #[test]
    fn needs_history_before_judging() {
        let mut state = BaselineState::default();
        for day in 0..20 {
            state.add(day, day as u64, 50.0, &params());
        }
        assert!(state.judge(19, &params()).is_none(), "13 baseline days < 14");
        state.add(20, 20, 50.0, &params());
        assert!(state.judge(20, &params()).is_some(), "14 baseline days and 7 recent");
        let mut sparse = BaselineState::default();
        for day in (0..14).chain([19, 20]) {
            sparse.add(day, day as u64, 50.0, &params());
        }
        assert!(sparse.judge(20, &params()).is_none(), "2 recent readings < 3");
    }

    #[test]
    fn a_drop_below_half_an_sd_is_below_the_band() {
        let mut state = BaselineState::default();
        // 60 baseline days alternating 45/55 ms (ln SD ~0.1), then 7 days at 35 ms.
        for day in 0..60 {
            state.add(day, day as u64, if day % 2 == 0 { 45.0 } else { 55.0 }, &params());
        }
        for day in 60..67 {
            state.add(day, day as u64, 35.0, &params());
        }
        let judgement = state.judge(66, &params()).unwrap();
        assert!(judgement.recent_mean < judgement.lower_band, "{judgement:?}");
        assert!(judgement.z_score < -2.0, "{judgement:?}");
    }

    #[test]
    fn a_short_history_widens_the_band_and_a_full_one_keeps_it() {
        let params = BaselineParams { widen_short_history: true, band_sd: 0.75, ..BaselineParams::default() };
        let full = widened_band(&params, 7, 60);
        assert!((full - 0.75).abs() < 0.03, "a full window keeps the band (t of 59 df ~ z): {full}");
        let (week, fortnight) = (widened_band(&params, 7, 7), widened_band(&params, 7, 14));
        assert!(week > fortnight && fortnight > full, "{week} {fortnight} {full}");
        assert!(widened_band(&params, 3, 60) > full, "fewer recent readings widen it too");
    }

    #[test]
    fn late_readings_update_their_own_day_and_old_days_are_forgotten() {
        let mut state = BaselineState::default();
        state.add(100, 1, 50.0, &params());
        state.add(90, 2, 40.0, &params());
        assert_eq!(state.day_value(90), Some(40f64.ln()));
        state.add(100, 3, 60.0, &params());
        assert_eq!(state.contributions_on(100).map(|(id, _)| id).collect::<Vec<_>>(), [1, 3], "two records on one day, in order");
        assert!((state.day_value(100).unwrap() - (50f64.ln() + 60f64.ln()) / 2.0).abs() < 1e-12);
        state.add(200, 4, 50.0, &params());
        assert_eq!((state.day_value(90), state.day_value(100), state.day_count()), (None, None, 1), "{state:?}");
        assert_eq!(serde_json::to_string(&state).unwrap(), format!(r#"{{"days":{{"200":[[4,{}]]}}}}"#, 50f64.ln()));
    }

    #[test]
    fn a_correction_replaces_and_a_removal_withdraws() {
        let mut state = BaselineState::default();
        state.add(100, 7, 50.0, &params());
        state.add(100, 7, 20.0, &params());
        assert_eq!(state.day_value(100), Some(20f64.ln()), "replaced, not averaged with 50");
        state.add(101, 7, 30.0, &params());
        assert_eq!((state.day_value(100), state.day_value(101)), (None, Some(30f64.ln())), "moved to its new day");
        assert!(state.contains(7) && !state.contains(8));
        assert!(state.remove(7));
        assert!(!state.contains(7));
        assert!(state.is_empty());
        assert!(!state.remove(7));
    }

    #[test]
    fn state_written_as_day_aggregates_is_still_read() {
        let legacy: BaselineState = serde_json::from_str(r#"{"days":{"100":[7.8,2],"101":[[5,3.9]]}}"#).unwrap();
        assert_eq!(legacy.day_value(100), Some(3.9));
        assert_eq!(legacy.contributions_on(101).collect::<Vec<_>>(), vec![(5, 3.9)]);
        let written = serde_json::to_string(&legacy).unwrap();
        assert_eq!(written, r#"{"days":{"100":[[0,3.9]],"101":[[5,3.9]]}}"#);
        let read_back: BaselineState = serde_json::from_str(&written).unwrap();
        assert_eq!(read_back, legacy);
    }

    #[test]
    fn keys_escape_the_separator() {
        assert_eq!(key_part("u1"), "u1");
        assert_eq!(user_prefix("a|b"), "a%7Cb|");
        assert!(!user_prefix("a|b").starts_with(&user_prefix("a")));
        assert_eq!(contribution_id("6f1c2a8e-93d4-4b57-a1e0-5c7d3b2f9e41"), contribution_id("6f1c2a8e-93d4-4b57-a1e0-5c7d3b2f9e41"));
    }
}
