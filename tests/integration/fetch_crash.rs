//! Exactly-once through the fetch stage: 1 000 Oura notifications whose records are served slowly
//! (some only after a pass through the retry topic), while the processor is SIGKILLed at random
//! moments — or while a second instance joins and partitions move between them — and then every
//! record must have produced exactly one event.
//!
//! As in `crash.rs`, the de-duplication store is taken out: a record fetched twice (its first
//! fetch lost with a killed instance or a revoked partition) may only appear once because its
//! offset and its event are committed in one transaction, never because a store hid the copy.

use std::collections::HashMap;
use std::time::Duration;

use biometric_bridge::event::{EventKind, Vendor};

use super::fetch_support::{Setup, oura_notification, send_webhooks};
use super::helpers::{self, ProcessorGuard};
use super::vendor_sim::{Fault, SimVendor, VendorSim};

const RECORDS: usize = 1_000;
const USERS: usize = 20;

/// A topology without the dedup store, connected users, the records (every API call taking
/// `latency`, every 50th record failing a whole pass) and their notifications on `raw-webhooks`.
/// Returns the expected event ids.
async fn scenario(tag: &str, latency: Duration) -> (Setup, Vec<String>) {
    let setup = Setup::with_topology(helpers::without_dedup_store).await;
    assert!(setup.topology.topology.dedup.is_none(), "runs without the dedup store");

    let users: Vec<String> = (0..USERS).map(|_| helpers::unique(&format!("oura-{tag}"))).collect();
    for (index, user) in users.iter().enumerate() {
        setup.connect(SimVendor::Oura, user, &format!("{tag}-athlete-{index}"), 3600).await;
    }
    let mut expected = Vec::with_capacity(RECORDS);
    for index in 0..RECORDS {
        let (user, id) = (&users[index % USERS], format!("{tag}-sleep-{index:04}"));
        let hrv = 20.0 + (index % 50) as f64;
        setup.sim.put_record(SimVendor::Oura, user, "sleep", &id, VendorSim::oura_sleep(&id, "2026-11-20", hrv));
        expected.push(biometric_bridge::vendors::event_id(Vendor::Oura, EventKind::Sleep, &id));
        // Every 50th record fails a whole pass (3 x 503): it is fetched again from the retry topic.
        if index % 50 == 49 {
            setup.sim.inject(SimVendor::Oura, &format!("/v2/usercollection/sleep/{id}"), vec![Fault::Status(503); 3]);
        }
    }
    // Slow calls: fetches are in flight whenever an instance dies or a partition moves.
    setup.sim.inject(SimVendor::Oura, "/v2/usercollection/sleep/", vec![Fault::Slow(latency); 4 * RECORDS]);

    let webhooks: Vec<_> = (0..RECORDS)
        .map(|index| {
            let (user, id) = (&users[index % USERS], format!("{tag}-sleep-{index:04}"));
            (Vendor::Oura, user.clone(), oura_notification("create", "sleep", &id, user))
        })
        .collect();
    send_webhooks(&setup.topology, &webhooks).await;
    (setup, expected)
}

/// Every expected event exactly once, nothing else, the retry topic used, no dead letter.
async fn assert_exactly_once(setup: &Setup, expected: &[String], what: &str, processor: &ProcessorGuard) {
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
        "{what}: {missing} missing, {duplicated} duplicated, {unexpected} unexpected of {RECORDS}\n{}",
        processor.log_tail()
    );
    assert!(helpers::read_raw(&setup.retry_topic(), 1, Duration::from_secs(5)).len() == 1, "the retry topic was used");
    assert!(helpers::read_raw(&setup.dlq_topic(), 1, Duration::from_secs(2)).is_empty(), "nothing dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_fetches_loses_and_duplicates_nothing() {
    const KILLS: usize = 4;
    let (setup, expected) = scenario("crash", Duration::from_millis(25)).await;
    let mut processor = setup.processor("fetch-crash");
    for _ in 0..KILLS {
        let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 8; // 0..2 s
        tokio::time::sleep(Duration::from_millis(2_500 + jitter)).await;
        processor.child.kill().unwrap(); // SIGKILL
        processor.child.wait().unwrap();
        processor = setup.processor("fetch-crash");
    }
    assert_exactly_once(&setup, &expected, &format!("after {KILLS} SIGKILLs"), &processor).await;
}

/// A second instance joins while the first is fetching: the cooperative rebalance revokes some
/// of the first one's partitions (their waiting fetches are dropped, the written prefix is
/// committed) and the second one fetches them again from the committed offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_moving_during_fetches_lose_and_duplicate_nothing() {
    // 100 ms a call, 8 at once: ~12 s of fetching, so the rebalance lands in the middle of it.
    let (setup, expected) = scenario("rebalance", Duration::from_millis(100)).await;
    let first = setup.processor("fetch-rebalance-1");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let second = setup.processor("fetch-rebalance-2");
    assert_exactly_once(&setup, &expected, "after a rebalance", &second).await;
    let log = std::fs::read_to_string(&first.log).unwrap();
    assert!(log.contains("Partitions revoked"), "the first instance gave partitions away:\n{}", first.log_tail());
}
