//! `biometric-bridge subscriptions list|ensure` against the vendor simulator's Oura subscription
//! API, whose creates perform the verification handshake against a real ingress.

use std::process::{Command, Output};

use chrono::{TimeDelta, Utc};

use super::ingress_harness;
use super::ingress_support::test_secrets;
use super::vendor_sim::{SimVendor, VendorSim};

/// The token the ingress answers Oura's handshake with (`ingress_support::test_secrets`).
fn ingress_token() -> String {
    test_secrets().oura_verification_token.expect("the test secrets have one").expose().to_owned()
}

/// What one CLI run printed.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `biometric-bridge subscriptions <args>` against `sim` with `token` as
/// OURA_VERIFICATION_TOKEN, off the async runtime (the ingress must keep answering meanwhile).
/// Fails if the client secret or the token shows up in the output.
async fn cli(sim: &VendorSim, args: &[&str], token: &str) -> Run {
    let secret = sim.client_secret(SimVendor::Oura);
    let mut command = Command::new(env!("CARGO_BIN_EXE_biometric-bridge"));
    command
        .arg("subscriptions")
        .args(args)
        .env("OURA_API_BASE", sim.oura_base())
        .env("OURA_CLIENT_ID", sim.client_id(SimVendor::Oura))
        .env("OURA_CLIENT_SECRET", secret)
        .env("OURA_VERIFICATION_TOKEN", token)
        .env_remove("OURA_CLIENT_SECRET_FILE")
        .env_remove("OURA_VERIFICATION_TOKEN_FILE");
    let output: Output = tokio::task::spawn_blocking(move || command.output().expect("run the CLI")).await.unwrap();
    let run = Run {
        success: output.status.success(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    };
    for text in [&run.stdout, &run.stderr] {
        for forbidden in [secret, token] {
            assert!(!text.contains(forbidden), "the output shows {forbidden:?}: {text}");
        }
    }
    run
}

fn ensure_args(callback_url: &str) -> Vec<&str> {
    vec!["ensure", "--vendor", "oura", "--callback-url", callback_url]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_creates_through_the_handshake_keeps_and_renews() {
    let (_topic, ingress) = ingress_harness::start(1, &[]).await;
    let sim = VendorSim::start();
    let callback = ingress.url("/webhooks/oura");
    let token = ingress_token();

    let run = cli(&sim, &ensure_args(&callback), &token).await;
    assert!(run.success, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "created 12, renewed 0, kept 0, foreign 0", "{}", run.stderr);
    // The simulator creates only after the ingress passed the handshake.
    assert_eq!(sim.subscription_creates(), 12);
    let subscriptions = sim.oura_subscriptions();
    let mut pairs: Vec<(String, String)> =
        subscriptions.iter().map(|s| (s["event_type"].as_str().unwrap().to_owned(), s["data_type"].as_str().unwrap().to_owned())).collect();
    pairs.sort();
    pairs.dedup();
    assert_eq!(pairs.len(), 12, "3 event types × 4 data types: {pairs:?}");
    assert!(subscriptions.iter().all(|s| s["callback_url"] == callback.as_str()));
    assert!(pairs.iter().all(|(_, data)| data != "heartrate"), "heartrate has no webhook");

    let listed = cli(&sim, &["list", "--vendor", "oura"], &token).await;
    assert!(listed.success, "{}", listed.stderr);
    assert_eq!(listed.stdout.lines().count(), 13, "a header and one line per subscription: {}", listed.stdout);
    assert!(listed.stdout.lines().skip(1).all(|line| line.contains(&callback)), "{}", listed.stdout);

    let run = cli(&sim, &ensure_args(&callback), &token).await;
    assert!(run.success, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "created 0, renewed 0, kept 12, foreign 0");
    assert_eq!((sim.subscription_creates(), sim.subscription_renews()), (12, 0));

    let tomorrow = Utc::now() + TimeDelta::days(1);
    let expiring: Vec<String> = subscriptions.iter().take(2).map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    for id in &expiring {
        sim.set_subscription_expiry(id, tomorrow);
    }
    let mut renew = ensure_args(&callback);
    renew.extend(["--renew-within", "7d"]);
    let dry = cli(&sim, &[renew.as_slice(), &["--dry-run"]].concat(), &token).await;
    assert!(dry.success, "{}", dry.stderr);
    assert_eq!(dry.stdout.trim(), "dry run, nothing changed: created 0, renewed 2, kept 10, foreign 0");
    assert_eq!(sim.subscription_renews(), 0, "a dry run renews nothing");

    let run = cli(&sim, &renew, &token).await;
    assert!(run.success, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "created 0, renewed 2, kept 10, foreign 0");
    assert_eq!((sim.subscription_creates(), sim.subscription_renews()), (12, 2));
    for subscription in sim.oura_subscriptions().iter().filter(|s| expiring.iter().any(|id| s["id"] == id.as_str())) {
        let expires = chrono::DateTime::parse_from_rfc3339(subscription["expiration_time"].as_str().unwrap()).unwrap();
        assert!(expires > Utc::now() + TimeDelta::days(29), "renewed for 30 days: {subscription}");
    }
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_token_the_ingress_does_not_have_creates_nothing() {
    let (_topic, ingress) = ingress_harness::start(1, &[]).await;
    let sim = VendorSim::start();
    let callback = ingress.url("/webhooks/oura");

    let run = cli(&sim, &ensure_args(&callback), "not-the-ingress-verification-token").await;
    assert!(!run.success, "every create must fail: {}", run.stdout);
    assert_eq!(run.stdout.trim(), "created 0, renewed 0, kept 0, foreign 0, failed 12");
    assert_eq!(run.stderr.matches("FAILED create").count(), 12, "{}", run.stderr);
    assert!(run.stderr.contains("HTTP 400"), "{}", run.stderr);
    assert!(run.stderr.contains("12 subscription call(s) failed"), "{}", run.stderr);
    assert!(sim.oura_subscriptions().is_empty());
    assert_eq!(sim.subscription_creates(), 0);
    ingress.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoop_has_no_subscription_api() {
    let sim = VendorSim::start();
    for args in
        [&["list", "--vendor", "whoop"][..], &["ensure", "--vendor", "whoop", "--callback-url", "https://bridge.example/webhooks/whoop"]]
    {
        let run = cli(&sim, args, &ingress_token()).await;
        assert!(!run.success, "{args:?}: {}", run.stdout);
        assert!(run.stderr.contains("WHOOP webhooks are configured in the WHOOP developer dashboard"), "{}", run.stderr);
    }
    assert_eq!(sim.requests(SimVendor::Oura, "/"), 0);
}
