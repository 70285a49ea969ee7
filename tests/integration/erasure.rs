//! `users erase` through the real binary, PostgreSQL and the vendor simulator: a person with a
//! connection at each vendor, an upload token, identity links, a poll watermark and history rows,
//! beside a control person with the same. After the erase no table holds the person's ids; the
//! control is intact; a vendor that did not confirm the revocation keeps only a pseudonymous row
//! until the retry confirms; the Kafka places it cannot clean (records it does not seal) are
//! reported, and the exit says so. Crypto-shredding of sealed records is `at_rest.rs`'s.
//! And with a processor running: every task deletes the person's state from its stores (the
//! changelogs end in tombstones for their keys), the control's state stays, and the person's next
//! upload is processed from scratch.

use biometric_bridge::audit::Pseudonymizer;
use biometric_bridge::secret::Secret;

use crate::fetch_support::Setup;
use crate::helpers;
use crate::vendor_sim::{Fault, SimVendor};

/// Tables that hold data about people.
const TABLES: [&str; 6] = ["biometric_events", "identity_links", "ingest_tokens", "vendor_connections", "poll_watermarks", "audit_log"];

/// Rows of every table whose text contains any of `needles`, as "table: count".
async fn traces(pool: &sqlx::PgPool, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for table in TABLES {
        for needle in needles {
            let sql = format!("SELECT count(*) FROM {table} t WHERE t::text LIKE '%' || $1 || '%'");
            let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(needle).fetch_one(pool).await.unwrap();
            if count > 0 {
                found.push(format!("{table}: {count} row(s) with {needle}"));
            }
        }
    }
    found
}

/// A person with data in every PostgreSQL place; returns their (Oura, WHOOP) vendor user ids.
async fn person(setup: &Setup, pool: &sqlx::PgPool, user: &str) -> (String, String) {
    let oura = helpers::unique("erase-oura");
    let whoop = (i64::from(crate::fetch_support::rand_u16()) + 700_000).to_string();
    setup.connect(SimVendor::Oura, &oura, user, 3600).await;
    setup.connect(SimVendor::Whoop, &whoop, user, 3600).await;
    biometric_bridge::ingress::tokens::issue(pool, user).await.unwrap();
    sqlx::query("INSERT INTO identity_links (vendor, vendor_user_id, user_id) VALUES ('OURA', $1, $2) ON CONFLICT DO NOTHING")
        .bind(&oura)
        .bind(user)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO poll_watermarks (vendor, vendor_user_id, data_type, until) VALUES ('OURA', $1, 'heartrate', now())")
        .bind(&oura)
        .execute(pool)
        .await
        .unwrap();
    for measured in ["2026-11-01T06:00:00Z", "2026-11-02T06:00:00Z"] {
        helpers::insert_history_row(pool, user, measured).await;
    }
    (oura, whoop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_person_leaves_no_row_and_a_pending_vendor_revocation_only_a_pseudonym() {
    let setup = Setup::new().await;
    let pool = setup.store.pool().clone();
    let (user, control) = (helpers::unique("erased-person"), helpers::unique("control-person"));
    let (oura, whoop) = person(&setup, &pool, &user).await;
    let (control_oura, _) = person(&setup, &pool, &control).await;
    assert!(!traces(&pool, &[&user, &oura, &whoop]).await.is_empty(), "the setup put the person everywhere");

    let pseudonym_key = helpers::random_key();
    let mut env: Vec<(String, String)> = setup.env();
    env.push(("PSEUDONYM_KEY".into(), pseudonym_key.clone()));
    env.push(("OURA_REVOKE_URL".into(), format!("{}/oauth/revoke", setup.sim.oura_base())));
    env.push(("TOPOLOGY_FILE".into(), setup.topology.path.display().to_string()));
    env.push(("KAFKA_BOOTSTRAP_SERVERS".into(), helpers::bootstrap()));
    env.push(("SCHEMA_REGISTRY_URL".into(), helpers::registry_url()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let pseudonym = Pseudonymizer::from_secret(&Secret::new(pseudonym_key.clone())).unwrap().user(&user);

    // WHOOP does not confirm (three 503s): the erase completes locally and says so.
    setup.sim.inject(SimVendor::Whoop, "/v2/user/access", vec![Fault::Status(503); 3]);
    let (ok, report, err) = helpers::run_cli(&["users", "erase", "--user", &user], &env, "");
    assert!(!ok, "Kafka and a pending revocation are not clean: {report}");
    for line in [
        "  ok           postgres.vendor_connections  1 removed",
        "  ok           postgres.ingest_tokens       1 removed",
        "  ok           postgres.poll_watermarks     1 removed",
        "  ok           postgres.biometric_events    2 removed",
        "  NOT CLEANED  vendor.revocation            not confirmed by whoop (http_503)",
        "  ok           stores                       erasure record on every partition of ",
        "  ok           kafka.user_erased_events     consumers told on ",
        "  ok           kafka.at_rest                0 data key(s) deleted",
        "  NOT CLEANED  kafka.unsealed               records of Terra's own Kafka destination",
        "  ok           kafka.outputs                events stay readable Avro by design",
    ] {
        assert!(report.contains(line), "{line:?} in\n{report}");
    }
    assert!(err.contains("still hold data about the person"), "{err}");
    assert_eq!((setup.sim.revocations(SimVendor::Oura, &oura), setup.sim.revocations(SimVendor::Whoop, &whoop)), (1, 0));

    // Only the WHOOP connection is left, renamed to the pseudonym, for the retry.
    let kept: Vec<(String, String)> = sqlx::query_as("SELECT vendor, user_id FROM vendor_connections WHERE vendor_user_id = ANY($1)")
        .bind(vec![oura.clone(), whoop.clone()])
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(kept, [("WHOOP".to_owned(), pseudonym.clone())]);
    assert_eq!(traces(&pool, &[&user, &oura]).await, Vec::<String>::new(), "nothing names the person or their Oura id");

    // The retry confirms and deletes the kept row; then no table holds any of their ids.
    let retried = helpers::run_cli(&["connections", "revoke", "--retry-pending"], &env, "");
    assert_eq!(setup.sim.revocations(SimVendor::Whoop, &whoop), 1, "retried: {retried:?}");
    assert_eq!(traces(&pool, &[&user, &oura, &whoop]).await, Vec::<String>::new());

    // The control person is untouched.
    let control_traces = traces(&pool, &[&control, &control_oura]).await;
    for table in ["biometric_events", "identity_links", "ingest_tokens", "vendor_connections", "poll_watermarks"] {
        assert!(control_traces.iter().any(|found| found.starts_with(table)), "control lost {table}: {control_traces:?}");
    }
    assert_eq!(setup.sim.revocations(SimVendor::Oura, &control_oura), 0);

    // Idempotent: a second run removes nothing, and only the Kafka places remain unclean.
    let (ok, again, _) = helpers::run_cli(&["users", "erase", "--user", &user], &env, "");
    assert!(!ok && !again.contains("vendor.revocation"), "{again}");
    assert_eq!(again.matches(" 0 removed").count(), 5, "{again}");
    assert_eq!(again.matches("NOT CLEANED").count(), 1, "only the records the project does not seal: {again}");

    // Each run told every output topic's consumers, on the person's partition (key = user id).
    let outputs = [setup.topology.topic("terra-biometric-events"), setup.events_topic()];
    let told = helpers::read_events(&outputs, 4, std::time::Duration::from_secs(30)).await;
    assert_eq!(told.len(), 4, "one USER_ERASED per output topic per run");
    for received in &told {
        assert_eq!((received.event.kind.symbol(), received.event.user_id.as_str()), ("USER_ERASED", user.as_str()));
        assert_eq!((received.key.as_deref(), received.headers["event-type"].as_str()), (Some(user.as_str()), "USER_ERASED"));
        assert!(received.event.vendor_user_id.is_empty() && received.event.hrv_rmssd_ms.is_none());
    }

    // Both runs are audited, by pseudonym, as incomplete, with what each place came to.
    let audited: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT outcome, detail FROM audit_log WHERE action = 'user.erase' AND subject = $1 ORDER BY id")
            .bind(&pseudonym)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(audited.len(), 2, "{audited:?}");
    assert_eq!((audited[0].0.as_str(), &audited[0].1["postgres.biometric_events"]), ("failed", &2.into()));
    assert_eq!(audited[0].1["vendor.revocation"], "not cleaned");
    assert_eq!(audited[0].1["error"], "incomplete");
}

/// A Terra sleep webhook of `user` (Terra `reference_id`) and Terra user `terra_user`, summary `day`.
fn terra_sleep(user: &str, terra_user: &str, day: u32) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(&helpers::fixture("terra/sleep.json")).unwrap();
    json["user"]["reference_id"] = user.into();
    json["user"]["user_id"] = terra_user.into();
    // Another night: another summary (its id names the event).
    json["data"][0]["metadata"]["summary_id"] = format!("night-{day}-{terra_user}").into();
    serde_json::to_vec(&json).unwrap()
}

/// The last value of each key of `topic` whose key starts with `prefix`: `true` if a tombstone.
fn last_is_tombstone(records: &[helpers::RawRecord], prefix: &str) -> std::collections::BTreeMap<String, bool> {
    let mut last = std::collections::BTreeMap::new();
    for record in records {
        let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
        if key.starts_with(prefix) {
            last.insert(key, record.payload.is_empty());
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_deletes_the_erased_person_s_state_and_their_next_upload_starts_fresh() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use std::time::Duration;

    let setup = Setup::new().await;
    let pool = setup.store.pool().clone();
    let raw = setup.topology.topic("raw-webhooks");
    let (user, control) = (helpers::unique("stateful"), helpers::unique("stateful-control"));
    let (terra_user, control_terra) = (helpers::unique("terra-u"), helpers::unique("terra-c"));
    // Terra's auth event would have linked it: the erase finds the person's Terra id here.
    sqlx::query("INSERT INTO identity_links (vendor, vendor_user_id, user_id) VALUES ('TERRA', $1, $2)")
        .bind(&terra_user)
        .bind(&user)
        .execute(&pool)
        .await
        .unwrap();
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", helpers::bootstrap()).create().unwrap();
    let send_received = |person: &str, terra: &str, day: u32, received_ms: i64| {
        let body = terra_sleep(person, terra, day);
        let (received, delivery, key) = (received_ms.to_string(), helpers::unique("d"), format!("terra:{terra}"));
        let producer = producer.clone();
        let raw = raw.clone();
        async move {
            let headers = OwnedHeaders::new()
                .insert(Header { key: "vendor", value: Some("terra") })
                .insert(Header { key: "received-at", value: Some(received.as_str()) })
                .insert(Header { key: "delivery-id", value: Some(delivery.as_str()) });
            producer.send(FutureRecord::to(&raw).key(&key).payload(&body).headers(headers), Duration::from_secs(10)).await.unwrap();
        }
    };
    let send = |person: &str, terra: &str, day: u32| send_received(person, terra, day, chrono::Utc::now().timestamp_millis());
    let processor = setup.processor("erase-stores");
    for day in [10, 11, 12] {
        send(&user, &terra_user, day).await;
        send(&control, &control_terra, day).await;
    }
    let events = helpers::read_events(&[setup.topology.topic("terra-biometric-events")], 6, Duration::from_secs(60)).await;
    assert_eq!(events.len(), 6, "{}", processor.log_tail());

    let mut env: Vec<(String, String)> = setup.env();
    env.push(("TOPOLOGY_FILE".into(), setup.topology.path.display().to_string()));
    env.push(("KAFKA_BOOTSTRAP_SERVERS".into(), helpers::bootstrap()));
    env.push(("SCHEMA_REGISTRY_URL".into(), helpers::registry_url()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let before_erase = chrono::Utc::now().timestamp_millis() - 1;
    let (_, report, _) = helpers::run_cli(&["users", "erase", "--user", &user], &env, "");
    assert!(report.contains("  ok           stores "), "{report}");

    // Every task (one per partition) applies its erasure record.
    let partitions = setup.topology.topology.topic(&raw).unwrap().partitions;
    processor.wait_for_metric(&format!("biometric_bridge_erasures_applied_total {partitions}"), Duration::from_secs(60)).await;
    let changelog = |store: &str| {
        let topic = setup.topology.topology.stores.iter().find(|s| s.name == store).unwrap().changelog_topic.clone();
        helpers::read_raw(&topic, usize::MAX, Duration::from_secs(8))
    };
    let (baseline, dedup) = (changelog("hrv-baseline"), changelog("dedup"));
    for (records, prefix, control_prefix) in [
        (&baseline, format!("{user}|"), format!("{control}|")),
        (&dedup, format!("terra:{terra_user}|"), format!("terra:{control_terra}|")),
    ] {
        let erased = last_is_tombstone(records, &prefix);
        assert!(!erased.is_empty() && erased.values().all(|&tombstone| tombstone), "{prefix}: {erased:?}");
        let kept = last_is_tombstone(records, &control_prefix);
        assert!(!kept.is_empty() && kept.values().all(|&tombstone| !tombstone), "{control_prefix}: {kept:?}");
    }

    // An upload the ingress accepted before the erase, reaching the processor only now, is
    // never written; an upload after the erase of a night sent before it is new again (no
    // de-duplication mark is left) and builds a fresh baseline.
    send_received(&user, &terra_user, 13, before_erase).await;
    send(&user, &terra_user, 12).await;
    // 6 events, the USER_ERASED one, and the new upload.

    // Read for one more than expected: the in-flight upload must not be among them.
    let after = helpers::read_events(&[setup.topology.topic("terra-biometric-events")], 9, Duration::from_secs(15)).await;
    assert_eq!(after.len(), 8, "{}", processor.log_tail());
    let fresh = after.iter().filter(|received| received.event.user_id == user && received.event.kind.symbol() != "USER_ERASED").count();
    assert_eq!(fresh, 4, "three before the erase, none in flight, and the upload after it is not a duplicate");
    assert!(processor.metrics().await.contains("biometric_bridge_erased_in_flight_dropped_total 1\n"), "the in-flight upload was dropped");
    let baseline = changelog("hrv-baseline");
    let rebuilt = last_is_tombstone(&baseline, &format!("{user}|"));
    assert!(rebuilt.values().any(|&tombstone| !tombstone), "a fresh baseline after the upload: {rebuilt:?}");
    drop(processor);
}
