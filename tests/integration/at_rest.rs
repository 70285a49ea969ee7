//! Crypto-shredding through the real stack: a sealing ingress, a processor with the key, the
//! vendor simulator, PostgreSQL and Kafka.
//!
//! One person and a control each get a Terra night, a dead letter and an Oura record fetched
//! through the simulator; the person also an Apple upload. Nothing in the raw topic, the pending
//! fetches or the DLQ names either of them or shows a value in the clear, and everything
//! processes. After `users erase`: the person's data keys are gone, so none of their sealed
//! records opens any more while the control's do (`dlq show` opens the control's dead letter and
//! says the person's is shredded); a replay of the raw topic by a fresh processor skips the
//! person's records (logged, counted, never dead-lettered) and re-derives the control's; and the
//! person's next upload is sealed under a new key and processed from scratch. Key rotation
//! rewraps the keys without touching Kafka.

use std::time::Duration;

use biometric_bridge::at_rest::{self, DataKeys, Kek, Reading};
use biometric_bridge::secret::Secret;

use crate::fetch_support::{Setup, oura_notification};
use crate::helpers::{self, RawRecord};
use crate::ingress_harness::Webhook;
use crate::ingress_support::{TestIngress, build_sealing_ingress, spawn_sealing_ingress, test_secrets};
use crate::sink_support::TestDb;
use crate::vendor_sim::{SimVendor, VendorSim};

/// A Terra sleep night of Terra user `terra_user`, summary `summary`, with rMSSD `rmssd`.
fn terra_night(terra_user: &str, summary: &str, rmssd: f64) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(&helpers::fixture("terra/sleep.json")).unwrap();
    json["user"]["user_id"] = terra_user.into();
    json["data"][0]["metadata"]["summary_id"] = summary.into();
    json["data"][0]["heart_rate_data"]["summary"]["avg_hrv_rmssd"] = rmssd.into();
    serde_json::to_vec(&json).unwrap()
}

/// A Terra webhook that is JSON but no Terra payload: a dead letter.
fn terra_unusable(terra_user: &str, marker: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "type": "sleep", "user": { "user_id": terra_user }, "data": marker })).unwrap()
}

async fn post(ingress: &TestIngress, webhook: Webhook) {
    let response = webhook.send(ingress).await;
    let status = response.status().as_u16();
    assert_eq!(status, 202, "{}", response.text().await.unwrap_or_default());
}

/// Every text a record shows at rest: key, header values, value bytes.
fn at_rest_text(record: &RawRecord) -> String {
    let mut text = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
    for (name, value) in &record.headers {
        text.push_str(&format!("\n{name}={value}"));
    }
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&record.payload));
    text
}

fn assert_no_trace(records: &[RawRecord], needles: &[&str], place: &str) {
    for record in records {
        let text = at_rest_text(record);
        for needle in needles {
            assert!(!text.contains(needle), "{place} shows {needle:?} in the clear: {text:.400}");
        }
    }
}

fn open_all(keys: &DataKeys, records: &[RawRecord]) -> impl std::future::Future<Output = Vec<Reading>> {
    let values: Vec<Vec<u8>> = records.iter().map(|record| record.payload.clone()).collect();
    async move {
        let mut out = Vec::new();
        for value in values {
            out.push(at_rest::read(Some(keys), &value).await.unwrap());
        }
        out
    }
}

fn opened_text(reading: &Reading) -> Option<String> {
    match reading {
        Reading::Opened(opened) => Some(String::from_utf8_lossy(&opened.body).into_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erase_shreds_the_person_s_sealed_records_and_a_replay_skips_them() {
    let setup = Setup::new().await;
    let pool = setup.store.pool().clone();
    let raw = setup.topology.topic("raw-webhooks");
    let ingress = spawn_sealing_ingress(&raw, test_secrets(), &setup.data_key, &["--no-dedup"]).await;
    let (user, control) = (helpers::unique("sealed-person"), helpers::unique("sealed-control"));
    let (terra_user, control_terra) = (helpers::unique("terra-p"), helpers::unique("terra-c"));
    let (oura_user, control_oura) = (helpers::unique("oura-p"), helpers::unique("oura-c"));
    let (night, control_night) = (helpers::unique("night-p"), helpers::unique("night-c"));
    let (marker, control_marker) = (helpers::unique("unusable-p"), helpers::unique("unusable-c"));
    for (person, terra, oura) in [(&user, &terra_user, &oura_user), (&control, &control_terra, &control_oura)] {
        sqlx::query("INSERT INTO identity_links (vendor, vendor_user_id, user_id) VALUES ('TERRA', $1, $2)")
            .bind(terra)
            .bind(person)
            .execute(&pool)
            .await
            .unwrap();
        setup.connect(SimVendor::Oura, oura, person, 3600).await;
        let record = format!("sleep-of-{oura}");
        setup.sim.put_record(SimVendor::Oura, oura, "sleep", &record, VendorSim::oura_sleep(&record, "2026-11-20", 19.0));
    }
    let apple_token = biometric_bridge::ingress::tokens::issue(&pool, &user).await.unwrap().token;
    let processor = setup.processor("sealed");

    post(&ingress, Webhook::terra(&terra_night(&terra_user, &night, 31.25), &helpers::unique("d"))).await;
    post(&ingress, Webhook::terra(&terra_night(&control_terra, &control_night, 52.5), &helpers::unique("d"))).await;
    post(&ingress, Webhook::terra(&terra_unusable(&terra_user, &marker), &helpers::unique("d"))).await;
    post(&ingress, Webhook::terra(&terra_unusable(&control_terra, &control_marker), &helpers::unique("d"))).await;
    for oura in [&oura_user, &control_oura] {
        post(&ingress, Webhook::oura(&oura_notification("create", "sleep", &format!("sleep-of-{oura}"), oura))).await;
    }
    post(&ingress, Webhook::apple_health(&helpers::fixture("apple_healthkit/hae_metrics_low_hrv.json"), apple_token.expose())).await;

    // Everything is processed from the sealed records: Terra and Oura events for both, Apple's for
    // the person, under the right users.
    let outputs = [setup.topology.topic("terra-biometric-events"), setup.events_topic()];
    let of = |events: &[helpers::Received], person: &str, vendor: &str| {
        events.iter().filter(|r| r.event.user_id == person && r.event.vendor.slug() == vendor).count()
    };
    let all_in = |events: &[helpers::Received]| {
        of(events, &user, "terra") == 1
            && of(events, &control, "terra") == 1
            && of(events, &user, "oura") == 1
            && of(events, &control, "oura") == 1
            && of(events, &user, "apple-health") >= 1
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let events = loop {
        let events = helpers::read_events(&outputs, usize::MAX, Duration::from_secs(3)).await;
        if all_in(&events) || std::time::Instant::now() > deadline {
            break events;
        }
    };
    let of = |person: &str, vendor: &str| of(&events, person, vendor);
    assert!(of(&user, "terra") == 1 && of(&control, "terra") == 1, "{events:?}\n{}", processor.log_tail());
    assert!(of(&user, "oura") == 1 && of(&control, "oura") == 1, "fetched through the simulator: {}", processor.log_tail());
    assert!(of(&user, "apple-health") >= 1, "the Apple upload, its user from inside the seal");
    let terra = events.iter().find(|r| r.event.user_id == user && r.event.vendor.slug() == "terra").unwrap();
    assert_eq!(terra.event.hrv_rmssd_ms, Some(31.25));

    // At rest: every record sealed, keyed by data key, naming nobody.
    let raw_records = helpers::read_raw(&raw, 7, Duration::from_secs(20));
    assert_eq!(raw_records.len(), 7);
    let dead = helpers::read_raw(&setup.dlq_topic(), 2, Duration::from_secs(30));
    assert_eq!(dead.len(), 2, "{}", processor.log_tail());
    let pending = helpers::read_raw(&setup.topology.topic("pending-fetch"), 2, Duration::from_secs(10));
    assert_eq!(pending.len(), 2);
    let needles =
        [&user, &control, &terra_user, &control_terra, &oura_user, &control_oura, &night, &control_night, &marker, &control_marker];
    let needles: Vec<&str> = needles.iter().map(|s| s.as_str()).chain(["31.25", "52.5", "sleep-of-"]).collect();
    for (place, records) in [("raw", &raw_records), ("dlq", &dead), ("pending-fetch", &pending)] {
        assert_no_trace(records, &needles, place);
        for record in records.iter() {
            assert!(at_rest::envelope::parse(&record.payload).is_some(), "{place}: every value sealed");
            let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
            assert!(key.contains(":k_"), "{place}: keyed by the data key's id, not the user: {key}");
        }
    }
    let kek = || Kek::from_secrets(&Secret::new(setup.data_key.clone()), None).unwrap();
    let keys = DataKeys::new(pool.clone(), kek(), Duration::ZERO);
    let readings = open_all(&keys, &raw_records).await;
    assert!(readings.iter().all(|reading| matches!(reading, Reading::Opened(_))), "all open while the keys exist");
    assert!(readings.iter().filter_map(opened_text).any(|body| body.contains(&night)), "byte for byte: the body is in the seal");

    // The erase deletes the person's three data keys (Terra, Oura, Apple).
    let mut env: Vec<(String, String)> = setup.env();
    env.push(("OURA_REVOKE_URL".into(), format!("{}/oauth/revoke", setup.sim.oura_base())));
    env.push(("TOPOLOGY_FILE".into(), setup.topology.path.display().to_string()));
    env.push(("KAFKA_BOOTSTRAP_SERVERS".into(), helpers::bootstrap()));
    env.push(("SCHEMA_REGISTRY_URL".into(), helpers::registry_url()));
    env.push(("DATABASE_URL".into(), helpers::database_url()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (_, report, err) = helpers::run_cli(&["users", "erase", "--user", &user], &env, "");
    assert!(report.contains("  ok           kafka.at_rest                3 data key(s) deleted"), "{report}\n{err}");

    // Nothing of the person opens any more; everything of the control still does.
    let keys = DataKeys::new(pool.clone(), kek(), Duration::ZERO);
    for (place, records) in [("raw", &raw_records), ("dlq", &dead), ("pending-fetch", &pending)] {
        let bodies: Vec<Option<String>> = open_all(&keys, records).await.iter().map(opened_text).collect();
        let readable: Vec<&String> = bodies.iter().flatten().collect();
        for needle in [&terra_user, &oura_user, &night, &marker] {
            assert!(!readable.iter().any(|body| body.contains(needle.as_str())), "{place}: {needle} still opens");
        }
        assert!(readable.iter().any(|body| body.contains(&control_terra) || body.contains(&control_oura)), "{place}: the control opens");
    }
    let (ok, list, err) = helpers::run_cli(&["dlq", "list"], &env, "");
    assert!(ok, "{err}");
    let letters: Vec<String> = list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(|position| helpers::run_cli(&["dlq", "show", position], &env, ""))
        .map(|(ok, text, err)| if ok { text } else { panic!("{err}") })
        .collect();
    assert_eq!(letters.len(), 2, "two dead letters: {list}");
    assert!(letters.iter().any(|text| text.contains("opened from data key") && text.contains(&control_marker)), "{letters:?}");
    assert!(letters.iter().any(|text| text.contains("which was erased: the payload is unreadable for good")), "{letters:?}");

    // The person's next upload: a new data key, processed from scratch.
    let partitions = setup.topology.topology.topic(&raw).unwrap().partitions;
    processor.wait_for_metric(&format!("biometric_bridge_erasures_applied_total {partitions}"), Duration::from_secs(60)).await;
    post(&ingress, Webhook::terra(&terra_night(&terra_user, &night, 33.5), &helpers::unique("d"))).await;
    let after = helpers::read_events(&[setup.topology.topic("terra-biometric-events")], 4, Duration::from_secs(30)).await;
    let fresh = after.iter().find(|r| r.event.hrv_rmssd_ms == Some(33.5));
    assert!(fresh.is_some(), "the upload after the erase is sealed under a key that exists: {after:?}\n{}", processor.log_tail());
    let new_keys: i64 = sqlx::query_scalar("SELECT count(*) FROM data_keys WHERE subject = $1")
        .bind(format!("terra:{terra_user}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(new_keys, 1, "a new key for the person's Terra id");
    drop(processor);

    // A replay of the raw topic by a fresh processor: the person's first records are skipped
    // (logged and counted, no dead letter), the control's give their events again.
    let raw_for_replay = raw.clone();
    let replay = crate::helpers::TestTopology::create_with(4, move |text| {
        text.replace("topic = \"raw-webhooks\"", &format!("topic = \"{raw_for_replay}\""))
            .replace("[topics.raw-webhooks]", &format!("[topics.\"{raw_for_replay}\"]"))
    })
    .await;
    let env = setup.env();
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let replaying = helpers::spawn_processor(&replay, "replay", &refs);
    let replayed_outputs = [replay.topic("terra-biometric-events"), replay.topic("biometric-events")];
    let replayed = helpers::read_events(&replayed_outputs, 3, Duration::from_secs(60)).await;
    assert!(replayed.iter().all(|r| r.event.user_id != user || r.event.hrv_rmssd_ms == Some(33.5)), "{replayed:?}");
    assert!(replayed.iter().any(|r| r.event.user_id == control), "{replayed:?}\n{}", replaying.log_tail());
    // The person's Terra night, dead letter, Oura notification and Apple upload.
    replaying.wait_for_metric("biometric_bridge_at_rest_erased_skipped_total 4", Duration::from_secs(30)).await;
    assert!(std::fs::read_to_string(&replaying.log).unwrap().contains("Record sealed under an erased data key: skipped"));
    let replay_dead = helpers::read_raw(&replay.topic("raw-webhooks.dlq"), 2, Duration::from_secs(10));
    assert_eq!(replay_dead.len(), 1, "only the control's unusable webhook is a dead letter again");
    drop(replaying);
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_rewraps_every_data_key_and_sealed_records_still_open() {
    let setup = Setup::new().await;
    // A database of its own: the rotation rewraps every data key in it, and the shared one's
    // belong to the stack's key (other tests, the demo) and must stay so.
    let db = TestDb::create().await;
    let pool = db.pool.clone();
    let raw = setup.topology.topic("raw-webhooks");
    let (old_key, new_key) = (helpers::random_key(), helpers::random_key());
    let ingress = spawn_sealing_ingress(&raw, test_secrets(), &old_key, &["--no-dedup", "--database-url", &db.url]).await;
    let terra_user = helpers::unique("terra-rot");
    post(&ingress, Webhook::terra(&terra_night(&terra_user, &helpers::unique("n"), 44.0), &helpers::unique("d"))).await;
    ingress.stop().await;
    let records = helpers::read_raw(&raw, 1, Duration::from_secs(20));

    let env = |current: &str, previous: Option<&str>| {
        let mut env = vec![("DATABASE_URL", db.url.clone()), ("DATA_ENCRYPTION_KEY", current.to_owned())];
        env.extend(previous.map(|previous| ("DATA_ENCRYPTION_KEY_PREVIOUS", previous.to_owned())));
        env
    };
    let run = |env: Vec<(&str, String)>| {
        let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        helpers::run_cli(&["keys", "rotate"], &refs, "")
    };
    let key_id = at_rest::envelope::parse(&records[0].payload).unwrap().key_id;
    let unreadable = format!("unwraps under neither key: data key {key_id}");
    // Without the previous key, the new one cannot unwrap what the old one wrapped: reported.
    let (ok, out, _) = run(env(&new_key, None));
    assert!(!ok && out.contains(&unreadable), "{out}");

    let (_, out, err) = run(env(&new_key, Some(&old_key)));
    assert!(!out.contains(&unreadable), "{out}\n{err}");
    let rewrapped: u64 = out.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(rewrapped, 1, "{out}");
    // The record in Kafka is untouched and opens under the new key alone.
    let keys = DataKeys::new(pool.clone(), Kek::from_secrets(&Secret::new(new_key.clone()), None).unwrap(), Duration::ZERO);
    let opened = open_all(&keys, &records).await;
    assert!(opened_text(&opened[0]).is_some_and(|body| body.contains(&terra_user)));
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'key.rotate' AND target = 'DATA_ENCRYPTION_KEY'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(audited >= 1);
    let rotated: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT rotated_at FROM data_keys WHERE key_id = $1").bind(key_id).fetch_one(&pool).await.unwrap();
    assert!(rotated.is_some());

    // Rotated, the old key alone opens none of the stored keys: a process given it refuses to
    // start, in one line, rather than refusing every webhook of every known user.
    let refused = build_sealing_ingress(&raw, test_secrets(), &old_key, &["--database-url", &db.url]).await.err().expect("refused");
    let refused = format!("{refused:#}");
    assert!(refused.contains("refusing to start") && refused.contains("does not unwrap under DATA_ENCRYPTION_KEY"), "{refused}");
    assert!(!refused.contains(&old_key) && !refused.contains(&new_key), "no key in the message");
    let ingress = spawn_sealing_ingress(&raw, test_secrets(), &new_key, &["--no-dedup", "--database-url", &db.url]).await;
    ingress.stop().await;
}
