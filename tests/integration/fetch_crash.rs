//! Exactly-once through the fetch stage: 1 000 Oura notifications whose records are served slowly
//! (some only after a pass through the retry topic), the processor SIGKILLed at random moments
//! while fetches are in flight, and then every record must have produced exactly one event.
//!
//! As in `crash.rs`, the de-duplication store is taken out: a record fetched twice (its first
//! fetch lost with a killed instance) may only appear once because its offset and its event are
//! committed in one transaction, never because a store hid the copy.

use std::collections::HashMap;
use std::time::Duration;

use biometric_bridge::event::{EventKind, Vendor};

use super::fetch_support::{Setup, oura_notification, send_webhooks};
use super::helpers;
use super::vendor_sim::{Fault, SimVendor, VendorSim};

const RECORDS: usize = 1_000;
const USERS: usize = 20;
const KILLS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_fetches_loses_and_duplicates_nothing() {
    let setup = Setup::with_topology(|text| {
        text.replace("[[processors]]\nname = \"dedup\"\ntype = \"dedup\"\nstore = \"dedup\"\n", "")
            .replace(
                "# Longest vendor retry horizon (Terra: a little over 24 h; Garmin \"On Hold\": 7 days) plus margin.\nwindow_days = 7\n",
                "",
            )
            .replace("[[stores]]\nname = \"dedup\"\n", "")
    })
    .await;
    assert!(setup.topology.topology.dedup.is_none(), "the crash test runs without the dedup store");

    let users: Vec<String> = (0..USERS).map(|_| helpers::unique("oura-crash")).collect();
    for (index, user) in users.iter().enumerate() {
        setup.connect(SimVendor::Oura, user, &format!("crash-athlete-{index}"), 3600).await;
    }
    let mut expected = Vec::with_capacity(RECORDS);
    for index in 0..RECORDS {
        let (user, id) = (&users[index % USERS], format!("crash-sleep-{index:04}"));
        let hrv = 20.0 + (index % 50) as f64;
        setup.sim.put_record(SimVendor::Oura, user, "sleep", &id, VendorSim::oura_sleep(&id, "2026-11-20", hrv));
        expected.push(biometric_bridge::vendors::event_id(Vendor::Oura, EventKind::Sleep, &id));
        // Every 50th record fails a whole pass (3 x 503): it is fetched again from the retry topic.
        if index % 50 == 49 {
            setup.sim.inject(SimVendor::Oura, &format!("/v2/usercollection/sleep/{id}"), vec![Fault::Status(503); 3]);
        }
    }
    // Every request takes 25 ms, so fetches are in flight whenever the processor dies.
    setup.sim.inject(SimVendor::Oura, "/v2/usercollection/sleep/", vec![Fault::Slow(Duration::from_millis(25)); 4 * RECORDS]);

    let webhooks: Vec<_> = (0..RECORDS)
        .map(|index| {
            let (user, id) = (&users[index % USERS], format!("crash-sleep-{index:04}"));
            (Vendor::Oura, user.clone(), oura_notification("create", "sleep", &id, user))
        })
        .collect();
    send_webhooks(&setup.topology, &webhooks).await;

    let mut processor = setup.processor("fetch-crash");
    for _ in 0..KILLS {
        let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 8; // 0..2 s
        tokio::time::sleep(Duration::from_millis(2_500 + jitter)).await;
        processor.child.kill().unwrap(); // SIGKILL
        processor.child.wait().unwrap();
        processor = setup.processor("fetch-crash");
    }

    let mut counts: HashMap<String, usize> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while counts.len() < expected.len() && std::time::Instant::now() < deadline {
        counts.clear();
        for received in helpers::read_events(&[setup.events_topic()], usize::MAX, Duration::from_secs(5)).await {
            *counts.entry(received.event.event_id).or_default() += 1;
        }
    }
    let missing = expected.iter().filter(|id| !counts.contains_key(*id)).count();
    let duplicated = counts.values().filter(|n| **n > 1).count();
    let unexpected = counts.keys().filter(|id| !expected.contains(id)).count();
    assert!(
        missing == 0 && duplicated == 0 && unexpected == 0,
        "after {KILLS} SIGKILLs: {missing} missing, {duplicated} duplicated, {unexpected} unexpected of {RECORDS}\n{}",
        processor.log_tail()
    );
    assert!(helpers::read_raw(&setup.retry_topic(), 1, Duration::from_secs(5)).len() == 1, "the retry topic was used");
    assert!(helpers::read_raw(&setup.dlq_topic(), 1, Duration::from_secs(2)).is_empty(), "nothing dead-lettered");
}
