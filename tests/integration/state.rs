//! Kafka Streams-style state, through the real processor: personal HRV baselines against fixed
//! thresholds, de-duplication of a re-delivery a day later, store restore on another instance,
//! and a rebalance between two instances — each compared with an uninterrupted single instance.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::helpers::{self, Received, TestTopology};

const DAY_MS: i64 = 86_400_000;
/// 2026-09-01T12:00:00Z: day 0 of the synthetic series.
const DAY0_MS: i64 = 1_788_264_000_000;

/// One synthetic nightly reading.
#[derive(Debug, Clone)]
struct Reading {
    user: String,
    day: i64,
    rmssd_ms: f64,
}

/// A steady weekly rhythm around the person's mean (±10 % in ln units, mean zero over a week, so
/// the 7-day mean of the steady part equals the baseline), then `drop_days` days shifted down by
/// one SD of the steady daily values.
fn series(user: &str, mean_ms: f64, days: i64, drop_days: i64) -> Vec<Reading> {
    const RHYTHM: [f64; 7] = [0.10, -0.10, 0.05, -0.05, 0.12, -0.12, 0.0];
    let sd = (RHYTHM.iter().map(|v| v * v).sum::<f64>() / 6.0).sqrt();
    (0..days)
        .map(|day| {
            let drop = if day >= days - drop_days { sd } else { 0.0 };
            let ln = mean_ms.ln() + RHYTHM[day as usize % 7] - drop;
            Reading { user: user.to_owned(), day, rmssd_ms: (ln.exp() * 100.0).round() / 100.0 }
        })
        .collect()
}

fn summary_id(reading: &Reading) -> String {
    format!("synthetic-{}-{:03}", reading.user, reading.day)
}

/// A Terra sleep webhook for the night ending on `reading.day`.
fn terra_sleep(reading: &Reading) -> Vec<u8> {
    let end = chrono::DateTime::from_timestamp_millis(DAY0_MS + reading.day * DAY_MS).unwrap();
    let start = end - chrono::Duration::hours(8);
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string();
    serde_json::to_vec(&serde_json::json!({
        "type": "sleep",
        "version": "2022-03-16",
        "user": {"user_id": format!("terra-{}", reading.user), "provider": "GARMIN", "reference_id": reading.user},
        "data": [{
            "metadata": {"start_time": fmt(start), "end_time": fmt(end), "summary_id": summary_id(reading), "timestamp_localization": 0},
            "heart_rate_data": {"summary": {"avg_hrv_rmssd": reading.rmssd_ms}}
        }]
    }))
    .unwrap()
}

async fn produce(topic: &str, readings: &[Reading], received_offset_ms: i64) {
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", helpers::bootstrap()).set("enable.idempotence", "true").create().unwrap();
    for reading in readings {
        let body = terra_sleep(reading);
        let key = format!("terra:terra-{}", reading.user);
        let received_at = (DAY0_MS + reading.day * DAY_MS + received_offset_ms).to_string();
        let delivery = helpers::unique("delivery");
        let headers = OwnedHeaders::new()
            .insert(Header { key: "vendor", value: Some("terra") })
            .insert(Header { key: "received-at", value: Some(received_at.as_str()) })
            .insert(Header { key: "delivery-id", value: Some(delivery.as_str()) });
        producer
            .send(FutureRecord::to(topic).key(&key).payload(&body).headers(headers), Duration::from_secs(10))
            .await
            .map_err(|(error, _)| error)
            .unwrap();
    }
}

/// Every event's triggers by event id (fails on a duplicate event id).
fn by_event_id(events: &[Received]) -> BTreeMap<String, Vec<(String, String, i64, i64)>> {
    let mut out = BTreeMap::new();
    for received in events {
        // Round to 1e-9 so the comparison is about the numbers, not float printing.
        let triggers = received
            .event
            .triggers
            .iter()
            .map(|t| {
                let z = t.z_score.map_or(0, |z| (z * 1e9).round() as i64);
                (t.trigger_type.clone(), format!("{:?}", t.severity), (t.value * 1e9).round() as i64, z)
            })
            .collect();
        assert!(out.insert(received.event.event_id.clone(), triggers).is_none(), "duplicate event {}", received.event.event_id);
    }
    out
}

async fn run_to_completion(topology: &TestTopology, readings: &[Reading]) -> Vec<Received> {
    produce(&topology.topic("raw-webhooks"), readings, 3_600_000).await;
    let processor = helpers::spawn_processor(topology, "reference", &[]);
    let events = helpers::read_events(&[topology.topic("terra-biometric-events")], readings.len(), Duration::from_secs(120)).await;
    assert_eq!(events.len(), readings.len(), "{}", processor.log_tail());
    events
}

fn day_of(reading_day: &HashMap<String, i64>, received: &Received) -> i64 {
    reading_day[&received.event.vendor_record_id.clone().unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_baseline_fires_in_the_drop_where_fixed_thresholds_fire_never_or_always() {
    let topology = TestTopology::create(2).await;
    let athlete = series("marathon-runner", 85.0, 90, 10);
    let senior = series("sedentary-senior", 28.0, 90, 10);
    let all: Vec<Reading> = athlete.iter().chain(&senior).cloned().collect();
    let days: HashMap<String, i64> = all.iter().map(|r| (summary_id(r), r.day)).collect();
    let events = run_to_completion(&topology, &all).await;

    for (user, fixed_fires) in [("marathon-runner", false), ("sedentary-senior", true)] {
        let mine: Vec<&Received> = events.iter().filter(|r| r.event.user_id == user).collect();
        assert_eq!(mine.len(), 90);
        let baseline_days: Vec<i64> = mine
            .iter()
            .filter(|r| r.event.triggers.iter().any(|t| t.trigger_type == "HRV_BELOW_BASELINE"))
            .map(|r| day_of(&days, r))
            .collect();
        assert!(baseline_days.iter().all(|d| *d >= 80), "{user}: baseline fired in the steady part on days {baseline_days:?}");
        assert!(baseline_days.len() >= 4, "{user}: baseline fired on too few drop days: {baseline_days:?}");
        let trigger = mine.iter().flat_map(|r| &r.event.triggers).find(|t| t.trigger_type == "HRV_BELOW_BASELINE").unwrap();
        assert!(trigger.baseline_mean.is_some() && trigger.baseline_sd.is_some() && trigger.z_score.is_some_and(|z| z < -0.5));
        assert_eq!(trigger.severity, biometric_bridge::event::Severity::Medium, "v2: a recovery signal, not an alarm");

        let fixed: Vec<bool> = mine
            .iter()
            .map(|r| r.event.triggers.iter().any(|t| t.trigger_type == "STRESS_INTERVENTION" || t.trigger_type == "URGENT_INTERVENTION"))
            .collect();
        assert!(
            fixed.iter().all(|fired| *fired == fixed_fires),
            "{user}: fixed thresholds should fire {}",
            if fixed_fires { "always" } else { "never" }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_a_day_later_produces_no_second_event() {
    let topology = TestTopology::create(2).await;
    let reading = Reading { user: "redelivered".into(), day: 3, rmssd_ms: 55.0 };
    let processor = helpers::spawn_processor(&topology, "redelivery", &[]);
    produce(&topology.topic("raw-webhooks"), std::slice::from_ref(&reading), 0).await;
    produce(&topology.topic("raw-webhooks"), std::slice::from_ref(&reading), DAY_MS).await;
    // A changed record under the same id is an update, not a duplicate: it passes.
    let updated = Reading { rmssd_ms: 56.0, ..reading.clone() };
    produce(&topology.topic("raw-webhooks"), std::slice::from_ref(&updated), 2 * DAY_MS).await;
    let events = helpers::read_events(&[topology.topic("terra-biometric-events")], 3, Duration::from_secs(30)).await;
    let values: Vec<Option<f64>> = events.iter().map(|r| r.event.hrv_rmssd_ms).collect();
    assert_eq!(values, vec![Some(55.0), Some(56.0)], "{}", processor.log_tail());
    assert_eq!(events[0].event.event_id, events[1].event.event_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_crash_and_a_rebalance_with_the_same_numbers() {
    let readings: Vec<Reading> =
        ["ann", "bob", "cem", "dee"].iter().enumerate().flat_map(|(i, user)| series(user, 40.0 + 15.0 * i as f64, 45, 8)).collect();
    let (first, second): (Vec<Reading>, Vec<Reading>) = readings.iter().cloned().partition(|r| r.day < 25);
    let short_session = [("SESSION_TIMEOUT_MS", "6000")];

    // Reference: one instance, never interrupted.
    let reference = TestTopology::create(4).await;
    let expected = by_event_id(&run_to_completion(&reference, &readings).await);
    assert!(expected.values().flatten().any(|t| t.0 == "HRV_BELOW_BASELINE"), "the series exercises the baseline");

    // Crash: instance "a" processes the first half and is SIGKILLed; instance "b" (another
    // member) restores the stores from the changelogs and processes the second half.
    let crashed = TestTopology::create(4).await;
    let raw = crashed.topic("raw-webhooks");
    let out = crashed.topic("terra-biometric-events");
    produce(&raw, &first, 3_600_000).await;
    let mut a = helpers::spawn_processor(&crashed, "a", &short_session);
    assert_eq!(
        helpers::read_events(std::slice::from_ref(&out), first.len(), Duration::from_secs(60)).await.len(),
        first.len(),
        "{}",
        a.log_tail()
    );
    a.child.kill().unwrap();
    produce(&raw, &second, 3_600_000).await;
    let b = helpers::spawn_processor(&crashed, "b", &short_session);
    let events = helpers::read_events(std::slice::from_ref(&out), readings.len(), Duration::from_secs(90)).await;
    assert_eq!(by_event_id(&events), expected, "restored state gives the numbers of an uninterrupted run\n{}", b.log_tail());
    drop((a, b));

    // Rebalance: "x" runs alone on the first half, then "y" joins and takes some partitions
    // (their stores move with them), and both process the second half.
    let shared = TestTopology::create(4).await;
    let raw = shared.topic("raw-webhooks");
    let out = shared.topic("terra-biometric-events");
    produce(&raw, &first, 3_600_000).await;
    let x = helpers::spawn_processor(&shared, "x", &short_session);
    assert_eq!(helpers::read_events(std::slice::from_ref(&out), first.len(), Duration::from_secs(60)).await.len(), first.len());
    let y = helpers::spawn_processor(&shared, "y", &short_session);
    tokio::time::sleep(Duration::from_secs(8)).await;
    produce(&raw, &second, 3_600_000).await;
    let events = helpers::read_events(std::slice::from_ref(&out), readings.len(), Duration::from_secs(90)).await;
    assert_eq!(by_event_id(&events), expected, "two instances give the numbers of one\nx:\n{}\ny:\n{}", x.log_tail(), y.log_tail());
    assert!(std::fs::read_to_string(&y.log).unwrap().contains("Tasks assigned"), "y took part");
}
