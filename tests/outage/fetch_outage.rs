//! The fetch stage while PostgreSQL is stopped: no access token can be read, which is neither the
//! notification's fault nor the vendor's. Notifications cycle through the retry topic without
//! using up their passes (the outage outlasts the 2 passes this test's topology allows: each
//! takes the pool's 5 s acquire timeout plus a 1–2 s delay), none is dead-lettered, and once
//! PostgreSQL is back every record comes out exactly once.

use std::time::Duration;

use biometric_bridge::event::Vendor;

use crate::fetch_support::{Setup, oura_notification, send_webhooks};
use crate::helpers;
use crate::stack::{Outage, serial};
use crate::vendor_sim::{SimVendor, VendorSim};

const RECORDS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_holds_fetches_back_and_loses_nothing() {
    let _serial = serial().await;
    let setup = Setup::with_topology(|text| text.replace("max_retries = 6", "max_retries = 2")).await;
    assert_eq!(setup.topology.topology.fetch.max_retries, 2);
    let users: Vec<String> = (0..3).map(|_| helpers::unique("oura-pg")).collect();
    for (index, user) in users.iter().enumerate() {
        setup.connect(SimVendor::Oura, user, &format!("pg-athlete-{index}"), 3600).await;
    }
    for index in 0..=RECORDS {
        let id = format!("pg-sleep-{index}");
        setup.sim.put_record(SimVendor::Oura, &users[index % 3], "sleep", &id, VendorSim::oura_sleep(&id, "2026-11-20", 50.0));
    }
    let notification = |index: usize| {
        let user = &users[index % 3];
        (Vendor::Oura, user.clone(), oura_notification("create", "sleep", &format!("pg-sleep-{index}"), user))
    };
    let processor = setup.processor("fetch-pg-outage");
    send_webhooks(&setup.topology, &[notification(0)]).await;
    let warm = helpers::read_events(&[setup.events_topic()], 1, Duration::from_secs(60)).await;
    assert_eq!(warm.len(), 1, "{}", processor.log_tail());

    let outage = Outage::begin("postgres");
    let during: Vec<_> = (1..=RECORDS).map(notification).collect();
    send_webhooks(&setup.topology, &during).await;
    // Three or more passes: a dead letter by now, if they counted.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(helpers::read_events(&[setup.events_topic()], 2, Duration::from_secs(2)).await.len(), 1, "nothing new during the outage");
    assert!(helpers::read_raw(&setup.dlq_topic(), 1, Duration::from_secs(2)).is_empty(), "an outage of ours is not a dead letter");
    assert!(!helpers::read_raw(&setup.retry_topic(), 1, Duration::from_secs(5)).is_empty(), "the notifications waited in the retry topic");
    outage.end();

    let after = helpers::read_events(&[setup.events_topic()], RECORDS + 2, Duration::from_secs(60)).await;
    let mut ids: Vec<String> = after.iter().map(|r| r.event.event_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((after.len(), ids.len()), (RECORDS + 1, RECORDS + 1), "every record once\n{}", processor.log_tail());
    assert!(helpers::read_raw(&setup.dlq_topic(), 1, Duration::from_secs(2)).is_empty());
}
