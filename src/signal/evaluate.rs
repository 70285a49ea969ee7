//! Runs the project's own judgement over a cohort, and scores each rule against the cohort's
//! known episodes.
//!
//! Every delivery goes through the path a webhook takes in the processor: the Terra sleep body is
//! built, normalized by the Terra module, screened for plausibility, de-duplicated, and judged by
//! `processor::judge` with a baseline store. Only Kafka and the registry are left out; the
//! through-the-stack test (`tests/integration/signal.rs`) shows they change nothing.
//!
//! **Scoring.** An episode's window is its nights plus `GRACE_NIGHTS` after (a 7-day mean
//! recovers late). For each rule a night "alerts" when its first verdict (what the coach saw
//! first) fires the rule.
//! - *Episode recall*: episodes with an alerting night in their window.
//! - *False alarms per user-month*: alerts that start outside every window (an alerting night
//!   whose previous observed night did not alert: a coach gets one alarm per run), per 30
//!   observed nights.
//! - *Night-level precision*: alerting nights inside a window, of all alerting nights.
//! - *Detection delay*: nights from onset to the first alert in the window, for caught episodes.

use std::collections::{BTreeMap, HashMap};

use super::cohort::{Cohort, Night};
use crate::event::{BiometricEvent, Priority, Vendor};
use crate::processor::baseline::{BaselineState, HRV_BELOW_BASELINE};
use crate::processor::dedup::{self, Seen, Verdict};
use crate::processor::illness::ILLNESS_RISK;
use crate::processor::store::MemoryStore;
use crate::processor::{judge, plausibility, triggers};
use crate::topology::{BaselineParams, Plausibility, ThresholdParams, Topology};
use crate::vendors::{self, Outcome, RawInput};

pub const GRACE_NIGHTS: i32 = 3;
const DAY_MS: i64 = 86_400_000;
/// 2026-03-01T00:00:00Z: night 0 of every cohort.
const DAY0_MS: i64 = 1_772_323_200_000;

/// The Terra sleep webhook of one night: the person woke at 07:00 UTC on the night's day. The
/// vendor user is `terra-<prefix><user>`, its reference id `<prefix><user>`.
pub fn terra_sleep_body(night: &Night, prefix: &str) -> Vec<u8> {
    let end = chrono::DateTime::from_timestamp_millis(DAY0_MS + i64::from(night.night) * DAY_MS + 7 * 3_600_000).expect("in range");
    let start = end - chrono::Duration::hours(8);
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string();
    let user = format!("{prefix}{}", night.user);
    serde_json::to_vec(&serde_json::json!({
        "type": "sleep",
        "version": "2022-03-16",
        "user": {"user_id": format!("terra-{user}"), "provider": "OURA", "reference_id": user},
        "data": [{
            "metadata": {"start_time": fmt(start), "end_time": fmt(end), "summary_id": format!("night-{user}-{}", night.night), "timestamp_localization": 0},
            "heart_rate_data": {"summary": {"avg_hrv_rmssd": night.rmssd_ms, "resting_hr_bpm": night.resting_hr_bpm}},
            "respiration_data": {"breaths_data": {"avg_breaths_per_min": night.respiratory_rate}},
            "temperature_data": {"delta": night.temperature_deviation_c}
        }]
    }))
    .expect("JSON")
}

/// When a delivery reaches the bridge: its day, at 09:00 UTC.
pub fn received_at_ms(day: i32) -> i64 {
    DAY0_MS + i64::from(day) * DAY_MS + 9 * 3_600_000
}

/// A cohort's deliveries as the normalizer makes them, with the (user, night) each is about.
pub struct Prepared {
    pub events: Vec<(usize, i32, BiometricEvent)>,
}

pub fn prepare(cohort: &Cohort) -> Prepared {
    let events = cohort
        .deliveries
        .iter()
        .map(|delivery| {
            let body = terra_sleep_body(&delivery.night, "cohort-");
            let input = RawInput {
                vendor: Vendor::Terra,
                body: &body,
                received_at_ms: received_at_ms(delivery.day),
                vendor_user_id: None,
                delivery_id: None,
                trace_id: None,
                source_topic: "raw-webhooks",
                source_partition: 0,
                source_offset: 0,
            };
            let Ok(Outcome::Events(mut events)) = vendors::normalize(&input) else { panic!("a cohort night normalizes") };
            (delivery.night.user, delivery.night.night, events.remove(0))
        })
        .collect();
    Prepared { events }
}

/// The first verdict on one night.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NightVerdict {
    /// `priority` header HIGH or CRITICAL.
    pub header: bool,
    /// `priority` header MEDIUM or above.
    pub notice: bool,
    /// A fixed-limit trigger.
    pub fixed: bool,
    /// `HRV_BELOW_BASELINE`.
    pub baseline: bool,
    /// `ILLNESS_RISK`.
    pub illness: bool,
}

/// The rules a run judges with: the topology's, with the baseline rule replaceable.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'t> {
    pub thresholds: &'t ThresholdParams,
    pub plausibility: &'t Plausibility,
    pub baseline: BaselineParams,
}

impl<'t> Rules<'t> {
    /// The topology's rules (the default baseline rule when it has none).
    pub fn of(topology: &'t Topology) -> Rules<'t> {
        Rules { thresholds: &topology.thresholds, plausibility: &topology.plausibility, baseline: topology.baseline.unwrap_or_default() }
    }

    pub fn with_baseline(self, baseline: BaselineParams) -> Rules<'t> {
        Rules { baseline, ..self }
    }
}

/// Judges every delivery in order, as the processor does; the first verdict per (user, night).
pub fn run(prepared: &Prepared, rules: &Rules<'_>) -> BTreeMap<(usize, i32), NightVerdict> {
    let mut verdicts = BTreeMap::new();
    judge_deliveries(prepared, rules, |user, night, event| {
        let verdict = NightVerdict {
            header: event.priority >= Priority::High,
            notice: event.priority >= Priority::Medium,
            fixed: event.triggers.iter().any(|t| triggers::is_fixed_limit(&t.trigger_type)),
            baseline: event.triggers.iter().any(|t| t.trigger_type == HRV_BELOW_BASELINE),
            illness: event.triggers.iter().any(|t| t.trigger_type == ILLNESS_RISK),
        };
        verdicts.entry((user, night)).or_insert(verdict);
    });
    verdicts
}

/// Every delivery in arrival order, as the processor treats it: screened, de-duplicated (a
/// duplicate or stale copy is dropped, never judged) and judged; `judged` sees each survivor.
pub fn judge_deliveries(prepared: &Prepared, rules: &Rules<'_>, mut judged: impl FnMut(usize, i32, &BiometricEvent)) {
    let mut dedup_store = MemoryStore::<Seen>::default();
    let mut baseline_store = MemoryStore::<BaselineState>::default();
    for (user, night, event) in &prepared.events {
        let mut event = event.clone();
        plausibility::screen(&mut event, rules.plausibility);
        if matches!(dedup::check_and_record(&mut dedup_store, &event, 30 * DAY_MS, None), Verdict::Duplicate | Verdict::Stale) {
            continue;
        }
        judge::judge(&mut event, rules.thresholds, Some((&mut baseline_store, &rules.baseline)));
        judged(*user, *night, &event);
    }
}

/// One rule's figures on one cohort.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Score {
    pub recall: f64,
    pub false_alarms_per_user_month: f64,
    pub precision: f64,
    pub median_delay_nights: f64,
    /// Nights from the first alert to the episode's "symptom" night (positive: before it).
    pub median_lead_nights: f64,
}

/// Scores the nights `alerts` says alerted against the cohort's episodes.
pub fn score(cohort: &Cohort, verdicts: &BTreeMap<(usize, i32), NightVerdict>, alerts: impl Fn(&NightVerdict) -> bool) -> Score {
    let windows: HashMap<usize, (i32, i32)> = cohort.episodes.iter().map(|e| (e.user, (e.onset, e.end + GRACE_NIGHTS))).collect();
    let in_window = |user: usize, night: i32| windows.get(&user).is_some_and(|(from, to)| (*from..=*to).contains(&night));
    let (mut false_alarms, mut alert_nights, mut true_nights) = (0usize, 0usize, 0usize);
    let mut first_alert: HashMap<usize, i32> = HashMap::new();
    let mut previous: Option<(usize, bool)> = None;
    for (&(user, night), verdict) in verdicts {
        let alerting = alerts(verdict);
        let continues = previous == Some((user, true));
        if alerting {
            alert_nights += 1;
            if in_window(user, night) {
                true_nights += 1;
                first_alert.entry(user).or_insert(night);
            } else if !continues {
                false_alarms += 1;
            }
        }
        previous = Some((user, alerting));
    }
    let mut delays: Vec<i32> = cohort.episodes.iter().filter_map(|e| first_alert.get(&e.user).map(|night| night - e.onset)).collect();
    delays.sort_unstable();
    let mut leads: Vec<i32> =
        cohort.episodes.iter().filter_map(|e| first_alert.get(&e.user).map(|night| e.symptom_night - night)).collect();
    leads.sort_unstable();
    let user_months = verdicts.len() as f64 / 30.0;
    Score {
        recall: ratio(delays.len(), cohort.episodes.len()),
        false_alarms_per_user_month: false_alarms as f64 / user_months,
        precision: ratio(true_nights, alert_nights),
        median_delay_nights: median(&delays),
        median_lead_nights: median(&leads),
    }
}

fn median(sorted: &[i32]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => f64::from(sorted[n / 2]),
        n => f64::from(sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 { f64::NAN } else { part as f64 / whole as f64 }
}

/// Share of nights whose header verdict differs between two runs of the same nights.
pub fn header_disagreement(a: &BTreeMap<(usize, i32), NightVerdict>, b: &BTreeMap<(usize, i32), NightVerdict>) -> f64 {
    let differ = a.iter().filter(|(key, verdict)| b.get(key).is_some_and(|other| other.header != verdict.header)).count();
    ratio(differ, a.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::cohort::{Model, generate};

    fn shipped() -> Topology {
        Topology::parse(crate::topology::DEFAULT_TOPOLOGY, "shipped").unwrap()
    }

    fn small() -> Cohort {
        generate(&Model { users: 40, ..Model::default() }, 11)
    }

    #[test]
    fn every_delivered_night_gets_one_verdict() {
        let cohort = small();
        let verdicts = run(&prepare(&cohort), &Rules::of(&shipped()));
        assert_eq!(verdicts.len(), cohort.observed_nights);
    }

    #[test]
    fn scoring_counts_runs_windows_and_delays() {
        let mut cohort = small();
        cohort.episodes = vec![super::super::cohort::Episode { user: 0, onset: 50, end: 56, symptom_night: 52 }];
        let mut verdicts = BTreeMap::new();
        let alert = NightVerdict { header: true, ..NightVerdict::default() };
        for night in 0..90 {
            let alerting = (10..13).contains(&night) || night == 20 || (52..58).contains(&night);
            verdicts.insert((0, night), if alerting { alert } else { NightVerdict::default() });
        }
        let score = score(&cohort, &verdicts, |v| v.header);
        assert_eq!(score.recall, 1.0);
        assert_eq!(score.median_delay_nights, 2.0);
        assert!((score.false_alarms_per_user_month - 2.0 / 3.0).abs() < 1e-12, "two runs in 3 user-months: {score:?}");
        assert!((score.precision - 6.0 / 10.0).abs() < 1e-12, "{score:?}");
    }

    #[test]
    fn a_person_with_naturally_low_hrv_is_quiet_under_the_personal_policy() {
        let cohort = small();
        let prepared = prepare(&cohort);
        let topology = shipped();
        let today = run(&prepared, &Rules::of(&topology).with_baseline(BaselineParams::V1));
        let personal = run(&prepared, &Rules::of(&topology));
        // People without an episode whose nights are mostly under the 40 ms limit.
        let episodes: Vec<usize> = cohort.episodes.iter().map(|e| e.user).collect();
        let low: Vec<usize> = (0..cohort.model.users)
            .filter(|user| !episodes.contains(user))
            .filter(|user| {
                let nights: Vec<f64> = cohort.deliveries.iter().filter(|d| d.night.user == *user).map(|d| d.night.rmssd_ms).collect();
                nights.iter().filter(|v| **v < 40.0).count() * 10 > nights.len() * 8
            })
            .collect();
        assert!(!low.is_empty(), "the cohort has naturally low people");
        let alerting = |verdicts: &BTreeMap<(usize, i32), NightVerdict>| {
            let after_a_month: Vec<&NightVerdict> =
                verdicts.iter().filter(|((u, n), _)| low.contains(u) && *n >= 30).map(|(_, v)| v).collect();
            after_a_month.iter().filter(|v| v.header).count() as f64 / after_a_month.len() as f64
        };
        assert!(alerting(&today) > 0.8, "fixed policy: {}", alerting(&today));
        assert!(alerting(&personal) < 0.2, "personal policy: {}", alerting(&personal));
        assert!(personal.values().filter(|v| v.fixed).count() == today.values().filter(|v| v.fixed).count(), "the fixed triggers stay");
    }
}
