//! The fetch stage through the real processor: Oura / WHOOP notifications on `raw-webhooks`, the
//! records served by the vendor API simulator over HTTP, events on `biometric-events`.
//!
//! Every test has its own topology (topics, application id), its own simulator and its own vendor
//! user ids; connections are stored in the shared PostgreSQL with the test's encryption key.

use std::time::Duration;

use biometric_bridge::connections::ConnectionStatus;
use biometric_bridge::event::{EventKind, Priority, Vendor};

use super::fetch_support::{Setup, oura_notification, rand_u16, send_webhook, whoop_notification};
use super::helpers;
use super::vendor_sim::{Fault, SimVendor, VendorSim};

fn dead_letters(setup: &Setup, expected: usize, timeout: Duration) -> Vec<helpers::RawRecord> {
    helpers::read_raw(&setup.dlq_topic(), expected, timeout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_fetched_mapped_and_judged() {
    let setup = Setup::new().await;
    let oura_user = helpers::unique("oura");
    setup.connect(SimVendor::Oura, &oura_user, "user-ann", 3600).await;
    setup.sim.put_record(SimVendor::Oura, &oura_user, "sleep", "sleep-low", VendorSim::oura_sleep("sleep-low", "2026-11-20", 19.0));
    let whoop_user = 10_000_000 + i64::from(rand_u16());
    setup.connect(SimVendor::Whoop, &whoop_user.to_string(), "user-bob", 3600).await;
    let sleep = VendorSim::whoop_sleep("0c9a6b1e-1111-4a7e-9c3b-5d2f8e4a1b01", 777, whoop_user, "2026-11-20T04:00:00.000Z");
    setup.sim.put_record(SimVendor::Whoop, &whoop_user.to_string(), "sleep", "0c9a6b1e-1111-4a7e-9c3b-5d2f8e4a1b01", sleep);
    let recovery = VendorSim::whoop_recovery("0c9a6b1e-1111-4a7e-9c3b-5d2f8e4a1b01", 777, whoop_user, 64.2, "2026-11-20T12:00:00.000Z");
    setup.sim.put_record(SimVendor::Whoop, &whoop_user.to_string(), "recovery", "777", recovery);
    let _processor = setup.processor("fetch-a");

    send_webhook(&setup.topology, Vendor::Oura, &oura_user, &oura_notification("create", "sleep", "sleep-low", &oura_user)).await;
    let whoop_body = whoop_notification("recovery.updated", "0c9a6b1e-1111-4a7e-9c3b-5d2f8e4a1b01", whoop_user);
    send_webhook(&setup.topology, Vendor::Whoop, &whoop_user.to_string(), &whoop_body).await;
    send_webhook(&setup.topology, Vendor::Oura, &oura_user, &oura_notification("delete", "sleep", "sleep-low", &oura_user)).await;

    let events = helpers::read_events(&[setup.events_topic()], 3, Duration::from_secs(60)).await;
    assert_eq!(events.len(), 3, "{:?}\n{}", events, _processor.log_tail());
    let find = |kind| events.iter().find(|r| r.event.kind == kind).unwrap_or_else(|| panic!("no {kind:?}"));
    let sleep = find(EventKind::Sleep);
    assert_eq!(sleep.event.user_id, "user-ann", "the connection names our user");
    assert_eq!(sleep.event.hrv_rmssd_ms, Some(19.0));
    assert_eq!(sleep.event.priority, Priority::Critical, "19 ms < 25 ms");
    assert_eq!(sleep.headers.get("priority").map(String::as_str), Some("CRITICAL"));
    assert!(sleep.headers.contains_key("trace-id"), "the notification's trace id is carried");
    let recovery = find(EventKind::Recovery);
    assert_eq!(recovery.event.user_id, "user-bob");
    assert_eq!(recovery.event.hrv_rmssd_ms, Some(64.2), "fetched through sleep -> cycle -> recovery");
    assert_eq!(recovery.event.priority, Priority::Normal);
    let deleted = find(EventKind::Deleted);
    assert_eq!(deleted.event.retracts_event_id.as_deref(), Some(sleep.event.event_id.as_str()));
    assert_eq!(setup.sim.requests(SimVendor::Whoop, "/v2/cycle/777/recovery"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_refreshed_once_and_429_is_waited_out() {
    let setup = Setup::new().await;
    let user = helpers::unique("oura");
    // Our store believes the token is fine for an hour, but the API already refuses it (401).
    setup.connect(SimVendor::Oura, &user, "user-cy", 3600).await;
    setup.sim.expire_access_tokens(SimVendor::Oura, &user);
    for (index, hrv) in [48.0, 51.0, 47.0].into_iter().enumerate() {
        let id = format!("sleep-{index}");
        setup.sim.put_record(SimVendor::Oura, &user, "sleep", &id, VendorSim::oura_sleep(&id, &format!("2026-11-2{index}"), hrv));
    }
    setup.sim.inject(SimVendor::Oura, "/v2/usercollection/sleep/sleep-2", vec![Fault::TooManyRequests { retry_after_secs: 1 }]);
    let _processor = setup.processor("fetch-b");
    for index in 0..3 {
        send_webhook(&setup.topology, Vendor::Oura, &user, &oura_notification("update", "sleep", &format!("sleep-{index}"), &user)).await;
    }
    let events = helpers::read_events(&[setup.events_topic()], 3, Duration::from_secs(60)).await;
    assert_eq!(events.len(), 3, "{}", _processor.log_tail());
    assert_eq!(setup.sim.refreshes(SimVendor::Oura, &user), 1, "one refresh for three fetches");
    assert_eq!(setup.sim.failed_refreshes(SimVendor::Oura, &user), 0, "the single-use refresh token was never reused");
    assert_eq!(helpers::read_raw(&setup.retry_topic(), 1, Duration::from_secs(2)).len(), 0, "a 1 s Retry-After is waited out inline");
    let stored = setup.store.get(Vendor::Oura, &user).await.unwrap().unwrap();
    assert_eq!(stored.status, ConnectionStatus::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_server_errors_go_through_the_retry_topic_to_exactly_one_event() {
    let setup = Setup::new().await;
    let user = helpers::unique("oura");
    setup.connect(SimVendor::Oura, &user, "user-di", 3600).await;
    setup.sim.put_record(SimVendor::Oura, &user, "daily_readiness", "ready-1", VendorSim::oura_daily_readiness("ready-1", "2026-11-20"));
    setup.sim.inject(SimVendor::Oura, "/v2/usercollection/daily_readiness/ready-1", vec![Fault::Status(503); 5]);
    let _processor = setup.processor("fetch-c");
    send_webhook(&setup.topology, Vendor::Oura, &user, &oura_notification("create", "daily_readiness", "ready-1", &user)).await;

    let events = helpers::read_events(&[setup.events_topic()], 2, Duration::from_secs(30)).await;
    assert_eq!(events.len(), 1, "exactly one event: {}", _processor.log_tail());
    assert_eq!(events[0].event.kind, EventKind::Readiness);
    // FETCH_ATTEMPTS = 3 per pass: passes 1 (3 x 503) and 2 (2 x 503, then 200).
    let retries = helpers::read_raw(&setup.retry_topic(), 2, Duration::from_secs(5));
    assert_eq!(retries.len(), 1, "one retry record");
    assert_eq!(retries[0].headers.get("fetch-attempt").map(String::as_str), Some("1"));
    assert_eq!(retries[0].headers.get("fetch-last-error").map(String::as_str), Some("http_503"));
    assert_eq!(setup.sim.requests(SimVendor::Oura, "/v2/usercollection/daily_readiness/ready-1"), 6);
    assert!(dead_letters(&setup, 1, Duration::from_secs(2)).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_access_and_unknown_users_are_dead_lettered_with_the_reason() {
    let setup = Setup::new().await;
    let revoked = helpers::unique("oura");
    setup.connect(SimVendor::Oura, &revoked, "user-ed", 3600).await;
    setup.sim.put_record(SimVendor::Oura, &revoked, "sleep", "s-1", VendorSim::oura_sleep("s-1", "2026-11-20", 50.0));
    setup.sim.revoke_user(SimVendor::Oura, &revoked);
    let stranger = helpers::unique("oura");
    let _processor = setup.processor("fetch-d");
    send_webhook(&setup.topology, Vendor::Oura, &revoked, &oura_notification("create", "sleep", "s-1", &revoked)).await;
    send_webhook(&setup.topology, Vendor::Oura, &stranger, &oura_notification("create", "sleep", "s-2", &stranger)).await;

    let letters = dead_letters(&setup, 2, Duration::from_secs(30));
    assert_eq!(letters.len(), 2, "{}", _processor.log_tail());
    let class_of = |user: &str| {
        letters.iter().find(|l| l.key.as_deref() == Some(format!("oura:{user}").as_bytes())).map(|l| l.headers["error-class"].clone())
    };
    assert_eq!(class_of(&revoked).as_deref(), Some("connection_needs_reauth"));
    assert_eq!(class_of(&stranger).as_deref(), Some("no_connection"));
    assert!(letters.iter().all(|l| !l.headers.contains_key("fetch-attempt")), "a replay starts a fresh chain of passes");
    let stored = setup.store.get(Vendor::Oura, &revoked).await.unwrap().unwrap();
    assert_eq!(stored.status, ConnectionStatus::NeedsReauth);
    assert!(helpers::read_events(&[setup.events_topic()], 1, Duration::from_secs(2)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_feeds_a_missed_record_once() {
    let setup = Setup::new().await;
    let user = helpers::unique("oura");
    setup.connect(SimVendor::Oura, &user, "user-fay", 3600).await;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    setup.sim.put_record(SimVendor::Oura, &user, "sleep", "seen", VendorSim::oura_sleep("seen", &today, 55.0));
    setup.sim.put_record(SimVendor::Oura, &user, "sleep", "missed", VendorSim::oura_sleep("missed", &today, 22.0));
    let _processor = setup.processor("fetch-e");
    // Only one webhook came.
    send_webhook(&setup.topology, Vendor::Oura, &user, &oura_notification("create", "sleep", "seen", &user)).await;
    assert_eq!(helpers::read_events(&[setup.events_topic()], 1, Duration::from_secs(30)).await.len(), 1);

    let reconcile = |_: ()| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_biometric-bridge"));
        command
            .args(["reconcile", "--vendor", "oura", "--since", "2d", "--topology"])
            .arg(&setup.topology.path)
            .env("KAFKA_BOOTSTRAP_SERVERS", helpers::bootstrap())
            .env("DATABASE_URL", helpers::database_url());
        for (key, value) in setup.env() {
            command.env(key, value);
        }
        command.output().unwrap()
    };
    for _ in 0..2 {
        let output = reconcile(());
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stdout).contains("oura: 1 connections, 2 records listed"));
    }
    // Both runs feed both records (no sink fills the history here); de-duplication keeps one
    // event per record.
    let events = helpers::read_events(&[setup.events_topic()], 3, Duration::from_secs(20)).await;
    assert_eq!(events.len(), 2, "{:?}", events.iter().map(|e| &e.event.vendor_record_id).collect::<Vec<_>>());
    let missed = events.iter().find(|e| e.event.vendor_record_id.as_deref() == Some("missed")).expect("the missed record");
    assert_eq!(missed.event.priority, Priority::Critical);
}

/// Two processes need the same expired Oura token at once: the processor (fetching a notified
/// record) and `reconcile` (listing the user's records). Oura refresh tokens work once, so only
/// one of them may refresh; the other must wait for the Redis lock and use the new token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_and_reconcile_racing_on_an_expired_token_refresh_it_once() {
    let setup = Setup::new().await;
    let user = helpers::unique("oura");
    setup.connect(SimVendor::Oura, &user, "user-gus", -10).await;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    setup.sim.put_record(SimVendor::Oura, &user, "sleep", "race-a", VendorSim::oura_sleep("race-a", &today, 45.0));
    setup.sim.put_record(SimVendor::Oura, &user, "sleep", "race-b", VendorSim::oura_sleep("race-b", &today, 46.0));
    // The refresh holds the token endpoint for 3 s: long enough for the other process to arrive.
    setup.sim.set_token_delay(SimVendor::Oura, Duration::from_secs(3));
    let _processor = setup.processor("fetch-race");
    send_webhook(&setup.topology, Vendor::Oura, &user, &oura_notification("create", "sleep", "race-a", &user)).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while setup.sim.requests(SimVendor::Oura, "/oauth/token") == 0 {
        assert!(std::time::Instant::now() < deadline, "the processor never refreshed: {}", _processor.log_tail());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The processor's refresh is in flight: reconcile now.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_biometric-bridge"));
    command
        .args(["reconcile", "--vendor", "oura", "--since", "1d", "--topology"])
        .arg(&setup.topology.path)
        .env("KAFKA_BOOTSTRAP_SERVERS", helpers::bootstrap())
        .env("DATABASE_URL", helpers::database_url());
    for (key, value) in setup.env() {
        command.env(key, value);
    }
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let events = helpers::read_events(&[setup.events_topic()], 3, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 2, "both records, once each: {}", _processor.log_tail());
    assert_eq!(setup.sim.refreshes(SimVendor::Oura, &user), 1, "one refresh for two processes");
    assert_eq!(setup.sim.failed_refreshes(SimVendor::Oura, &user), 0, "the used refresh token was never sent again");
}

/// `RECONCILE_EVERY` in the processor: a record whose webhook never came is found by the
/// scheduled run and emitted, with no notification at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_reconciliation_in_the_processor_finds_a_record_without_a_webhook() {
    let setup = Setup::new().await;
    let user = 20_000_000 + i64::from(rand_u16());
    setup.connect(SimVendor::Whoop, &user.to_string(), "user-hal", 3600).await;
    let start = (chrono::Utc::now() - chrono::Duration::hours(10)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let workout_id = "6d1f0a2b-7c3e-4b5a-9e8f-0a1b2c3d4e5f";
    setup.sim.put_record(SimVendor::Whoop, &user.to_string(), "workout", workout_id, VendorSim::whoop_workout(workout_id, user, &start));
    let mut env = setup.env();
    env.push(("RECONCILE_EVERY".into(), "2s".into()));
    env.push(("RECONCILE_WINDOW".into(), "1d".into()));
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let processor = helpers::spawn_processor(&setup.topology, "fetch-sched", &refs);

    let events = helpers::read_events(&[setup.events_topic()], 2, Duration::from_secs(20)).await;
    assert_eq!(events.len(), 1, "one event however many runs: {}", processor.log_tail());
    assert_eq!(events[0].event.kind, EventKind::Workout);
    assert_eq!(events[0].event.vendor_record_id.as_deref(), Some(workout_id));
    assert_eq!(events[0].event.user_id, "user-hal");
    assert!(setup.sim.requests(SimVendor::Whoop, "/v2/activity/workout") >= 3, "listed on every run");
}
