//! What signed but impossible, corrected or deleted data does in the pipeline: impossible values
//! never alarm and never enter a baseline; a correction replaces its day's contribution and a
//! deletion removes it.

use super::*;
use crate::processor::baseline::{self, contribution_id};

/// The Terra sleep fixture with `edit` applied to its JSON.
fn terra_sleep(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(&fixture("terra/sleep.json")).unwrap();
    edit(&mut json);
    serde_json::to_vec(&json).unwrap()
}

fn with_rmssd(rmssd: serde_json::Value) -> Vec<u8> {
    terra_sleep(|json| json["data"][0]["heart_rate_data"]["summary"]["avg_hrv_rmssd"] = rmssd)
}

#[test]
fn impossible_rmssd_is_neither_judged_nor_kept() {
    for rmssd in [-5.0, 0.0, 1e9] {
        let (mut dedup, mut baseline) = (MemoryStore::default(), MemoryStore::default());
        let outputs = run(
            "raw-webhooks",
            &ingress_headers("terra", &[]),
            &with_rmssd(rmssd.into()),
            &mut MapIdentities::default(),
            &mut dedup,
            &mut baseline,
        )
        .unwrap()
        .outputs;
        assert_eq!(outputs.len(), 1, "{rmssd}: the sleep is still an event");
        assert_eq!(header(&outputs[0], "priority").as_deref(), Some("NORMAL"), "{rmssd}: never an alarm");
        let event = decode(&outputs[0]);
        assert_eq!(event.hrv_rmssd_ms, None, "{rmssd}");
        assert!(event.triggers.is_empty(), "{rmssd}: {:?}", event.triggers);
        assert_eq!(event.data_quality.len(), 1, "{rmssd}");
        assert_eq!((event.data_quality[0].field.as_str(), event.data_quality[0].reason.as_str()), ("hrv_rmssd_ms", "out_of_range"));
        assert!(event.heart_rate_avg_bpm.is_some(), "the plausible values stay");
        // Its plausible signals (resting HR, respiration, temperature) enter their own series.
        assert!(!baseline.map.keys().any(|key| key.contains("|hrv_")), "{rmssd}: nothing enters an HRV baseline: {:?}", baseline.map);
    }
}

#[test]
fn absurd_counts_are_noted_never_saturated() {
    let mut json: serde_json::Value = serde_json::from_slice(&fixture("terra/daily.json")).unwrap();
    json["data"][0]["distance_data"]["steps"] = 1e30.into();
    let outputs = simple("raw-webhooks", "terra", &serde_json::to_vec(&json).unwrap());
    let event = decode(&outputs[0]);
    assert_eq!(event.steps, None);
    assert_eq!(event.data_quality[0].field, "steps");
    assert_eq!(event.data_quality[0].value, "1e30");
}

#[test]
fn a_record_with_no_plausible_value_is_dead_lettered() {
    let body = br#"{"data":{"metrics":[{"name":"heart_rate_variability","units":"s","data":[{"qty":1e306,"date":"2026-11-20 03:14:52 -0800"}]}]}}"#;
    let headers = ingress_headers("apple-health", &[(headers::VENDOR_USER_ID, "user-7")]);
    let outputs =
        run("raw-webhooks", &headers, body, &mut MapIdentities::default(), &mut MemoryStore::default(), &mut MemoryStore::default())
            .unwrap()
            .outputs;
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].topic, "raw-webhooks.dlq");
    assert_eq!(header(&outputs[0], "error-class").as_deref(), Some("implausible_value"));
    let message = header(&outputs[0], "error-message").unwrap();
    assert!(message.contains("hrv_sdnn_ms = inf (not_finite)"), "{message}");
}

/// A night of `rmssd` ms for the record `summary_id` ending on `date`.
fn night(summary_id: &str, date: &str, rmssd: f64) -> Vec<u8> {
    terra_sleep(|json| {
        let data = &mut json["data"][0];
        data["metadata"]["summary_id"] = summary_id.into();
        data["metadata"]["start_time"] = format!("{date}T00:30:00.000000+00:00").into();
        data["metadata"]["end_time"] = format!("{date}T07:30:00.000000+00:00").into();
        data["heart_rate_data"]["summary"]["avg_hrv_rmssd"] = rmssd.into();
    })
}

/// The baseline state of the fixture's user for nightly rMSSD.
fn state(baseline: &MemoryStore<BaselineState>) -> BaselineState {
    let key = baseline.map.keys().find(|key| key.contains("hrv_rmssd_ms")).expect("a baseline exists").clone();
    baseline.map[&key].clone()
}

fn day_number(date: &str) -> i32 {
    (chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap() - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
}

#[test]
fn a_correction_replaces_its_night_and_a_deletion_removes_it() {
    let (mut identities, mut dedup, mut baseline) = (MapIdentities::default(), MemoryStore::default(), MemoryStore::default());
    let headers = ingress_headers("terra", &[]);
    let mut feed = |body: &[u8]| run("raw-webhooks", &headers, body, &mut identities, &mut dedup, &mut baseline).unwrap().outputs;
    // 30 steady nights at 60 ms, then one at 30 ms on 2026-10-31.
    for day in 1..=30 {
        feed(&night(&format!("night-{day}"), &format!("2026-10-{day:02}"), 60.0));
    }
    let low = feed(&night("night-31", "2026-10-31", 30.0));
    let judged_low = decode(&low[0]);
    let day = day_number("2026-10-31");
    assert_eq!(state(&baseline).day_value(day), Some(30f64.ln()));

    // The vendor corrects that night to 58 ms: the day is 58, not the mean of 30 and 58.
    let mut feed = |body: &[u8]| run("raw-webhooks", &headers, body, &mut identities, &mut dedup, &mut baseline).unwrap().outputs;
    let corrected = feed(&night("night-31", "2026-10-31", 58.0));
    let corrected = decode(&corrected[0]);
    assert_eq!(corrected.event_id, judged_low.event_id, "the same record");
    assert_eq!(state(&baseline).day_value(day), Some(58f64.ln()));
    assert_eq!(state(&baseline).contributions_on(day).count(), 1, "one contribution for one record");
    assert!(
        corrected.triggers.iter().all(|t| t.trigger_type != baseline::HRV_BELOW_BASELINE),
        "the verdict follows the corrected value: {:?}",
        corrected.triggers
    );

    // A deletion of that record removes its contribution from the user's baselines.
    let mut deleted = decode(&simple("raw-webhooks", "terra", &night("night-31", "2026-10-31", 58.0))[0]);
    deleted.kind = crate::event::EventKind::Deleted;
    deleted.retracts_event_id = Some(corrected.event_id.clone());
    deleted.event_id = "00000000-0000-0000-0000-000000000031".into();
    baseline::update_and_judge(&mut baseline, &deleted, &crate::topology::BaselineParams::default());
    assert_eq!(state(&baseline).day_value(day), None);
    assert_eq!(state(&baseline).day_value(day - 1), Some(60f64.ln()), "the other nights stay");
    assert!(!state(&baseline).contains(contribution_id(&corrected.event_id)));
}
