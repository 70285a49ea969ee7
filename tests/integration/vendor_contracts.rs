//! The vendors' contracts as they document them, through the real stack: retries signed hours
//! ago are accepted within each vendor's retry horizon; a 40 MB Terra body is written with
//! bounded memory; WHOOP cycles and Oura's heartrate series, which no webhook announces, arrive
//! through reconciliation; an older Terra copy never overwrites a newer one; revoking a
//! connection revokes it at the vendor, retried until the vendor confirms.

use std::process::Command;
use std::time::Duration;

use biometric_bridge::event::{EventKind, Vendor};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::fetch_support::Setup;
use super::helpers::{self, TestTopology};
use super::ingress_harness::{Webhook, assert_accepted, assert_error, oura_secret, raw_topic, records, start, topic_with, whoop_secret};
use super::vendor_sim::{Fault, SimVendor, VendorSim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_signed_hours_ago_are_accepted_within_each_vendor_s_horizon() {
    let (_topic, ingress) = start(1, &[]).await;
    let now = helpers::now_secs();
    // A vendor that keeps the original timestamp on its retries: Terra retries for ~24 h, Oura
    // and WHOOP for about an hour.
    let terra =
        Webhook::terra_signed_with(&helpers::fixture("terra/sleep.json"), &helpers::unique("retry"), helpers::TERRA_SECRET, now - 8 * 3600);
    assert_accepted(terra.send(&ingress).await, 202, "accepted").await;
    let oura = Webhook::oura_signed_with(&helpers::fixture("oura/webhook_sleep_create.json"), &oura_secret(), now - 55 * 60);
    assert_accepted(oura.send(&ingress).await, 202, "accepted").await;
    let whoop = Webhook::whoop_signed_with(&helpers::fixture("whoop/webhook_sleep_updated.json"), &whoop_secret(), (now - 55 * 60) * 1000);
    assert_accepted(whoop.send(&ingress).await, 202, "accepted").await;
    // Past the horizon: refused, and counted per vendor so an operator sees it.
    let too_old = Webhook::oura_signed_with(b"{\"x\":1}", &oura_secret(), now - 3 * 3600);
    assert_error(too_old.send(&ingress).await, 401, "stale_signature").await;
    let metrics = ingress.client.get(ingress.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("biometric_bridge_stale_signatures_total{vendor=\"oura\"}"), "{metrics}");
    assert!(!metrics.contains("biometric_bridge_stale_signatures_total{vendor=\"oura\"} 0"), "{metrics}");
    ingress.stop().await;
}

/// Peak resident memory of a process, from /proc, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap();
    kib / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forty_megabyte_terra_body_is_written_with_bounded_memory() {
    // Terra: "there is no fixed size limit on a single webhook" (long activities are tens of MB).
    let configs = [("max.message.bytes".to_owned(), biometric_bridge::kafka::MAX_RAW_RECORD_BYTES.to_string())].into();
    let topic = topic_with(1, configs).await;
    let ingress = super::ingress_process::IngressProcess::spawn(&topic, &[("TERRA_SIGNING_SECRET", helpers::TERRA_SECRET)], &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = peak_rss_mib(ingress.pid());
    let mut json: serde_json::Value = serde_json::from_slice(&helpers::fixture("terra/activity.json")).unwrap();
    let samples: Vec<serde_json::Value> =
        (0..720_000).map(|i| serde_json::json!({"bpm": 120 + i % 40, "timestamp": format!("2026-11-20T{:02}:{:02}:{:02}.000000+00:00", i / 3600 % 24, i / 60 % 60, i % 60)})).collect();
    json["data"][0]["heart_rate_data"]["detailed"]["hr_samples"] = samples.into();
    let body = serde_json::to_vec(&json).unwrap();
    assert!(body.len() > 40_000_000, "{} bytes", body.len());
    let webhook = Webhook::terra(&body, &helpers::unique("forty"));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    assert_accepted(webhook.send_to(&client, ingress.addr).await, 202, "accepted").await;
    let peak = peak_rss_mib(ingress.pid());
    let mib = body.len() as f64 / 1_048_576.0;
    eprintln!("40 MB Terra body ({mib:.1} MiB): ingress peak RSS {before:.1} MiB before, {peak:.1} MiB after");
    // The body once in our buffer and once in librdkafka's: no third copy.
    assert!(peak - before < 2.6 * mib + 30.0, "peak RSS grew by {:.1} MiB for a {mib:.1} MiB body", peak - before);
    let found = records(&topic, 1, Duration::from_secs(30)).await;
    assert_eq!(found.len(), 1);
    assert!(found[0].payload == body, "byte for byte");
    drop(ingress);
    let _ = raw_topic;
}

fn reconcile(setup: &Setup, vendor: &str) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_biometric-bridge"));
    command
        .args(["reconcile", "--vendor", vendor, "--since", "1d", "--topology"])
        .arg(&setup.topology.path)
        .env("KAFKA_BOOTSTRAP_SERVERS", helpers::bootstrap())
        .env("DATABASE_URL", helpers::database_url());
    for (key, value) in setup.env() {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoop_cycles_and_oura_heartrate_arrive_through_reconciliation() {
    let setup = Setup::new().await;
    let whoop_user = i64::from(super::fetch_support::rand_u16()) + 200_000;
    setup.connect(SimVendor::Whoop, &whoop_user.to_string(), "user-cycle", 3600).await;
    let start = (chrono::Utc::now() - chrono::Duration::hours(6)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut cycle: serde_json::Value = serde_json::from_slice(&helpers::fixture("whoop/api_cycle.json")).unwrap();
    cycle["id"] = 93_845_001.into();
    cycle["user_id"] = whoop_user.into();
    cycle["start"] = start.clone().into();
    cycle["end"] = serde_json::Value::Null;
    setup.sim.put_record(SimVendor::Whoop, &whoop_user.to_string(), "cycle", "93845001", cycle);

    let oura_user = helpers::unique("hr");
    setup.connect(SimVendor::Oura, &oura_user, "user-heart", 3600).await;
    for minutes_ago in [200, 190, 30] {
        let at = (chrono::Utc::now() - chrono::Duration::minutes(minutes_ago)).to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        let sample = serde_json::json!({"bpm": 60 + minutes_ago % 7, "source": "awake", "timestamp": at});
        setup.sim.put_record(SimVendor::Oura, &oura_user, "heartrate", &format!("{oura_user}-{minutes_ago}"), sample);
    }
    let _processor = setup.processor("polled");
    let whoop = reconcile(&setup, "whoop");
    assert!(whoop.contains("1 records listed"), "{whoop}");
    let oura = reconcile(&setup, "oura");
    assert!(oura.contains("oura: 1 connections"), "{oura}");

    let events = helpers::read_events(&[setup.events_topic()], 4, Duration::from_secs(60)).await;
    let cycles: Vec<_> = events.iter().filter(|e| e.event.kind == EventKind::Daily).collect();
    assert_eq!(cycles.len(), 1, "the cycle, which has no webhook");
    assert_eq!(cycles[0].event.strain, Some(12.4818));
    let beats: Vec<_> = events.iter().filter(|e| e.event.kind == EventKind::HeartRate).collect();
    assert_eq!(beats.len(), 3, "every sample of the polled series");

    // The high-water mark moved on: the next run asks only for what came since.
    let before = setup.sim.requests(SimVendor::Oura, "/v2/usercollection/heartrate");
    reconcile(&setup, "oura");
    let asked = setup.sim.requests(SimVendor::Oura, "/v2/usercollection/heartrate") - before;
    assert!(asked <= 1, "only the window since the last run: {asked} requests");
    let again = helpers::read_events(&[setup.events_topic()], 5, Duration::from_secs(10)).await;
    assert_eq!(again.len(), 4, "nothing fetched twice into a new event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_terra_copy_never_overwrites_a_newer_one() {
    let topology = TestTopology::create(1).await;
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", helpers::bootstrap()).create().unwrap();
    let raw = topology.topic("raw-webhooks");
    // Terra emitted the 58 ms version at t=2000 and the 45 ms one at t=1000; the older one's retry
    // arrives last.
    for (rmssd, ordering) in [(58.0, "2000"), (45.0, "1000")] {
        let mut json: serde_json::Value = serde_json::from_slice(&helpers::fixture("terra/sleep.json")).unwrap();
        json["data"][0]["heart_rate_data"]["summary"]["avg_hrv_rmssd"] = rmssd.into();
        let body = serde_json::to_vec(&json).unwrap();
        let received = chrono::Utc::now().timestamp_millis().to_string();
        let delivery = helpers::unique("copy");
        let headers = OwnedHeaders::new()
            .insert(Header { key: "vendor", value: Some("terra") })
            .insert(Header { key: "received-at", value: Some(received.as_str()) })
            .insert(Header { key: "delivery-id", value: Some(delivery.as_str()) })
            .insert(Header { key: "x-terra-ordering-timestamp", value: Some(ordering) });
        producer.send(FutureRecord::to(&raw).key("terra:u").payload(&body).headers(headers), Duration::from_secs(10)).await.unwrap();
    }
    let processor = helpers::spawn_processor(&topology, "ordering", &[]);
    let events = helpers::read_events(&[topology.topic("terra-biometric-events")], 2, Duration::from_secs(30)).await;
    assert_eq!(events.len(), 1, "the older copy is dropped: {}", processor.log_tail());
    assert_eq!(events[0].event.hrv_rmssd_ms, Some(58.0));
    assert!(processor.metrics().await.contains("biometric_bridge_stale_updates_dropped_total{vendor=\"terra\"} 1"));
}

fn connections(setup: &Setup, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_biometric-bridge"));
    command.arg("connections").args(args).env("DATABASE_URL", helpers::database_url());
    for (key, value) in setup.env() {
        command.env(key, value);
    }
    command.env("OURA_REVOKE_URL", format!("{}/oauth/revoke", setup.sim.oura_base()));
    command.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_connection_revokes_it_at_the_vendor_until_the_vendor_confirms() {
    let setup = Setup::new().await;
    let whoop_user = (i64::from(super::fetch_support::rand_u16()) + 300_000).to_string();
    setup.connect(SimVendor::Whoop, &whoop_user, "user-leaving", 3600).await;
    let revoked = connections(&setup, &["revoke", "--vendor", "whoop", "--vendor-user", &whoop_user]);
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    assert_eq!(setup.sim.revocations(SimVendor::Whoop, &whoop_user), 1, "WHOOP: DELETE /v2/user/access");

    // Oura answers 503 three times: revoked here, reported, retried later.
    let oura_user = helpers::unique("leaving");
    setup.connect(SimVendor::Oura, &oura_user, "user-leaving-too", 3600).await;
    setup.sim.inject(SimVendor::Oura, "/oauth/revoke", vec![Fault::Status(503), Fault::Status(503), Fault::Status(503)]);
    let failed = connections(&setup, &["revoke", "--vendor", "oura", "--vendor-user", &oura_user]);
    assert!(!failed.status.success(), "never report a revocation the vendor did not confirm");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("did not confirm") && stderr.contains("http_503"), "{stderr}");
    assert_eq!(setup.sim.revocations(SimVendor::Oura, &oura_user), 0);
    let status = setup.store.get(Vendor::Oura, &oura_user).await.unwrap().unwrap().status;
    assert_eq!(status, biometric_bridge::connections::ConnectionStatus::Revoked, "revoked here at once");

    // The database is shared with other tests, whose pending revocations may fail here (their
    // simulators are gone): only this user's outcome is asserted.
    let retried = connections(&setup, &["revoke", "--retry-pending"]);
    let stdout = String::from_utf8_lossy(&retried.stdout);
    assert!(stdout.contains("confirmed") && !stdout.contains(&oura_user), "{stdout}{}", String::from_utf8_lossy(&retried.stderr));
    assert_eq!(setup.sim.revocations(SimVendor::Oura, &oura_user), 1, "confirmed on the retry");
    let pending: bool =
        sqlx::query_scalar("SELECT vendor_revoke_pending FROM vendor_connections WHERE vendor = 'OURA' AND vendor_user_id = $1")
            .bind(&oura_user)
            .fetch_one(&sqlx::PgPool::connect(&helpers::database_url()).await.unwrap())
            .await
            .unwrap();
    assert!(!pending, "the vendor confirmed");
    let _ = VendorSim::oura_sleep;
}
