//! `users erase` through the real binary, PostgreSQL and the vendor simulator: a person with a
//! connection at each vendor, an upload token, identity links, a poll watermark and history rows,
//! beside a control person with the same. After the erase no table holds the person's ids; the
//! control is intact; a vendor that did not confirm the revocation keeps only a pseudonymous row
//! until the retry confirms; the Kafka places it cannot clean yet are reported, and the exit says so.

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

    let pseudonym_key = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
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
        "  ok           kafka.user_erased_events     consumers told on ",
        "  NOT CLEANED  kafka.at_rest",
        "  NOT CLEANED  kafka.outputs",
        "  NOT CLEANED  stores",
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
