//! The evaluator's figures are the streaming path's: a small synthetic cohort (late and repeated
//! deliveries included) is sent as signed Terra webhooks through the ingress, the raw topic and
//! the processor, and every night's verdict read back from the output topic (the `priority`
//! header, the triggers) equals what `biometric-bridge evaluate` computes for the same cohort.
//! Then `sink postgres` writes the nights to the history table and `users chart` draws one
//! person from it.

use std::collections::BTreeMap;
use std::time::Duration;

use biometric_bridge::processor::triggers::is_fixed_limit;
use biometric_bridge::signal::cohort::{self, Model};
use biometric_bridge::signal::evaluate::{self, NightVerdict, Rules};

use super::helpers::{self, TestTopology};
use super::ingress_harness::Webhook;
use super::ingress_support::{spawn_ingress, test_secrets};
use super::sink_support::{TestDb, log_text, spawn_sink, wait_caught_up};

/// (user, night) from an event: the user is `<prefix><n>`, the night its local date's offset
/// from night 0.
fn night_of(event: &biometric_bridge::event::BiometricEvent, prefix: &str) -> (usize, i32) {
    let user = event.user_id.strip_prefix(prefix).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("user {}", event.user_id));
    let date = chrono::NaiveDate::parse_from_str(event.local_date.as_deref().unwrap(), "%Y-%m-%d").unwrap();
    let night0 = chrono::DateTime::from_timestamp_millis(evaluate::received_at_ms(0)).unwrap().date_naive();
    (user, (date - night0).num_days() as i32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cohort_through_the_stack_gets_the_verdicts_the_evaluator_computes() {
    let model = Model { users: 8, nights: 70, late: 0.2, repeated: 0.05, ..Model::default() };
    let cohort = cohort::generate(&model, 4);
    assert!(!cohort.episodes.is_empty(), "the cohort has episodes");
    let topology = TestTopology::create(2).await;
    let ingress = spawn_ingress(&topology.topic("raw-webhooks"), test_secrets(), &[]).await;
    let processor = helpers::spawn_processor(&topology, "signal", &[]);

    let prefix = "cohort-";
    for (i, delivery) in cohort.deliveries.iter().enumerate() {
        let body = evaluate::terra_sleep_body(&delivery.night, prefix);
        let response = Webhook::terra(&body, &format!("signal-{}-{i}", topology.id)).send(&ingress).await;
        assert!(response.status().is_success(), "delivery {i}: {}", response.status());
    }
    let events = helpers::read_events(&[topology.topic("terra-biometric-events")], cohort.observed_nights, Duration::from_secs(120)).await;
    assert_eq!(events.len(), cohort.observed_nights, "one event per night, repeats dropped\n{}", processor.log_tail());

    let mut streamed = BTreeMap::new();
    for received in &events {
        let priority = received.headers.get("priority").map(String::as_str);
        let verdict = NightVerdict {
            header: matches!(priority, Some("HIGH" | "CRITICAL")),
            notice: matches!(priority, Some("MEDIUM" | "HIGH" | "CRITICAL")),
            illness: received.event.triggers.iter().any(|t| t.trigger_type == "ILLNESS_RISK"),
            fixed: received.event.triggers.iter().any(|t| is_fixed_limit(&t.trigger_type)),
            baseline: received.event.triggers.iter().any(|t| t.trigger_type == "HRV_BELOW_BASELINE"),
        };
        assert!(streamed.insert(night_of(&received.event, prefix), verdict).is_none(), "one event per night");
    }
    let evaluated = evaluate::run(&evaluate::prepare(&cohort), &Rules::of(&topology.topology));
    assert_eq!(streamed, evaluated, "the stream's verdicts are the evaluator's");
    assert!(
        streamed.values().any(|v| v.baseline) && streamed.values().any(|v| v.fixed) && streamed.values().any(|v| v.illness),
        "the cohort exercises every rule"
    );
    for pick in [|v: &NightVerdict| v.header, |v: &NightVerdict| v.baseline, |v: &NightVerdict| v.illness] {
        // Debug text, so an undefined delay (NaN) compares equal to itself.
        assert_eq!(format!("{:?}", evaluate::score(&cohort, &streamed, pick)), format!("{:?}", evaluate::score(&cohort, &evaluated, pick)));
    }

    // The same nights through `sink postgres` into the history table, and drawn from there.
    let db = TestDb::create().await;
    let sink = helpers::unique("sink-signal");
    let sink_process = spawn_sink(&topology, &db, &sink, 100);
    if let Err((stored, ends)) = wait_caught_up(&db, &sink, &topology.topology.event_sinks, Duration::from_secs(90)).await {
        panic!("sink never caught up: {stored:?} vs {ends:?}\n{}", log_text(&sink_process));
    }
    let person = cohort.episodes[0].user;
    let nights = streamed.keys().filter(|(user, _)| *user == person).count();
    let out = std::env::temp_dir().join(format!("bb-chart-{}.svg", topology.id));
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_biometric-bridge"))
        .args(["users", "chart", "--user", &format!("{prefix}{person}"), "--out"])
        .arg(&out)
        .env("DATABASE_URL", &db.url)
        .status()
        .unwrap();
    assert!(status.success());
    let svg = std::fs::read_to_string(&out).unwrap();
    assert_eq!(svg.matches("<circle").count(), nights, "one dot per night of the person");
    let fired: std::collections::BTreeSet<&str> = events
        .iter()
        .filter(|r| r.event.user_id == format!("{prefix}{person}"))
        .flat_map(|r| r.event.triggers.iter().map(|t| t.trigger_type.as_str()))
        .collect();
    assert!(!fired.is_empty());
    for trigger_type in fired {
        assert!(svg.contains(&format!(">{trigger_type}</text>")), "{trigger_type} is in the legend");
    }
    ingress.stop().await;
}
